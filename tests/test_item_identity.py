"""One row per item, ``(design, platform, platform_id)``, whatever its date does and whenever the
collection runs: undated items, edited dates, dates that cross a month, file imports captured twice,
two ingests at once in two processes, and a database that already holds such copies.

The clock moves between runs in every test here: a fixed clock hides all of these.
"""

from __future__ import annotations

import json
import multiprocessing
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.platform import migrate
from observatory_pipelines.core.platform.database import make_engine
from observatory_pipelines.core.processing import dedup
from tests.factories import SALT, at, content_rows, ingest_in_process, make_design, record, rss_feed, rss_item
from tests.http_fixtures import Canned

RSS = {"Content-Type": "application/rss+xml"}


def collect(engine, slug: str, arena: str, month: str, now: datetime, **kwargs):
    return collection.collect_arena(
        engine,
        design_slug=slug,
        month=month,
        arena_name=arena,
        dagster_run_id=f"run-{now:%Y%m%d%H%M}",
        salt=SALT,
        now=now,
        **kwargs,
    )


def rss_design(engine, arena_server, slug: str, *feeds: bytes) -> uuid.UUID:
    """A design reading one feed that serves ``feeds`` in turn, one per request (the last repeats)."""
    url = arena_server.route(f"/{slug}.xml", *(Canned(200, feed, RSS) for feed in feeds))
    config = {"rss_feeds": {"options": {"feeds": [url], "min_interval_seconds": 0}}, "gdelt": {"enabled": False}}
    return make_design(engine, slug, arenas_config=config)


def one_item_feeds(guid: str, title: str, body: str, *pub_dates: str) -> list[bytes]:
    """The same item's feed once per ``pub_dates``: an article whose date the outlet edits."""
    return [rss_feed(rss_item(guid, title, body, pub, f"https://e.dk/{guid}")) for pub in pub_dates]


def items_registered(engine, design) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT platform_id, published_at FROM content_items WHERE query_design_id = :d ORDER BY 1"),
                {"d": design},
            )
        ]


def test_an_undated_item_recollected_as_the_clock_moves_keeps_one_row_and_its_first_time(engine, arena_server):
    undated = rss_feed(
        "<item><title>Klimaplan for Ærø uden dato</title><link>https://fjordposten.example.dk/aeroe</link>"
        "<guid>u1</guid><description>Klima og grøn omstilling på Ærø</description></item>"
    )
    design = rss_design(engine, arena_server, "udateret", undated)
    clock = [at(20, 10), at(21, 1), at(31, 23, 30)]

    outcomes = [collect(engine, "udateret", "rss_feeds", "2026-03", now) for now in clock]

    assert [o.written.new for o in outcomes] == [1, 0, 0]
    assert [o.written.unchanged for o in outcomes[1:]] == [1, 1]
    (row,) = content_rows(engine, design)
    assert row["published_at"] == clock[0] and row["partition"] == "content_records_2026_03"
    assert row["raw_metadata"]["ingest_notes"]["published_at_missing"] is True
    # The later clocks are only clocks, not dates the feed reported: nothing to note.
    assert "reported_published_at" not in row["raw_metadata"]
    assert [published for _, published in items_registered(engine, design)] == [clock[0]]


def test_an_edited_pubdate_keeps_the_first_date_and_records_the_reported_one(engine, arena_server):
    feeds = one_item_feeds(
        "e1",
        "Vindmøller på Østerbro",
        "Klima-debat i København",
        "Tue, 10 Mar 2026 08:00:00 +0000",
        "Thu, 12 Mar 2026 09:30:00 +0100",
    )
    design = rss_design(engine, arena_server, "redigeret", *feeds)

    first = collect(engine, "redigeret", "rss_feeds", "2026-03", at(11, 6))
    edited = collect(engine, "redigeret", "rss_feeds", "2026-03", at(12, 20))
    again = collect(engine, "redigeret", "rss_feeds", "2026-03", at(13, 20))

    assert (first.written.new, edited.written.new, again.written.new) == (1, 0, 0)
    assert edited.written.updated == 1 and again.written.unchanged == 1
    (row,) = content_rows(engine, design)
    assert row["published_at"] == at(10, 8)
    assert row["raw_metadata"]["reported_published_at"] == "2026-03-12T08:30:00+00:00"


def test_a_date_moved_into_the_next_month_keeps_the_row_in_its_first_month(engine, arena_server):
    feeds = one_item_feeds(
        "m1",
        "Klimaloven ved midnat",
        "Klima i Folketinget",
        "Tue, 31 Mar 2026 23:50:00 +0000",
        "Wed, 01 Apr 2026 00:20:00 +0000",
    )
    design = rss_design(engine, arena_server, "maanedsskifte", *feeds)

    march = collect(engine, "maanedsskifte", "rss_feeds", "2026-03", at(1, 0, 5, month=4))
    april = collect(engine, "maanedsskifte", "rss_feeds", "2026-04", at(2, 3, month=4))

    assert (march.written.new, april.written.new, april.written.updated) == (1, 0, 1)
    (row,) = content_rows(engine, design)
    assert row["partition"] == "content_records_2026_03"
    assert row["published_at"] == datetime(2026, 3, 31, 23, 50, tzinfo=timezone.utc)
    assert row["raw_metadata"]["reported_published_at"] == "2026-04-01T00:20:00+00:00"


def _zeeschuimer(item_id: str, text: str, collected_ms: int, created: str | None = None, likes: int = 1) -> str:
    legacy = {"full_text": text, "favorite_count": likes, "lang": "da"}
    if created:
        legacy["created_at"] = created
    data = {
        "rest_id": item_id,
        "core": {"user_results": {"result": {"rest_id": "7", "legacy": {"screen_name": "jens_aa", "name": "Jens Å"}}}},
        "legacy": legacy,
    }
    return json.dumps(
        {"item_id": item_id, "source_platform": "twitter.com", "timestamp_collected": collected_ms, "data": data},
        ensure_ascii=False,
    )


def test_a_file_import_captured_twice_with_other_times_keeps_one_row_per_post(engine, tmp_path):
    folder = tmp_path / "imports" / "genfangst"
    folder.mkdir(parents=True)
    design = make_design(engine, "genfangst", arenas_config={"file_import": {"enabled": True}})
    first_capture = 1_773_900_000_000  # 2026-03-19T06:00:00Z, in milliseconds
    second_capture = first_capture + 36 * 3_600_000

    def capture(name: str, collected_ms: int, created: str, likes: int) -> None:
        lines = [
            _zeeschuimer("901", "Klima på Æbelø, uden tidsstempel", collected_ms, likes=likes),
            _zeeschuimer("902", "Grøn omstilling i Ålborg", collected_ms, created, likes),
        ]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    capture("zeeschuimer-export-twitter.com-a.ndjson", first_capture, "Wed Mar 18 10:00:00 +0000 2026", 1)
    first = collect(engine, "genfangst", "file_import", "2026-03", at(19, 7), import_dir=str(tmp_path / "imports"))
    capture("zeeschuimer-export-twitter.com-b.ndjson", second_capture, "Wed Mar 18 11:15:00 +0000 2026", 9)
    second = collect(engine, "genfangst", "file_import", "2026-03", at(21, 7), import_dir=str(tmp_path / "imports"))

    assert first.written.new == 2 and second.written.new == 0
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert sorted(rows) == ["901", "902"]
    undated, dated = rows["901"], rows["902"]
    assert undated["published_at"] == datetime(2026, 3, 19, 6, tzinfo=timezone.utc)
    assert "reported_published_at" not in undated["raw_metadata"]  # a capture time is not a date
    assert dated["published_at"] == at(18, 10, 0)
    assert dated["raw_metadata"]["reported_published_at"] == "2026-03-18T11:15:00+00:00"
    assert dated["likes_count"] == 9  # the later capture's counts are kept


def test_two_processes_ingesting_overlapping_items_at_once_leave_one_row_per_item(engine, db_url):
    design = make_design(engine, "samtidig")
    # The overlap (items 1000-1999) carries other dates and other counts in each process.
    left = [record(design, f"p{i}", at(10, 8, i % 60), likes=1) for i in range(0, 2000)]
    right = [record(design, f"p{i}", at(20, 9, i % 60), likes=2) for i in reversed(range(1000, 3000))]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=ingest_in_process, args=(db_url, rows, 200, barrier)) for rows in (left, right)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    with engine.connect() as conn:
        rows, items, most = conn.execute(
            sa.text(
                """
                SELECT count(*), count(DISTINCT platform_id),
                       (SELECT max(n) FROM (SELECT count(*) AS n FROM content_records
                                            WHERE query_design_id = :d GROUP BY platform_id) per_item)
                FROM content_records WHERE query_design_id = :d
                """
            ),
            {"d": design},
        ).one()
    assert (rows, items, most) == (3000, 3000, 1)
    assert len(items_registered(engine, design)) == 3000


def _insert_raw(conn, design, platform_id: str, published: datetime, collected: datetime, text: str) -> str:
    return str(
        conn.execute(
            sa.text(
                """
                INSERT INTO content_records (published_at, platform, arena, platform_id, text_content,
                                             collected_at, query_design_id, raw_metadata)
                VALUES (:p, 'rss', 'rss_feeds', :pid, :t, :c, :d, '{"feed": "Fjordposten"}') RETURNING id
                """
            ),
            {"p": published, "pid": platform_id, "t": text, "c": collected, "d": design},
        ).scalar_one()
    )


def test_migrating_a_database_with_copies_keeps_every_row_and_marks_the_later_copies(empty_db_url, capfd):
    migrate.upgrade(empty_db_url, "005_actor_erasure_audit")
    engine = make_engine(empty_db_url)
    try:
        design = make_design(engine, "arvet")
        with engine.begin() as conn:
            # What the nightly re-collection of an undated item left behind, three nights running,
            # plus an item whose pubDate moved once, and one item stored once.
            first = _insert_raw(conn, design, "u1", at(20, 10), at(20, 10), "Klima på Møn")
            night2 = _insert_raw(conn, design, "u1", at(21, 1), at(21, 1), "Klima på Møn")
            night3 = _insert_raw(conn, design, "u1", at(22, 1), at(22, 1), "Klima på Møn")
            edited_first = _insert_raw(conn, design, "e1", at(10, 8), at(10, 9), "Vindmøller i Ørestad")
            edited_later = _insert_raw(conn, design, "e1", at(12, 9), at(12, 10), "Vindmøller i Ørestad")
            single = _insert_raw(conn, design, "s1", at(5, 5), at(5, 6), "Grøn omstilling")
        capfd.readouterr()

        migrate.upgrade(empty_db_url)

        report = capfd.readouterr().err
        assert "design arvet: 3 row(s) were further copies" in report
        rows = {str(r["id"]): r for r in content_rows(engine, design)}
        assert len(rows) == 6  # nothing deleted
        marks = {
            i: (r["raw_metadata"].get("duplicate_of"), r["raw_metadata"].get("duplicate_kind")) for i, r in rows.items()
        }
        assert marks == {
            first: (None, None),
            night2: (first, "same_item"),
            night3: (first, "same_item"),
            edited_first: (None, None),
            edited_later: (edited_first, "same_item"),
            single: (None, None),
        }
        assert rows[night2]["raw_metadata"]["feed"] == "Fjordposten"  # other metadata kept
        assert items_registered(engine, design) == [("e1", at(10, 8)), ("s1", at(5, 5)), ("u1", at(20, 10))]

        # The dedup pass neither unmarks the copies nor groups them: they are not records of their own.
        result = dedup.run_dedup(engine, design, "2026-03")
        assert result.unmarked == 0 and result.records == 3
        after = {str(r["id"]): r["raw_metadata"].get("duplicate_of") for r in content_rows(engine, design)}
        assert after[night3] == first and after[edited_later] == edited_first

        # Writing the item again goes to its first copy, under the date registered.
        counts = ingest.write_batch(
            engine, [record(design, "u1", at(23, 1), platform="rss", arena="rss_feeds", likes=3)]
        )
        assert (counts.new, counts.updated) == (0, 1)
        rows = {str(r["id"]): r for r in content_rows(engine, design)}
        assert len(rows) == 6 and rows[first]["likes_count"] == 3
    finally:
        engine.dispose()


def test_a_row_written_around_ingest_is_taken_as_the_items_row(engine):
    design = make_design(engine, "uden-om")
    with engine.begin() as conn:
        written_by_hand = _insert_raw(conn, design, "h1", at(3, 9), at(3, 9), "Klima i Tønder")

    counts = ingest.write_batch(
        engine,
        [
            record(design, "h1", at(3, 9), platform="rss", arena="rss_feeds", likes=4),
            record(design, "h2", at(4, 9), platform="rss", arena="rss_feeds"),
        ],
    )

    assert (counts.new, counts.updated) == (1, 1)
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert sorted(rows) == ["h1", "h2"] and str(rows["h1"]["id"]) == written_by_hand
    assert rows["h1"]["likes_count"] == 4
    assert [pid for pid, _ in items_registered(engine, design)] == ["h1", "h2"]
