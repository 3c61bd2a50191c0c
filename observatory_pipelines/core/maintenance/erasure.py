"""Erasing one actor (a person's right to erasure): their content in every partition, their
platform presences, aliases, list memberships and match suggestions, and the actor itself.

An actor's content is what entity resolution linked to them (``author_id``) and what one of their
accounts posted before it was linked (``author_id`` NULL, and ``platform`` plus
``author_platform_id`` equal to a presence's user id or username, compared lowercased as collection
and entity resolution compare accounts). A record linked to *another* actor is that actor's, even
when its handle equals one of this actor's usernames: handles are recycled.

What else an erasure touches, so that nothing names the person afterwards:

- records of other authors that dedup marked as copies of an erased record lose the mark
  (``duplicate_of``, ``duplicate_kind``): their original is gone, and left marked they would vanish
  from exports; the next dedup run of the corpus elects a new original;
- match suggestions with the actor, or one of their accounts, on either side;
- earlier merge and split audit rows: names and handles of the actor (the names merged into it,
  its dropped presences and added aliases, the name it was split off under) become ``[erased]``,
  and the ``split`` alias that kept that name on the actor it was split from is deleted.

Everything happens in one transaction, after the actor row is locked. The ``erase`` audit row
keeps the actor id, counts (records per corpus among them), who erased and why; never a name, a
handle or a text. Exports, network files and statistics written before the erasure still hold the
records: ``withdraw_corpora`` then deletes the stored exports (manifest first) and the analysis
tables of every affected corpus (``ErasureResult.corpora``), so no download serves them; the export
and analysis assets make them again when re-run. An erasure run again for an actor already erased
reports the corpora its audit row recorded, so a withdrawal that failed can be repeated. Collection
keeps no list of erased accounts, so a later collection of the same terms can collect the person's
new posts again.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.core.exports import withdrawal
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage import ObjectStore

ACTION = "erase"
#: What a name or handle in an earlier audit row becomes.
ERASED = "[erased]"
#: Keys of a merge audit row that hold names or handles of the canonical actor.
_MERGE_NAME_KEYS = ("duplicate_names", "presences_dropped", "aliases_added")
_SPLIT_ALIAS_SOURCE = "split"


class ActorNotFound(ConfigError):
    """No actor with that id exists, and none was erased under it."""


@dataclass(frozen=True)
class ErasureResult:
    actor_id: uuid.UUID
    #: Content records deleted, per partition table (``content_records_2026_03``).
    records_deleted: dict[str, int]
    #: Records deleted per corpus (``"slug YYYY-MM"``): the exports and analyses to re-run.
    corpora: dict[str, int]
    duplicates_unmarked: int
    presences_deleted: int
    aliases_deleted: int
    list_memberships_deleted: int
    suggestions_deleted: int
    audit_rows_redacted: int
    performed_by: str
    #: The ``erase`` audit row and when it was written (None only while the erasure runs).
    audit_id: uuid.UUID | None = None
    erased_at: datetime | None = None
    #: True when the actor had been erased before this call, which then changed nothing.
    already_erased: bool = False

    @property
    def records_total(self) -> int:
        return sum(self.records_deleted.values())

    def counts(self) -> dict:
        """The figures of the audit row and the job's metadata: counts and corpus keys, no names."""
        return {
            "records_deleted": self.records_total,
            "records_by_partition": dict(sorted(self.records_deleted.items())),
            "records_by_corpus": dict(sorted(self.corpora.items())),
            "duplicates_unmarked": self.duplicates_unmarked,
            "presences_deleted": self.presences_deleted,
            "aliases_deleted": self.aliases_deleted,
            "list_memberships_deleted": self.list_memberships_deleted,
            "suggestions_deleted": self.suggestions_deleted,
            "audit_rows_redacted": self.audit_rows_redacted,
        }

    def summary(self) -> str:
        if self.already_erased:
            if self.erased_at is None:
                raise ValueError("an already_erased result needs erased_at")
            when = self.erased_at.astimezone(timezone.utc)
            return (
                f"actor {self.actor_id} was already erased at {when:%Y-%m-%d %H:%M}Z by {self.performed_by}; "
                "nothing left to erase"
            )
        return (
            f"erased actor {self.actor_id}: {self.records_total} records in {len(self.records_deleted)} "
            f"partition(s), {self.presences_deleted} presences, {self.aliases_deleted} aliases, "
            f"{self.list_memberships_deleted} list memberships, {self.suggestions_deleted} suggestions; "
            f"{self.duplicates_unmarked} records of others no longer marked as their duplicates"
        )


def _actor_id(value: object) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip())
    except ValueError:
        raise ConfigError(f"'{value}' is not a valid actor id; ids are UUIDs") from None


def _required(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ConfigError(f"{what} is empty; an erasure records who did it and why")
    return text


def erase_actor(engine: sa.Engine, actor_id: object, *, performed_by: str, reason: str) -> ErasureResult:
    """Delete the actor and everything that is theirs, in one transaction (see the module docstring).

    A malformed id, an empty ``performed_by`` or ``reason`` is a one-line ``ConfigError`` before
    anything is read; an id no actor has is ``ActorNotFound``, unless an earlier erasure explains
    it: then the result says so (``already_erased``) and nothing changes.
    """
    actor = _actor_id(actor_id)
    performed_by = _required(performed_by, "performed_by")
    reason = _required(reason, "reason")
    with engine.begin() as conn:
        found = conn.execute(sa.text("SELECT id FROM actors WHERE id = :actor FOR UPDATE"), {"actor": actor}).first()
        if found is None:
            return _earlier_erasure(conn, actor)
        accounts = _accounts(conn, actor)
        by_partition, corpora = _delete_content(conn, actor, accounts)
        unmarked = _unmark_duplicates(conn)
        suggestions = _delete_suggestions(conn, actor, accounts)
        redacted, split_aliases = _redact_audit(conn, actor)
        memberships = _delete(conn, "actor_list_members", actor)
        aliases = _delete(conn, "actor_aliases", actor) + split_aliases
        presences = _delete(conn, "actor_platform_presences", actor)
        conn.execute(sa.text("DELETE FROM actors WHERE id = :actor"), {"actor": actor})
        result = ErasureResult(
            actor_id=actor,
            records_deleted=by_partition,
            corpora=corpora,
            duplicates_unmarked=unmarked,
            presences_deleted=presences,
            aliases_deleted=aliases,
            list_memberships_deleted=memberships,
            suggestions_deleted=suggestions,
            audit_rows_redacted=redacted,
            performed_by=performed_by,
        )
        audit_id, erased_at = conn.execute(
            sa.text(
                "INSERT INTO actor_audit_log (action, actor_id, details, performed_by) "
                "VALUES (:action, :actor, CAST(:details AS jsonb), :by) RETURNING id, performed_at"
            ),
            {
                "action": ACTION,
                "actor": actor,
                "by": performed_by,
                "details": json.dumps({**result.counts(), "reason": reason}, ensure_ascii=False),
            },
        ).one()
    return dataclasses.replace(result, audit_id=audit_id, erased_at=erased_at)


@dataclass(frozen=True)
class Withdrawal:
    """What ``withdraw_corpora`` removed: export object keys, and corpora whose analysis was removed."""

    export_keys: list[str]
    analysis_removed: list[str]


def corpus_parts(corpus: str) -> tuple[str, str]:
    """``"slug YYYY-MM"`` (an ``ErasureResult.corpora`` key) as ``(slug, month)``."""
    slug, month = corpus.split(" ")
    return slug, month


def withdraw_corpora(store: ObjectStore, result: ErasureResult) -> Withdrawal:
    """Delete the stored exports (manifest first) and the analysis tables of every corpus that held
    the erased actor's records, so nothing served or exported afterwards still holds them; the
    export and analysis assets make them again when re-run."""
    corpora = sorted(corpus_parts(corpus) for corpus in result.corpora)
    keys = withdrawal.withdraw(store, corpora)
    removed = [f"{slug} {month}" for slug, month in corpora if analysis_store.remove_corpus(slug, month)]
    return Withdrawal(export_keys=keys, analysis_removed=removed)


def _earlier_erasure(conn: sa.Connection, actor: uuid.UUID) -> ErasureResult:
    earlier = conn.execute(
        sa.text(
            "SELECT id, performed_at, performed_by, details FROM actor_audit_log "
            "WHERE action = :action AND actor_id = :actor ORDER BY performed_at DESC LIMIT 1"
        ),
        {"action": ACTION, "actor": actor},
    ).first()
    if earlier is None:
        raise ActorNotFound(f"no actor with id {actor}; nothing was erased")
    recorded = (earlier.details or {}).get("records_by_corpus")
    return ErasureResult(
        actor_id=actor,
        records_deleted={},
        # What the erasure recorded, so its exports can be withdrawn again.
        corpora=dict(recorded) if isinstance(recorded, dict) else {},
        duplicates_unmarked=0,
        presences_deleted=0,
        aliases_deleted=0,
        list_memberships_deleted=0,
        suggestions_deleted=0,
        audit_rows_redacted=0,
        audit_id=earlier.id,
        erased_at=earlier.performed_at,
        performed_by=earlier.performed_by,
        already_erased=True,
    )


def _accounts(conn: sa.Connection, actor: uuid.UUID) -> tuple[list[str], list[str]]:
    """The actor's accounts as (platforms, lowercased accounts), two parallel lists for unnest."""
    rows = conn.execute(
        sa.text(
            """
            SELECT DISTINCT platform, lower(account) FROM actor_platform_presences,
                LATERAL (VALUES (platform_user_id), (platform_username)) AS a(account)
            WHERE actor_id = :actor AND account IS NOT NULL
            ORDER BY 1, 2
            """
        ),
        {"actor": actor},
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows]


_ACCOUNTS = "unnest(CAST(:platforms AS text[]), CAST(:accounts AS text[])) AS acc(platform, account)"


def _delete_content(
    conn: sa.Connection, actor: uuid.UUID, accounts: tuple[list[str], list[str]]
) -> tuple[dict[str, int], dict[str, int]]:
    """Delete the actor's records from every partition (through the parent table); per partition
    and per corpus counts. The deleted ids stay in ``erased_records`` for ``_unmark_duplicates``."""
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE erased_records (id uuid, query_design_id uuid, published_at timestamptz, "
            "partition text, platform text, platform_id text) ON COMMIT DROP"
        )
    )
    returning = (
        "RETURNING c.id, c.query_design_id, c.published_at, c.tableoid::regclass::text, c.platform, c.platform_id"
    )
    # Two statements: the first is served by idx_content_author, the second only reads the
    # unlinked records of the actor's platforms.
    conn.execute(
        sa.text(
            f"WITH gone AS (DELETE FROM content_records c WHERE c.author_id = :actor {returning}) "
            "INSERT INTO erased_records SELECT * FROM gone"
        ),
        {"actor": actor},
    )
    platforms, names = accounts
    if platforms:
        conn.execute(
            sa.text(
                f"""
                WITH gone AS (
                    DELETE FROM content_records c
                    WHERE c.author_id IS NULL AND c.platform = ANY(CAST(:platforms AS text[]))
                      AND EXISTS (SELECT 1 FROM {_ACCOUNTS}
                                  WHERE acc.platform = c.platform AND acc.account = lower(c.author_platform_id))
                    {returning}
                )
                INSERT INTO erased_records SELECT * FROM gone
                """
            ),
            {"platforms": platforms, "accounts": names},
        )
    # The items go too: their ids lead back to the person, and a later collection stores them anew.
    conn.execute(
        sa.text(
            "DELETE FROM content_items i USING erased_records e WHERE i.query_design_id = e.query_design_id "
            "AND i.platform = e.platform AND i.platform_id = e.platform_id"
        )
    )
    by_partition: dict[str, int] = dict(
        conn.execute(sa.text("SELECT partition, count(*) FROM erased_records GROUP BY partition")).all()
    )
    corpora = {
        f"{slug} {month}": count
        for slug, month, count in conn.execute(
            sa.text(
                """
                SELECT d.slug, to_char(e.published_at AT TIME ZONE 'UTC', 'YYYY-MM'), count(*)
                FROM erased_records e JOIN query_designs d ON d.id = e.query_design_id
                GROUP BY 1, 2
                """
            )
        )
    }
    return by_partition, corpora


def _unmark_duplicates(conn: sa.Connection) -> int:
    """Records of others that dedup marked as copies of an erased record: unmarked (dedup works
    within a corpus, so only the erased records' designs are read)."""
    return conn.execute(
        sa.text(
            """
            UPDATE content_records c SET raw_metadata = c.raw_metadata - 'duplicate_of' - 'duplicate_kind'
            FROM erased_records e
            WHERE c.query_design_id = e.query_design_id AND c.raw_metadata ->> 'duplicate_of' = e.id::text
            """
        )
    ).rowcount


def _delete_suggestions(conn: sa.Connection, actor: uuid.UUID, accounts: tuple[list[str], list[str]]) -> int:
    platforms, names = accounts
    return conn.execute(
        sa.text(
            f"""
            DELETE FROM actor_match_suggestions s
            WHERE s.left_actor_id = :actor OR s.right_actor_id = :actor
               OR EXISTS (SELECT 1 FROM {_ACCOUNTS}
                          WHERE (acc.platform = s.left_platform AND acc.account = lower(s.left_account))
                             OR (acc.platform = s.right_platform AND acc.account = lower(s.right_account)))
            """
        ),
        {"actor": actor, "platforms": platforms, "accounts": names},
    ).rowcount


def _redact_audit(conn: sa.Connection, actor: uuid.UUID) -> tuple[int, int]:
    """Names and handles of the actor in earlier merge and split rows become ``[erased]``; the
    split alias that kept the actor's name on the actor it was split from is deleted. Returns
    (rows redacted, aliases deleted)."""
    rows = conn.execute(
        sa.text(
            """
            SELECT id, action, actor_id, details FROM actor_audit_log
            WHERE (action = 'merge' AND actor_id = :actor)
               OR (action = 'split' AND details ->> 'new_actor_id' = :actor_text)
            ORDER BY performed_at FOR UPDATE
            """
        ),
        {"actor": actor, "actor_text": str(actor)},
    ).all()
    aliases = 0
    for row in rows:
        details = dict(row.details)
        if row.action == "merge":
            for key in _MERGE_NAME_KEYS:
                if isinstance(details.get(key), list):
                    details[key] = [ERASED] * len(details[key])
        else:
            aliases += conn.execute(
                sa.text("DELETE FROM actor_aliases WHERE actor_id = :original AND alias = :name AND source = :split"),
                {"original": row.actor_id, "name": details.get("new_canonical_name"), "split": _SPLIT_ALIAS_SOURCE},
            ).rowcount
            details["new_canonical_name"] = ERASED
        conn.execute(
            sa.text("UPDATE actor_audit_log SET details = CAST(:details AS jsonb) WHERE id = :id"),
            {"id": row.id, "details": json.dumps(details, ensure_ascii=False)},
        )
    return len(rows), aliases


_OWNED_TABLES = frozenset({"actor_list_members", "actor_aliases", "actor_platform_presences"})


def _delete(conn: sa.Connection, table: str, actor: uuid.UUID) -> int:
    assert table in _OWNED_TABLES  # a table name cannot be a bound parameter
    return conn.execute(sa.text(f"DELETE FROM {table} WHERE actor_id = :actor"), {"actor": actor}).rowcount
