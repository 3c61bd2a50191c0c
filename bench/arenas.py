"""Arena mapping benchmark: each arena's parse + map against the shared ``records.prepare``.

    .venv/bin/python -m bench.arenas [--seconds 1.0]

For each arena, its fixture responses in ``tests/fixtures/<arena>/`` (read once, as bytes) go
through the arena's real path from response body to ``CollectedItem``: JSON decoding (or HTML /
feed parsing) and the public parse and map functions the arena itself calls. Then the items it
produced go through ``records.prepare``, the step every arena shares (validation, dates, term
matching, pseudonyms, interactions, hashes). Each is repeated until it has run ``--seconds``.

Reported per arena: records/s for parse + map, records/s for ``records.prepare`` of the same
items, and parse + map ÷ prepare (prepare's time ÷ parse + map's time; the shared step is the
limit measured in the same run, so a ratio well under 1 means the arena's mapper is slower than
the conversion every record pays anyway). The fixtures are small and the figures are per record,
so they say which mapper is slow, not how fast a collection is: collections wait on the network.
No database is used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from bench import common
from observatory_pipelines.core.collection import records
from observatory_pipelines.core.collection.arenas import (
    bluesky,
    gdelt,
    mastodon,
    reddit,
    rss_feeds,
    telegram,
    wikipedia,
    youtube,
)
from observatory_pipelines.core.collection.arenas.base import CollectedItem, QuerySpec, Rejected
from observatory_pipelines.core.collection.tiers import Tier

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
# Far enough apart that no fixture's item is filtered as out of window: prepare is timed in full.
WINDOW = (records.EARLIEST_PLAUSIBLE, datetime(2100, 1, 1, tzinfo=timezone.utc))
RSS_SPEC = QuerySpec("bench", tuple(common.TERMS), (), WINDOW[0], WINDOW[1], Tier.FREE, {})

Parser = Callable[[bytes], list]


def _bluesky(body: bytes) -> list:
    return bluesky.parse_search_page(json.loads(body), "bench")[0]


def _mastodon(body: bytes) -> list:
    return mastodon.parse_statuses(json.loads(body), "mastodon.social", "bench")


def _reddit(body: bytes) -> list:
    # The arena keeps only the submissions of a search listing (reddit.RedditArena).
    children, _ = reddit.parse_listing(json.loads(body))
    return [reddit.submission_item(data, "bench") for kind, data in children if kind == "t3"]


def _youtube(body: bytes) -> list:
    return [youtube.video_item(video, "bench") for video in json.loads(body)["items"]]


def _telegram(body: bytes) -> list:
    return telegram.parse_preview(body, "bench").messages


def _wikipedia(body: bytes) -> list:
    return wikipedia.parse_revisions(json.loads(body), "da.wikipedia.org", "bench")[0]


def _gdelt(body: bytes) -> list:
    return gdelt.parse_artlist(body, "application/json", "bench")


def _rss(body: bytes) -> list:
    return list(rss_feeds.parse_feed(body, "https://bench.example/feed", RSS_SPEC))


#: arena → (fixture folder, the responses one collection would read, parse + map of one response)
ARENAS: dict[str, tuple[str, tuple[str, ...], Parser]] = {
    "bluesky": ("bluesky", ("search_klima_page1.json", "search_klima_page2.json", "search_klima_page3.json"), _bluesky),
    "mastodon": ("mastodon", ("tag_klima_page1.json", "tag_klima_page2.json", "norden_tag_klima.json"), _mastodon),
    "reddit": ("reddit", ("search_page1.json", "search_page2.json", "user_submitted.json"), _reddit),
    "youtube": ("youtube", ("videos_page1.json", "videos_page2.json"), _youtube),
    "telegram": ("telegram", ("channel_page1.html", "channel_page2.html", "channel_page3.html"), _telegram),
    "wikipedia": (
        "wikipedia",
        (
            "revisions_klimaloven_1.json",
            "revisions_klimaloven_2.json",
            "revisions_vindmolle.json",
            "revisions_thor.json",
        ),
        _wikipedia,
    ),
    "rss_feeds": ("rss", ("rss20_content_media.xml", "atom10.xml", "rss20_entities_da_latin1.xml"), _rss),
    "gdelt": ("gdelt", ("artlist_day1.json", "artlist_day2.json"), _gdelt),
}


def _repeat(seconds: float, work: Callable[[], int]) -> tuple[int, float]:
    """Run ``work`` (returning how many records it handled) until ``seconds`` have passed."""
    done, started = 0, time.perf_counter()
    while True:
        done += work()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done, elapsed


def measure(arena: str, seconds: float) -> dict:
    folder, names, parse = ARENAS[arena]
    bodies = [(FIXTURES / folder / name).read_bytes() for name in names]

    def parse_all() -> list[CollectedItem]:
        return [item for body in bodies for item in parse(body) if isinstance(item, CollectedItem)]

    items = parse_all()
    if not items:
        raise AssertionError(f"{arena}: the fixtures gave no items")
    rejected = sum(isinstance(item, Rejected) for body in bodies for item in parse(body))
    collected = datetime(2099, 12, 31, tzinfo=timezone.utc)  # an undated item takes this date: inside WINDOW
    ctx = common.record_context(arena, uuid.uuid4(), uuid.uuid4(), WINDOW[0], WINDOW[1], collected)
    outcomes = [records.prepare(item, ctx) for item in items]
    rows = sum(isinstance(outcome, tuple) for outcome in outcomes)

    parsed, parse_s = _repeat(seconds, lambda: len(parse_all()))
    prepared, prepare_s = _repeat(seconds, lambda: len([records.prepare(item, ctx) for item in items]))
    parse_rate, prepare_rate = parsed / parse_s, prepared / prepare_s
    return {
        "fixtures": [f"{folder}/{name}" for name in names],
        "fixture_bytes": sum(len(body) for body in bodies),
        "items": len(items),
        "rejected": rejected,
        "rows": rows,
        "parse_map_records_per_s": round(parse_rate),
        "prepare_records_per_s": round(prepare_rate),
        "parse_map_vs_prepare": round(parse_rate / prepare_rate, 3),
        "parse_map_s": round(parse_s, 3),
        "prepare_s": round(prepare_s, 3),
    }


def run(seconds: float) -> dict:
    report: dict = {
        "benchmark": "arenas",
        "environment": {"cpus": os.cpu_count()},
        "seconds": seconds,
        "arenas": {},
    }
    for arena in ARENAS:
        figures = measure(arena, seconds)
        report["arenas"][arena] = figures
        print(
            f"{arena:>10}: {figures['items']:>3} items from {len(figures['fixtures'])} fixtures, "
            f"parse + map {figures['parse_map_records_per_s']:>8,} records/s, "
            f"prepare {figures['prepare_records_per_s']:>8,} records/s, "
            f"parse + map ÷ prepare {figures['parse_map_vs_prepare']:.2f}",
            flush=True,
        )
    print(f"saved {common.save('arenas', report)}")
    return report


def main() -> None:
    # Not common.size_parser: the sizes are the fixtures', so only the duration is a choice.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="how long each path is repeated (default 1 s)")
    run(parser.parse_args().seconds)


if __name__ == "__main__":
    main()
