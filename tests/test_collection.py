"""Collection end to end in core: arenas replayed from fixtures, a real PostgreSQL, real ingest."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import credits, ingest, privacy, text
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import Arena, CollectedItem, Interaction
from observatory_pipelines.core.collection.arenas.errors import ServerError
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.exports.identity import AUTHOR_METADATA_KEYS
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import FEED_A, FEED_B, MARCH, SALT, content_rows, make_design, rss_feed, task
from tests.http_fixtures import Canned

NOW = datetime(2026, 4, 2, 12, tzinfo=timezone.utc)


def quick_http(log):
    return HttpClient(max_attempts=2, backoff_base_seconds=0.0, sleep=lambda s: None, log=log)


@pytest.fixture
def rss_design(engine, arena_server):
    feeds = [
        arena_server.route("/a.xml", Canned(200, FEED_A, {"Content-Type": "application/rss+xml"})),
        arena_server.route("/b.xml", Canned(200, FEED_B, {"Content-Type": "application/rss+xml"})),
    ]
    config = {"rss_feeds": {"options": {"feeds": feeds, "min_interval_seconds": 0}}, "gdelt": {"enabled": False}}
    return make_design(engine, arenas_config=config)


def collect(engine, arena: str, slug: str = "klimadebat", run: str = "run-1", **kwargs):
    kwargs.setdefault("salt", SALT)
    kwargs.setdefault("http_factory", quick_http)
    kwargs.setdefault("now", NOW)
    return collection.collect_arena(
        engine, design_slug=slug, month=MARCH, arena_name=arena, dagster_run_id=run, **kwargs
    )


def test_rss_collection_stores_matching_items_once_whatever_the_reruns(engine, rss_design):
    # The clock moves between runs, as it does between nightly runs.
    outcomes = [collect(engine, "rss_feeds", run=f"run-{i}", now=NOW + timedelta(hours=9 * i)) for i in range(3)]
    rows = content_rows(engine, rss_design)

    assert [r["platform_id"] for r in rows] == ["a1", "a3", "b1"]
    assert outcomes[0].written.new == 3 and outcomes[0].status == "completed"
    assert [o.written.new for o in outcomes[1:]] == [0, 0]
    assert [o.written.unchanged for o in outcomes[1:]] == [3, 3]
    # The feed's February item never reaches ingest: the RSS arena keeps to the month itself.
    assert outcomes[0].filtered == {"no_term_matched": 1}
    assert {r["partition"] for r in rows} == {"content_records_2026_03"}
    by_id = {r["platform_id"]: r for r in rows}
    assert sorted(by_id["a1"]["search_terms_matched"]) == ["grøn omstilling", "klima"]
    assert by_id["a3"]["search_terms_matched"] == ["CO2-afgift"]
    assert by_id["a1"]["title"] == "Klima i København"
    assert by_id["a1"]["published_at"] == datetime(2026, 3, 10, 8, tzinfo=timezone.utc)
    assert by_id["a1"]["content_hash"] == text.content_hash("Byrådet vedtog en plan for grøn omstilling i København.")
    assert isinstance(by_id["a1"]["simhash"], int)
    assert by_id["a1"]["pseudonymized_author_id"] == privacy.pseudonymise(
        "rss", by_id["a1"]["author_platform_id"], SALT.encode()
    )
    # Each rerun got its own collection run; the rows keep the run that first collected them.
    assert len({r["collection_run_id"] for r in rows}) == 1
    t = task(engine, rss_design, "rss_feeds")
    assert t["status"] == "completed" and t["records_collected"] == 3
    assert t["run_status"] == "completed"


def test_the_same_post_in_two_designs_is_kept_by_both(engine, arena_server):
    feed = arena_server.route("/a.xml", Canned(200, FEED_A))
    config = {"rss_feeds": {"options": {"feeds": [feed], "min_interval_seconds": 0}}, "gdelt": {"enabled": False}}
    first = make_design(engine, "klima-a", terms=("klima",), arenas_config=config)
    second = make_design(engine, "klima-b", terms=("CO2-afgift", "grøn omstilling"), arenas_config=config)
    collect(engine, "rss_feeds", slug="klima-a")
    collect(engine, "rss_feeds", slug="klima-b")
    assert [(r["platform_id"], r["search_terms_matched"]) for r in content_rows(engine, first)] == [("a1", ["klima"])]
    assert [(r["platform_id"], r["search_terms_matched"]) for r in content_rows(engine, second)] == [
        ("a1", ["grøn omstilling"]),
        ("a3", ["CO2-afgift"]),
    ]


def test_disabled_arena_completes_at_once_and_says_so(engine, rss_design, arena_server):
    outcome = collect(engine, "gdelt")
    assert outcome.status == "skipped" and "disabled" in outcome.message
    assert outcome.written.written == 0 and arena_server.requests == []
    assert task(engine, rss_design, "gdelt")["status"] == "skipped"


def test_collection_refuses_to_start_without_the_salt(engine, rss_design, arena_server, monkeypatch):
    monkeypatch.delenv(privacy.SALT_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match="PSEUDONYMIZATION_SALT is not set") as err:
        collect(engine, "rss_feeds", salt=None)
    assert "\n" not in str(err.value)
    assert arena_server.requests == [] and content_rows(engine, rss_design) == []


def test_bad_arenas_config_names_the_key(engine):
    make_design(engine, arenas_config={"rss_feeds": {"enabeld": True}})
    with pytest.raises(ConfigError, match="unknown key 'enabeld'"):
        collect(engine, "rss_feeds")


def test_failing_arena_keeps_what_it_read_and_records_the_error(engine, arena_server):
    articles = [
        {
            "url": f"https://www.nordlys.example.dk/klima/{i}",
            "title": f"Klima og grøn omstilling, del {i}",
            "seendate": f"20260301T{10 + i:02d}1500Z",
            "domain": "nordlys.example.dk",
            "language": "Danish",
            "sourcecountry": "Denmark",
            "socialimage": "",
        }
        for i in range(3)
    ]
    day1 = json.dumps({"articles": articles}, ensure_ascii=False).encode()
    arena_server.route("/doc", Canned(200, day1, {"Content-Type": "application/json"}), Canned(500, b"down"))
    config = {"gdelt": {"options": {"base_url": arena_server.url("/doc"), "min_interval_seconds": 0}}}
    design = make_design(engine, "gdelt-fejl", arenas_config=config)

    with pytest.raises(ServerError) as err:
        collect(engine, "gdelt", slug="gdelt-fejl")

    assert "\n" not in str(err.value)
    stored = content_rows(engine, design)
    assert sorted(r["title"] for r in stored) == sorted(a["title"] for a in articles)
    t = task(engine, design, "gdelt")
    assert t["status"] == "failed" and t["run_status"] == "failed"
    assert "gdelt" in t["error_message"] and t["records_new"] == len(stored)


class PaidTestArena(Arena):
    name = "paid_test"
    platform = "paidnet"
    description = "A test arena that costs credits."
    supported_tiers = frozenset({Tier.FREE, Tier.PREMIUM})
    expected_items_per_month = 200_000
    calls = 0

    def collect(self, spec, ctx):
        PaidTestArena.calls += 1
        yield CollectedItem(
            platform="paidnet",
            platform_id="p1",
            published_at=datetime(2026, 3, 3, tzinfo=timezone.utc),
            text_content="klima",
        )


@pytest.fixture
def paid_arena(monkeypatch):
    from observatory_pipelines.core.collection import arenas

    registry = arenas.registry()  # the built-in arenas loaded first, so the restore keeps them
    register(PaidTestArena)
    PaidTestArena.calls = 0
    yield PaidTestArena
    arenas._REGISTRY.clear()
    arenas._REGISTRY.update(registry)


def test_collection_that_cannot_reserve_fails_before_calling_the_arena(engine, paid_arena):
    design = make_design(engine, "dyr", credits=50, arenas_config={"paid_test": {"tier": "premium"}})
    with pytest.raises(credits.CreditReservationError) as err:
        collect(engine, "paid_test", slug="dyr")
    message = str(err.value)
    assert "1000 credits" in message and "50 available" in message  # estimate and balance
    assert paid_arena.calls == 0
    assert content_rows(engine, design) == []
    assert task(engine, design, "paid_test")["status"] == "failed"


def test_credits_are_reserved_and_settled_at_actual_use(engine, paid_arena):
    design = make_design(engine, "betalt", credits=5_000, arenas_config={"paid_test": {"tier": "premium"}})
    outcome = collect(engine, "paid_test", slug="betalt")
    assert outcome.credits_reserved == 1000 and outcome.credits_spent == 1  # 1 item at 5/1k, rounded up
    with engine.connect() as conn:
        owner = conn.execute(sa.text("SELECT owner_id FROM query_designs WHERE id = :d"), {"d": design}).scalar_one()
    assert credits.CreditService(engine).available(owner) == 4_999


def test_the_same_collection_never_runs_twice_at_once(engine, rss_design):
    key = collection.lock_key("klimadebat", MARCH, "rss_feeds")
    holder = engine.connect()
    try:
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        with pytest.raises(collection.CollectionInProgress, match="already being collected"):
            collect(engine, "rss_feeds")
    finally:
        holder.close()
    assert collect(engine, "rss_feeds").status == "completed"


def _zeeschuimer_line(item_id: str, text: str, created: str, likes: int, screen_name="sofie_kjaer_dk") -> str:
    data = {
        "rest_id": item_id,
        "core": {
            "user_results": {"result": {"rest_id": "42", "legacy": {"screen_name": screen_name, "name": "Sofie Kjær"}}}
        },
        "legacy": {
            "full_text": text,
            "created_at": created,
            "favorite_count": likes,
            "retweet_count": 1,
            "reply_count": 0,
            "lang": "da",
        },
    }
    return json.dumps(
        {"item_id": item_id, "source_platform": "twitter.com", "timestamp_collected": 1774000000000, "data": data},
        ensure_ascii=False,
    )


def test_file_import_counts_bad_lines_keeps_good_ones_and_refreshes_engagement(engine, tmp_path):
    folder = tmp_path / "imports" / "import-test"
    folder.mkdir(parents=True)
    export = folder / "zeeschuimer-export-twitter.com-2026-03-31T20-00-00.ndjson"
    good = [
        _zeeschuimer_line("1", "Klima er vigtigt for Ærø og Æbelø", "Tue Mar 10 19:00:00 +0000 2026", 5),
        _zeeschuimer_line("2", "Ingen termer her", "Tue Mar 10 19:05:00 +0000 2026", 1),
        _zeeschuimer_line("3", "Gammel klima-nyhed", "Thu Jan 01 00:00:00 +0000 1970", 1),
        _zeeschuimer_line("4", "Fremtidens klima", "Fri Dec 31 23:59:59 +0000 9999", 1),
        _zeeschuimer_line("5", "Nul\x00bytes og klima", "Wed Mar 11 08:00:00 +0000 2026", 2),
    ]
    export.write_text(
        "\n".join([good[0], "{not json", good[1], "[1, 2]", good[2], good[3], good[4]]) + "\n", encoding="utf-8"
    )
    design = make_design(engine, "import-test", arenas_config={"file_import": {"enabled": True}})

    first = collect(engine, "file_import", slug="import-test", import_dir=str(tmp_path / "imports"))
    rows = content_rows(engine, design)
    assert sorted(r["platform_id"] for r in rows) == ["1", "2", "5"]  # imports keep unmatched posts
    assert {r["platform"] for r in rows} == {"x_twitter"} and {r["arena"] for r in rows} == {"file_import"}
    assert first.rejected >= 4  # two unreadable lines, 1970 and 9999
    reasons = " ".join(s["reason"] for s in first.rejection_samples)
    assert "implausible publication date" in reasons
    assert "\x00" not in rows[-1]["text_content"]
    assert rows[0]["search_terms_matched"] == ["klima"] and rows[1]["search_terms_matched"] == []

    export.write_text(
        export.read_text(encoding="utf-8").replace('"favorite_count": 5', '"favorite_count": 50'), encoding="utf-8"
    )
    second = collect(engine, "file_import", slug="import-test", import_dir=str(tmp_path / "imports"), run="run-2")
    assert (second.written.new, second.written.updated, second.written.unchanged) == (0, 1, 2)
    assert {r["platform_id"]: r["likes_count"] for r in content_rows(engine, design)}["1"] == 50
    assert len(content_rows(engine, design)) == 3


@pytest.mark.parametrize("in_bulk", [False, True], ids=["batch by batch", "first load in bulk"])
def test_a_batch_the_database_refuses_fails_the_task_and_keeps_every_other_batch(
    engine, tmp_path, monkeypatch, in_bulk
):
    # Batches are written on a background thread while the next one is read: a refused batch must
    # still fail the task in one line, and the batches around it must still be stored, once.
    # A first load in bulk keeps them too (each batch is a savepoint of its one transaction).
    monkeypatch.setattr(collection, "BATCH_SIZE", 2)
    monkeypatch.setattr(ingest, "FIRST_LOAD_MIN_BYTES", 0 if in_bulk else 10**12)
    folder = tmp_path / "imports" / "skrivefejl"
    folder.mkdir(parents=True)
    posts = [
        _zeeschuimer_line(str(i), f"Klima-indlæg {i} fra Ærø", f"Tue Mar 10 1{i}:00:00 +0000 2026", i)
        for i in range(1, 7)
    ]
    (folder / "zeeschuimer-export-twitter.com.ndjson").write_text("\n".join(posts) + "\n", encoding="utf-8")
    design = make_design(engine, "skrivefejl", arenas_config={"file_import": {"enabled": True}})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                CREATE FUNCTION refuse_post_four() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.platform_id = '4' THEN RAISE EXCEPTION 'disken er fuld'; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse_post_four BEFORE INSERT ON content_items
                    FOR EACH ROW EXECUTE FUNCTION refuse_post_four();
                """
            )
        )
    imports = str(tmp_path / "imports")
    try:
        with pytest.raises(Exception, match="disken er fuld"):
            collect(engine, "file_import", slug="skrivefejl", import_dir=imports)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse_post_four ON content_items; DROP FUNCTION refuse_post_four()"))

    # Posts 3 and 4 shared the refused batch; the batches before and after it are stored.
    assert sorted(r["platform_id"] for r in content_rows(engine, design)) == ["1", "2", "5", "6"]
    failed = task(engine, design, "file_import")
    assert failed["status"] == "failed" and "disken er fuld" in failed["error_message"]
    assert "\n" not in failed["error_message"] and failed["records_new"] == 4

    again = collect(engine, "file_import", slug="skrivefejl", import_dir=imports, run="run-2")
    assert (again.written.new, again.written.unchanged) == (2, 4)
    assert sorted(r["platform_id"] for r in content_rows(engine, design)) == ["1", "2", "3", "4", "5", "6"]


def test_records_without_a_date_take_the_collection_time_and_say_so(engine, arena_server):
    undated = rss_feed(
        "<item><title>Klima uden dato</title><link>https://x.example.dk/u</link>"
        "<guid>u1</guid><description>Klima</description></item>"
    )
    feed = arena_server.route("/u.xml", Canned(200, undated))
    design = make_design(
        engine, "udateret", arenas_config={"rss_feeds": {"options": {"feeds": [feed], "min_interval_seconds": 0}}}
    )
    march_now = datetime(2026, 3, 20, 10, tzinfo=timezone.utc)
    collect(engine, "rss_feeds", slug="udateret", now=march_now)
    (row,) = content_rows(engine, design)
    assert row["published_at"] == march_now
    assert row["raw_metadata"]["ingest_notes"]["published_at_missing"] is True


def test_gdelt_records_name_the_term_its_search_found_them_for(engine, arena_server):
    boolean = '("nye vindmøller" OR havvind) -atomkraft'
    articles = [
        {
            "url": "https://www.dr.dk/nyheder/indland/havvind-ved-anholt",
            "title": "Ny park ud for Anholt",  # the title alone matches no term
            "seendate": "20260303T081500Z",
            "domain": "dr.dk",
            "language": "Danish",
            "sourcecountry": "Denmark",
        }
    ]
    body = json.dumps({"articles": articles}, ensure_ascii=False).encode()
    empty = Canned(200, b"{}", {"Content-Type": "application/json"})
    arena_server.route("/doc", empty, Canned(200, body, {"Content-Type": "application/json"}), empty)
    config = {
        "gdelt": {"options": {"base_url": arena_server.url("/doc"), "min_interval_seconds": 0, "slice_hours": 744}}
    }
    design = make_design(engine, "havvind", terms=("klima", boolean), arenas_config=config)

    collect(engine, "gdelt", slug="havvind")

    sent = [r.query["query"][0] for r in arena_server.requests_to("/doc")]
    assert sent == [
        "klima sourcecountry:DA sourcelang:danish",
        '"nye vindmøller" -atomkraft sourcecountry:DA sourcelang:danish',
        "havvind -atomkraft sourcecountry:DA sourcelang:danish",
    ]
    [stored] = content_rows(engine, design)
    assert stored["search_terms_matched"] == [boolean]


class ThreadArena(Arena):
    """A post by Åse and a reply to it that quotes, mentions and reposts, as a social arena yields them."""

    name = "thread_test"
    platform = "trådnet"
    description = "A test arena whose posts reply to each other."

    def collect(self, spec, ctx):
        ctx.searched("tråd:klima")
        when = datetime(2026, 3, 3, 9, tzinfo=timezone.utc)
        yield CollectedItem(
            platform="trådnet",
            platform_id="p1",
            published_at=when,
            text_content="Klima først",
            author_platform_id="u-åse",
        )
        yield CollectedItem(
            platform="trådnet",
            platform_id="p2",
            published_at=when + timedelta(hours=1),
            text_content="Enig om klima, @åse og @bjørn",
            author_platform_id="u-bo",
            interactions=[
                Interaction("reply", platform_id="p1", author_id="u-åse", handle="åse"),
                Interaction("mention", author_id="u-bjørn", handle="bjørn"),
                Interaction("mention", handle="ukendt"),
            ],
            source="tråd:klima",
        )


@pytest.fixture
def thread_arena():
    from observatory_pipelines.core.collection import arenas

    saved = arenas.registry()  # the built-in arenas loaded first, so the restore keeps them
    register(ThreadArena)
    yield ThreadArena
    arenas._REGISTRY.clear()
    arenas._REGISTRY.update(saved)


def test_interactions_are_stored_in_the_shared_shape_with_the_authors_pseudonyms(engine, thread_arena):
    design = make_design(engine, "traade", arenas_config={"thread_test": {"enabled": True}})
    collect(engine, "thread_test", slug="traade")

    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    reply = rows["p2"]["raw_metadata"]
    assert reply["interactions"] == [
        {"kind": "reply", "platform_id": "p1", "author": rows["p1"]["pseudonymized_author_id"]},
        {"kind": "mention", "platform_id": None, "author": privacy.pseudonymise("trådnet", "u-bjørn", SALT.encode())},
        {"kind": "mention", "platform_id": None, "author": privacy.pseudonymise("trådnet", "ukendt", SALT.encode())},
    ]
    assert reply["interaction_accounts"][0] == {"author_id": "u-åse", "handle": "åse"}
    assert "interaction_accounts" in AUTHOR_METADATA_KEYS  # left out of pseudonymised exports
    assert "interactions" not in rows["p1"]["raw_metadata"]


class OddMetadataArena(Arena):
    """Two posts: one whose platform object is plain JSON, one holding what JSON has no type for."""

    name = "odd_metadata_test"
    platform = "mærkværk"
    description = "A test arena whose raw metadata is awkward."

    def collect(self, spec, ctx):
        when = datetime(2026, 3, 4, 8, tzinfo=timezone.utc)
        plain = {"tekst": "Æbelø og Ærø", "andel": 1.5, "liste": [1, "to", None], "dybt": {"ja": True}}
        odd = {
            "set_at": when,
            "tags": {"klima"},
            "score": float("nan"),
            "stor": 2**70,
            "note": "før\x00efter",
            7: "syv",
        }
        for platform_id, metadata in (("plain", plain), ("odd", odd)):
            yield CollectedItem(
                platform="mærkværk",
                platform_id=platform_id,
                published_at=when,
                text_content="klima",
                raw_metadata=metadata,
            )


def test_raw_metadata_is_stored_as_json_whatever_the_platform_object_holds(engine):
    from observatory_pipelines.core.collection import arenas

    saved = arenas.registry()
    register(OddMetadataArena)
    try:
        design = make_design(engine, "maerkvaerk", arenas_config={"odd_metadata_test": {"enabled": True}})
        assert collect(engine, "odd_metadata_test", slug="maerkvaerk").written.new == 2
    finally:
        arenas._REGISTRY.clear()
        arenas._REGISTRY.update(saved)

    rows = {r["platform_id"]: r["raw_metadata"] for r in content_rows(engine, design)}
    assert rows["plain"] == {"tekst": "Æbelø og Ærø", "andel": 1.5, "liste": [1, "to", None], "dybt": {"ja": True}}
    # Times and sets become their text, NaN null, a NUL is dropped, a key becomes a string, and an
    # integer past 64 bits stays exact.
    assert rows["odd"] == {
        "set_at": "2026-03-04 08:00:00+00:00",
        "tags": "{'klima'}",
        "score": None,
        "stor": 2**70,
        "note": "førefter",
        "7": "syv",
    }
