"""Content retention: drop whole monthly partitions of ``content_records`` past the retention,
but only what a verified backup still holds.

A partition ``content_records_YYYY_MM`` is *expired* when its month ends (first day of the next
month, 00:00 UTC) on or before ``now - CONTENT_RETENTION_DAYS`` (default 730). An expired
partition is dropped when one of these holds:

- it is empty: there is nothing a backup could hold;
- the newest complete backup (``core.backup.list_backups``) was started after the partition's
  last write (the newest ``collected_at`` of its rows), passes ``verify_backup``, and its dump
  holds exactly as many rows of that partition as the database does.

The row count catches what the timestamps cannot: a row whose ``collected_at`` precedes the
backup but whose transaction committed after pg_dump took its snapshot, and a backup of another
database sharing the bucket. Only the newest complete backup is considered, and it is verified at
most once per plan (one download that both verifies it and counts its rows). When it is damaged,
nothing that needs it is dropped, and no older backup is tried instead: a damaged backup means the
store itself needs checking first (docs/operations/backup_restore.md).

What this cannot see: updates in place leave ``collected_at`` alone (engagement counts refreshed by
a re-collection, duplicate marks, actor merges re-pointing ``author_id``). When such an update to an
old month comes after the newest backup, the partition can be dropped with the backup holding the
rows as they were before it.

Never dropped: the default partition, any table that is not a partition of ``content_records``
(checked in ``pg_inherits`` right before dropping), any table whose name is not a monthly
partition's, and the current or a future month. A partition is DETACHed and then DROPped, in one
transaction per partition, after its row count and last write have been checked again under a lock
that keeps writers out: a partition written to since the plan was made is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from observatory_pipelines.core.maintenance import backup, partitions
from observatory_pipelines.core.maintenance.backup import BackupInfo
from observatory_pipelines.core.platform import markdown, months, settings
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.storage import ObjectStore

#: How long dropping one partition waits for its locks before leaving it for the next run. Waiting
#: longer would queue every query on content_records behind the ACCESS EXCLUSIVE lock DETACH needs.
LOCK_TIMEOUT = "10s"

DROP = "drop"
KEEP = "keep"

# SQLSTATEs after which a partition is left for the next run: a lock wait timed out, or PostgreSQL
# broke a deadlock with a session writing to that month.
_BUSY = {"55P03", "40P01"}


# --- settings -------------------------------------------------------------------------------------


def resolve_retention_days(value: int | str | None = None) -> int:
    """The content retention in days: ``value``, else ``CONTENT_RETENTION_DAYS``, else 730."""
    if value is None:
        return settings.current().content_retention_days
    return settings.parse_days(settings.CONTENT_RETENTION_DAYS.name, value)


retention_cutoff = backup.retention_cutoff


def first_retained_month(*, retention_days: int | str | None = None, now: datetime | None = None) -> str:
    """The oldest month retention keeps (``YYYY-MM``): creating partitions for earlier months
    would only give retention empty tables to drop again."""
    return months.month_key(
        retention_cutoff(months.utc(now, "retention times"), resolve_retention_days(retention_days))
    )


def default_first_month() -> str:
    """Where partition upkeep starts by default: the schema's first month, or the oldest month
    retention keeps if that is later."""
    return max(months.FIRST_MONTH, first_retained_month())


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionDecision:
    name: str
    month: str | None  # None for the default partition
    expired: bool
    action: str  # DROP or KEEP
    reason: str
    rows: int | None = None  # counted for expired partitions only (a full scan each)
    last_write: datetime | None = None  # newest collected_at; None when empty or not examined

    @property
    def drop(self) -> bool:
        return self.action == DROP


@dataclass
class RetentionPlan:
    now: datetime
    retention_days: int
    cutoff: datetime
    store: str
    partitions: list[PartitionDecision] = field(default_factory=list)
    backup: BackupInfo | None = None  # the newest complete backup, when one was found
    backup_verified: bool = False  # True only when it was needed, downloaded and passed
    backup_problem: str | None = None  # why no backup could be used, when that mattered

    @property
    def to_drop(self) -> list[PartitionDecision]:
        return [p for p in self.partitions if p.drop]

    @property
    def expired_kept(self) -> list[PartitionDecision]:
        """Expired partitions the plan keeps: each one is a warning."""
        return [p for p in self.partitions if p.expired and not p.drop]

    @property
    def warnings(self) -> list[str]:
        return [f"{p.name} is past the retention but kept: {p.reason}" for p in self.expired_kept]


@dataclass
class RetentionResult:
    dropped: list[PartitionDecision] = field(default_factory=list)
    #: Partitions the plan would drop but that were kept after all, with the reason.
    skipped: list[PartitionDecision] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [f"{p.name} was not dropped: {p.reason}" for p in self.skipped]


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _partition_usage(conn: sa.Connection, table: str) -> tuple[int, datetime | None]:
    """``(rows, newest collected_at)`` of a partition, ``table`` quoted by ``_quoted``."""
    rows, last_write = conn.execute(sa.text(f"SELECT count(*), max(collected_at) FROM {table}")).one()
    return rows, last_write


def _quoted(conn: sa.Connection, name: str, schema: str | None = None) -> str:
    """A monthly partition's name, quoted; anything else is refused before it reaches SQL."""
    if months.month_of_partition(name) is None:
        raise ValueError(f"refusing to use {name!r} as a monthly partition of {partitions.PARENT_TABLE}")
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def plan_retention(
    engine: sa.Engine,
    store: ObjectStore,
    *,
    retention_days: int | str | None = None,
    now: datetime | None = None,
) -> RetentionPlan:
    """Decide, for every partition of ``content_records``, whether retention drops it. Changes nothing.

    Expired partitions with rows are counted (a scan each); the newest complete backup is
    downloaded and verified only when one of them could be dropped with it.
    """
    days = resolve_retention_days(retention_days)
    now = months.utc(now, "retention times")
    cutoff = retention_cutoff(now, days)
    plan = RetentionPlan(now=now, retention_days=days, cutoff=cutoff, store=store.describe())
    current = months.current_month(now)
    with engine.connect() as conn:
        found = partitions.list_partitions(conn)
        usage = {}
        for part in found:
            if part.month and part.month < current and months.month_bounds(part.month)[1] <= cutoff:
                usage[part.name] = _partition_usage(conn, _quoted(conn, part.name))

    waiting: list[tuple[str, int, datetime]] = []  # expired partitions that need the backup
    for part in found:
        if part.month is None:
            plan.partitions.append(
                PartitionDecision(part.name, None, False, KEEP, "the default partition is never dropped")
            )
        elif part.name not in usage:
            plan.partitions.append(
                PartitionDecision(
                    part.name,
                    part.month,
                    False,
                    KEEP,
                    "current or future month" if part.month >= current else _within(part.month, days),
                )
            )
        else:
            rows, last_write = usage[part.name]
            if rows == 0:
                plan.partitions.append(
                    PartitionDecision(part.name, part.month, True, DROP, "empty: no backup needed", rows=0)
                )
            else:
                assert last_write is not None  # collected_at is NOT NULL, so a partition with rows has a newest
                waiting.append((part.name, rows, last_write))
                plan.partitions.append(
                    PartitionDecision(part.name, part.month, True, KEEP, "", rows=rows, last_write=last_write)
                )
    if waiting:
        decided = _decide_with_backup(plan, store, waiting)
        plan.partitions = [decided.get(p.name, p) for p in plan.partitions]
    return plan


def _within(month: str, days: int) -> str:
    try:
        return f"within the retention (expires {months.month_bounds(month)[1] + timedelta(days=days):%Y-%m-%d})"
    except OverflowError:
        return "within the retention"


def _decide_with_backup(
    plan: RetentionPlan, store: ObjectStore, waiting: list[tuple[str, int, datetime]]
) -> dict[str, PartitionDecision]:
    def keep_all(reason: str) -> dict[str, PartitionDecision]:
        plan.backup_problem = reason
        return {name: _expired(name, rows, last, KEEP, reason) for name, rows, last in waiting}

    try:
        complete = [b for b in backup.list_backups(store) if b.complete]
    except ObservatoryError as err:
        return keep_all(f"the backups in {plan.store} could not be listed: {err}")
    if not complete:
        return keep_all(f"no complete backup in {plan.store}; make one with `observatory backup`")
    newest = plan.backup = complete[0]

    decided: dict[str, PartitionDecision] = {}
    covered = []
    for name, rows, last in waiting:
        if newest.created > last:
            covered.append((name, rows, last))
        else:
            decided[name] = _expired(
                name,
                rows,
                last,
                KEEP,
                f"the newest backup, {newest.key} ({_when(newest.created)}), is older than its last write "
                f"({_when(last)})",
            )
    if not covered:
        return decided
    try:
        counts = verified_row_counts(store, newest.key)
    except ObservatoryError as err:
        plan.backup_problem = f"the newest backup could not be verified: {err}"
        decided.update({name: _expired(name, rows, last, KEEP, plan.backup_problem) for name, rows, last in covered})
        return decided
    plan.backup_verified = True
    for name, rows, last in covered:
        held = counts.get(name, 0)
        if held == rows:
            decided[name] = _expired(name, rows, last, DROP, f"{rows} rows held by verified backup {newest.key}")
        else:
            decided[name] = _expired(
                name,
                rows,
                last,
                KEEP,
                f"the verified backup {newest.key} holds {held} rows of it, the database {rows} "
                "(written after the backup began); a later backup will cover it",
            )
    return decided


def _expired(name: str, rows: int, last_write: datetime | None, action: str, reason: str) -> PartitionDecision:
    return PartitionDecision(name, months.month_of_partition(name), True, action, reason, rows, last_write)


# --- what a backup holds --------------------------------------------------------------------------


class _CopyRowCounter:
    """Counts the data rows of each table in a plain-SQL dump, fed its SQL in chunks.

    pg_dump writes each table's rows between ``COPY schema.table (columns) FROM stdin;`` and
    ``\\.``, one row per line (newlines inside values are escaped), and dumps every partition
    on its own.
    """

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._partial = b""
        self._table: str | None = None

    def feed(self, sql: bytes) -> None:
        lines = (self._partial + sql).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if self._table is not None:
                if line == b"\\.":
                    self._table = None
                else:
                    self.counts[self._table] = self.counts.get(self._table, 0) + 1
            elif line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
                target = line[5:].split(b" (", 1)[0].split(b" ", 1)[0]
                self._table = target.rsplit(b".", 1)[-1].strip(b'"').decode("utf-8", errors="replace")


def verified_row_counts(store: ObjectStore, key: str) -> dict[str, int]:
    """Rows per table in backup ``key``, after ``verify_backup`` passed on the same download."""
    counter = _CopyRowCounter()
    backup.verify_backup(store, key, on_sql=counter.feed)
    return counter.counts


# --- dropping -------------------------------------------------------------------------------------


def _live_partition_schema(conn: sa.Connection, name: str) -> str | None:
    """The schema of ``name`` if it is a non-default partition of content_records, else None."""
    return conn.execute(
        sa.text(
            """
            SELECT n.nspname
            FROM pg_inherits i
            JOIN pg_class child ON child.oid = i.inhrelid
            JOIN pg_class parent ON parent.oid = i.inhparent
            JOIN pg_namespace n ON n.oid = child.relnamespace
            JOIN pg_namespace pn ON pn.oid = parent.relnamespace
            WHERE parent.relname = :parent AND pn.nspname = current_schema()
              AND child.relname = :name AND n.nspname = pn.nspname
              AND pg_get_expr(child.relpartbound, child.oid) <> 'DEFAULT'
            """
        ),
        {"parent": partitions.PARENT_TABLE, "name": name},
    ).scalar()


def _drop_one(conn: sa.Connection, plan: RetentionPlan, planned: PartitionDecision) -> str | None:
    """Detach and drop one partition inside the caller's transaction; a reason when it is kept."""
    month = months.month_of_partition(planned.name)
    if month is None or month >= months.current_month(plan.now) or months.month_bounds(month)[1] > plan.cutoff:
        raise ValueError(f"refusing to drop {planned.name!r}: not an expired monthly partition")
    conn.execute(sa.text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": LOCK_TIMEOUT})
    schema = _live_partition_schema(conn, planned.name)
    if schema is None:
        return f"it is no longer a partition of {partitions.PARENT_TABLE}"
    table = _quoted(conn, planned.name, schema)
    parent = f"{conn.dialect.identifier_preparer.quote(schema)}.{partitions.PARENT_TABLE}"
    # SHARE keeps writers out of this month while readers carry on, so the check below still
    # holds when DETACH runs.
    conn.execute(sa.text(f"LOCK TABLE {table} IN SHARE MODE"))
    rows, last_write = _partition_usage(conn, table)
    if (rows, last_write) != (planned.rows, planned.last_write):
        return (
            f"it was written to after the plan was made ({rows} rows now, {planned.rows} planned); "
            "the next run decides again"
        )
    conn.execute(sa.text(f"ALTER TABLE {parent} DETACH PARTITION {table}"))
    conn.execute(sa.text(f"DROP TABLE {table}"))
    start, end = months.month_bounds(month)
    conn.execute(
        sa.text("DELETE FROM content_items WHERE published_at >= :start AND published_at < :end"),
        {"start": start, "end": end},
    )
    return None


def apply_retention(engine: sa.Engine, plan: RetentionPlan) -> RetentionResult:
    """Drop what ``plan`` says to drop, one transaction per partition, each checked again first."""
    result = RetentionResult()
    for planned in plan.to_drop:
        try:
            with engine.connect() as conn, conn.begin() as transaction:
                kept = _drop_one(conn, plan, planned)
                if kept:
                    transaction.rollback()  # releases the lock; nothing else was changed
        except sa.exc.DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) not in _BUSY:
                raise
            kept = f"it was busy (locks not granted within {LOCK_TIMEOUT}); the next run tries again"
        if kept:
            result.skipped.append(replace(planned, action=KEEP, reason=kept))
        else:
            result.dropped.append(planned)
    return result


# --- reporting ------------------------------------------------------------------------------------


def decision_label(decision: PartitionDecision, *, applied: RetentionResult | None, dry_run: bool) -> str:
    skipped = {p.name: p for p in applied.skipped} if applied else {}
    if decision.name in skipped:
        return f"kept: {skipped[decision.name].reason}"
    if decision.drop:
        return ("would drop" if dry_run else "dropped") + f" ({decision.reason})"
    return f"kept: {decision.reason}"


def markdown_table(plan: RetentionPlan, *, applied: RetentionResult | None = None, dry_run: bool = False) -> str:
    """Every partition with its month, rows, last write and what retention did (or would do)."""
    return markdown.table(
        ["partition", "month", "rows", "last write", "decision"],
        [
            (
                p.name,
                p.month or "default",
                p.rows,
                _when(p.last_write) if p.last_write else None,
                decision_label(p, applied=applied, dry_run=dry_run),
            )
            for p in plan.partitions
        ],
    )
