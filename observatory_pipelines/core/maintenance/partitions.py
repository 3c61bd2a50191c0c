"""Monthly partitions of ``content_records``: inspect them and create them ahead of time.

A new month's partition is created as a standalone table, filled with any rows for that month
that were parked in the default partition, and then ATTACHed. ATTACH takes only a SHARE UPDATE
EXCLUSIVE lock on the parent (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE), so
other months stay writable; the default partition is locked for the short move. A CHECK
constraint matching the bounds is added before ATTACH so PostgreSQL can skip re-scanning the
new table. Everything for one month happens in one transaction: a failure leaves no half-moved rows.

A large first load of an empty month (``core.collection.ingest.FirstLoad``) goes into a *load
table* instead, which keeps few indexes up to date while it fills. ``start_load`` creates it, with
the indexes in ``DURING_LOAD``; ``finish_load`` gives it every other index and constraint of the
partition it replaces, then swaps the two (``_swap``). Building an index once over the whole month
is several times cheaper than keeping it up to date row by row, above all a GIN index. Everything happens in the loader's one transaction, so a load that dies
leaves nothing behind: no load table, no half-swapped partition.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from observatory_pipelines.core.models.content import CORPUS_ITEM_CONSTRAINT
from observatory_pipelines.core.platform import months

PARENT_TABLE = "content_records"
DEFAULT_PARTITION = "content_records_default"
# Serialises concurrent ensure runs (daily schedule vs. a manual CLI call) across sessions.
_ADVISORY_LOCK_KEY = 0x0B5E_0001
#: Suffix of a month's load table (``content_records_2026_03_load``).
LOAD_SUFFIX = "_load"
#: The parent's indexes a load keeps up to date as it fills; the others are built at its end. The
#: item key's, because the load's own merges need it; the full text's, because computing a
#: tsvector costs the same row by row as in a build, and the server has a core to spare while
#: Python prepares the rows (1M records: 218 s in all, against 259 s building it at the end too).
#: The metadata GIN costs 1.6 × more kept up than built, more than the spare core absorbs (242 s).
DURING_LOAD = frozenset({CORPUS_ITEM_CONSTRAINT, "idx_content_fulltext"})
#: Memory each index build of a load may use (for the load's transaction only): a GIN index is
#: built in fewer passes when more of its entries fit; more did not help (a 1M-record month's
#: metadata index: 44 s with 512 MB, 50 s with 2 GB).
BUILD_MEMORY = "512MB"
#: The swap needs the parent table to itself for a moment (DETACH takes ACCESS EXCLUSIVE). It
#: waits this long for it per attempt, so that a long export never stalls every other reader
#: queued behind the swap...
SWAP_LOCK_TIMEOUT = "5s"
#: ...and tries this many times before it falls back to inserting the loaded rows into the
#: partition as it is (slower, the same result).
SWAP_ATTEMPTS = 6
_BUSY = {"55P03", "40P01"}  # lock_not_available, deadlock_detected


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
    if name != DEFAULT_PARTITION and months.month_of_partition(name.removesuffix(LOAD_SUFFIX)) is None:
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


# --- the first load of an empty month ---------------------------------------------------------------


def load_table(month: str) -> str:
    return months.partition_name(month) + LOAD_SUFFIX


def is_empty(conn: sa.Connection, month: str) -> bool:
    """Whether ``month`` has its own partition and that partition holds no row (of any design)."""
    if month not in existing_months(conn):
        return False
    table = _quote(conn, months.partition_name(month))
    return conn.execute(sa.text(f"SELECT NOT EXISTS (SELECT FROM {table})")).scalar_one()


def _indexes(conn: sa.Connection, table: str) -> Sequence[sa.Row]:
    """``table``'s indexes: name, definition, the kind of constraint each backs (p, u or None), and
    the parent table's index it is attached to."""
    return conn.execute(
        sa.text(
            """
            SELECT c.relname AS name, pg_get_indexdef(c.oid) AS definition, con.contype AS backs,
                   parent.relname AS parent
            FROM pg_index x
            JOIN pg_class c ON c.oid = x.indexrelid
            LEFT JOIN pg_constraint con ON con.conindid = c.oid AND con.conrelid = x.indrelid
            LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
            LEFT JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE x.indrelid = CAST(:table AS regclass)
            ORDER BY c.relname
            """
        ),
        {"table": table},
    ).all()


def _constraints(conn: sa.Connection, table: str, kinds: str) -> Sequence[sa.Row]:
    return conn.execute(
        sa.text(
            """
            SELECT conname AS name, contype AS kind, pg_get_constraintdef(oid) AS definition
            FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) AND contype = ANY(:kinds)
            ORDER BY conname
            """
        ),
        {"table": table, "kinds": list(kinds)},
    ).all()


def _temporary_name(load: str, index: str) -> str:
    # Named after the partition's index it copies, so the swap finds each whatever was added since.
    return f"{load}_{hashlib.sha256(index.encode()).hexdigest()[:12]}"


def _build_like(conn: sa.Connection, month: str, during_load: bool) -> None:
    """Build on the load table the partition's indexes kept up during the load (``during_load``) or
    the others, under temporary names (the partition still holds theirs), and the constraints
    they back."""
    partition, load = months.partition_name(month), load_table(month)
    quote = conn.dialect.identifier_preparer.quote
    for index in _indexes(conn, partition):
        if (index.parent in DURING_LOAD) != during_load:
            continue
        # pg_get_indexdef: "CREATE [UNIQUE] INDEX <name> ON <schema>.<partition> USING <method> (...)".
        head = re.match(
            rf"CREATE (UNIQUE )?INDEX {re.escape(quote(index.name))} ON \S+\.{partition} USING ", index.definition
        )
        if head is None:
            raise ValueError(f"unexpected definition of index {index.name!r}: {index.definition[:120]}")
        temporary = _temporary_name(load, index.name)
        conn.execute(
            sa.text(
                f"CREATE {head.group(1) or ''}INDEX {temporary} ON {_quote(conn, load)} USING "
                + index.definition[head.end() :]
            )
        )
        if index.backs:
            kind = "PRIMARY KEY" if index.backs == "p" else "UNIQUE"
            conn.execute(
                sa.text(f"ALTER TABLE {_quote(conn, load)} ADD CONSTRAINT {temporary} {kind} USING INDEX {temporary}")
            )


def start_load(conn: sa.Connection, month: str) -> str:
    """Create ``month``'s load table inside the caller's transaction and return its name. It has
    the partition's columns and defaults, and the indexes kept up during the load."""
    load = _quote(conn, load_table(month))
    conn.execute(sa.text(f"CREATE TABLE {load} (LIKE {PARENT_TABLE} INCLUDING DEFAULTS INCLUDING STORAGE)"))
    _build_like(conn, month, during_load=True)
    return load_table(month)


def finish_load(conn: sa.Connection, month: str, log: Callable[[str], None] = lambda message: None) -> str:
    """Give the load table the rest of the partition's indexes and constraints, then put it in the
    partition's place; inside the caller's transaction. Returns ``"attached"``, or ``"inserted"``
    when the parent table stayed busy and the rows went into the partition as it is instead."""
    partition, load = months.partition_name(month), load_table(month)
    start, end = months.month_bounds(month)
    bounds = f"{load}_bounds"
    conn.execute(sa.text("SELECT set_config('maintenance_work_mem', :memory, true)"), {"memory": BUILD_MEMORY})
    _build_like(conn, month, during_load=False)
    for constraint in _constraints(conn, partition, "fc"):
        conn.execute(
            sa.text(
                f"ALTER TABLE {_quote(conn, load)} ADD CONSTRAINT {_quote_constraint(conn, constraint.name)} {constraint.definition}"
            )
        )
    # Checked now, outside the swap's lock, so that ATTACH need not scan the month again.
    conn.execute(
        sa.text(
            f"ALTER TABLE {_quote(conn, load)} ADD CONSTRAINT {bounds} CHECK "
            f"(published_at IS NOT NULL AND published_at >= '{start:%Y-%m-%d %H:%M:%S}+00' "
            f"AND published_at < '{end:%Y-%m-%d %H:%M:%S}+00')"
        )
    )
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with conn.begin_nested():
                _swap(conn, month)
            return "attached"
        except sa.exc.DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) not in _BUSY:
                raise
            log(f"{partition} was busy (attempt {attempt} of {SWAP_ATTEMPTS}); trying again")
            time.sleep(min(2**attempt, 30) / 10)
    columns = _columns(conn)
    conn.execute(sa.text(f"INSERT INTO {PARENT_TABLE} ({columns}) SELECT {columns} FROM {_quote(conn, load)}"))
    conn.execute(sa.text(f"DROP TABLE {_quote(conn, load)}"))
    return "inserted"


def analyze(conn: sa.Connection, month: str) -> None:
    conn.execute(sa.text(f"ANALYZE {_quote(conn, months.partition_name(month))}"))


def _quote_constraint(conn: sa.Connection, name: str) -> str:
    # Constraint names come from the partition's own catalog entries; only ours look like this.
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise ValueError(f"refusing to use constraint name {name!r}")
    return conn.dialect.identifier_preparer.quote(name)


def _columns(conn: sa.Connection) -> str:
    names = conn.execute(
        sa.text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:parent AS regclass) AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        ),
        {"parent": PARENT_TABLE},
    ).scalars()
    return ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)


def _swap(conn: sa.Connection, month: str) -> None:
    """Detach and drop the (empty, or written to by other designs meanwhile) partition, move its
    rows into the load table, give the load table the partition's names, and attach it."""
    partition, load = months.partition_name(month), load_table(month)
    start, end = months.month_bounds(month)
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(sa.text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": SWAP_LOCK_TIMEOUT})
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    names = [index.name for index in _indexes(conn, partition)]
    built = set(
        conn.execute(
            sa.text("SELECT relname FROM pg_class WHERE relname LIKE :load"), {"load": f"{load}\\_%"}
        ).scalars()
    )
    conn.execute(sa.text(f"ALTER TABLE {PARENT_TABLE} DETACH PARTITION {_quote(conn, partition)}"))
    columns = _columns(conn)
    # Other designs may have collected this month while the load ran; their rows come along.
    conn.execute(
        sa.text(f"INSERT INTO {_quote(conn, load)} ({columns}) SELECT {columns} FROM {_quote(conn, partition)}")
    )
    conn.execute(sa.text(f"DROP TABLE {_quote(conn, partition)}"))
    for name in names:
        # An index created on the parent during the load is not here: ATTACH builds it.
        if _temporary_name(load, name) in built:
            conn.execute(sa.text(f"ALTER INDEX {_temporary_name(load, name)} RENAME TO {quote(name)}"))
    conn.execute(sa.text(f"ALTER TABLE {_quote(conn, load)} RENAME TO {_quote(conn, partition)}"))
    conn.execute(
        sa.text(
            f"ALTER TABLE {PARENT_TABLE} ATTACH PARTITION {_quote(conn, partition)} "
            f"FOR VALUES FROM ('{start:%Y-%m-%d %H:%M:%S}+00') TO ('{end:%Y-%m-%d %H:%M:%S}+00')"
        )
    )
    conn.execute(sa.text(f"ALTER TABLE {_quote(conn, partition)} DROP CONSTRAINT {quote(load + '_bounds')}"))
    conn.execute(sa.text("SELECT set_config('lock_timeout', '0', true)"))
