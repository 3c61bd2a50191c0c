"""Descriptive statistics of a corpus: hand-built corpora with known answers, and the Dagster asset."""

from __future__ import annotations

import base64
import uuid
from datetime import date, datetime

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.core.collection import ingest
from observatory_pipelines.defs.analysis.statistics import corpus_statistics
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource
from tests.factories import MARCH, at, corpus_of, make_actor, make_design, pseudonym, record

pytestmark = pytest.mark.usefixtures("analysis_dir")


def add_tasks(engine, design, month_start: datetime, tasks: list[tuple[str, str, str | None, datetime]]) -> None:
    """One collection run with ``tasks`` (arena, status, error, started_at)."""
    with engine.begin() as conn:
        run = conn.execute(
            sa.text(
                "INSERT INTO collection_runs (query_design_id, status, date_from, date_to) "
                "VALUES (:d, 'completed', :start, :start + interval '1 month') RETURNING id"
            ),
            {"d": design, "start": month_start},
        ).scalar_one()
        for arena, status, error, started in tasks:
            conn.execute(
                sa.text(
                    "INSERT INTO collection_tasks (collection_run_id, arena, platform, status, error_message, started_at) "
                    "VALUES (:r, :a, :a, :s, :e, :t)"
                ),
                {"r": run, "a": arena, "s": status, "e": error, "t": started},
            )


@pytest.fixture
def corpus(engine):
    """Six March records on two arenas, one duplicate, one April record and another design's record."""
    design = make_design(engine, terms=("klima", "havvind", "grøn omstilling", "vindmøller"))
    other = make_design(engine, slug="andet", terms=("klima",))
    ingest.write_batch(
        engine,
        [
            # 1 March is a Sunday: its ISO week starts on 23 February.
            record(design, "x1", at(1, 10), author="anna", terms=["klima", "havvind"], likes=10, shares=2, comments=3),
            record(design, "x2", at(2, 9), author="anna", terms=["klima"], likes=5),
            record(design, "x3", at(2, 23, 59), author="bo", terms=["havvind"], likes=0, shares=0, comments=0),
            record(
                design,
                "x4",
                at(9),
                author="soeren_aeroe",
                display_name="Søren Ærø",
                terms=["grøn omstilling"],
                likes=100,
                shares=20,
                comments=30,
            ),
            record(
                design, "r1", at(2, 7), author="nordlys.example.dk", platform="rss", arena="rss_feeds", terms=["klima"]
            ),
            record(
                design,
                "r2",
                at(31, 23, 30),
                author="nordlys.example.dk",
                platform="rss",
                arena="rss_feeds",
                terms=["vindmøller"],
            ),
            record(design, "x5", at(3), author="bo", terms=["klima"], likes=1000, duplicate_of=str(uuid.uuid4())),
            record(design, "x6", at(1, 0, 0, month=4), author="bo", terms=["klima"], likes=7),
            record(other, "x1", at(1, 10), author="anna", terms=["klima"], likes=99),
        ],
    )
    make_actor(engine, "Søren Ærø", ("x_twitter", "soeren_aeroe"), public_figure=True, claim_records=True)
    add_tasks(
        engine,
        design,
        at(1, 0),
        [
            ("file_import", "completed", None, at(31, 20)),
            ("rss_feeds", "failed", "rss_feeds: every feed failed (HTTP 503)", at(31, 20)),
        ],
    )
    add_tasks(engine, design, at(1, 0), [("rss_feeds", "completed", None, at(31, 21))])
    add_tasks(engine, design, at(1, 0, month=4), [("rss_feeds", "completed", None, at(1, 3, month=4))])
    return design


def rows(frame: pl.DataFrame, columns: list[str]) -> list[tuple]:
    return list(frame.select(columns).iter_rows())


def test_volumes_per_day_and_week_exclude_duplicates_and_other_corpora(engine, corpus):
    figures = stats.build_statistics(engine, corpus_of(engine, "klimadebat", MARCH))

    assert rows(figures.volume_daily, ["day", "arena", "records"]) == [
        (date(2026, 3, 1), "file_import", 1),
        (date(2026, 3, 2), "file_import", 2),
        (date(2026, 3, 2), "rss_feeds", 1),
        (date(2026, 3, 9), "file_import", 1),
        (date(2026, 3, 31), "rss_feeds", 1),
    ]
    assert rows(figures.volume_weekly, ["week_start", "arena", "records"]) == [
        (date(2026, 2, 23), "file_import", 1),
        (date(2026, 3, 2), "file_import", 2),
        (date(2026, 3, 2), "rss_feeds", 1),
        (date(2026, 3, 9), "file_import", 1),
        (date(2026, 3, 30), "rss_feeds", 1),
    ]
    assert (figures.records, figures.duplicates) == (6, 1)
    assert figures.volume_daily["records"].sum() + figures.duplicates == stats.partition_row_count(
        engine, corpus_of(engine, "klimadebat", MARCH)
    )


def test_engagement_median_and_p95_per_arena(engine, corpus):
    engagement = stats.build_statistics(engine, corpus_of(engine, "klimadebat", MARCH)).engagement
    by_arena = {r["arena"]: r for r in engagement.iter_rows(named=True)}

    # file_import: 15, 5, 0, 150 (missing counts as 0; the duplicate's 1000 is left out).
    x = by_arena["file_import"]
    assert (x["records"], x["records_with_counts"]) == (4, 4)
    assert x["median"] == pytest.approx(10.0)
    assert x["p95"] == pytest.approx(15 + 0.85 * 135)  # linear, as percentile_cont
    assert (x["mean"], x["max"]) == (pytest.approx(42.5), 150)
    # Feed articles carry no counts: no distribution, rather than a false zero.
    rss = by_arena["rss_feeds"]
    assert (rss["records"], rss["records_with_counts"], rss["median"], rss["p95"]) == (2, 0, None, None)
    overall = by_arena["all"]
    assert (overall["records"], overall["records_with_counts"], overall["median"]) == (6, 4, pytest.approx(10.0))


def test_top_terms_and_actors_with_names_only_for_public_figures(engine, corpus):
    figures = stats.build_statistics(engine, corpus_of(engine, "klimadebat", MARCH))

    assert rows(figures.top_terms, ["rank", "term", "records", "actors"]) == [
        (1, "klima", 3, 2),
        (2, "havvind", 2, 2),
        (3, "grøn omstilling", 1, 1),
        (4, "vindmøller", 1, 1),
    ]
    assert figures.top_terms["share"].to_list() == pytest.approx([0.5, 1 / 3, 1 / 6, 1 / 6])
    actors = figures.top_actors.to_dicts()
    assert [(a["rank"], a["records"], a["engagement"]) for a in actors] == [
        (1, 2, 20),
        (2, 2, 0),
        (3, 1, 150),
        (4, 1, 0),
    ]
    assert actors[0]["label"] == pseudonym("x_twitter", "anna")[:12]
    assert actors[0]["actor_id"] == pseudonym("x_twitter", "anna")
    assert actors[1]["label"] == pseudonym("rss", "nordlys.example.dk")[:12]
    assert actors[2]["label"] == "Søren Ærø" and actors[2]["is_public_figure"] and actors[2]["resolved"]
    assert actors[3]["label"] == pseudonym("x_twitter", "bo")[:12] and not actors[3]["is_public_figure"]
    # No display name of a private person leaves the database.
    assert "anna" not in str(figures.top_actors.to_dicts())
    assert figures.actors == 4


def test_run_summary_counts_runs_tasks_failures_and_records(engine, corpus):
    summary = {
        r["arena"]: r
        for r in stats.build_statistics(engine, corpus_of(engine, "klimadebat", MARCH)).run_summary.to_dicts()
    }

    rss = summary["rss_feeds"]
    assert (rss["runs"], rss["tasks"], rss["tasks_completed"], rss["tasks_failed"]) == (2, 2, 1, 1)
    assert rss["last_status"] == "completed" and rss["last_error"] is None
    assert (rss["records_stored"], rss["duplicates"], rss["records_analysed"]) == (2, 0, 2)
    x = summary["file_import"]
    assert (x["runs"], x["tasks"], x["tasks_completed"], x["last_status"]) == (1, 1, 1, "completed")
    assert (x["records_stored"], x["duplicates"], x["records_analysed"]) == (5, 1, 4)
    overall = summary["all"]
    assert (overall["runs"], overall["tasks"], overall["tasks_failed"], overall["records_stored"]) == (2, 3, 1, 7)


def test_tables_round_trip_through_the_analysis_store(engine, corpus, analysis_dir):
    figures = stats.build_statistics(engine, corpus_of(engine, "klimadebat", MARCH))
    paths = stats.write_statistics(figures, "klimadebat", MARCH)

    assert set(paths) == set(stats.TABLES)
    assert all(p.parent == analysis_dir / "klimadebat" / MARCH for p in paths.values())
    for name, frame in figures.tables().items():
        assert analysis_store.read_table("klimadebat", MARCH, name).equals(frame)
    assert "grøn omstilling" in analysis_store.read_table("klimadebat", MARCH, "top_terms")["term"].to_list()
    assert not list(analysis_dir.rglob("*.tmp"))


def test_analysis_store_refuses_paths_outside_it():
    with pytest.raises(ValueError, match="slug"):
        analysis_store.corpus_dir("../etc", MARCH)
    with pytest.raises(ValueError, match="table name"):
        analysis_store.table_path("klimadebat", MARCH, "../x")
    with pytest.raises(FileNotFoundError, match="materialize"):
        analysis_store.read_table("klimadebat", MARCH, "volume_daily")


def test_empty_month_gives_empty_tables_and_a_chart(engine, corpus):
    figures = stats.build_statistics(engine, corpus_of(engine, "klimadebat", "2026-05"))

    assert figures.records == 0 and figures.actors == 0
    for name in ("volume_daily", "volume_weekly", "top_actors", "top_terms"):
        assert figures.tables()[name].is_empty(), name
    assert figures.engagement.to_dicts() == [
        {"arena": "all", "records": 0, "records_with_counts": 0, "median": None, "p95": None, "mean": None, "max": None}
    ]
    assert figures.run_summary["arena"].to_list() == ["all"]
    stats.write_statistics(figures, "klimadebat", "2026-05")
    assert stats.volume_chart_png(figures, "2026-05").startswith(b"\x89PNG")


def test_reading_in_blocks_of_one_row_gives_the_same_corpus_and_statistics(engine, corpus, monkeypatch):
    march = corpus_of(engine, "klimadebat", MARCH)
    whole = stats.load_analysis_corpus(engine, march, block_bytes=2**30)
    prepared_heights: list[int] = []
    prepare = stats.prepare_corpus

    def prepare_and_note(frame, *args):
        prepared_heights.append(frame.height)
        return prepare(frame, *args)

    monkeypatch.setattr(stats, "prepare_corpus", prepare_and_note)
    blocks = stats.load_analysis_corpus(engine, march, block_bytes=1)  # every row a block of its own

    # Seven March rows (the duplicate among them), each read and prepared on its own.
    assert prepared_heights == [1] * 7
    assert blocks.records.equals(whole.records) and blocks.records.schema == whole.records.schema
    assert blocks.duplicates_by_arena.equals(whole.duplicates_by_arena)
    assert blocks.public_names == whole.public_names
    assert list(blocks.public_names.values()) == ["Søren Ærø"]
    tasks = stats.load_collection_tasks(engine, march)
    by_block, at_once = stats.compute_statistics(blocks, tasks), stats.compute_statistics(whole, tasks)
    kept = stats.build_statistics(engine, march)  # keeps only STATISTICS_COLUMNS of the records
    for name in stats.TABLES:
        assert by_block.tables()[name].equals(at_once.tables()[name]), name
        assert kept.tables()[name].equals(at_once.tables()[name]), name
    assert "Søren Ærø" in by_block.top_actors["label"].to_list()


def test_load_corpus_in_blocks_equals_one_read_and_an_empty_month_keeps_its_types(engine, corpus, monkeypatch):
    from observatory_pipelines.core.analysis import corpus as analysis_corpus

    march = corpus_of(engine, "klimadebat", MARCH)
    columns = ["id", "published_at", "author_display_name", "likes_count", "search_terms_matched", "is_public_figure"]
    whole = analysis_corpus.load_corpus(engine, march.design_id, MARCH, columns)
    monkeypatch.setattr(analysis_corpus, "COPY_BLOCK_BYTES", 1)
    blocks = list(analysis_corpus.corpus_blocks(engine, march.design_id, MARCH, columns))

    assert [b.height for b in blocks] == [1] * 7
    assert analysis_corpus.load_corpus(engine, march.design_id, MARCH, columns).equals(whole)
    assert "Søren Ærø" in whole["author_display_name"].to_list()
    assert ["grøn omstilling"] in whole["search_terms_matched"].to_list()
    empty = analysis_corpus.load_corpus(engine, march.design_id, "2026-05", columns)
    assert empty.is_empty() and empty.schema == whole.schema
    assert list(analysis_corpus.corpus_blocks(engine, march.design_id, "2026-05", columns)) == []
    prepared = stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", "2026-05"), block_bytes=1)
    assert prepared.records.is_empty()
    assert prepared.records.schema == stats.load_analysis_corpus(engine, march).records.schema


def _materialize(instance, db_url, month: str = MARCH):
    instance.add_dynamic_partitions(query_design_partitions.name, ["klimadebat"])
    return dg.materialize(
        [corpus_statistics],
        instance=instance,
        partition_key=corpus_key(month, "klimadebat"),
        resources={"postgres": PostgresResource(database_url=db_url)},
    )


def test_asset_writes_tables_and_shows_them_in_metadata(engine, db_url, corpus, instance, analysis_dir):
    result = _materialize(instance, db_url)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("corpus_statistics")
    m = {k: v.value for k, v in materialization.metadata.items()}
    assert (m["records_analysed"], m["duplicates_excluded"], m["actors"]) == (6, 1, 4)
    assert "| 1 | klima | 3 | 0.50 | 2 |" in m["top_terms"]
    assert "Søren Ærø" in m["top_actors"]
    assert "| rss_feeds | 2 | 2 | 1 | 1 | 0 | completed |" in m["run_summary"]
    png = (analysis_dir / "klimadebat" / MARCH / "volume_chart.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) <= 100_000
    assert m["volume_chart"] == f"![records per day and week](data:image/png;base64,{base64.b64encode(png).decode()})"
    assert m["volume_chart_path"] == str(analysis_dir / "klimadebat" / MARCH / "volume_chart.png")
    assert {p.name for p in (analysis_dir / "klimadebat" / MARCH).iterdir()} == {
        *(f"{t}.parquet" for t in stats.TABLES),
        "volume_chart.png",
    }
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "statistics_total_matches_partition" and check.passed


def test_check_warns_when_the_total_differs_from_the_partition(engine, db_url, corpus, instance, monkeypatch):
    monkeypatch.setattr(stats, "partition_row_count", lambda *args: 8)  # a row arrived meanwhile
    (check,) = _materialize(instance, db_url).get_asset_check_evaluations()

    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "7 rows (6 analysed + 1 duplicates) but the corpus holds 8" in check.description


def test_asset_on_an_empty_month_succeeds(engine, db_url, corpus, instance):
    result = _materialize(instance, db_url, month="2026-05")

    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed


def test_unknown_design_fails_in_one_line(db_url, instance):
    instance.add_dynamic_partitions(query_design_partitions.name, ["findes-ikke"])
    result = dg.materialize(
        [corpus_statistics],
        instance=instance,
        partition_key=corpus_key(MARCH, "findes-ikke"),
        resources={"postgres": PostgresResource(database_url=db_url)},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "no query design with slug 'findes-ikke'" in description and "\n" not in description
