"""Applying design files to the database: all of them in one transaction, or none.

Only designs whose diff (``plan.design_diff``) is not empty are written, each with one
``design_changes`` row, so applying the same files twice writes nothing the second time. Designs
are never deleted, nor are actors or collected records: a design whose file left the folder is
deactivated, a term left out of its file is kept inactive (records name the terms they matched),
and an actor left out of a list only leaves the list.
"""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from observatory_pipelines.core.collection import terms as term_grammar
from observatory_pipelines.core.collection.design_files import plan as planning
from observatory_pipelines.core.collection.design_files.document import read_design_files
from observatory_pipelines.core.platform.errors import ConfigError

#: Held for the transaction, so the CLI and the sensor never apply at the same time (two applies
#: racing could each create the same actor).
APPLY_LOCK = 0x0B5D_E516


def cli_actor() -> str:
    """``applied_by`` of an apply from the command line: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def sensor_actor(sensor_name: str) -> str:
    return f"sensor:{sensor_name}"


@dataclass(frozen=True)
class ApplyResult:
    changes: list[planning.PlannedChange]
    designs: int  # how many design files were read


def _write_actor(conn: sa.Connection, actor: Mapping[str, Any]) -> uuid.UUID:
    actor_id, problem = planning.find_actor(conn, actor)
    if problem:
        raise ConfigError(f"actor {planning.actor_label(actor)}: {problem}")
    if actor_id is None:
        actor_id = conn.execute(
            sa.text(
                "INSERT INTO actors (canonical_name, actor_type, is_public_figure) "
                "VALUES (:name, coalesce(:type, 'unknown'), coalesce(:public_figure, false)) RETURNING id"
            ),
            {"name": actor["name"], "type": actor["type"], "public_figure": actor["public_figure"]},
        ).scalar_one()
        new_accounts = actor["accounts"]
    else:
        conn.execute(
            sa.text(
                "UPDATE actors SET canonical_name = :name, actor_type = coalesce(:type, actor_type), "
                "is_public_figure = coalesce(:public_figure, is_public_figure), updated_at = now() "
                "WHERE id = :id AND (canonical_name, actor_type, is_public_figure) IS DISTINCT FROM "
                "(:name, coalesce(:type, actor_type), coalesce(:public_figure, is_public_figure))"
            ),
            {"id": actor_id, "name": actor["name"], "type": actor["type"], "public_figure": actor["public_figure"]},
        )
        new_accounts = planning.missing_accounts(actor, planning.stored_accounts(conn, [actor_id]).get(actor_id, []))
    for account in new_accounts:
        conn.execute(
            sa.text(
                "INSERT INTO actor_platform_presences (actor_id, platform, platform_username, platform_user_id) "
                "VALUES (:a, :platform, :handle, :user_id)"
            ),
            {"a": actor_id, **account},
        )
    return actor_id


def _write_design(conn: sa.Connection, change: planning.PlannedChange) -> uuid.UUID:
    assert change.design is not None and change.owner_id is not None
    document = change.design.document
    design_id = conn.execute(
        sa.text(
            """
            INSERT INTO query_designs (owner_id, name, slug, description, default_tier, language, locale_country,
                                       is_active, arenas_config, export_identity, identity_legal_basis, source_file)
            VALUES (:owner, :name, :slug, :description, :default_tier, :language, :country,
                    :active, CAST(:arenas AS jsonb), :export_identity, :identity_legal_basis, :source_file)
            ON CONFLICT (slug) DO UPDATE SET
                owner_id = EXCLUDED.owner_id, name = EXCLUDED.name, description = EXCLUDED.description,
                default_tier = EXCLUDED.default_tier, language = EXCLUDED.language,
                locale_country = EXCLUDED.locale_country, is_active = EXCLUDED.is_active,
                arenas_config = EXCLUDED.arenas_config, export_identity = EXCLUDED.export_identity,
                identity_legal_basis = EXCLUDED.identity_legal_basis, source_file = EXCLUDED.source_file,
                updated_at = now()
            RETURNING id
            """
        ),
        {
            **{k: document[k] for k in planning.SCALAR_FIELDS if k != "owner"},
            "owner": change.owner_id,
            "arenas": json.dumps(document["arenas"]),
            "source_file": change.source_file,
        },
    ).scalar_one()
    # clock_timestamp(), not the transaction's now(): rows keep the file's order (export reads it back).
    for term in document["terms"]:
        conn.execute(
            sa.text(
                """
                INSERT INTO search_terms (query_design_id, term, term_type, created_at)
                VALUES (:d, :term, :kind, clock_timestamp())
                ON CONFLICT (query_design_id, term) DO UPDATE SET is_active = true, term_type = EXCLUDED.term_type
                WHERE NOT search_terms.is_active OR search_terms.term_type <> EXCLUDED.term_type
                """
            ),
            {"d": design_id, "term": term, "kind": term_grammar.parse_term(term).kind},
        )
    conn.execute(
        sa.text(
            "UPDATE search_terms SET is_active = false WHERE query_design_id = :d AND is_active AND term <> ALL(:terms)"
        ),
        {"d": design_id, "terms": document["terms"]},
    )
    conn.execute(
        sa.text("DELETE FROM actor_lists WHERE query_design_id = :d AND name <> ALL(:names)"),
        {"d": design_id, "names": [lst["name"] for lst in document["actor_lists"]]},
    )
    for actor_list in document["actor_lists"]:
        list_id = conn.execute(
            sa.text(
                """
                INSERT INTO actor_lists (query_design_id, name, description, created_by, created_at)
                VALUES (:d, :name, :description, :owner, clock_timestamp())
                ON CONFLICT (query_design_id, name) DO UPDATE SET description = EXCLUDED.description,
                    updated_at = now()
                RETURNING id
                """
            ),
            {
                "d": design_id,
                "name": actor_list["name"],
                "description": actor_list["description"],
                "owner": change.owner_id,
            },
        ).scalar_one()
        members = [_write_actor(conn, actor) for actor in actor_list["actors"]]
        conn.execute(
            sa.text("DELETE FROM actor_list_members WHERE actor_list_id = :l AND actor_id <> ALL(:members)"),
            {"l": list_id, "members": members},
        )
        for actor_id in members:
            conn.execute(
                sa.text(
                    "INSERT INTO actor_list_members (actor_list_id, actor_id, added_at) "
                    "VALUES (:l, :a, clock_timestamp()) ON CONFLICT DO NOTHING"
                ),
                {"l": list_id, "a": actor_id},
            )
    return design_id


def _record(conn: sa.Connection, change: planning.PlannedChange, design_id: uuid.UUID, applied_by: str) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO design_changes (query_design_id, slug, change, diff, source_file, applied_by) "
            "VALUES (:d, :slug, :change, CAST(:diff AS jsonb), :source_file, :applied_by)"
        ),
        {
            "d": design_id,
            "slug": change.slug,
            "change": change.change,
            "diff": json.dumps(change.diff, ensure_ascii=False),
            "source_file": change.source_file,
            "applied_by": applied_by,
        },
    )


def apply_changes(conn: sa.Connection, changes: list[planning.PlannedChange], applied_by: str) -> None:
    for change in changes:
        if change.change == "deactivated":
            assert change.design_id is not None
            conn.execute(
                sa.text("UPDATE query_designs SET is_active = false, updated_at = now() WHERE id = :id"),
                {"id": change.design_id},
            )
            design_id = change.design_id
        else:
            design_id = _write_design(conn, change)
        _record(conn, change, design_id, applied_by)


def plan_design_files(engine: sa.Engine, path: Path) -> list[planning.PlannedChange]:
    """What ``apply_design_files`` would change, without changing anything."""
    files = read_design_files(path)
    with engine.connect() as conn:
        return planning.plan(conn, files)


def apply_design_files(engine: sa.Engine, path: Path, applied_by: str) -> ApplyResult:
    """Apply the design file ``path``, or every design file in the folder ``path`` (then designs
    whose file is gone are deactivated), in one transaction; ``DesignFilesInvalid`` with every
    error, and nothing applied, when any file has one."""
    files = read_design_files(path)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPLY_LOCK})
        changes = planning.plan(conn, files)
        apply_changes(conn, changes, applied_by)
    return ApplyResult(changes=changes, designs=len(files.designs))
