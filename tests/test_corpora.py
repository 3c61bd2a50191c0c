"""What a researcher sees in the portal (core.corpora): their corpora, one corpus month, their credits,
on a real database, a real analysis store and a real object store."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core import corpora
from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.exports import access
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports.access import AccessRefused, Viewer
from observatory_pipelines.defs.analysis.networks import corpus_networks
from observatory_pipelines.defs.analysis.statistics import corpus_statistics
from observatory_pipelines.defs.exports.assets import content_exports, export_gexf, export_manifest
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import (
    ADMIN,
    KAREN,
    MARCH,
    SOEREN,
    People,
    add_many_corpora,
    add_run,
    at,
    make_design,
    record,
    seed_exports,
)

pytestmark = pytest.mark.usefixtures("analysis_dir")

NAMES = {
    "klimadebat": "Klimadebat på X og i nyhederne",
    "groen-omstilling": "Grøn omstilling",
    "vindmoeller": "Vindmøller ved Ærø",
}
FEED_DOWN = "rss_feeds: feed https://www.dr.dk/nyheder/service/feeds/indland answered HTTP 503; try again later"
OFFLINE = "rss_feeds: cannot reach www.dr.dk (connection refused); check the network and run again"


def viewer(engine, email: str) -> Viewer:
    return access.viewer_for(engine, email)


def when(day: int, month: int = 3, hour: int = 6) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=timezone.utc)


@pytest.fixture
def corpora_seeded(engine, people: People) -> People:
    """klimadebat (Karen's): February with records and no run; March with records and two runs, the
    later one failing on rss_feeds; April with a failed run and no records. vindmoeller (Søren's): March.
    groen-omstilling (Karen's) has neither runs nor records."""
    with engine.begin() as conn:
        for slug, name in NAMES.items():
            conn.execute(sa.text("UPDATE query_designs SET name = :n WHERE slug = :s"), {"n": name, "s": slug})
        ids = dict(conn.execute(sa.text("SELECT slug, id FROM query_designs")).all())
    klima, vind = ids["klimadebat"], ids["vindmoeller"]
    ingest.write_batch(
        engine,
        [
            record(klima, "f1", at(3, month=2), terms=["klima"]),
            record(klima, "f2", at(28, 23, 59, month=2), text="Grøn omstilling på Ærø", terms=["klima"]),
            record(klima, "m1", at(1, 0, 0), terms=["klima"]),
            record(klima, "m2", at(15), author="søren", terms=["klima"]),
            record(klima, "m3", at(31, 23, 59), platform="rss", arena="rss_feeds", author="dr.dk", terms=["klima"]),
            record(vind, "v1", at(9), text="Havvind og vindmøller", terms=["vindmøller"]),
        ],
    )
    add_run(
        engine,
        klima,
        MARCH,
        when(2),
        (("rss_feeds", "completed", 1, None), ("file_import", "completed", 2, None)),
    )
    add_run(
        engine,
        klima,
        MARCH,
        when(20),
        (("rss_feeds", "failed", 0, FEED_DOWN.split(": ", 1)[1]), ("gdelt", "skipped", 0, None)),
        status="failed",
    )
    add_run(engine, klima, "2026-04", when(2, month=4), (("rss_feeds", "failed", 0, "line one\nline  two"),), "failed")
    add_run(engine, vind, MARCH, when(5), (("rss_feeds", "completed", 1, None),))
    return people


def test_a_researcher_sees_their_own_corpora_newest_month_first(engine, corpora_seeded):
    with engine.connect() as conn:
        listed = corpora.list_corpora(conn, viewer(engine, KAREN))

    assert [(c.slug, c.month) for c in listed] == [
        ("klimadebat", "2026-04"),
        ("klimadebat", "2026-03"),
        ("klimadebat", "2026-02"),
    ]
    april, march, february = listed
    assert {c.design_name for c in listed} == {"Klimadebat på X og i nyhederne"}
    assert {c.owner_email for c in listed} == {KAREN}

    # Records per month by published_at in UTC: the last minute of March is March's.
    assert (february.records, march.records, april.records) == (2, 3, 0)

    # Arenas from the latest run that ran each: file_import from the first run, rss_feeds from the second.
    arenas = {a.arena: a for a in march.arenas}
    assert set(arenas) == {"file_import", "gdelt", "rss_feeds"}
    assert (arenas["file_import"].status, arenas["file_import"].records_collected) == ("completed", 2)
    assert (arenas["rss_feeds"].status, arenas["rss_feeds"].error) == ("failed", FEED_DOWN.split(": ", 1)[1])
    assert arenas["gdelt"].status == "skipped"
    assert arenas["rss_feeds"].completed_at == when(20).replace(minute=4)
    assert march.failures == (FEED_DOWN,)
    assert march.last_run is not None
    assert (march.last_run.status, march.last_run.started_at) == ("failed", when(20))
    assert march.last_run.dagster_run_id and march.last_run.dagster_run_id.startswith("run-")

    # An empty month that failed: listed, with its failure on one line.
    assert april.failures == ("rss_feeds: line one line two",)
    assert april.last_run is not None and april.last_run.status == "failed"
    # A month with records and no run.
    assert (february.arenas, february.last_run, february.failures) == ((), None, ())


def test_an_admin_sees_every_corpus_and_a_slug_narrows_without_saying_what_exists(engine, corpora_seeded):
    with engine.connect() as conn:
        admin = corpora.list_corpora(conn, viewer(engine, ADMIN))
        soeren = corpora.list_corpora(conn, viewer(engine, SOEREN))
        karen = viewer(engine, KAREN)
        narrowed = corpora.list_corpora(conn, karen, design="klimadebat")
        others = corpora.list_corpora(conn, karen, design="vindmoeller")
        unknown = corpora.list_corpora(conn, karen, design="findes-ikke")

    assert [(c.slug, c.month) for c in admin] == [
        ("klimadebat", "2026-04"),
        ("klimadebat", "2026-03"),
        ("vindmoeller", "2026-03"),
        ("klimadebat", "2026-02"),
    ]
    assert [(c.slug, c.month, c.records, c.design_name, c.owner_email) for c in soeren] == [
        ("vindmoeller", "2026-03", 1, "Vindmøller ved Ærø", SOEREN)
    ]
    assert [c.month for c in narrowed] == ["2026-04", "2026-03", "2026-02"]
    assert others == unknown == []


def count_statements(engine: sa.Engine, viewer: Viewer) -> tuple[int, int]:
    """Statements ``list_corpora`` issues, and the corpora it lists."""
    statements: list[str] = []

    def counted(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with engine.connect() as conn:
        sa.event.listen(engine, "before_cursor_execute", counted)
        try:
            listed = corpora.list_corpora(conn, viewer)
        finally:
            sa.event.remove(engine, "before_cursor_execute", counted)
    return len(statements), len(listed)


def test_listing_takes_as_many_statements_for_240_corpora_as_for_one(engine, people: People):
    admin = viewer(engine, ADMIN)
    one = make_design(engine, slug="aeroe-1", terms=("ærø",))
    add_run(engine, one, MARCH, when(1), (("rss_feeds", "failed", 0, "ingen forbindelse"),), "failed")
    ingest.write_batch(engine, [record(one, "x1", at(2), terms=["ærø"])])
    small = count_statements(engine, admin)
    assert small[1] == 1

    add_many_corpora(engine, one)
    large = count_statements(engine, admin)

    assert large[1] == 240
    # Designs, record counts, latest runs, arena tasks.
    assert large[0] == small[0] == 4


def test_a_researcher_without_designs_sees_no_corpora(engine, corpora_seeded):
    with engine.begin() as conn:
        lone = conn.execute(
            sa.text("INSERT INTO users (email, display_name) VALUES ('ny.forsker@ruc.dk', 'Ny Forsker') RETURNING id")
        ).scalar_one()
    newcomer = Viewer(user_id=lone, email="ny.forsker@ruc.dk", is_admin=False)
    with engine.connect() as conn:
        assert corpora.list_corpora(conn, newcomer) == []


# --- one corpus month --------------------------------------------------------------------------------------


def test_someone_elses_corpus_is_refused_as_a_missing_one_is(engine, corpora_seeded, local_store):
    soeren = viewer(engine, SOEREN)
    with pytest.raises(AccessRefused) as theirs:
        corpora.corpus_month(engine, local_store, soeren, "klimadebat", MARCH)
    with pytest.raises(AccessRefused) as missing:
        corpora.corpus_month(engine, local_store, soeren, "findes-ikke", MARCH)
    assert str(theirs.value).replace("klimadebat", "X") == str(missing.value).replace("findes-ikke", "X")
    assert "\n" not in str(theirs.value)

    with pytest.raises(ValueError, match="'2026-13' is not a month; write it as YYYY-MM"):
        corpora.corpus_month(engine, local_store, soeren, "vindmoeller", "2026-13")


def test_a_corpus_month_before_analysis_and_exports_is_its_summary_and_empty_lists(engine, corpora_seeded, local_store):
    karen = viewer(engine, KAREN)
    page = corpora.corpus_month(engine, local_store, karen, "klimadebat", MARCH)
    assert page.summary.records == 3 and page.summary.failures == (FEED_DOWN,)
    assert (page.volume_daily, page.top_actors, page.top_terms, page.networks, page.exports) == ([], [], [], [], [])
    assert page.manifest is None

    # A month with nothing yet is an empty page, not an error.
    empty = corpora.corpus_month(engine, local_store, karen, "groen-omstilling", "2026-05")
    assert (empty.summary.design_name, empty.summary.records, empty.summary.arenas) == ("Grøn omstilling", 0, ())
    assert empty.summary.last_run is None


def test_the_owner_sees_statistics_networks_and_exports_of_a_built_corpus(
    engine, db_url, export_corpus, instance, local_store
):
    instance.add_dynamic_partitions(query_design_partitions.name, ["klimadebat"])
    result = dg.materialize(
        [corpus_statistics, corpus_networks, *content_exports, export_gexf, export_manifest],
        instance=instance,
        partition_key=corpus_key(MARCH, "klimadebat"),
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "storage": StorageResource(local_dir=str(local_store.root)),
        },
        raise_on_error=False,
    )
    assert result.success
    with engine.connect() as conn:
        owner = conn.execute(
            sa.text("SELECT u.email FROM users u JOIN query_designs d ON d.owner_id = u.id WHERE d.slug = 'klimadebat'")
        ).scalar_one()

    page = corpora.corpus_month(engine, local_store, viewer(engine, owner), "klimadebat", MARCH)

    assert page.summary.records == 6  # the duplicate included; April's record is April's
    assert sum(row["records"] for row in page.volume_daily) == 5  # the duplicate left out
    assert {row["term"] for row in page.top_terms} == {"klima", "grøn omstilling", "vindmøller"}
    assert [row["rank"] for row in page.top_terms] == sorted(row["rank"] for row in page.top_terms)
    assert "Søren Ærø" in {row["label"] for row in page.top_actors}
    assert 0 < len(page.top_actors) <= corpora.TOP_ROWS
    assert [n["name"] for n in page.networks] == list(export_layout.NETWORKS)
    actors = page.networks[0]
    assert actors["description"].startswith("Actor co-occurrence network")
    assert {"nodes", "edges", "density", "records"} <= set(actors)
    assert [e.file for e in page.exports] == list(export_layout.all_files())
    assert {e.design for e in page.exports} == {"klimadebat"} and {e.month for e in page.exports} == {MARCH}
    assert page.manifest is not None and page.manifest["corpus"]["design"]["slug"] == "klimadebat"
    assert page.manifest == json.loads(local_store.open(page.exports[-1].key).read())

    # The admin sees the same page; the owner's other months are not listed among these exports.
    admin_page = corpora.corpus_month(engine, local_store, _admin(engine), "klimadebat", MARCH)
    assert admin_page.exports == page.exports and admin_page.summary == page.summary


def _admin(engine) -> Viewer:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (email, role) VALUES (:e, 'admin')"), {"e": ADMIN})
    return viewer(engine, ADMIN)


def test_corpus_exports_lists_one_corpus_only(engine, people: People, local_store):
    seed_exports(local_store, people)
    with engine.connect() as conn:
        march = access.visible_corpus(conn, viewer(engine, KAREN), "klimadebat", MARCH)
    listed = access.corpus_exports(local_store, march)
    assert [(e.design, e.month, e.file.filename) for e in listed] == [
        ("klimadebat", MARCH, "content.csv"),
        ("klimadebat", MARCH, "actor_cooccurrence.gexf"),
        ("klimadebat", MARCH, "manifest.json"),
    ]
    assert listed[0].rows == 2
    everything = access.list_exports(engine, local_store, viewer(engine, KAREN))
    assert [e for e in everything if (e.design, e.month) == ("klimadebat", MARCH)] == listed


# --- credits ---------------------------------------------------------------------------------------------


def test_credit_overview_is_the_balance_and_the_newest_first_history(engine, corpora_seeded):
    karen = viewer(engine, KAREN)
    service = CreditService(engine)
    with engine.connect() as conn:
        run = conn.execute(
            sa.text(
                "SELECT r.id FROM collection_runs r JOIN query_designs d ON d.id = r.query_design_id "
                "WHERE d.slug = 'klimadebat' ORDER BY r.started_at LIMIT 1"
            )
        ).scalar_one()
    service.refund(karen.user_id, 5, description="Rettelse: dobbelt opkrævning for Ærø-feedet")
    with engine.begin() as conn:
        for arena, credits in (("youtube", 40), ("x_twitter", 25)):
            conn.execute(
                sa.text(
                    "INSERT INTO credit_transactions (user_id, collection_run_id, arena, platform, credits_consumed, "
                    "transaction_type, created_at) VALUES (:u, :r, :a, :a, :c, 'settlement', clock_timestamp())"
                ),
                {"u": karen.user_id, "r": run, "a": arena, "c": credits},
            )

    first = corpora.credit_overview(engine, karen, limit=2)
    assert first.balance == service.balance(karen.user_id)
    assert first.balance.available == 1_000 - 40 - 25 + 5
    assert [(e.transaction_type, e.arena) for e in first.history] == [
        ("settlement", "x_twitter"),
        ("settlement", "youtube"),
    ]
    assert first.next_cursor is not None
    rest = corpora.credit_overview(engine, karen, before=first.next_cursor, limit=2)
    assert [(e.transaction_type, e.description) for e in rest.history] == [
        ("refund", "Rettelse: dobbelt opkrævning for Ærø-feedet")
    ]
    assert rest.next_cursor is None
