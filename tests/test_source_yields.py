"""Yield history per source, the silent-dropout check and the hourly collection of feeds, on a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection import yields
from observatory_pipelines.core.platform.http import HttpClient
from observatory_pipelines.defs.asset_keys import collection as collection_key
from observatory_pipelines.defs.collection.assets import SILENT_DROPOUTS_CHECK, build_collection_assets
from observatory_pipelines.defs.collection.automation import hourly_latest_collection
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import CollectionResource, PostgresResource
from tests.factories import (
    FEED_A,
    FEED_B,
    MARCH,
    SALT,
    cli_environment,
    content_rows,
    make_design,
    observatory,
    rss_feed,
)
from tests.http_fixtures import Canned, fixture_bytes

NOW = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}
EMPTY_FEED = rss_feed()  # a valid feed with no items: what a feed that stopped publishing serves
IMPORTS = Path(__file__).resolve().parent / "fixtures" / "imports"


def _http(log):
    return HttpClient(max_attempts=1, backoff_base_seconds=0.0, sleep=lambda s: None, log=log)


def _collect(engine, arena: str, run: str, now: datetime, slug: str = "klimadebat", **kwargs):
    return collection.collect_arena(
        engine,
        design_slug=slug,
        month=MARCH,
        arena_name=arena,
        dagster_run_id=run,
        salt=SALT,
        http_factory=_http,
        now=now,
        **kwargs,
    )


def _set_feeds(engine, design, feeds: list[str]) -> None:
    config = {"rss_feeds": {"options": {"feeds": feeds, "min_interval_seconds": 0}}, "gdelt": {"enabled": False}}
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE query_designs SET arenas_config = arenas_config || CAST(:c AS jsonb) WHERE id = :d"),
            {"c": json.dumps(config), "d": design},
        )


def test_each_feed_has_a_history_and_recollecting_adds_no_rows(engine, arena_server):
    nordlys = arena_server.route("/nordlys.xml", Canned(200, FEED_A, RSS))
    fjord = arena_server.route("/fjord.xml", Canned(200, FEED_B, RSS), Canned(200, EMPTY_FEED, RSS))
    design = make_design(engine)
    _set_feeds(engine, design, [nordlys, fjord])

    first = _collect(engine, "rss_feeds", "run-1", NOW)
    second = _collect(engine, "rss_feeds", "run-2", NOW + timedelta(hours=1))

    assert first.sources == second.sources == 2
    assert len(content_rows(engine, design)) == 3  # the second run stored the same articles again
    with engine.connect() as conn:
        history = yields.source_history(conn, "klimadebat", "rss_feeds", nordlys)
        everything = yields.source_history(conn, "klimadebat")
        latest = yields.source_history(conn, "klimadebat", limit=2)
    # Already-known articles count: the feed still holds them, so it is alive.
    assert [(h.items, h.filtered, h.rejected) for h in history] == [(2, 1, 0), (2, 1, 0)]
    assert [h.collected_at for h in history] == [NOW + timedelta(hours=1), NOW]
    assert {(h.source, h.items) for h in latest} == {(nordlys, 2), (fjord, 0)}
    assert len(everything) == 4 and {h.month for h in everything} == {MARCH}
    assert {h.task_status for h in everything} == {"completed"}


def test_file_imports_and_a_broken_feed_are_sources_too(engine, arena_server):
    broken = arena_server.route("/brudt.xml", Canned(500, b"Intern fejl"))
    nordlys = arena_server.route("/nordlys.xml", Canned(200, FEED_A, RSS))
    design = make_design(engine, "fixture", arenas_config={"file_import": {"enabled": True}})
    _set_feeds(engine, design, [broken, nordlys])

    _collect(engine, "file_import", "run-1", NOW, slug="fixture", import_dir=str(IMPORTS))
    _collect(engine, "rss_feeds", "run-1", NOW, slug="fixture")

    with engine.connect() as conn:
        files = {h.source: h for h in yields.source_history(conn, "fixture", "file_import")}
        feeds = {h.source: h for h in yields.source_history(conn, "fixture", "rss_feeds")}
    assert set(files) == {p.name for p in (IMPORTS / "fixture").iterdir()}
    assert all(h.items + h.filtered + h.rejected > 0 for h in files.values())
    assert files["export-fra-excel.csv"].rejected > 0
    assert (feeds[broken].items, feeds[broken].rejected) == (0, 1)
    assert feeds[nordlys].items == 2


def test_a_feed_that_goes_quiet_warns_naming_it_and_when_it_last_yielded(engine, db_url, arena_server, instance):
    going_quiet = arena_server.route(
        "/nordlys.xml", Canned(200, FEED_A, RSS), Canned(200, FEED_A, RSS), Canned(200, EMPTY_FEED, RSS)
    )
    always_empty = arena_server.route("/tavs.xml", Canned(200, EMPTY_FEED, RSS))
    new_and_empty = arena_server.route("/ny.xml", Canned(200, EMPTY_FEED, RSS))
    design = make_design(engine)
    _set_feeds(engine, design, [going_quiet, always_empty])
    instance.add_dynamic_partitions(query_design_partitions.name, ["klimadebat"])
    assets = [a for a in build_collection_assets() if collection_key("rss_feeds") in a.keys]
    resources = {
        "postgres": PostgresResource(database_url=db_url),
        "collector": CollectionResource(salt=SALT, http_max_attempts=1, http_backoff_seconds=0.0),
    }

    def run():
        result = dg.materialize(
            assets, instance=instance, partition_key=corpus_key(MARCH, "klimadebat"), resources=resources
        )
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.check_name == SILENT_DROPOUTS_CHECK
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        return evaluation

    first, second = run(), run()
    _set_feeds(engine, design, [going_quiet, always_empty, new_and_empty])
    third = run()

    assert first.passed and second.passed
    assert not third.passed
    with engine.connect() as conn:
        (last_yield, *_) = yields.source_history(conn, "klimadebat", "rss_feeds", going_quiet, limit=2)[1:]
    assert last_yield.items == 2
    assert going_quiet in third.description and f"{last_yield.collected_at:%Y-%m-%d %H:%M}Z" in third.description
    assert always_empty not in third.description and new_and_empty not in third.description
    assert third.metadata["sources"].value == 3
    assert going_quiet in third.metadata["dropouts"].value
    assert len(content_rows(engine, design)) == 2  # the quiet feed's articles stay collected


def test_a_dropout_is_judged_on_the_last_three_completed_runs(engine, arena_server):
    feed = arena_server.route(
        "/nordlys.xml",
        Canned(200, FEED_A, RSS),
        *[Canned(200, EMPTY_FEED, RSS)] * 4,
    )
    design = make_design(engine)
    _set_feeds(engine, design, [feed])
    outcomes = [_collect(engine, "rss_feeds", f"run-{i}", NOW + timedelta(hours=i)) for i in range(5)]

    with engine.connect() as conn:
        found = [yields.silent_dropouts(conn, o.collection_run_id, "rss_feeds") for o in outcomes]
    assert [len(d) for d in found] == [0, 1, 1, 1, 0]  # after three quiet runs it is old news
    assert found[3][0].last_yield_at == NOW and found[3][0].last_items == 3
    assert feed in found[1][0].describe() and "2026-03-20 12:00Z" in found[1][0].describe()


def test_the_hourly_schedule_collects_only_latest_only_arenas_for_the_current_month(engine, db_url, instance):
    make_design(engine, "aktiv")
    instance.add_dynamic_partitions(query_design_partitions.name, ["aktiv"])
    when = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, resources={"postgres": PostgresResource(database_url=db_url)}
    )

    (request,) = hourly_latest_collection(context)
    at_nightly = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when.replace(hour=1),
        resources={"postgres": PostgresResource(database_url=db_url)},
    )
    (skipped,) = hourly_latest_collection(at_nightly)
    assert isinstance(skipped, dg.SkipReason) and "nightly" in (skipped.skip_message or "")

    assert request.partition_key == corpus_key("2026-12", "aktiv")
    assert request.asset_selection == [collection_key("rss_feeds")]
    assert "hourly" in request.run_key and "2026-12-01T00:00" in request.run_key


def test_observatory_sources_lists_the_history(engine, db_url, arena_server, tmp_path):
    feed = arena_server.route("/nordlys.xml", Canned(200, FEED_A, RSS))
    design = make_design(engine, "klimadebat")
    _set_feeds(engine, design, [feed])
    _collect(engine, "rss_feeds", "run-1", NOW, slug="klimadebat")
    env = cli_environment(tmp_path, DATABASE_URL=db_url)

    listed = observatory("sources", "--design", "klimadebat", "--arena", "rss_feeds", env=env)
    missing = observatory("sources", "--design", "findes-ikke", env=env)

    assert listed.returncode == 0, listed.stderr
    assert feed in listed.stdout and "2026-03-20 12:00" in listed.stdout
    assert missing.returncode != 0 and "findes-ikke" in missing.stderr


def test_each_gdelt_query_is_a_source_even_when_it_finds_nothing(engine, arena_server):
    doc = arena_server.route(
        "/doc", Canned(200, fixture_bytes("gdelt/no_match.json"), {"content-type": "application/json"})
    )
    config = {"gdelt": {"options": {"base_url": doc, "min_interval_seconds": 0, "slice_hours": 24 * 31}}}
    make_design(engine, "gdelt-kilder", terms=("klima", "vindmøller"), arenas_config=config)

    outcome = _collect(engine, "gdelt", "run-1", NOW, slug="gdelt-kilder")

    with engine.connect() as conn:
        history = yields.source_history(conn, "gdelt-kilder", "gdelt")
    (query,) = history  # plain terms go to GDELT as one OR query
    assert outcome.sources == 1 == len(arena_server.requests_to("/doc"))
    assert "klima" in query.source and "vindmøller" in query.source
    assert (query.items, query.filtered, query.rejected) == (0, 0, 0)
