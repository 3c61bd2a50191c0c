"""``manifest.json``: what a corpus's exports are, so a researcher can cite exactly what they analysed.

It records the query design as it stood when the manifest was made (search terms, actor lists,
arenas with their tiers and options), the month, the collection runs and tasks behind the corpus,
record counts, every export file's size, row count, SHA-256 and options (read back from the
object store, so it describes the stored files, not intentions), the column schema, and the
software and PostgreSQL versions. It is written last, after every other file of the corpus
(writing any other file withdraws it first, ``writers.store_file``).

It names the exports' identity level (``core.exports.identity``): ``identified`` when any file is,
with the legal basis the design records (a manifest of identified files whose design no longer
records one is refused). In a pseudonymised manifest, the design's actor lists name only public
figures; other actors appear by actor id, type and platforms.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from observatory_pipelines.core.collection import designs
from observatory_pipelines.core.collection.arenas import get_arena, registry
from observatory_pipelines.core.collection.designs import Corpus
from observatory_pipelines.core.exports import identity as export_identity
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.core.exports.layout import ExportMetadata
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.storage import ObjectNotFound, ObjectStore

MANIFEST_VERSION = 1


class ExportsIncomplete(ObservatoryError):
    """A file the manifest must describe has not been exported yet."""


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _design(conn: sa.Connection, slug: str, identity: export_identity.Identity) -> dict[str, Any]:
    design = designs.load_design(conn, slug)
    extra = conn.execute(
        sa.text("SELECT description, visibility FROM query_designs WHERE id = :id"), {"id": design.id}
    ).one()
    terms = conn.execute(
        sa.text(
            "SELECT term, term_type FROM search_terms WHERE query_design_id = :id AND is_active "
            "ORDER BY created_at, term"
        ),
        {"id": design.id},
    ).all()
    lists = conn.execute(
        sa.text(
            """
            SELECT l.name, a.id AS actor_id, a.canonical_name, a.actor_type, a.is_public_figure,
                   coalesce(array_agg(DISTINCT p.platform) FILTER (WHERE p.id IS NOT NULL), '{}') AS platforms,
                   coalesce(array_agg(p.platform || ':' || coalesce(p.platform_username, p.platform_user_id))
                            FILTER (WHERE p.id IS NOT NULL), '{}') AS accounts
            FROM actor_lists l
            JOIN actor_list_members m ON m.actor_list_id = l.id
            JOIN actors a ON a.id = m.actor_id
            LEFT JOIN actor_platform_presences p ON p.actor_id = a.id
            WHERE l.query_design_id = :id
            GROUP BY l.name, a.id, a.canonical_name, a.actor_type, a.is_public_figure
            ORDER BY l.name, a.canonical_name
            """
        ),
        {"id": design.id},
    ).all()
    actor_lists: dict[str, list] = {}
    for row in lists:
        if identity.identified or row.is_public_figure:
            actor = {"name": row.canonical_name, "type": row.actor_type, "accounts": sorted(row.accounts)}
        else:  # the same rule as the files: no name or handle of anyone but a public figure
            actor = {"actor_id": str(row.actor_id), "type": row.actor_type, "platforms": sorted(row.platforms)}
        actor_lists.setdefault(row.name, []).append(actor)
    arenas = []
    for name in registry():
        arena = get_arena(name)
        settings = design.settings_for(arena)
        arenas.append(
            {
                "arena": name,
                "platform": arena.platform,
                "enabled": settings.enabled,
                "tier": settings.tier.value,
                "options": settings.options,
            }
        )
    return {
        "slug": design.slug,
        "name": design.name,
        "description": extra.description,
        "language": design.language,
        "country": design.country,
        "default_tier": design.default_tier.value,
        "search_terms": [{"term": t.term, "type": t.term_type} for t in terms],
        "actor_lists": [{"name": name, "actors": actors} for name, actors in actor_lists.items()],
        "arenas": arenas,
    }


def _collection_runs(conn: sa.Connection, design_id, month: str) -> list[dict[str, Any]]:
    start, end = months.month_bounds(month)
    runs = conn.execute(
        sa.text(
            """
            SELECT id, dagster_run_id, status, tier, date_from, date_to, started_at, completed_at,
                   records_collected, credits_spent
            FROM collection_runs
            WHERE query_design_id = :d AND date_from >= :start AND date_from < :end
            ORDER BY started_at NULLS LAST, created_at
            """
        ),
        {"d": design_id, "start": start, "end": end},
    ).all()
    tasks = conn.execute(
        sa.text(
            """
            SELECT collection_run_id, arena, platform, status, records_new, records_updated, records_rejected,
                   records_filtered, error_message, started_at, completed_at
            FROM collection_tasks t
            WHERE collection_run_id = ANY(:runs)
            ORDER BY arena, started_at
            """
        ),
        {"runs": [r.id for r in runs]},
    ).all()
    by_run: dict = {}
    for t in tasks:
        by_run.setdefault(t.collection_run_id, []).append(
            {
                "arena": t.arena,
                "platform": t.platform,
                "status": t.status,
                "records_new": t.records_new,
                "records_updated": t.records_updated,
                "records_rejected": t.records_rejected,
                "records_filtered": t.records_filtered,
                "error": t.error_message,
                "started_at": _iso(t.started_at),
                "completed_at": _iso(t.completed_at),
            }
        )
    return [
        {
            "id": str(r.id),
            "dagster_run_id": r.dagster_run_id,
            "status": r.status,
            "tier": r.tier,
            "window": [_iso(r.date_from), _iso(r.date_to)],
            "started_at": _iso(r.started_at),
            "completed_at": _iso(r.completed_at),
            "records_collected": r.records_collected,
            "credits_spent": r.credits_spent,
            "tasks": by_run.get(r.id, []),
        }
        for r in runs
    ]


def _record_counts(conn: sa.Connection, design_id, month: str) -> dict[str, int]:
    start, end = months.month_bounds(month)
    stored, duplicates = conn.execute(
        sa.text(
            """
            SELECT count(*), count(*) FILTER (WHERE raw_metadata ? 'duplicate_of')
            FROM content_records WHERE query_design_id = :d AND published_at >= :start AND published_at < :end
            """
        ),
        {"d": design_id, "start": start, "end": end},
    ).one()
    return {"stored": stored, "duplicates": duplicates, "without_duplicates": stored - duplicates}


def _files(store: ObjectStore, corpus: Corpus) -> list[dict[str, Any]]:
    files, missing = [], []
    for file in export_layout.all_files():
        if file == export_layout.MANIFEST:
            continue
        key = export_layout.corpus_export_key(corpus, file)
        try:
            stored = store.stat(key)
        except ObjectNotFound:
            missing.append(file)
            continue
        recorded = ExportMetadata.from_object_metadata(stored.metadata)
        # A file stored before exports recorded their identity level named every author: make it again.
        if recorded is None or recorded.identity not in export_identity.LEVELS:
            missing.append(file)
            continue
        files.append(
            {
                "name": file.filename,
                "format": file.format,
                "network": file.network,
                "dynamic": file.dynamic,
                "key": key,
                "size": stored.size,
                "sha256": recorded.sha256,
                "rows": recorded.rows,
                "include_duplicates": recorded.include_duplicates,
                "include_raw_metadata": recorded.include_raw_metadata,
                "schema_version": recorded.schema_version,
                "identity": recorded.identity,
                "stored_at": _iso(stored.last_modified),
            }
        )
    if missing:
        first = missing[0]
        raise ExportsIncomplete(
            f"{len(missing)} export file(s) of '{corpus.slug}' {corpus.month} are missing, e.g. {first.filename}: "
            f"materialize the {first.format} export for that partition first"
        )
    return files


def _software(conn: sa.Connection) -> dict[str, str]:
    def version(package: str) -> str:
        try:
            return package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            return "unknown"

    return {
        "observatory_pipelines": version("observatory-pipelines"),
        "dagster": version("dagster"),
        "polars": version("polars"),
        "pyarrow": version("pyarrow"),
        "postgresql": conn.execute(sa.text("SHOW server_version")).scalar_one(),
    }


def _identity(conn: sa.Connection, corpus: Corpus, files: list[dict[str, Any]]) -> export_identity.Identity:
    """The files' identity: identified when any file is, with the basis the design records now."""
    if not any(f["identity"] == export_identity.IDENTIFIED for f in files):
        return export_identity.Identity()
    try:
        return export_identity.for_corpus(conn, corpus, export_identity.IDENTIFIED)
    except export_identity.IdentityRefused:
        raise export_identity.IdentityRefused(
            f"identified exports of '{corpus.slug}' {corpus.month} are stored, but the design records no legal "
            "basis for them any more; export them again (pseudonymised) before the manifest"
        ) from None


def build_manifest(
    engine: sa.Engine, store: ObjectStore, corpus: Corpus, now: datetime | None = None
) -> dict[str, Any]:
    start, end = months.month_bounds(corpus.month)
    files = _files(store, corpus)
    with engine.connect() as conn:
        identity = _identity(conn, corpus, files)
        design = _design(conn, corpus.slug, identity)
        runs = _collection_runs(conn, corpus.design_id, corpus.month)
        counts = _record_counts(conn, corpus.design_id, corpus.month)
        software = _software(conn)
    columns = [{"name": c.name, "type": str(c.arrow)} for c in exports.COLUMNS]
    return {
        "manifest_version": MANIFEST_VERSION,
        "schema_version": export_layout.SCHEMA_VERSION,
        "generated_at": _iso(now or datetime.now(timezone.utc)),
        "identity": identity.describe(),
        "corpus": {
            "design": design,
            "month": corpus.month,
            "period": [_iso(start), _iso(end)],
            "owner": export_layout.owner_folder(corpus.owner_id),
        },
        "records": counts,
        "collection_runs": runs,
        "files": files,
        "columns": columns,
        "optional_columns": [
            {"name": exports.DUPLICATE_OF.name, "type": "string", "when": "include_duplicates"},
            {"name": exports.RAW_METADATA.name, "type": "string (JSON)", "when": "include_raw_metadata"},
        ],
        "software": software,
    }


def export_manifest(engine: sa.Engine, store: ObjectStore, corpus: Corpus) -> tuple[exports.StoredExport, dict]:
    """Build and store the corpus's ``manifest.json``; the stored object and the manifest."""
    manifest = build_manifest(engine, store, corpus)
    identity = export_identity.Identity(**manifest["identity"])
    with tempfile.TemporaryDirectory(prefix="observatory-export-") as folder:
        path = Path(folder) / export_layout.MANIFEST.filename
        path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written = exports.WrittenFile(
            path=path, rows=len(manifest["files"]), size=path.stat().st_size, sha256=exports.sha256_of(path)
        )
        options = exports.ExportOptions(identity=identity)
        stored = exports.store_file(store, corpus, export_layout.MANIFEST, written, options)
    return stored, manifest
