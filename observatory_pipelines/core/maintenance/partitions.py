"""Monthly partitions of ``content_records``: inspect them and create them ahead of time.

A new month's partition is created as a standalone table, filled with any rows for that month
that were parked in the default partition, and then ATTACHed. ATTACH takes only a SHARE UPDATE
EXCLUSIVE lock on the parent (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE), so
other months stay writable; the default partition is locked for the short move. A CHECK
constraint matching the bounds is added before ATTACH so PostgreSQL can skip re-scanning the
new table. Everything for one month happens in one transaction: a failure leaves no half-moved rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from observatory_pipelines.core.platform import months

PARENT_TABLE = "content_records"
DEFAULT_PARTITION = "content_records_default"
# Serialises concurrent ensure runs (daily schedule vs. a manual CLI call) across sessions.
_ADVISORY_LOCK_KEY = 0x0B5E_0001


@dataclass(frozen=True)
class PartitionInfo:
    name: str
    month: str | None  # None for the default partition
    bound: str


@dataclass
class EnsureResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    moved_rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_moved(self) -> int:
        return sum(self.moved_rows.values())


def list_partitions(conn: sa.Connection) -> list[PartitionInfo]:
    rows = conn.execute(
        sa.text(
            """
            SELECT child.relname AS name, pg_get_expr(child.relpartbound, child.oid) AS bound
            FROM pg_inherits i
            JOIN pg_class parent ON parent.oid = i.inhparent
            JOIN pg_class child ON child.oid = i.inhrelid
            JOIN pg_namespace ns ON ns.oid = parent.relnamespace
            WHERE parent.relname = :parent AND ns.nspname = current_schema()
            ORDER BY child.relname
            """
        ),
        {"parent": PARENT_TABLE},
    ).all()
    return [PartitionInfo(r.name, months.month_of_partition(r.name), r.bound) for r in rows]


def existing_months(conn: sa.Connection) -> set[str]:
    return {p.month for p in list_partitions(conn) if p.month}


def default_partition_months(conn: sa.Connection) -> dict[str, int]:
    """Rows parked in the default partition, counted per UTC month."""
    rows = conn.execute(
        sa.text(
            f"""
            SELECT to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*) AS n
            FROM {DEFAULT_PARTITION} GROUP BY 1 ORDER BY 1
            """
        )
    ).all()
    return {r.month: r.n for r in rows}


def _quote(conn: sa.Connection, name: str) -> str:
    # Only our own names ever get here: partition names derived from validated month keys.
    if name != DEFAULT_PARTITION and months.month_of_partition(name) is None:
        raise ValueError(f"refusing to use '{name}' as a partition name")
    return conn.dialect.identifier_preparer.quote(name)


def create_month_partition(conn: sa.Connection, month: str) -> int:
    """Create and attach ``month``'s partition, moving its rows out of the default; return rows moved.

    Must run inside a transaction on ``conn``; the caller commits.
    """
    start, end = months.month_bounds(month)
    table = _quote(conn, months.partition_name(month))
    default = _quote(conn, DEFAULT_PARTITION)
    # Literals with an explicit +00 so the bounds never depend on the session's TimeZone.
    lo = start.strftime("%Y-%m-%d %H:%M:%S+00")
    hi = end.strftime("%Y-%m-%d %H:%M:%S+00")
    check_name = conn.dialect.identifier_preparer.quote(f"{months.partition_name(month)}_bounds")

    conn.execute(sa.text(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE"))
    conn.execute(sa.text(f"CREATE TABLE {table} (LIKE {PARENT_TABLE} INCLUDING DEFAULTS INCLUDING STORAGE)"))
    moved = conn.execute(
        sa.text(
            f"""
            WITH moved AS (
                DELETE FROM {default}
                WHERE published_at >= CAST(:lo AS timestamptz) AND published_at < CAST(:hi AS timestamptz)
                RETURNING *
            )
            INSERT INTO {table} SELECT * FROM moved
            """
        ),
        {"lo": lo, "hi": hi},
    ).rowcount
    conn.execute(
        sa.text(
            f"ALTER TABLE {table} ADD CONSTRAINT {check_name} "
            f"CHECK (published_at IS NOT NULL AND published_at >= '{lo}' AND published_at < '{hi}')"
        )
    )
    conn.execute(sa.text(f"ALTER TABLE {PARENT_TABLE} ATTACH PARTITION {table} FOR VALUES FROM ('{lo}') TO ('{hi}')"))
    conn.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT {check_name}"))
    return max(moved or 0, 0)


def ensure_partitions(
    engine: sa.Engine,
    first_month: str = months.FIRST_MONTH,
    months_ahead: int = 3,
    now: datetime | None = None,
) -> EnsureResult:
    """Make sure every month from ``first_month`` to ``months_ahead`` past the current one has a
    partition. Idempotent: existing partitions are left alone. Months are handled one
    transaction each, so a failure keeps the months done before it.
    """
    if months_ahead < 0:
        raise ValueError(f"months ahead must be 0 or more, not {months_ahead}")
    last = months.add_months(months.current_month(now), months_ahead)
    wanted = months.month_range(first_month, last)
    # Months whose rows already sit in the default partition get a partition too,
    # even before first_month: otherwise they would stay parked forever.
    with engine.connect() as conn:
        parked = set(default_partition_months(conn))
    result = EnsureResult()
    for month in sorted(set(wanted) | parked):
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            if month in existing_months(conn):
                result.existing.append(month)
                continue
            moved = create_month_partition(conn, month)
            result.created.append(month)
            if moved:
                result.moved_rows[month] = moved
    return result


@dataclass(frozen=True)
class PartitionHealth:
    next_month: str
    next_month_exists: bool
    default_rows: dict[str, int]

    @property
    def healthy(self) -> bool:
        return self.next_month_exists and not self.default_rows


def partition_health(engine: sa.Engine, now: datetime | None = None) -> PartitionHealth:
    next_month = months.add_months(months.current_month(now), 1)
    with engine.connect() as conn:
        return PartitionHealth(
            next_month=next_month,
            next_month_exists=next_month in existing_months(conn),
            default_rows=default_partition_months(conn),
        )
