"""Curation of actors once a curator has decided: merging duplicates into one actor
(``merge_actors``) and splitting accounts off into a new actor (``split_actor``).

Each runs in one transaction, validates everything before the first write (a refusal is a
one-line ``ConfigError`` and changes nothing), locks the actors it touches in id order so that
concurrent curation cannot deadlock, and writes a row to ``actor_audit_log``. The aliases they
write carry their source, which ``suggestions.py`` reads to never match a split-off name again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from observatory_pipelines.core.platform.errors import ConfigError

#: Alias sources written here. A split alias records a name the actor no longer answers to, so it
#: is never matched on: matching it would suggest undoing the split.
ALIAS_FROM_MERGE = "merge"
ALIAS_FROM_SPLIT = "split"


def _uuid(value: object, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip())
    except ValueError:
        raise ConfigError(f"'{value}' is not a valid {what} id; ids are UUIDs") from None


def _require_text(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ConfigError(f"{what} is empty; give a value")
    return text


def _lock_actors(conn: sa.Connection, ids: Iterable[uuid.UUID], doing: str) -> dict[uuid.UUID, sa.Row[Any]]:
    """Lock the actors (in id order, so concurrent merges cannot deadlock); refuse unknown ids."""
    wanted = sorted(set(ids))
    found = {
        row.id: row
        for row in conn.execute(
            sa.text(
                "SELECT id, canonical_name, is_public_figure FROM actors "
                "WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
            ),
            {"ids": wanted},
        )
    }
    for actor_id in wanted:
        if actor_id not in found:
            raise ConfigError(f"no actor with id {actor_id}; nothing was {doing}")
    return found


def _audit(conn: sa.Connection, action: str, actor_id: uuid.UUID, details: dict, performed_by: str) -> uuid.UUID:
    return conn.execute(
        sa.text(
            "INSERT INTO actor_audit_log (action, actor_id, details, performed_by) "
            "VALUES (:action, :actor, CAST(:details AS jsonb), :by) RETURNING id"
        ),
        {"action": action, "actor": actor_id, "details": json.dumps(details, ensure_ascii=False), "by": performed_by},
    ).scalar_one()


@dataclass(frozen=True)
class _Presence:
    id: uuid.UUID
    actor_id: uuid.UUID
    platform: str
    user_id: str | None
    username: str | None

    def same_id(self, other: _Presence) -> bool:
        return bool(
            self.platform == other.platform
            and self.user_id
            and other.user_id
            and self.user_id.lower() == other.user_id.lower()
        )

    def same_username(self, other: _Presence) -> bool:
        """Equal usernames where an id is missing: two different ids under one username are a
        recycled handle, i.e. two accounts."""
        return bool(
            self.platform == other.platform
            and not (self.user_id and other.user_id)
            and self.username
            and other.username
            and self.username.lower() == other.username.lower()
        )

    def describe(self) -> str:
        return f"{self.platform} @{self.username or self.user_id}"


def _presences(conn: sa.Connection, actor_ids: Sequence[uuid.UUID]) -> list[_Presence]:
    return [
        _Presence(*row)
        for row in conn.execute(
            sa.text(
                "SELECT id, actor_id, platform, platform_user_id, platform_username "
                "FROM actor_platform_presences WHERE actor_id = ANY(CAST(:ids AS uuid[])) "
                "ORDER BY created_at, id"
            ),
            {"ids": list(actor_ids)},
        )
    ]


@dataclass(frozen=True)
class MergeResult:
    canonical_actor_id: uuid.UUID
    merged_actor_ids: tuple[uuid.UUID, ...]
    content_records_repointed: int
    presences_moved: int
    #: Presences of a duplicate that were the same account as one the canonical actor already had:
    #: deleted, their missing fields folded into the canonical actor's presence.
    presences_dropped: tuple[str, ...]
    aliases_added: tuple[str, ...]
    list_memberships_moved: int
    audit_id: uuid.UUID

    def summary(self) -> str:
        dropped = f" ({len(self.presences_dropped)} already known, dropped)" if self.presences_dropped else ""
        return (
            f"merged {len(self.merged_actor_ids)} actor(s) into {self.canonical_actor_id}: "
            f"{self.content_records_repointed} records re-pointed, {self.presences_moved} presences moved"
            f"{dropped}, {len(self.aliases_added)} aliases added, "
            f"{self.list_memberships_moved} list memberships moved"
        )


def merge_actors(
    engine: sa.Engine, canonical_id: object, duplicate_ids: Sequence[object], performed_by: str
) -> MergeResult:
    """Fold the duplicate actors into the canonical one, in one transaction.

    Refused, with a one-line ``ConfigError`` and nothing changed: an empty list, a malformed or
    unknown id, the canonical actor among the duplicates, an empty ``performed_by``.
    """
    performed_by = _require_text(performed_by, "performed_by")
    canonical = _uuid(canonical_id, "actor")
    if not duplicate_ids:
        raise ConfigError("no duplicate actor ids given; list the actors to merge into the canonical one")
    duplicates = list(dict.fromkeys(_uuid(d, "actor") for d in duplicate_ids))
    if canonical in duplicates:
        raise ConfigError(f"cannot merge actor {canonical} into itself; list only its duplicates")

    with engine.begin() as conn:
        actors = _lock_actors(conn, [canonical, *duplicates], "merged")
        dropped, moved = _merge_presences(conn, canonical, duplicates)
        repointed = conn.execute(
            sa.text("UPDATE content_records SET author_id = :canonical WHERE author_id = ANY(CAST(:dups AS uuid[]))"),
            {"canonical": canonical, "dups": duplicates},
        ).rowcount
        memberships = conn.execute(
            sa.text(
                """
                INSERT INTO actor_list_members (actor_list_id, actor_id, added_at)
                SELECT actor_list_id, :canonical, min(added_at) FROM actor_list_members
                WHERE actor_id = ANY(CAST(:dups AS uuid[])) GROUP BY actor_list_id
                ON CONFLICT DO NOTHING
                """
            ),
            {"canonical": canonical, "dups": duplicates},
        ).rowcount
        aliases = _merge_aliases(conn, canonical, duplicates, actors)
        conn.execute(
            sa.text("UPDATE actors SET is_public_figure = :public, updated_at = now() WHERE id = :canonical"),
            {"canonical": canonical, "public": any(row.is_public_figure for row in actors.values())},
        )
        conn.execute(sa.text("DELETE FROM actors WHERE id = ANY(CAST(:dups AS uuid[]))"), {"dups": duplicates})
        details = {
            "duplicate_actor_ids": [str(d) for d in duplicates],
            "duplicate_names": [actors[d].canonical_name for d in duplicates],
            "presences_moved": [str(p.id) for p in moved],
            "presences_dropped": [p.describe() for p in dropped],
            "content_records_repointed": repointed,
            "aliases_added": aliases,
            "list_memberships_moved": memberships,
        }
        audit_id = _audit(conn, "merge", canonical, details, performed_by)
    return MergeResult(
        canonical,
        tuple(duplicates),
        repointed,
        len(moved),
        tuple(p.describe() for p in dropped),
        tuple(aliases),
        memberships,
        audit_id,
    )


def _merge_presences(
    conn: sa.Connection, canonical: uuid.UUID, duplicates: list[uuid.UUID]
) -> tuple[list[_Presence], list[_Presence]]:
    """Move the duplicates' presences; one the canonical actor already has (the same id, else the
    same username) is dropped instead, and its missing id or username folded into the kept one."""
    everything = _presences(conn, [canonical, *duplicates])
    kept = [p for p in everything if p.actor_id == canonical]
    dropped: list[tuple[_Presence, _Presence]] = []
    moved: list[_Presence] = []
    for presence in (p for p in everything if p.actor_id != canonical):
        twin = next((k for k in kept if k.same_id(presence)), None) or next(
            (k for k in kept if k.same_username(presence)), None
        )
        if twin is None:
            moved.append(presence)
            kept.append(presence)
        else:
            dropped.append((presence, twin))
    if dropped:
        # Deleted first: the twin may take over its user id, which is unique per platform.
        conn.execute(
            sa.text("DELETE FROM actor_platform_presences WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [p.id for p, _ in dropped]},
        )
        conn.execute(
            sa.text(
                """
                UPDATE actor_platform_presences SET
                    platform_user_id = coalesce(platform_user_id, :user_id),
                    platform_username = coalesce(platform_username, :username),
                    updated_at = now()
                WHERE id = :twin
                """
            ),
            [{"twin": twin.id, "user_id": p.user_id, "username": p.username} for p, twin in dropped],
        )
    if moved:
        conn.execute(
            sa.text(
                "UPDATE actor_platform_presences SET actor_id = :canonical, updated_at = now() "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"canonical": canonical, "ids": [p.id for p in moved]},
        )
    return [p for p, _ in dropped], moved


def _merge_aliases(
    conn: sa.Connection, canonical: uuid.UUID, duplicates: list[uuid.UUID], actors: dict[uuid.UUID, sa.Row[Any]]
) -> list[str]:
    """The duplicates' names and aliases become aliases of the canonical actor."""
    return list(
        conn.execute(
            sa.text(
                """
                INSERT INTO actor_aliases (actor_id, alias, source)
                SELECT DISTINCT ON (alias) :canonical, alias, source FROM (
                    SELECT canonical_name AS alias, :merge AS source, 0 AS rank
                    FROM actors WHERE id = ANY(CAST(:dups AS uuid[]))
                    UNION ALL
                    SELECT alias, coalesce(source, :merge), 1 FROM actor_aliases
                    WHERE actor_id = ANY(CAST(:dups AS uuid[]))
                ) AS names
                WHERE alias <> :canonical_name
                ORDER BY alias, rank
                ON CONFLICT (actor_id, alias) DO NOTHING
                RETURNING alias
                """
            ),
            {
                "canonical": canonical,
                "dups": duplicates,
                "merge": ALIAS_FROM_MERGE,
                "canonical_name": actors[canonical].canonical_name,
            },
        ).scalars()
    )


@dataclass(frozen=True)
class SplitResult:
    actor_id: uuid.UUID
    new_actor_id: uuid.UUID
    presences_moved: int
    content_records_repointed: int
    audit_id: uuid.UUID

    def summary(self) -> str:
        return (
            f"split {self.presences_moved} presence(s) of actor {self.actor_id} into new actor "
            f"{self.new_actor_id}: {self.content_records_repointed} records re-pointed"
        )


def split_actor(
    engine: sa.Engine, actor_id: object, presence_ids: Sequence[object], new_canonical_name: str, performed_by: str
) -> SplitResult:
    """Move some of an actor's presences, and the content they posted, to a new actor.

    The new actor takes the original's type but is not a public figure: that exemption from
    pseudonymisation is a decision about a person, made explicitly. The new name becomes an alias
    of the original (source ``split``), recording what it was once mixed up with. Refused, with a
    one-line ``ConfigError`` and nothing changed: an unknown actor, an empty or malformed presence
    list, a presence of another actor, an empty name or ``performed_by``.
    """
    performed_by = _require_text(performed_by, "performed_by")
    new_name = _require_text(new_canonical_name, "new_canonical_name")
    original = _uuid(actor_id, "actor")
    if not presence_ids:
        raise ConfigError("no presence ids given; list the platform presences that belong to the new actor")
    presences = list(dict.fromkeys(_uuid(p, "presence") for p in presence_ids))

    with engine.begin() as conn:
        _lock_actors(conn, [original], "split")
        owners: dict[uuid.UUID, uuid.UUID] = dict(
            conn.execute(
                sa.text(
                    "SELECT id, actor_id FROM actor_platform_presences WHERE id = ANY(CAST(:ids AS uuid[])) FOR UPDATE"
                ),
                {"ids": presences},
            ).all()
        )
        for presence in presences:
            if presence not in owners:
                raise ConfigError(f"no platform presence with id {presence}; nothing was split")
            if owners[presence] != original:
                raise ConfigError(
                    f"presence {presence} belongs to actor {owners[presence]}, not {original}; nothing was split"
                )
        new_actor = conn.execute(
            sa.text(
                "INSERT INTO actors (canonical_name, actor_type) "
                "SELECT :name, actor_type FROM actors WHERE id = :original RETURNING id"
            ),
            {"name": new_name, "original": original},
        ).scalar_one()
        conn.execute(
            sa.text(
                "UPDATE actor_platform_presences SET actor_id = :new, updated_at = now() "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"new": new_actor, "ids": presences},
        )
        # The accounts as collection matches them: lowercased user id or username, per platform.
        repointed = conn.execute(
            sa.text(
                """
                UPDATE content_records c SET author_id = :new
                FROM (
                    SELECT platform, lower(account) AS account FROM actor_platform_presences,
                        LATERAL (VALUES (platform_user_id), (platform_username)) AS a(account)
                    WHERE id = ANY(CAST(:ids AS uuid[])) AND account IS NOT NULL
                ) AS moved
                WHERE c.author_id = :original AND c.platform = moved.platform
                  AND lower(c.author_platform_id) = moved.account
                """
            ),
            {"new": new_actor, "original": original, "ids": presences},
        ).rowcount
        conn.execute(
            sa.text(
                "INSERT INTO actor_aliases (actor_id, alias, source) VALUES (:original, :name, :split) "
                "ON CONFLICT (actor_id, alias) DO NOTHING"
            ),
            {"original": original, "name": new_name, "split": ALIAS_FROM_SPLIT},
        )
        details = {
            "new_actor_id": str(new_actor),
            "new_canonical_name": new_name,
            "presences_moved": [str(p) for p in presences],
            "content_records_repointed": repointed,
        }
        audit_id = _audit(conn, "split", original, details, performed_by)
    return SplitResult(original, new_actor, len(presences), repointed, audit_id)
