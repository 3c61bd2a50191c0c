"""Yield history per source, and the silent dropouts it reveals.

A *source* is the unit an arena queries: a feed URL, a GDELT query, an imported file (and, for
the platform arenas, a channel, an instance and tag, a search). ``collect_arena`` tallies what
each source gave during one task and writes one ``source_yields`` row per source when the task
ends, including sources that gave nothing (arenas report every source they query with
``CollectionContext.searched``). Those zero rows are what make a quiet source visible: the
complaint filed most often against collectors is that they break without anyone noticing.

Counts: ``items`` are records stored (new and already known alike: the hourly re-collection of a
feed stores the same articles again, and that still shows the feed is alive); ``filtered`` were
read but not stored (no term matched, outside the month); ``rejected`` could not be read.
A source *returned* something when items + filtered > 0: a feed whose articles match none of
the design's terms this hour has not gone quiet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from observatory_pipelines.core.platform.errors import ObservatoryError

#: How many earlier completed tasks of the same design and arena a source must have returned
#: something in, for its silence now to be reported. Three is a few hours of hourly collection,
#: or three nights of nightly: long enough to skip a stale one-off, short enough to catch a
#: feed that died this week.
RECENT_TASKS = 3

#: Rows ``source_history`` returns unless told otherwise.
HISTORY_LIMIT = 50


@dataclass
class _Counts:
    items: int = 0
    filtered: int = 0
    rejected: int = 0


@dataclass
class SourceTally:
    """What each source gave during one task, as ``collect_arena`` streams the arena's output."""

    counts: dict[str, _Counts] = field(default_factory=dict)
    #: The source the arena last said it was querying: items and rejections the arena did not
    #: label themselves are put down to it.
    current: str = ""

    def searched(self, source: str) -> None:
        if source:
            self.current = source
            self.counts.setdefault(source, _Counts())

    def _of(self, source: str) -> _Counts | None:
        source = source or self.current
        return self.counts.setdefault(source, _Counts()) if source else None

    def stored(self, source: str) -> None:
        if (counts := self._of(source)) is not None:
            counts.items += 1

    def filtered(self, source: str) -> None:
        if (counts := self._of(source)) is not None:
            counts.filtered += 1

    def rejected(self, source: str = "") -> None:
        # An arena's Rejected names where inside a source it failed (a file's line), not which
        # source, so it is put down to the source being queried.
        if (counts := self._of(source)) is not None:
            counts.rejected += 1


def record_yields(
    conn: sa.Connection,
    *,
    collection_run_id: uuid.UUID,
    arena: str,
    month: str,
    tally: SourceTally,
    collected_at: datetime,
) -> int:
    """Write the task's rows, replacing those of an earlier attempt of the same task; returns the count."""
    task_id, design_id = conn.execute(
        sa.text(
            """
            SELECT t.id, r.query_design_id FROM collection_tasks t
            JOIN collection_runs r ON r.id = t.collection_run_id
            WHERE t.collection_run_id = :run AND t.arena = :arena
            """
        ),
        {"run": collection_run_id, "arena": arena},
    ).one()
    conn.execute(sa.text("DELETE FROM source_yields WHERE collection_task_id = :task"), {"task": task_id})
    rows = [
        {
            "task": task_id,
            "design": design_id,
            "arena": arena,
            "month": month,
            "source": source,
            "items": counts.items,
            "filtered": counts.filtered,
            "rejected": counts.rejected,
            "at": collected_at,
        }
        for source, counts in sorted(tally.counts.items())
    ]
    if rows:
        conn.execute(
            sa.text(
                """
                INSERT INTO source_yields (collection_task_id, query_design_id, arena, month, source,
                                           items, filtered, rejected, collected_at)
                VALUES (:task, :design, :arena, :month, :source, :items, :filtered, :rejected, :at)
                """
            ),
            rows,
        )
    return len(rows)


@dataclass(frozen=True)
class SourceYield:
    arena: str
    source: str
    month: str
    items: int
    filtered: int
    rejected: int
    collected_at: datetime
    task_status: str


def source_history(
    conn: sa.Connection,
    design_slug: str,
    arena: str | None = None,
    source: str | None = None,
    limit: int = HISTORY_LIMIT,
) -> list[SourceYield]:
    """The newest ``limit`` yields of a design's sources (of one arena, one source), newest first."""
    design_id = conn.execute(
        sa.text("SELECT id FROM query_designs WHERE slug = :slug"), {"slug": design_slug}
    ).scalar_one_or_none()
    if design_id is None:
        raise ObservatoryError(f"no query design '{design_slug}'; see `observatory designs list`")
    rows = conn.execute(
        sa.text(
            """
            SELECT y.arena, y.source, y.month, y.items, y.filtered, y.rejected, y.collected_at,
                   t.status AS task_status
            FROM source_yields y JOIN collection_tasks t ON t.id = y.collection_task_id
            WHERE y.query_design_id = :design
              AND (CAST(:arena AS text) IS NULL OR y.arena = :arena)
              AND (CAST(:source AS text) IS NULL OR y.source = :source)
            ORDER BY y.collected_at DESC, y.arena, y.source
            LIMIT :limit
            """
        ),
        {"design": design_id, "arena": arena, "source": source, "limit": limit},
    ).all()
    return [SourceYield(*row) for row in rows]


@dataclass(frozen=True)
class Dropout:
    """A source that returned items in recent runs and returns none now."""

    source: str
    last_yield_at: datetime
    last_items: int  # what it returned then (items + filtered)

    def describe(self) -> str:
        return (
            f"{self.source}: returned nothing; last returned {self.last_items} at {self.last_yield_at:%Y-%m-%d %H:%M}Z"
        )


def silent_dropouts(
    conn: sa.Connection, collection_run_id: uuid.UUID, arena: str, recent: int = RECENT_TASKS
) -> list[Dropout]:
    """Sources this task searched that returned nothing, although they returned something in one of
    the ``recent`` earlier completed tasks of the same design and arena (any month).

    A source that never returned anything, or that is new, is not a dropout; neither is one the
    design no longer searches. Only completed tasks count: a failed task may not have reached
    every source.
    """
    rows = conn.execute(
        sa.text(
            """
            WITH this_task AS (
                SELECT t.id, r.query_design_id, y.collected_at
                FROM collection_tasks t JOIN collection_runs r ON r.id = t.collection_run_id
                LEFT JOIN LATERAL (SELECT max(collected_at) AS collected_at FROM source_yields
                                   WHERE collection_task_id = t.id) y ON true
                WHERE t.collection_run_id = :run AND t.arena = :arena
            ),
            earlier AS (
                SELECT DISTINCT ON (y.collection_task_id) y.collection_task_id, y.collected_at
                FROM source_yields y
                JOIN collection_tasks t ON t.id = y.collection_task_id AND t.status = 'completed'
                JOIN this_task ON y.query_design_id = this_task.query_design_id
                WHERE y.arena = :arena AND y.collection_task_id <> this_task.id
                  AND y.collected_at <= this_task.collected_at
                ORDER BY y.collection_task_id, y.collected_at DESC
            ),
            recent AS (
                SELECT collection_task_id FROM earlier ORDER BY collected_at DESC LIMIT :recent
            ),
            quiet AS (
                SELECT y.source FROM source_yields y JOIN this_task ON y.collection_task_id = this_task.id
                WHERE y.items + y.filtered = 0
            )
            SELECT q.source, last.collected_at, last.returned
            FROM quiet q
            CROSS JOIN this_task
            JOIN LATERAL (
                SELECT y.collected_at, y.items + y.filtered AS returned FROM source_yields y
                JOIN collection_tasks t ON t.id = y.collection_task_id AND t.status = 'completed'
                WHERE y.query_design_id = this_task.query_design_id AND y.arena = :arena
                  AND y.source = q.source AND y.items + y.filtered > 0
                  AND y.collection_task_id <> this_task.id AND y.collected_at <= this_task.collected_at
                ORDER BY y.collected_at DESC LIMIT 1
            ) last ON true
            WHERE EXISTS (
                SELECT 1 FROM source_yields y JOIN recent USING (collection_task_id)
                WHERE y.source = q.source AND y.items + y.filtered > 0
            )
            ORDER BY q.source
            """
        ),
        {"run": collection_run_id, "arena": arena, "recent": recent},
    ).all()
    return [Dropout(source, at, returned) for source, at, returned in rows]
