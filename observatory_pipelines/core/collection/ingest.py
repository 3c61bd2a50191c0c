"""Set-based, idempotent writes into ``content_records``.

A batch is COPYed into a temporary staging table and merged with one
``INSERT ... SELECT ... ON CONFLICT ON CONSTRAINT uq_content_corpus_item DO UPDATE``:

- a new item is inserted;
- an item already in the corpus has its engagement counts, matched terms and metadata refreshed,
  but only when something changed (no dead tuples for unchanged rows, and "updated" means it);
- its first ``collected_at`` and ``collection_run_id`` are kept: they say when the corpus first
  had it;
- ``raw_metadata`` is merged (``old || new``), so keys other steps wrote (``duplicate_of``) survive.

Re-running a collection therefore leaves exactly the same rows. Duplicates within one batch are
collapsed to the last one first, because ON CONFLICT cannot touch a row twice in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from observatory_pipelines.core.collection.records import COLUMNS
from observatory_pipelines.core.platform import database

CORPUS_KEY = ("query_design_id", "platform", "platform_id", "published_at")
_KEY_INDEXES = tuple(COLUMNS.index(c) for c in CORPUS_KEY)
REFRESHED = ("views_count", "likes_count", "shares_count", "comments_count", "engagement_score", "search_terms_matched")

_COLUMN_LIST = ", ".join(COLUMNS)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS content_staging (LIKE content_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
# New rows keep the id generated in staging; an updated row keeps its old one. Joining the
# returned ids back to staging therefore tells new from updated (RETURNING xmax is not allowed
# on partitioned tables).
_MERGE_SQL = f"""
WITH merged AS (
    INSERT INTO content_records (id, {_COLUMN_LIST})
    SELECT id, {_COLUMN_LIST} FROM content_staging
    ON CONFLICT ON CONSTRAINT uq_content_corpus_item DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in REFRESHED)},
        raw_metadata = content_records.raw_metadata || EXCLUDED.raw_metadata
    WHERE ({", ".join(f"content_records.{c}" for c in REFRESHED)}, content_records.raw_metadata @> EXCLUDED.raw_metadata)
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in REFRESHED)}, true)
    RETURNING id
)
SELECT count(s.id) AS new, count(*) - count(s.id) AS updated
FROM merged LEFT JOIN content_staging s ON s.id = merged.id
"""


@dataclass
class WriteCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: WriteCounts) -> WriteCounts:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self

    @property
    def written(self) -> int:
        return self.new + self.updated + self.unchanged


def _collapse(rows: Iterable[Sequence]) -> list[Sequence]:
    latest: dict[tuple, Sequence] = {}
    for row in rows:
        latest[tuple(row[i] for i in _KEY_INDEXES)] = row
    return list(latest.values())


def write_batch(engine: sa.Engine, rows: Sequence[Sequence]) -> WriteCounts:
    """Upsert one batch of rows (tuples in ``records.COLUMNS`` order) in one transaction."""
    unique_rows = _collapse(rows)
    if not unique_rows:
        return WriteCounts()
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        cur.execute(_STAGING_DDL)
        with cur.copy(f"COPY content_staging ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in unique_rows:
                copy.write_row(row)
        cur.execute(_MERGE_SQL)
        new, updated = cur.fetchone() or (0, 0)
    return WriteCounts(new=new, updated=updated, unchanged=len(unique_rows) - new - updated)
