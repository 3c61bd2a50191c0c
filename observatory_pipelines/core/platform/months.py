"""Calendar months: the one partitioning unit shared by PostgreSQL and Dagster.

A month key is ``YYYY-MM``. Its PostgreSQL partition is ``content_records_YYYY_MM`` and covers
``[first day 00:00 UTC, first day of next month 00:00 UTC)``. The Dagster monthly partitions use
the same keys, so a partition key names a table without any lookup.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

#: The first month the schema was created with (migration 001's first partition).
FIRST_MONTH = "2026-02"

_MONTH_KEY = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_PARTITION_NAME = re.compile(r"^content_records_(\d{4})_(0[1-9]|1[0-2])$")


def parse_month(key: str) -> date:
    """``"2026-03"`` → ``date(2026, 3, 1)``; anything else is a ``ValueError`` that names the format."""
    match = _MONTH_KEY.match(key.strip()) if isinstance(key, str) else None
    if not match:
        raise ValueError(f"'{key}' is not a month; write it as YYYY-MM, e.g. 2026-03")
    return date(int(match.group(1)), int(match.group(2)), 1)


def month_key(value: date | datetime) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc) if value.tzinfo else value
    return f"{value.year:04d}-{value.month:02d}"


def add_months(key: str, n: int) -> str:
    first = parse_month(key)
    index = first.year * 12 + (first.month - 1) + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Every month key from ``first`` to ``last`` inclusive (empty when last < first)."""
    start, end = parse_month(first), parse_month(last)
    count = (end.year - start.year) * 12 + (end.month - start.month)
    return [add_months(first, i) for i in range(count + 1)]


def month_bounds(key: str) -> tuple[datetime, datetime]:
    """The month's ``[start, end)`` in UTC."""
    start = parse_month(key)
    end = parse_month(add_months(key, 1))
    return (
        datetime(start.year, start.month, 1, tzinfo=timezone.utc),
        datetime(end.year, end.month, 1, tzinfo=timezone.utc),
    )


def partition_name(key: str) -> str:
    """``"2026-03"`` → ``"content_records_2026_03"``."""
    first = parse_month(key)
    return f"content_records_{first.year:04d}_{first.month:02d}"


def month_of_partition(name: str) -> str | None:
    """The month key of a monthly partition's table name; None for any other table (the default)."""
    match = _PARTITION_NAME.match(name)
    return f"{match.group(1)}-{match.group(2)}" if match else None


def utc(when: datetime | None = None, what: str = "times") -> datetime:
    """``when`` (now when None) in UTC; a naive time is refused, since its zone would be a guess."""
    when = when or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return when.astimezone(timezone.utc)


def current_month(now: datetime | None = None) -> str:
    return month_key(now or datetime.now(timezone.utc))
