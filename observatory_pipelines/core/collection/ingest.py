"""Set-based, idempotent writes into ``content_records``: one row per item, whatever its date does.

An item is ``(query_design_id, platform, platform_id)``. A batch is COPYed into a temporary
staging table, then, in one transaction:

1. each item is registered in ``content_items`` with its ``published_at``
   (``INSERT ... ON CONFLICT DO NOTHING``); an item already registered keeps the date it has. The
   items that were new go into ``content_records`` in the same statement, by a plain ``INSERT``:
   a first load pays no conflict arbitration;
2. when the batch held items registered before, it is merged under their registered dates with
   ``INSERT ... SELECT ... ON CONFLICT (<item key>, published_at) DO UPDATE`` (the key of
   ``uq_content_corpus_item``, named by its columns so that a month's load table, below, has it too):
   - an item already in the corpus has its engagement counts, matched terms and metadata
     refreshed, but only when something changed (no dead tuples for unchanged rows, and "updated"
     means it);
   - its first ``collected_at`` and ``collection_run_id`` are kept: they say when the corpus first
     had it;
   - ``raw_metadata`` is merged (``old || new``), so keys other steps wrote (``duplicate_of``)
     survive; the lists named in ``ACCUMULATED`` (``rank_history``: when and where a search
     engine ranked the item) are the one exception to "new replaces old": the stored list keeps
     its entries and gains the new ones it does not hold yet, so each collection adds to it;
   - a registered item whose row is gone is inserted again.

A row that no registration knows of (written by SQL that bypassed ingest) makes the plain INSERT
fail; the batch is then written again through the merge alone, which takes that row as the item's.

So the stored row keeps the first ``published_at`` it was written with, and stays in that month's
partition. An undated item takes its first collection time (``ingest_notes.published_at_missing``);
a file-imported one its first capture time. When the platform later reports a different date (an
edited RSS ``pubDate``, a date for an item that had none), the row keeps its date and records the
reported one as ``raw_metadata.reported_published_at``. Re-collecting at any clock time leaves the same rows.

Concurrent ingests of overlapping items (two processes) serialise on the item's key in
``content_items``: the second waits for the first to commit, then updates the row the first wrote.
Both statements take their row locks in key order, so two batches cannot deadlock. Duplicates
within one batch are collapsed to the last one first, because ON CONFLICT cannot touch a row twice
in one statement.

A large first load of an empty month writes the same statements into a load table without
index maintenance, in one transaction, and swaps it in for the partition at the end: ``FirstLoad``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa

from observatory_pipelines.core.collection.records import COLUMNS
from observatory_pipelines.core.maintenance import partitions
from observatory_pipelines.core.platform import database, months

ITEM_KEY = ("query_design_id", "platform", "platform_id")
_KEY_INDEXES = tuple(COLUMNS.index(c) for c in ITEM_KEY)
_DESIGN_INDEX = COLUMNS.index("query_design_id")
#: ``raw_metadata`` keys holding a list that every collection adds to instead of replacing (above).
#: Only a list is merged; entries equal to a stored one are not added again. Within one batch the
#: item's last copy wins, as for every column, so an arena that sees an item twice in one batch
#: merges its entries itself (paging arenas write each page as its own batch).
ACCUMULATED = ("rank_history",)
REFRESHED = ("views_count", "likes_count", "shares_count", "comments_count", "engagement_score", "search_terms_matched")

_COLUMN_LIST = ", ".join(COLUMNS)
_KEY_LIST = ", ".join(ITEM_KEY)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS content_staging (LIKE content_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_REGISTER_SQL = (
    f"INSERT INTO content_items ({_KEY_LIST}, published_at) "
    f"SELECT {_KEY_LIST}, published_at FROM content_staging ORDER BY {_KEY_LIST} ON CONFLICT DO NOTHING"
)


def _insert_new_sql(table: str) -> str:
    """Registers the batch's items; those new to the corpus go straight into ``table`` with a plain
    INSERT (no conflict to arbitrate: the registration just proved them new), which is most of a
    first load."""
    return f"""
    WITH registered AS ({_REGISTER_SQL} RETURNING {_KEY_LIST})
    INSERT INTO {table} (id, {_COLUMN_LIST})
    SELECT s.id, {", ".join(f"s.{c}" for c in COLUMNS)} FROM content_staging s JOIN registered USING ({_KEY_LIST})
    """


# A date that is not the platform's (the collection clock, a capture time) names its source in
# published_at_source: at the top of raw_metadata (file imports) or in its ingest_notes (records).
_DATED_BY_PLATFORM = (
    "NOT (s.raw_metadata ? 'published_at_source' OR coalesce(s.raw_metadata -> 'ingest_notes' ? "
    "'published_at_source', false))"
)
# The staged row under its registered date. When the platform now reports another date, the row
# notes it; a staged date that is only this collection's clock is not worth noting.
_REGISTERED_COLUMNS = ", ".join(
    "i.published_at"
    if c == "published_at"
    else f"CASE WHEN s.published_at <> i.published_at AND {_DATED_BY_PLATFORM} "
    "THEN s.raw_metadata || jsonb_build_object('reported_published_at', "
    """to_char(s.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')) """
    "ELSE s.raw_metadata END"
    if c == "raw_metadata"
    else f"s.{c}"
    for c in COLUMNS
)


def _accumulated(key: str) -> str:
    stored, staged = f"stored.raw_metadata -> '{key}'", f"EXCLUDED.raw_metadata -> '{key}'"
    old = f"CASE WHEN jsonb_typeof({stored}) = 'array' THEN {stored} ELSE '[]'::jsonb END"
    added = (
        f"(SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements({staged}) WITH ORDINALITY AS x(e, n) "
        f"WHERE NOT ({old}) @> jsonb_build_array(e))"
    )
    return (
        f"CASE WHEN jsonb_typeof({staged}) = 'array' "
        f"THEN jsonb_build_object('{key}', ({old}) || coalesce({added}, '[]'::jsonb)) ELSE '{{}}'::jsonb END"
    )


_MERGED_METADATA = " || ".join(
    ["stored.raw_metadata || EXCLUDED.raw_metadata", *(_accumulated(k) for k in ACCUMULATED)]
)


def _merge_sql(table: str, registered: str = "true") -> str:
    """Merges the batch's items registered before (those for which ``registered``, a condition on
    their registration ``i``, holds) into ``table`` under their registered dates.

    New rows keep the id generated in staging; an updated row keeps its old one. Joining the
    returned ids back to staging therefore tells new from updated (RETURNING xmax is not allowed on
    partitioned tables)."""
    return f"""
    WITH merged AS (
        INSERT INTO {table} AS stored (id, {_COLUMN_LIST})
        SELECT s.id, {_REGISTERED_COLUMNS}
        FROM content_staging s JOIN content_items i USING ({_KEY_LIST})
        WHERE {registered}
        ORDER BY {_KEY_LIST}
        ON CONFLICT ({_KEY_LIST}, published_at) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in REFRESHED)},
            raw_metadata = {_MERGED_METADATA}
        WHERE ({", ".join(f"stored.{c}" for c in REFRESHED)}, stored.raw_metadata @> EXCLUDED.raw_metadata)
            IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in REFRESHED)}, true)
        RETURNING id
    )
    SELECT count(s.id) AS new, count(*) - count(s.id) AS updated
    FROM merged LEFT JOIN content_staging s ON s.id = merged.id
    """


@dataclass(frozen=True)
class _Target:
    """Where a batch goes: the SQL that inserts its new items, and the merges of the rest."""

    insert_new: str
    merges: tuple[str, ...]
    params: dict = field(default_factory=dict)


_CORPUS = _Target(_insert_new_sql("content_records"), (_merge_sql("content_records"),))


def design_lock(design_id: object) -> int:
    """The advisory lock every write of a design's records takes (shared), and its first load in
    bulk (``FirstLoad``) holds (exclusive) while it loads."""
    digest = hashlib.sha256(f"write|{design_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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
        for key in sorted({design_lock(row[_DESIGN_INDEX]) for row in unique_rows}):
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (key,))
        return _write_rows(conn, cur, unique_rows, _CORPUS)


def _write_rows(
    conn: psycopg.Connection, cur: psycopg.Cursor, unique_rows: list[Sequence], target: _Target
) -> WriteCounts:
    try:
        with conn.transaction():
            new, updated = _write(cur, unique_rows, target, insert_new=True)
    except psycopg.errors.UniqueViolation:
        # A row no registration knows of (written by hand, or by SQL that bypassed ingest) stood
        # in the way of the plain INSERT; the merge takes it as it is.
        with conn.transaction():
            new, updated = _write(cur, unique_rows, target, insert_new=False)
    return WriteCounts(new=new, updated=updated, unchanged=len(unique_rows) - new - updated)


def _write(cur: psycopg.Cursor, unique_rows: list[Sequence], target: _Target, insert_new: bool) -> tuple[int, int]:
    cur.execute(_STAGING_DDL)
    with cur.copy(f"COPY content_staging ({_COLUMN_LIST}) FROM STDIN") as copy:
        for row in unique_rows:
            copy.write_row(row)
    new = 0
    if insert_new:
        cur.execute(target.insert_new)
        new = cur.rowcount
    else:
        cur.execute(_REGISTER_SQL)
    restored = updated = 0
    if new < len(unique_rows):
        # Items registered before: merged under their registered date. Rows just inserted meet
        # themselves here and stay as they are.
        for merge in target.merges:
            cur.execute(merge, target.params)
            merged_new, merged_updated = cur.fetchone() or (0, 0)
            restored, updated = restored + merged_new, updated + merged_updated
    return new + restored, updated


class BatchWriter:
    """Writes batches on a background thread while the caller prepares the next one.

    A collection alternates between Python work (reading, mapping, ``records.prepare``) and waiting
    for the server to COPY and index a batch; on two cores the two overlap when the write runs on
    its own thread (psycopg releases the GIL while it waits for the server). At most one batch is
    being written while the next fills, so memory stays at two batches. ``flush`` waits for what
    was submitted (a checkpoint must never run ahead of what is stored); a write's error is raised
    there, or at the next ``submit``. ``counts`` (added to as each write returns) keeps what was
    written even when a later write fails.
    """

    def __init__(self, engine: sa.Engine, counts: WriteCounts | None = None):
        self.engine = engine
        self.counts = counts if counts is not None else WriteCounts()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self._pending: Future[WriteCounts] | None = None

    def _write(self, rows: Sequence[Sequence]) -> WriteCounts:
        return write_batch(self.engine, rows)

    def submit(self, rows: Sequence[Sequence]) -> None:
        self.flush()
        self._pending = self._thread.submit(self._write, rows)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.counts += pending.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._thread.shutdown()


#: A collection that expects to read at least this much (``Arena.input_bytes``) loads an empty
#: month in bulk (``FirstLoad``): below it, building every index at the end and swapping the
#: partition costs more than it saves.
FIRST_LOAD_MIN_BYTES = 64 * 2**20


class FirstLoad(BatchWriter):
    """The first load of an empty month: written like ``BatchWriter``, without index maintenance.

    All batches go, in one transaction, into the month's load table, which has only the item
    key's unique constraint (``core.maintenance.partitions``). ``close`` builds the rest of the
    partition's indexes and constraints over the whole month at once, swaps the load table in for
    the empty partition, and commits. So the rows, the constraints, the indexes and their names
    are those the normal path gives, and the month appears whole, at once.

    - Items are registered in ``content_items`` batch by batch, as always; items registered
      before, under another month, are merged into that month's row as always.
    - Each batch is a savepoint: a batch the database refuses fails the collection in one line,
      as with ``BatchWriter``, and the batches around it are still stored.
    - Other writes of the same design wait for the load (``design_lock``); other designs may write
      to the month meanwhile, and their rows are moved into the load table at the swap.
    - A load that dies (a killed process, a lost connection) rolls back whole: nothing of it is
      stored, and the partition is as it was; running the collection again loads it all.
    """

    def __init__(
        self,
        engine: sa.Engine,
        month: str,
        design_id: object,
        counts: WriteCounts | None = None,
        log: Callable[[str], None] = lambda message: None,
    ):
        super().__init__(engine, counts)
        self.month, self.log = month, log
        self.swap = ""
        self._connection = engine.connect()
        self._transaction = self._connection.begin()
        try:
            self._connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": design_lock(design_id)})
            table = partitions.start_load(self._connection, month)
        except BaseException:
            self._abandon()
            raise
        start, end = months.month_bounds(month)
        inside = "i.published_at >= %(start)s AND i.published_at < %(end)s"
        self._target = _Target(
            _insert_new_sql(table),
            (_merge_sql(table, inside), _merge_sql("content_records", f"NOT ({inside})")),
            {"start": start, "end": end},
        )
        self.started = time.perf_counter()

    @classmethod
    def open(
        cls,
        engine: sa.Engine,
        month: str,
        design_id: object,
        counts: WriteCounts | None = None,
        log: Callable[[str], None] = lambda message: None,
    ) -> BatchWriter:
        """A ``FirstLoad`` when ``month``'s partition is empty, else a ``BatchWriter``."""
        with engine.connect() as conn:
            empty = partitions.is_empty(conn, month)
        return cls(engine, month, design_id, counts, log) if empty else BatchWriter(engine, counts)

    def _write(self, rows: Sequence[Sequence]) -> WriteCounts:
        unique_rows = _collapse(rows)
        if not unique_rows:
            return WriteCounts()
        conn = self._connection.connection.driver_connection
        assert isinstance(conn, psycopg.Connection)
        with conn.cursor() as cur:
            counts = _write_rows(conn, cur, unique_rows, self._target)
            # Staging is emptied at commit, and this transaction commits once, at the end (a
            # refused batch's savepoint took its staged rows with it). Out of the savepoint,
            # PostgreSQL truncates the same file in place each time.
            cur.execute("TRUNCATE content_staging")
            return counts

    def close(self) -> None:
        try:
            super().close()
        finally:
            # What was stored before an error is kept, as with BatchWriter: finished and committed.
            try:
                loaded = time.perf_counter() - self.started
                self.swap = partitions.finish_load(self._connection, self.month, self.log)
                self._transaction.commit()
            except BaseException:
                self._abandon()
                raise
            self._connection.close()
            if self.swap == "attached":
                # The next steps plan their queries over this month at once; autovacuum comes later.
                with self.engine.begin() as conn:
                    partitions.analyze(conn, self.month)
            self.log(
                f"{months.partition_name(self.month)}: loaded in bulk ({self.counts.written} records, "
                f"{loaded:.0f} s), indexes built and {self.swap} in {time.perf_counter() - self.started - loaded:.0f} s"
            )

    def _abandon(self) -> None:
        try:
            self._transaction.rollback()
        finally:
            self._connection.close()
