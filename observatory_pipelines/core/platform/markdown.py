"""Markdown tables for the Dagster UI's metadata: one way to write a cell, one way to cut a table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def shorten(value: object, limit: int) -> str:
    """``value`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell(value: object) -> str:
    """A cell's text: empty for None, floats to two decimals, lists comma-joined, one line, and
    ``|`` escaped so it cannot end the cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:,.2f}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, limit: int | None = None, rest: str = "") -> str:
    """A table of ``rows``; past ``limit`` rows, a line saying how many more there are ``rest``
    (e.g. "in collection_runs")."""
    rows = list(rows)
    shown = rows if limit is None else rows[:limit]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown]
    if len(rows) > len(shown):
        lines.append(f"\n{len(rows) - len(shown)} more {rest}".rstrip())
    return "\n".join(lines)
