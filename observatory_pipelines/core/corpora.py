"""What a researcher sees: their corpora, one corpus month in full, and their credits.

The portal's read model. It holds no access rule of its own: which designs a viewer sees is
``exports.access.may_see``, and one corpus is reached only through ``access.visible_corpus``, so
the portal and the CLI refuse the same requests with the same words.

A corpus (design × month) is listed when it has a collection run or records. Its month is the
month its run's window starts in (``date_from``, as the manifest and ``run_summary`` count runs;
the partition key's month for a run without a window), and a record's month is that of
``published_at``, the column ``content_records`` is partitioned by.

``list_corpora`` issues a fixed number of statements whatever the number of designs and months:
the portal's front page must not slow down as corpora accumulate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from observatory_pipelines.core.analysis import networks as analysis_networks
from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.core.collection.credits import Balance, CreditService, LedgerEntry
from observatory_pipelines.core.exports import access
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports.access import ExportListing, Viewer
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.storage import ObjectNotFound, ObjectStore

#: Rows of the top-actors and top-terms tables a corpus page shows.
TOP_ROWS = 20


@dataclass(frozen=True)
class ArenaStatus:
    arena: str
    platform: str
    #: ``collection_tasks.status`` of the arena's task in the latest run that ran it.
    status: str
    records_collected: int
    #: ``collection_tasks.error_message``: the one-line failure the CLI prints.
    error: str | None
    completed_at: datetime | None


@dataclass(frozen=True)
class LastRun:
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    dagster_run_id: str | None


@dataclass(frozen=True)
class CorpusSummary:
    slug: str
    design_name: str
    owner_email: str
    month: str
    #: Rows in ``content_records`` for this design and month, duplicates included.
    records: int
    #: Per arena (by name), from the latest collection run of the corpus that ran the arena.
    arenas: tuple[ArenaStatus, ...]
    last_run: LastRun | None

    @property
    def failures(self) -> tuple[str, ...]:
        """``arena: message`` for each arena whose latest task failed."""
        return tuple(
            f"{arena.arena}: {arena.error or 'failed without a message'}"
            for arena in self.arenas
            if arena.status == "failed"
        )


@dataclass(frozen=True)
class CorpusMonth:
    summary: CorpusSummary
    #: Rows of the analysis tables; ``[]`` when the statistics were not computed.
    volume_daily: list[dict]
    top_actors: list[dict]
    top_terms: list[dict]
    #: Per network built: name, description, and the stored summary (nodes, edges, density, ...).
    networks: list[dict]
    #: The stored ``manifest.json``, parsed; ``None`` before the manifest export.
    manifest: dict | None
    exports: list[ExportListing]


@dataclass(frozen=True)
class CreditOverview:
    balance: Balance
    #: Newest first.
    history: list[LedgerEntry]
    next_cursor: str | None


@dataclass(frozen=True)
class _Design:
    id: uuid.UUID
    slug: str
    name: str
    owner_email: str


# The corpus's runs, each with the month it belongs to (in UTC, whatever the session's TimeZone).
_RUNS = """
    WITH runs AS (
        SELECT r.*, coalesce(to_char(r.date_from AT TIME ZONE 'UTC', 'YYYY-MM'),
                             NULLIF(split_part(r.partition_key, '|', 1), '')) AS month,
               coalesce(r.started_at, r.created_at) AS began
        FROM collection_runs r WHERE r.query_design_id = ANY(:ids)
    )
"""


_COUNTS = sa.text(
    """
    SELECT query_design_id AS design_id, to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
           count(*) AS records
    FROM content_records WHERE query_design_id = ANY(:ids)
    GROUP BY 1, 2
    """
)
_COUNTS_IN_MONTH = sa.text(
    """
    SELECT query_design_id AS design_id, to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
           count(*) AS records
    FROM content_records WHERE query_design_id = ANY(:ids) AND published_at >= :start AND published_at < :end
    GROUP BY 1, 2
    """
)


def list_corpora(conn: sa.Connection, viewer: Viewer, *, design: str | None = None) -> list[CorpusSummary]:
    """Every corpus the viewer may see that has a collection run or records, newest month first,
    then by slug. ``design`` narrows to one slug; a slug the viewer may not see gives ``[]``, as an
    unknown one does."""
    return _summaries(conn, _visible_designs(conn, viewer, design))


def corpus_month(engine: sa.Engine, store: ObjectStore, viewer: Viewer, slug: str, month: str) -> CorpusMonth:
    """One corpus as its page shows it. ``AccessRefused`` for someone else's design and for one
    that does not exist alike; ``ValueError`` naming the format for a malformed month."""
    month = months.month_key(months.parse_month(month))
    with engine.connect() as conn:
        corpus = access.visible_corpus(conn, viewer, slug, month)
        (found,) = _visible_designs(conn, viewer, corpus.slug)
        listed = _summaries(conn, [found], month=month)
    summary = (
        listed[0]
        if listed
        else CorpusSummary(
            slug=found.slug,
            design_name=found.name,
            owner_email=found.owner_email,
            month=month,
            records=0,
            arenas=(),
            last_run=None,
        )
    )
    return CorpusMonth(
        summary=summary,
        volume_daily=_rows(corpus.slug, month, "volume_daily"),
        top_actors=_rows(corpus.slug, month, "top_actors", TOP_ROWS),
        top_terms=_rows(corpus.slug, month, "top_terms", TOP_ROWS),
        networks=_networks(corpus.slug, month),
        manifest=_manifest(store, export_layout.corpus_export_key(corpus, export_layout.MANIFEST)),
        exports=access.corpus_exports(store, corpus),
    )


def credit_overview(engine: sa.Engine, viewer: Viewer, *, before: str | None = None, limit: int = 50) -> CreditOverview:
    """The viewer's own balance and one page of their ledger (``before``: the previous page's
    ``next_cursor``)."""
    service = CreditService(engine)
    history, next_cursor = service.history(viewer.user_id, limit=limit, before=before)
    return CreditOverview(balance=service.balance(viewer.user_id), history=history, next_cursor=next_cursor)


def _visible_designs(conn: sa.Connection, viewer: Viewer, slug: str | None) -> list[_Design]:
    query = sa.text(
        """
        SELECT d.id, d.slug, d.name, d.owner_id, u.email AS owner_email
        FROM query_designs d JOIN users u ON u.id = d.owner_id
        WHERE (CAST(:everyone AS boolean) OR d.owner_id = :viewer)
          AND (CAST(:slug AS text) IS NULL OR d.slug = :slug)
        ORDER BY d.slug
        """
    )
    # The WHERE only spares reading designs the viewer cannot see; may_see decides.
    rows = conn.execute(query, {"everyone": viewer.is_admin, "viewer": viewer.user_id, "slug": slug})
    return [
        _Design(id=row.id, slug=row.slug, name=row.name, owner_email=row.owner_email)
        for row in rows
        if access.may_see(viewer, row.owner_id)
    ]


def _summaries(conn: sa.Connection, designs: Sequence[_Design], month: str | None = None) -> list[CorpusSummary]:
    """The summaries of ``designs``' corpora (of ``month`` only, if given) in three statements."""
    if not designs:
        return []
    ids = [d.id for d in designs]
    start, end = months.month_bounds(month) if month else (None, None)
    window = {"ids": ids, "month": month, "start": start, "end": end}

    # Grouped by the partition column; with a month, its bounds let PostgreSQL read one partition.
    counted = _COUNTS_IN_MONTH if month else _COUNTS
    counts = {(row.design_id, row.month): row.records for row in conn.execute(counted, window)}
    runs = {
        (row.design_id, row.month): LastRun(
            status=row.status,
            started_at=row.started_at,
            completed_at=row.completed_at,
            dagster_run_id=row.dagster_run_id,
        )
        for row in conn.execute(
            sa.text(
                _RUNS
                + """
                SELECT DISTINCT ON (r.query_design_id, r.month)
                       r.query_design_id AS design_id, r.month, r.status, r.started_at, r.completed_at,
                       r.dagster_run_id
                FROM runs r
                WHERE r.month IS NOT NULL AND (CAST(:month AS text) IS NULL OR r.month = :month)
                ORDER BY r.query_design_id, r.month, r.began DESC, r.created_at DESC, r.id DESC
                """
            ),
            window,
        )
    }
    arenas: dict[tuple[uuid.UUID, str], list[ArenaStatus]] = {}
    # A task skipped (arena disabled) does not hide the arena's last real outcome.
    for row in conn.execute(
        sa.text(
            _RUNS
            + """
            SELECT DISTINCT ON (r.query_design_id, r.month, t.arena)
                   r.query_design_id AS design_id, r.month, t.arena, t.platform, t.status,
                   t.records_collected, t.error_message, t.completed_at
            FROM collection_tasks t JOIN runs r ON r.id = t.collection_run_id
            WHERE r.month IS NOT NULL AND (CAST(:month AS text) IS NULL OR r.month = :month)
            ORDER BY r.query_design_id, r.month, t.arena, t.status = 'skipped',
                     r.began DESC, r.created_at DESC, r.id DESC
            """
        ),
        window,
    ):
        arenas.setdefault((row.design_id, row.month), []).append(
            ArenaStatus(
                arena=row.arena,
                platform=row.platform,
                status=row.status,
                records_collected=row.records_collected,
                error=_one_line(row.error_message),
                completed_at=row.completed_at,
            )
        )

    by_id = {d.id: d for d in designs}
    keys = sorted(set(counts) | set(runs), key=lambda key: by_id[key[0]].slug)
    keys.sort(key=lambda key: key[1], reverse=True)
    return [
        CorpusSummary(
            slug=by_id[design_id].slug,
            design_name=by_id[design_id].name,
            owner_email=by_id[design_id].owner_email,
            month=key_month,
            records=counts.get((design_id, key_month), 0),
            arenas=tuple(arenas.get((design_id, key_month), ())),
            last_run=runs.get((design_id, key_month)),
        )
        for design_id, key_month in keys
    ]


def _one_line(message: str | None) -> str | None:
    if message is None:
        return None
    return " ".join(message.split()) or None


def _rows(slug: str, month: str, name: str, limit: int | None = None) -> list[dict]:
    table = analysis_store.find_table(slug, month, name)
    if table is None:
        return []
    if "rank" in table.columns:
        table = table.sort("rank")
    return (table if limit is None else table.head(limit)).to_dicts()


def _networks(slug: str, month: str) -> list[dict]:
    """The stored summary of each network built (``<network>_summary`` in the analysis store)."""
    found = []
    for name in analysis_networks.NETWORKS:
        summary = analysis_store.find_table(slug, month, f"{name}_summary")
        if summary is None or summary.is_empty():
            continue
        figures: dict[str, Any] = summary.drop("network", strict=False).row(0, named=True)
        found.append({"name": name, "description": analysis_networks.DEFINITIONS[name], **figures})
    return found


def _manifest(store: ObjectStore, key: str) -> dict | None:
    try:
        with store.open(key) as stored:
            found = json.loads(stored.read())
    except ObjectNotFound:
        return None
    except ValueError:
        # Not what an export writes: the page shows no manifest rather than no corpus.
        return None
    return found if isinstance(found, dict) else None
