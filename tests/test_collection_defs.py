"""The collection assets, sensor and schedule, run by Dagster in process against a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.defs.collection.assets import build_collection_assets
from observatory_pipelines.defs.collection.automation import (
    months_to_collect,
    nightly_collection,
    sync_query_design_partitions,
)
from observatory_pipelines.defs.local_run import materialize_corpus
from observatory_pipelines.defs.partitions import QUERY_DESIGN_PARTITIONS, corpus_key, query_design_partitions
from observatory_pipelines.defs.processing.dedup import dedup_pass
from observatory_pipelines.defs.resources import CollectionResource, PostgresResource
from tests.factories import FEED_A, SALT, content_rows, make_design, rss_feed, rss_item, task
from tests.http_fixtures import Canned


def _resources(db_url):
    return {
        "postgres": PostgresResource(database_url=db_url),
        "collector": CollectionResource(salt=SALT, http_max_attempts=1, http_backoff_seconds=0.0),
    }


def test_one_failing_arena_fails_alone_after_its_retries(engine, db_url, arena_server, instance):
    feed = arena_server.route("/a.xml", Canned(200, FEED_A))
    gdelt = arena_server.route("/doc", Canned(503, b"overloaded"))
    design = make_design(
        engine,
        arenas_config={
            "rss_feeds": {"options": {"feeds": [feed], "min_interval_seconds": 0}},
            "gdelt": {"options": {"base_url": gdelt, "min_interval_seconds": 0, "slice_hours": 24 * 31}},
        },
    )
    assets = build_collection_assets(retry_policy=dg.RetryPolicy(max_retries=1, delay=0))
    defs = dg.Definitions(assets=assets, resources=_resources(db_url))

    report = materialize_corpus("2026-03", "klimadebat", instance=instance, defs=defs)

    by_asset = {a.asset: a for a in report.assets}
    assert by_asset["collect_rss_feeds"].succeeded
    assert by_asset["collect_rss_feeds"].metadata["records_new"] == 2
    assert by_asset["collect_file_import"].succeeded
    assert by_asset["collect_file_import"].metadata["status"] == "skipped"
    failed = by_asset["collect_gdelt"]
    assert not failed.succeeded and "503" in failed.error and "\n" not in failed.error
    assert [a.asset for a in report.failed] == ["collect_gdelt"]
    gdelt_task = task(engine, design, "gdelt")
    assert gdelt_task["status"] == "failed" and gdelt_task["attempts"] == 2  # retried once by Dagster
    assert gdelt_task["dagster_run_id"] == report.run_ids[0]
    assert len(content_rows(engine, design)) == 2


def test_materialization_metadata_shows_the_figures(engine, db_url, arena_server, instance):
    feed = arena_server.route("/a.xml", Canned(200, FEED_A))
    make_design(
        engine,
        arenas_config={
            "rss_feeds": {"options": {"feeds": [feed], "min_interval_seconds": 0}},
            "gdelt": {"enabled": False},
        },
    )
    defs = dg.Definitions(assets=build_collection_assets(), resources=_resources(db_url))
    report = materialize_corpus("2026-03", "klimadebat", instance=instance, defs=defs, arenas=["rss_feeds"])
    (rss,) = report.assets
    m = rss.metadata
    assert (m["records_new"], m["records_updated"], m["records_rejected"]) == (2, 0, 0)
    assert m["records_filtered"] == {"no_term_matched": 1}
    assert m["api_calls"] == 1 and m["credits_spent"] == 0 and m["tier"] == "free"
    assert m["time_window"] == "2026-03-01 00:00Z → 2026-04-01 00:00Z"
    assert SALT not in str(m)
    event = instance.get_latest_materialization_event(dg.AssetKey("collect_rss_feeds"))
    assert event.dagster_event.partition == corpus_key("2026-03", "klimadebat")


def test_sensor_adds_active_designs_and_removes_deleted_ones(engine, db_url, instance):
    make_design(engine, "aktiv")
    make_design(engine, "hvilende")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE query_designs SET is_active = false WHERE slug = 'hvilende'"))
    instance.add_dynamic_partitions(query_design_partitions.name, ["slettet", "hvilende"])
    context = dg.build_sensor_context(instance=instance, resources={"postgres": PostgresResource(database_url=db_url)})

    result = sync_query_design_partitions(context)

    requests = {type(r).__name__: r.partition_keys for r in result.dynamic_partitions_requests}
    assert requests == {"AddDynamicPartitionsRequest": ["aktiv"], "DeleteDynamicPartitionsRequest": ["slettet"]}


def test_nightly_schedule_recollects_the_current_month_and_the_last_on_the_first(engine, db_url, instance):
    make_design(engine, "aktiv")
    make_design(engine, "ny-endnu-uden-partition")
    resources = {"postgres": PostgresResource(database_url=db_url)}
    instance.add_dynamic_partitions(query_design_partitions.name, ["aktiv"])

    def requests(when):
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=resources)
        return list(nightly_collection(context))

    mid = requests(datetime(2026, 11, 14, 1, 0, tzinfo=timezone.utc))
    first = requests(datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc))
    assert [r.partition_key for r in mid] == [corpus_key("2026-11", "aktiv")]
    assert [r.partition_key for r in first] == [corpus_key("2026-11", "aktiv"), corpus_key("2026-12", "aktiv")]
    assert len({r.run_key for r in mid + first}) == 3
    assert months_to_collect(datetime(2026, 2, 1, tzinfo=timezone.utc)) == ["2026-02"]  # nothing before the first month


def test_an_unreachable_database_fails_the_asset_in_one_line(instance):
    resources = {
        "postgres": PostgresResource(database_url="postgresql://postgres@127.0.0.1:1/observatory"),
        "collector": CollectionResource(salt=SALT),
    }
    defs = dg.Definitions(
        assets=build_collection_assets(retry_policy=dg.RetryPolicy(max_retries=0)), resources=resources
    )
    report = materialize_corpus("2026-03", "klimadebat", instance=instance, defs=defs, arenas=["rss_feeds"])
    (failed,) = report.failed
    assert failed.error.startswith("cannot use PostgreSQL at 127.0.0.1:1/observatory")
    assert "check DATABASE_URL" in failed.error and "\n" not in failed.error


def test_an_unreachable_database_skips_the_sensor_and_the_schedule_with_one_line(instance):
    unreachable = {"postgres": PostgresResource(database_url="postgresql://postgres@127.0.0.1:1/observatory")}

    sensed = sync_query_design_partitions(dg.build_sensor_context(instance=instance, resources=unreachable))
    (scheduled,) = nightly_collection(
        dg.build_schedule_context(
            instance=instance,
            resources=unreachable,
            scheduled_execution_time=datetime(2026, 3, 5, 1, tzinfo=timezone.utc),
        )
    )

    for skipped in (sensed, scheduled):
        assert isinstance(skipped, dg.SkipReason)
        assert "cannot use PostgreSQL at 127.0.0.1:1/observatory" in skipped.skip_message
        assert "\n" not in skipped.skip_message


def test_a_malformed_design_or_unknown_arena_registers_no_partition(instance):
    for design, arenas, refusal in (
        ("Klima Debat!", None, "is not a query design slug"),
        ("klimadebat", ["twitter_v1"], "no collection asset for arena 'twitter_v1'"),
    ):
        with pytest.raises(ConfigError, match=refusal):
            materialize_corpus("2026-03", design, instance=instance, arenas=arenas)
    assert instance.get_dynamic_partitions(query_design_partitions.name) == []


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")  # raised inside Dagster's own evaluator
def test_processing_follows_a_collection_only_when_it_changed_the_corpus(engine, db_url, arena_server, instance):
    # The hourly re-collection of a quiet feed must not re-run dedup (and with it analysis and exports).
    # Automation works on the latest month only, so the feed's posts are from the first minutes of this one.
    month = months.current_month()
    start = months.month_bounds(month)[0]

    def post(guid: str, minutes: int) -> str:
        published = format_datetime(start + timedelta(minutes=minutes))
        return rss_item(
            guid, "Klima på Ærø", "Øens klimaplan får ros.", published, f"https://nordlys.example.dk/{guid}"
        )

    one, two = rss_feed(post("k1", 1)), rss_feed(post("k1", 1), post("k2", 2))
    feed = arena_server.route("/a.xml", Canned(200, one), Canned(200, one), Canned(200, two))
    make_design(engine, arenas_config={"rss_feeds": {"options": {"feeds": [feed], "min_interval_seconds": 0}}})
    collection_only = dg.Definitions(assets=build_collection_assets(), resources=_resources(db_url))
    defs = dg.Definitions(assets=[*build_collection_assets(), dedup_pass], resources=_resources(db_url))
    instance.add_dynamic_partitions(QUERY_DESIGN_PARTITIONS, ["klimadebat"])
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor

    requested, written = [], []
    for _ in range(3):  # a new post, nothing new, another new post
        report = materialize_corpus(month, "klimadebat", instance=instance, defs=collection_only, arenas=["rss_feeds"])
        written.append(report.assets[0].metadata["records_new"])
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        # A quiet tick after each, as the daemon makes them, so a request does not also count
        # as handling the next collection.
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor).cursor
        requested.append(
            result.get_requested_partitions(dg.AssetKey("dedup_pass")) == {corpus_key(month, "klimadebat")}
        )

    assert (written, requested) == ([1, 0, 1], [True, False, True])
