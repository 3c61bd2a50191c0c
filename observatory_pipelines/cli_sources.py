"""``observatory sources``: each source's yield history (feeds, queries, files), newest first.

Wired into ``cli.build_parser`` through ``register(sub, add)``. The history is what the silent-dropout
check reads (docs/collection.md, "Yield history and silent dropouts").
"""

from __future__ import annotations

import argparse

from observatory_pipelines.core.platform.database import migrated_engine


def cmd_sources(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection import yields

    with migrated_engine() as engine, engine.connect() as conn:
        history = yields.source_history(conn, args.design, args.arena, args.source, limit=args.limit)
    if not history:
        print(f"no yields recorded for design '{args.design}' yet; they are written when an arena is collected")
        return 0
    table = [("collected (UTC)", "arena", "month", "items", "filtered", "rejected", "task", "source")] + [
        (
            f"{h.collected_at:%Y-%m-%d %H:%M}",
            h.arena,
            h.month,
            str(h.items),
            str(h.filtered),
            str(h.rejected),
            h.task_status,
            h.source,
        )
        for h in history
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1], flush=True)
    return 0


def register(sub, add) -> None:
    """Add ``sources`` to the ``observatory`` parser (``add`` is build_parser's helper)."""
    from observatory_pipelines.cli import _slug_arg
    from observatory_pipelines.core.collection import yields

    p = add(sub, "sources", cmd_sources, "show what each source (feed, query, file) yielded, collection by collection")
    p.add_argument("--design", type=_slug_arg, required=True, metavar="SLUG", help="the query design")
    p.add_argument("--arena", metavar="ARENA", help="one arena only, e.g. rss_feeds")
    p.add_argument("--source", metavar="SOURCE", help="one source only: a feed URL, a query, a file name")
    p.add_argument(
        "--limit", type=int, default=yields.HISTORY_LIMIT, metavar="N", help="the newest N rows (default %(default)s)"
    )
