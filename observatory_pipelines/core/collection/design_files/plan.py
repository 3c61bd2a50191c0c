"""What applying design files would change: the database read as documents, compared with the files.

The diff made here is what ``designs diff`` prints, what ``apply`` writes into ``design_changes``,
and what decides whether a design is written at all: a design whose diff is empty is not touched.

A diff is a JSON object, field by field::

    {"name": {"before": "Klima", "after": "Klimadebat"},
     "terms": {"added": ["havvind"], "removed": ["klimaet"], "retyped": {"#dkpol": {"before": ..., "after": ...}}},
     "arenas": {"gdelt": {"before": {...}, "after": {...}}},
     "actor_lists": {"Klimapolitikere": {"added": ["Henrik Dalsgaard (x_twitter:hdalsgaard)"], "removed": [],
                                         "actors": {"Henrik Dalsgaard (x_twitter:hdalsgaard)":
                                                    {"public_figure": {"before": false, "after": true}}}}}}
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from observatory_pipelines.core.collection import terms as term_grammar
from observatory_pipelines.core.collection.design_files.document import (
    FIELDS,
    DesignFile,
    DesignFileError,
    DesignFiles,
    DesignFilesInvalid,
)

#: The fields compared one value against another (the lists and arenas have their own comparisons).
SCALAR_FIELDS = tuple(f for f in FIELDS if f not in ("terms", "actor_lists", "arenas"))
#: An actor's attributes in a file, and their columns.
ACTOR_COLUMNS = {"name": "canonical_name", "type": "actor_type", "public_figure": "is_public_figure"}


# --- the database as documents ----------------------------------------------------------------------


@dataclass
class StoredDesign:
    id: uuid.UUID
    document: dict[str, Any]
    source_file: str | None
    term_types: dict[str, str]
    #: Per actor list name, its members' actor ids, in the order they were added.
    members: dict[str, list[uuid.UUID]] = field(default_factory=dict)


def stored_accounts(conn: sa.Connection, actor_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    found: dict[uuid.UUID, list[dict[str, Any]]] = {}
    rows = conn.execute(
        sa.text(
            "SELECT actor_id, platform, platform_username, platform_user_id FROM actor_platform_presences "
            "WHERE actor_id = ANY(:ids) ORDER BY platform, platform_username NULLS LAST, platform_user_id"
        ),
        {"ids": list(actor_ids)},
    )
    for row in rows:
        found.setdefault(row.actor_id, []).append(
            {"platform": row.platform, "handle": row.platform_username, "user_id": row.platform_user_id}
        )
    return found


def read_document(conn: sa.Connection, slug: str) -> StoredDesign | None:
    """The design ``slug`` as the database holds it, in the file's shape; ``None`` when there is none."""
    row = (
        conn.execute(
            sa.text(
                """
                SELECT d.id, d.slug, d.name, u.email AS owner, d.description, d.default_tier, d.language,
                       d.locale_country AS country, d.is_active AS active, d.export_identity,
                       d.identity_legal_basis, d.arenas_config AS arenas, d.source_file
                FROM query_designs d JOIN users u ON u.id = d.owner_id WHERE d.slug = :slug
                """
            ),
            {"slug": slug},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    document = {f: row[f] for f in FIELDS if f not in ("terms", "actor_lists")}
    document["arenas"] = dict(row["arenas"] or {})
    term_rows = conn.execute(
        sa.text(
            "SELECT term, term_type FROM search_terms WHERE query_design_id = :id AND is_active "
            "ORDER BY created_at, term"
        ),
        {"id": row["id"]},
    ).all()
    document["terms"] = [t.term for t in term_rows]
    list_rows = conn.execute(
        sa.text("SELECT id, name, description FROM actor_lists WHERE query_design_id = :id ORDER BY created_at, name"),
        {"id": row["id"]},
    ).all()
    member_rows = conn.execute(
        sa.text(
            """
            SELECT m.actor_list_id, a.id, a.canonical_name, a.actor_type, a.is_public_figure
            FROM actor_list_members m JOIN actors a ON a.id = m.actor_id
            WHERE m.actor_list_id = ANY(:lists) ORDER BY m.added_at, a.canonical_name, a.id
            """
        ),
        {"lists": [r.id for r in list_rows]},
    ).all()
    accounts = stored_accounts(conn, {r.id for r in member_rows})
    stored = StoredDesign(
        id=row["id"],
        document=document,
        source_file=row["source_file"],
        term_types={t.term: t.term_type for t in term_rows},
    )
    document["actor_lists"] = []
    for actor_list in list_rows:
        members = [m for m in member_rows if m.actor_list_id == actor_list.id]
        stored.members[actor_list.name] = [m.id for m in members]
        document["actor_lists"].append(
            {
                "name": actor_list.name,
                "description": actor_list.description,
                "actors": [
                    {
                        "name": m.canonical_name,
                        "type": m.actor_type,
                        "public_figure": m.is_public_figure,
                        "accounts": accounts.get(m.id, []),
                    }
                    for m in members
                ],
            }
        )
    return stored


# --- actors ---------------------------------------------------------------------------------------------


def actor_label(actor: Mapping[str, Any]) -> str:
    first = actor["accounts"][0] if actor["accounts"] else {}
    return f"{actor['name']} ({first.get('platform')}:{first.get('handle') or first.get('user_id')})"


def _account_key(account: Mapping[str, Any]) -> tuple[str, str, str]:
    if account.get("user_id"):
        return (account["platform"], "user_id", account["user_id"])
    return (account["platform"], "handle", account["handle"])


def find_account(conn: sa.Connection, account: Mapping[str, Any]) -> list[uuid.UUID]:
    """The actors holding ``account``: by ``(platform, user_id)``, else by ``(platform, handle)``."""
    if account.get("user_id"):
        found = conn.execute(
            sa.text("SELECT actor_id FROM actor_platform_presences WHERE platform = :p AND platform_user_id = :u"),
            {"p": account["platform"], "u": account["user_id"]},
        ).scalars()
        ids = list(found)
        if ids:
            return ids
    if account.get("handle"):
        return list(
            conn.execute(
                sa.text(
                    "SELECT DISTINCT actor_id FROM actor_platform_presences "
                    "WHERE platform = :p AND platform_username = :h ORDER BY actor_id"
                ),
                {"p": account["platform"], "h": account["handle"]},
            ).scalars()
        )
    return []


def find_actor(conn: sa.Connection, actor: Mapping[str, Any]) -> tuple[uuid.UUID | None, str | None]:
    """The existing actor a file's actor is (``None`` when it is new), or why that cannot be told."""
    found: set[uuid.UUID] = set()
    for account in actor["accounts"]:
        ids = find_account(conn, account)
        if len(ids) > 1:
            return None, (
                f"handle {account['platform']}:{account['handle']} belongs to {len(ids)} actors; "
                "add the account's user_id to say which"
            )
        found.update(ids)
    if len(found) > 1:
        return None, "its accounts belong to different actors; merge them first (entity resolution) or split the entry"
    return (found.pop() if found else None), None


def _presence_key(account: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    keys = set()
    if account.get("user_id"):
        keys.add((account["platform"], "user_id", account["user_id"]))
    if account.get("handle"):
        keys.add((account["platform"], "handle", account["handle"]))
    return keys


def missing_accounts(actor: Mapping[str, Any], held_accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The file's accounts of an existing actor that the database does not hold yet. An account
    held under its user_id or its handle is held: adding it again would give the actor the same
    account twice."""
    held: set[tuple[str, str, str]] = set().union(*(_presence_key(a) for a in held_accounts))
    return [a for a in actor["accounts"] if not _presence_key(a) & held]


def _actor_row(conn: sa.Connection, actor_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(
        sa.text("SELECT canonical_name, actor_type, is_public_figure FROM actors WHERE id = :id"), {"id": actor_id}
    ).one()
    return {"name": row.canonical_name, "type": row.actor_type, "public_figure": row.is_public_figure}


def actor_changes(conn: sa.Connection, actor: Mapping[str, Any], actor_id: uuid.UUID) -> dict[str, Any]:
    """What the file says about an existing actor that the database does not (attributes it gives, new accounts)."""
    stored = _actor_row(conn, actor_id)
    changes: dict[str, Any] = {
        attr: {"before": stored[attr], "after": actor[attr]}
        for attr in ACTOR_COLUMNS
        if actor.get(attr) is not None and actor[attr] != stored[attr]
    }
    new_accounts = missing_accounts(actor, stored_accounts(conn, [actor_id]).get(actor_id, []))
    if new_accounts:
        changes["accounts_added"] = [f"{a['platform']}:{a['handle'] or a['user_id']}" for a in new_accounts]
    return changes


# --- the diff -------------------------------------------------------------------------------------------


def _actor_lists_diff(conn: sa.Connection, stored: StoredDesign | None, after: list[dict[str, Any]]) -> dict[str, Any]:
    before = {lst["name"]: lst for lst in (stored.document["actor_lists"] if stored else [])}
    diff: dict[str, Any] = {}
    for actor_list in after:
        name = actor_list["name"]
        entry: dict[str, Any] = {}
        old = before.get(name)
        if old is None:
            entry["list"] = "created"
        elif old["description"] != actor_list["description"]:
            entry["description"] = {"before": old["description"], "after": actor_list["description"]}
        member_ids = stored.members.get(name, []) if stored else []
        kept: set[uuid.UUID] = set()
        added, changed = [], {}
        for actor in actor_list["actors"]:
            actor_id, _ = find_actor(conn, actor)
            if actor_id is None or actor_id not in member_ids:
                added.append(actor_label(actor))
            if actor_id is not None:
                kept.add(actor_id)
                if changes := actor_changes(conn, actor, actor_id):
                    changed[actor_label(actor)] = changes
        removed = [
            actor_label(a) for a, i in zip(old["actors"] if old else [], member_ids, strict=True) if i not in kept
        ]
        entry.update({k: v for k, v in (("added", added), ("removed", removed), ("actors", changed)) if v})
        if entry:
            diff[name] = entry
    for name in before.keys() - {lst["name"] for lst in after}:
        diff[name] = {"list": "removed", "removed": [actor_label(a) for a in before[name]["actors"]]}
    return diff


def design_diff(
    conn: sa.Connection, stored: StoredDesign | None, document: Mapping[str, Any], source_file: str | None
) -> dict[str, Any]:
    """What writing ``document`` (from ``source_file``) over ``stored`` changes; empty when nothing."""
    old = stored.document if stored else {}
    diff: dict[str, Any] = {}
    for name in SCALAR_FIELDS:
        if old.get(name) != document[name]:
            diff[name] = {"before": old.get(name), "after": document[name]}
    if (stored.source_file if stored else None) != source_file:
        diff["source_file"] = {"before": stored.source_file if stored else None, "after": source_file}
    old_terms = old.get("terms", [])
    term_types = stored.term_types if stored else {}
    terms = {
        "added": [t for t in document["terms"] if t not in old_terms],
        "removed": [t for t in old_terms if t not in document["terms"]],
        "retyped": {
            t: {"before": term_types[t], "after": kind}
            for t in document["terms"]
            if t in term_types and term_types[t] != (kind := term_grammar.parse_term(t).kind)
        },
    }
    if terms := {k: v for k, v in terms.items() if v}:
        diff["terms"] = terms
    old_arenas, new_arenas = old.get("arenas", {}), document["arenas"]
    arenas = {
        name: {"before": old_arenas.get(name), "after": new_arenas.get(name)}
        for name in sorted(old_arenas.keys() | new_arenas.keys())
        if old_arenas.get(name) != new_arenas.get(name)
    }
    if arenas:
        diff["arenas"] = arenas
    if actor_lists := _actor_lists_diff(conn, stored, document["actor_lists"]):
        diff["actor_lists"] = actor_lists
    return diff


def describe(diff: Mapping[str, Any]) -> list[str]:
    """A diff as lines a reviewer reads (``designs diff``, the CLI's apply report)."""
    lines: list[str] = []

    def show(value: Any) -> str:
        return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)

    for name, change in diff.items():
        if name == "terms":
            lines += [f"+ term {t}" for t in change.get("added", [])]
            lines += [f"- term {t} (kept inactive)" for t in change.get("removed", [])]
            lines += [f"~ term {t}: type {c['before']} -> {c['after']}" for t, c in change.get("retyped", {}).items()]
        elif name == "arenas":
            for arena, c in change.items():
                lines.append(f"~ arena {arena}: {show(c['before'])} -> {show(c['after'])}")
        elif name == "actor_lists":
            for list_name, c in change.items():
                if c.get("list") in ("created", "removed"):
                    lines.append(f"{'+' if c['list'] == 'created' else '-'} actor list {list_name}")
                if "description" in c:
                    d = c["description"]
                    lines.append(f"~ actor list {list_name} description: {show(d['before'])} -> {show(d['after'])}")
                lines += [f"+ actor {a} in {list_name}" for a in c.get("added", [])]
                lines += [f"- actor {a} from {list_name} (the actor is kept)" for a in c.get("removed", [])]
                for actor, attrs in c.get("actors", {}).items():
                    for attr, v in attrs.items():
                        if attr == "accounts_added":
                            lines.append(f"+ accounts of {actor}: {', '.join(v)}")
                        else:
                            lines.append(f"~ actor {actor} {attr}: {show(v['before'])} -> {show(v['after'])}")
        else:
            lines.append(f"~ {name}: {show(change['before'])} -> {show(change['after'])}")
    return lines


# --- the plan -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedChange:
    slug: str
    change: str  # created | updated | deactivated
    diff: dict[str, Any]
    source_file: str | None
    design_id: uuid.UUID | None = None
    design: DesignFile | None = None
    owner_id: uuid.UUID | None = None


def _owner(conn: sa.Connection, email: str) -> tuple[uuid.UUID, str] | None:
    row = conn.execute(
        sa.text("SELECT id, email FROM users WHERE lower(email) = lower(:e) ORDER BY email = :e DESC LIMIT 1"),
        {"e": email},
    ).first()
    return (row.id, row.email) if row else None


def _actor_errors(conn: sa.Connection, designs: list[DesignFile]) -> list[DesignFileError]:
    """Actors that cannot be told apart, and actors two places describe differently: applied one
    after the other, the second would undo the first on every apply."""
    errors: list[DesignFileError] = []
    said: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
    for design in designs:
        for i, actor_list in enumerate(design.document["actor_lists"]):
            for j, actor in enumerate(actor_list["actors"]):
                where = ("actor_lists", i, "actors", j)
                _, problem = find_actor(conn, actor)
                if problem:
                    errors.append(design.error(where, problem))
                attributes = {a: actor[a] for a in ACTOR_COLUMNS if actor.get(a) is not None}
                for account in actor["accounts"]:
                    key = _account_key(account)
                    first = said.setdefault(key, (f"{design.path}", attributes))
                    clash = [a for a in attributes if a in first[1] and first[1][a] != attributes[a]]
                    if clash:
                        errors.append(
                            design.error(
                                (*where, clash[0]),
                                f"{account['platform']}:{key[2]} is described with another {clash[0]} in {first[0]}",
                            )
                        )
    return errors


def plan(conn: sa.Connection, files: DesignFiles) -> list[PlannedChange]:
    """Every change applying ``files`` makes, in file order, then the designs a folder no longer
    holds; ``DesignFilesInvalid`` with every error the database reveals (owners, actors)."""
    errors: list[DesignFileError] = []
    changes: list[PlannedChange] = []
    for design in files.designs:
        owner = _owner(conn, design.document["owner"])
        if owner is None:
            email = design.document["owner"]
            errors.append(
                design.error(("owner",), f"no user has the email '{email}'; add it with: observatory users add {email}")
            )
            continue
        document = {**design.document, "owner": owner[1]}
        stored = read_document(conn, design.slug)
        diff = design_diff(conn, stored, document, design.name)
        if diff:
            changes.append(
                PlannedChange(
                    slug=design.slug,
                    change="created" if stored is None else "updated",
                    diff=diff,
                    source_file=design.name,
                    design_id=stored.id if stored else None,
                    design=DesignFile(design.path, document, design.lines),
                    owner_id=owner[0],
                )
            )
    errors += _actor_errors(conn, files.designs)
    if errors:
        raise DesignFilesInvalid(errors)
    if files.whole_folder:
        gone = conn.execute(
            sa.text(
                "SELECT id, slug, source_file FROM query_designs WHERE is_active AND source_file IS NOT NULL "
                "AND source_file <> ALL(:names) AND slug <> ALL(:slugs) ORDER BY slug"
            ),
            {"names": [d.name for d in files.designs], "slugs": [d.slug for d in files.designs]},
        ).all()
        changes += [
            PlannedChange(
                slug=row.slug,
                change="deactivated",
                diff={"active": {"before": True, "after": False}},
                source_file=row.source_file,
                design_id=row.id,
            )
            for row in gone
        ]
    return changes
