"""The google_search arena against canned Serper.dev and SerpAPI answers (tests/fixtures/google_search):
queries from the grammar, the month as Google's date range, Danish dates, paging and its checkpoints,
resuming a same-day re-run without paying twice, a later day's re-run that adds to each result's rank
history and never a second row, the reservation as a ceiling, the error table of both providers, a
fuzz of the parsers, and the credit ledger, end to end through the credential pool on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import (
    ActorHandle,
    Checkpoint,
    CollectedItem,
    CollectionContext,
    QuerySpec,
    Rejected,
    Resume,
)
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
)
from observatory_pipelines.core.collection.arenas.google_search import (
    GoogleQuery,
    GoogleSearchArena,
    build_queries,
    date_filter,
    link_id,
    normalise_url,
    parse_date,
    parse_serpapi,
    parse_serper,
    result_item,
)
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.collection.spending import Budget
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import (
    CREDENTIAL_KEY,
    MARCH,
    SALT,
    FakeClock,
    OneCredential,
    add_platform_credential,
    content_rows,
    make_design,
    platform_credential,
    record,
    task,
)
from tests.http_fixtures import ArenaServer, Canned, fixture_bytes

UTC = timezone.utc
JSON = {"content-type": "application/json; charset=utf-8"}
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
NOW = datetime(2026, 3, 31, 22, tzinfo=UTC)
SERPER_KEY = "serper-fixture-key-0001"
SERPAPI_KEY = "serpapi-fixture-key-0001"
PAGE = ("x-test-page",)


class GoogleServer(ArenaServer):
    """The shared fixture server, with each request's result page offered as an ``x-test-page``
    header (Serper's JSON ``page``, SerpAPI's ``start``/``num``), so each page meets its own answers;
    Serper's JSON bodies are kept in ``bodies``."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def _handler_class(self):
        handler = super()._handler_class()
        server = self

        class Handler(handler):  # type: ignore[valid-type,misc]
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                server.bodies.append(body)
                self.headers["X-Test-Page"] = str(body.get("page", ""))
                self.do_GET()

            def do_GET(self) -> None:
                if "X-Test-Page" not in self.headers:
                    query = parse_qs(urlsplit(self.path).query)
                    if "start" in query:
                        self.headers["X-Test-Page"] = str(int(query["start"][0]) // int(query["num"][0]) + 1)
                super().do_GET()

        return Handler


@pytest.fixture
def google_server():
    server = GoogleServer()
    server.start()
    yield server
    server.stop()


def body(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"google_search/{name}"), JSON)


def error(status: int, name: str, **headers: str) -> Canned:
    return Canned(status, fixture_bytes(f"google_search/{name}"), {**JSON, **headers})


def page(n: int) -> tuple[str, str]:
    return ("x-test-page", str(n))


def serper_pages(server: GoogleServer) -> None:
    for n in (1, 2, 3):
        server.route("/search", body(f"serper_page{n}.json"), header=page(n))


def spec(terms=("klima",), tier=Tier.MEDIUM, actors=(), **options) -> QuerySpec:
    return QuerySpec("klimadebat", terms, actors, WINDOW[0], WINDOW[1], tier, options)


def run(server: ArenaServer, query: QuerySpec, *, resume=None, budget: Budget | None = None, **client):
    clock = FakeClock()
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, **client)
    searched: list[str] = []
    logged: list[str] = []
    key = OneCredential("google_search", SERPER_KEY if query.tier == Tier.MEDIUM else SERPAPI_KEY)
    ctx = CollectionContext(
        http=http,
        credentials=key,
        searched=searched.append,
        log=logged.append,
        budget=budget,
        resume=resume or (lambda source: None),
        collected_at=NOW,
    )
    arena = GoogleSearchArena()
    results = list(arena.collect(replace(query, options={"base_url": server.base_url, **query.options}), ctx))
    return results, searched, logged


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def checkpoints(results) -> list[Checkpoint]:
    return [r for r in results if isinstance(r, Checkpoint)]


def test_google_search_is_registered_metered_keyed_and_off_unless_a_design_asks():
    arena = registry()["google_search"]
    assert arena.metered and arena.needs_credential and not arena.enabled_by_default
    assert arena.platform == "google_search" and arena.supported_tiers == {Tier.MEDIUM, Tier.PREMIUM}


def test_one_query_per_all_of_alternative_with_minus_exclusions():
    assert build_queries(
        ["klima", '"grøn omstilling"', "(havvind OR vindmøller) støj -atomkraft", "#dkpol", "klima -(atomkraft OR kul)"]
    ) == [
        GoogleQuery("klima", ("klima",)),
        GoogleQuery('"grøn omstilling"', ('"grøn omstilling"',)),
        GoogleQuery("havvind støj -atomkraft", ("(havvind OR vindmøller) støj -atomkraft",)),
        GoogleQuery("vindmøller støj -atomkraft", ("(havvind OR vindmøller) støj -atomkraft",)),
        GoogleQuery("dkpol", ("#dkpol",)),
        GoogleQuery("klima -atomkraft -kul", ("klima -(atomkraft OR kul)",)),
    ]
    # The same query from two terms is sent once and names both.
    assert build_queries(["klima", "klima OR klimaet"]) == [
        GoogleQuery("klima", ("klima", "klima OR klimaet")),
        GoogleQuery("klimaet", ("klima OR klimaet",)),
    ]
    with pytest.raises(ArenaError, match="cannot exclude the group"):
        build_queries(["klima -(atomkraft kul)"])


def test_the_month_is_googles_custom_date_range():
    assert date_filter(*WINDOW) == "cdr:1,cd_min:3/1/2026,cd_max:3/31/2026"
    assert date_filter(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)).endswith("cd_max:2/28/2026")


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ("4. mar. 2026", datetime(2026, 3, 4, tzinfo=UTC)),
        ("12. marts 2026", datetime(2026, 3, 12, tzinfo=UTC)),
        ("1. maj 2026", datetime(2026, 5, 1, tzinfo=UTC)),
        ("3. okt. 2025", datetime(2025, 10, 3, tzinfo=UTC)),
        ("Mar 20, 2026", datetime(2026, 3, 20, tzinfo=UTC)),
        ("20 Mar 2026", datetime(2026, 3, 20, tzinfo=UTC)),
        ("2026-03-21", datetime(2026, 3, 21, tzinfo=UTC)),
        ("30.03.2026", datetime(2026, 3, 30, tzinfo=UTC)),
        ("for 3 dage siden", None),
        ("3 days ago", None),
        ("31. feb. 2026", None),
        ("", None),
        (None, None),
    ],
)
def test_dates_google_shows_danish_or_english(shown, expected):
    assert parse_date(shown) == expected


def test_a_link_is_its_normalised_url():
    assert normalise_url("HTTPS://www.DR.dk:443/nyheder/klima/#top") == "https://www.dr.dk/nyheder/klima"
    assert normalise_url("http://dr.dk:8080/a?id=1") == "http://dr.dk:8080/a?id=1"
    assert link_id("https://www.dr.dk/nyheder/klima/") == link_id("https://WWW.dr.dk/nyheder/klima#x")
    assert len(link_id("https://www.dr.dk/")) == 64


def test_serper_pages_through_the_month_in_danish_and_maps_every_field(google_server):
    serper_pages(google_server)
    budget = Budget(reserved=3)

    results, searched, _ = run(google_server, spec(), budget=budget)

    found = items(results)
    assert len(found) == 24 and searched == ["google klima"]
    first, second, undated, relative = found[0], found[1], found[2], found[3]
    assert (first.platform, first.content_type) == ("google_search", "search_result")
    assert first.url == "https://www.dr.dk/nyheder/indland/artikel-1-1-klima"
    assert first.platform_id == link_id(first.url)
    assert first.title == "Klimaloven skærpes: Folketinget vil have grøn omstilling hurtigere"
    assert first.text_content.startswith("Æ, ø og å: klimaloven skærpes")
    assert first.published_at == datetime(2026, 3, 4, tzinfo=UTC)
    assert second.published_at == datetime(2026, 3, 12, tzinfo=UTC)
    assert first.matched_terms == ("klima",) and first.source == "google klima"
    assert first.raw_metadata == {
        "provider": "serper",
        "query": "klima",
        "page": 1,
        "rank": 1,
        "position": 1,
        "date": "4. mar. 2026",
        "domain": "www.dr.dk",
        "rank_history": [{"day": "2026-03-31", "rank": 1, "query": "klima"}],
    }
    # No date, or a relative one: the window's start, said so.
    for item in (undated, relative):
        assert item.published_at == WINDOW[0] and item.raw_metadata["published_at_source"] == "window_start"
    assert relative.raw_metadata["date"] == "for 3 dage siden"
    # Page 2's ranks follow page 1's.
    assert found[10].raw_metadata["rank"] == 11 and found[10].raw_metadata["page"] == 2
    assert [(c.state, c.finished) for c in checkpoints(results)] == [
        ({"page": 2}, False),
        ({"page": 3}, False),
        ({"page": 4}, True),
    ]
    sent = google_server.bodies
    assert [b["page"] for b in sent] == [1, 2, 3]
    assert sent[0] == {
        "q": "klima",
        "gl": "dk",
        "hl": "da",
        "num": 10,
        "page": 1,
        "tbs": "cdr:1,cd_min:3/1/2026,cd_max:3/31/2026",
    }
    assert google_server.requests_to("/search")[0].headers["x-api-key"] == SERPER_KEY
    assert (budget.spent, budget.calls) == (3, 3)


def test_a_page_short_of_num_ends_the_query(google_server):
    google_server.route("/search", body("serper_page3.json"))
    results, _, _ = run(google_server, spec(max_pages=5))
    assert len(items(results)) == 4 and len(google_server.bodies) == 1
    assert checkpoints(results)[-1].finished


def test_serpapi_sends_the_danish_locale_and_stops_when_there_is_no_next_page(google_server):
    google_server.route("/search.json", body("serpapi_page1.json"), header=page(1))
    google_server.route("/search.json", body("serpapi_page2.json"), header=page(2))
    budget = Budget(reserved=45)

    results, searched, _ = run(google_server, spec(tier=Tier.PREMIUM), budget=budget)

    found = items(results)
    assert len(found) == 17 and budget.spent == 30  # two searches of 15 credits
    query = google_server.requests_to("/search.json")[1].query
    assert {k: v[0] for k, v in query.items()} == {
        "engine": "google",
        "q": "klima",
        "gl": "dk",
        "hl": "da",
        "google_domain": "google.dk",
        "start": "10",
        "num": "10",
        "tbs": "cdr:1,cd_min:3/1/2026,cd_max:3/31/2026",
        "api_key": SERPAPI_KEY,
    }
    eleventh = found[10]
    assert eleventh.raw_metadata["position"] == 11 and eleventh.raw_metadata["rank"] == 11
    assert eleventh.raw_metadata["displayed_link"] == "https://www.dr.dk › nyheder › indland"
    assert eleventh.raw_metadata["source_name"] == "www.dr.dk" and eleventh.raw_metadata["provider"] == "serpapi"
    assert checkpoints(results)[-1] == Checkpoint("google klima", {"page": 3}, finished=True)
    assert all(SERPAPI_KEY not in s for s in searched)


def test_the_locale_is_an_option(google_server):
    google_server.route("/search.json", body("serpapi_page2.json"))
    run(google_server, spec(tier=Tier.PREMIUM, gl="se", hl="sv", google_domain="google.se"))
    query = google_server.requests_to("/search.json")[0].query
    assert (query["gl"], query["hl"], query["google_domain"]) == (["se"], ["sv"], ["google.se"])
    for bad in ({"num": 11}, {"max_pages": 0}, {"gl": "d k"}, {"base_url": "ftp://x"}, {"sprog": "da"}):
        with pytest.raises(ValueError):
            GoogleSearchArena().validate_options(bad)


def test_serpapi_no_results_is_an_empty_page_that_costs_nothing(google_server):
    google_server.route("/search.json", body("serpapi_no_results.json"))
    budget = Budget(reserved=45)
    results, _, _ = run(google_server, spec(tier=Tier.PREMIUM), budget=budget)
    assert items(results) == [] and budget.spent == 0 and checkpoints(results)[-1].finished


def test_a_same_day_resume_starts_at_the_checkpoint_and_a_finished_query_is_not_searched(google_server):
    serper_pages(google_server)

    def resumed(state, finished, today=True):
        return lambda source: Resume(state, finished, today) if source == "google klima" else None

    results, _, _ = run(google_server, spec(), resume=resumed({"page": 3}, False))
    assert [b["page"] for b in google_server.bodies] == [3] and len(items(results)) == 4

    results, searched, logged = run(google_server, spec(), resume=resumed({"page": 4}, True))
    assert results == [] and searched == [] and len(google_server.bodies) == 1
    assert "searched to the end today already" in logged[0]

    # An earlier day's checkpoint: searched again from page 1, on purpose.
    run(google_server, spec(), resume=resumed({"page": 4}, True, today=False))
    assert [b["page"] for b in google_server.bodies] == [3, 1, 2, 3]


def test_actors_are_not_searched_and_a_design_without_terms_is_refused(google_server):
    google_server.route("/search", body("serper_page3.json"))
    _, _, logged = run(google_server, spec(actors=(ActorHandle("google_search", "dr"),)))
    assert "Google has no actor search" in logged[0]
    with pytest.raises(ArenaError, match="no search terms"):
        run(google_server, spec(terms=()))
    assert GoogleSearchArena().estimate_credits(spec(terms=())) == 0


def test_the_estimate_is_queries_times_pages_times_the_price():
    arena = GoogleSearchArena()
    two = spec(terms=("klima", "(havvind OR vindmøller) støj"))
    assert arena.estimate_credits(two) == 3 * 3 * 1
    assert arena.estimate_credits(replace(two, tier=Tier.PREMIUM)) == 3 * 3 * 15
    assert arena.estimate_credits(replace(two, options={"max_pages": 5})) == 3 * 5 * 1


# --- the error table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "path", "answer", "raised", "said"),
    [
        (Tier.MEDIUM, "/search", error(403, "serper_error_unauthorized.json"), CredentialError, "Unauthorized"),
        (Tier.MEDIUM, "/search", error(401, "serper_error_unauthorized.json"), CredentialError, "HTTP 401"),
        (Tier.MEDIUM, "/search", error(400, "serper_error_no_credits.json"), CredentialError, "Not enough credits"),
        (Tier.MEDIUM, "/search", Canned(402, b'{"message":"Payment required"}', JSON), CredentialError, "HTTP 402"),
        (Tier.MEDIUM, "/search", error(400, "serper_error_bad_request.json"), ArenaError, "Query must not be empty"),
        (Tier.MEDIUM, "/search", Canned(429, b"{}", {**JSON, "Retry-After": "30"}), RateLimited, "HTTP 429"),
        (Tier.MEDIUM, "/search", Canned(500, b"oops"), ServerError, "HTTP 500"),
        (Tier.MEDIUM, "/search", Canned(200, b"<html>", {"content-type": "text/html"}), MalformedResponse, "not JSON"),
        (Tier.MEDIUM, "/search", Canned(200, b'{"organic": {}}', JSON), MalformedResponse, "not a list"),
        (Tier.PREMIUM, "/search.json", error(401, "serpapi_error_invalid_key.json"), CredentialError, "Invalid API"),
        (Tier.PREMIUM, "/search.json", error(429, "serpapi_error_run_out.json"), RateLimited, "run out"),
        (Tier.PREMIUM, "/search.json", Canned(200, b"[1, 2]", JSON), MalformedResponse, "not an object"),
    ],
)
def test_error_table(google_server, tier, path, answer, raised, said):
    google_server.route(path, answer)
    budget = Budget(reserved=100)
    with pytest.raises(raised) as failure:
        run(google_server, spec(tier=tier), budget=budget, max_attempts=1)
    message = str(failure.value)
    assert said in message and "\n" not in message and message.startswith("google_search: ")
    assert SERPER_KEY not in message and SERPAPI_KEY not in message
    assert budget.spent == 0  # refusals are not charged
    if raised is RateLimited:
        assert failure.value.retry_after == (30 if tier == Tier.MEDIUM else None)  # type: ignore[attr-defined]


# --- fuzz ----------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_result = st.fixed_dictionaries(
    {},
    optional={
        "title": _json,
        "link": _json | st.sampled_from(["https://www.dr.dk/a", "mailto:x", "http://[::1", ""]),
        "snippet": _json,
        "position": _json,
        "date": _json | st.sampled_from(["4. mar. 2026", "for 2 timer siden", "99. mar. 2026"]),
        "displayed_link": _json,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_json | st.fixed_dictionaries({"organic": st.lists(_result | _json, max_size=4)}))
def test_fuzzed_answers_never_raise_anything_but_one_line_arena_errors(document):
    for parse in (parse_serper, parse_serpapi):
        try:
            answer = parse(document if parse is parse_serper else {"organic_results": document.get("organic")}
                           if isinstance(document, dict) else document)  # fmt: skip
        except MalformedResponse as err:
            assert "\n" not in str(err)
            continue
        for rank, result in enumerate(answer.results, start=1):
            item = result_item(
                result, rank=rank, page=1, query=GoogleQuery("klima", ("klima",)), provider="serper", day="2026-03-31",
                source="google klima",
            )  # fmt: skip
            assert isinstance(item, CollectedItem | Rejected)
            if isinstance(item, CollectedItem):
                assert len(item.platform_id) == 64 and item.url and item.url.startswith("http")


# --- end to end: collect_arena through the credential pool on PostgreSQL -------------------------------


def google_design(engine, server: ArenaServer, tier: str = "medium", credits: int = 1_000, **options) -> uuid.UUID:
    config = {"enabled": True, "tier": tier, "options": {"base_url": server.base_url, **options}}
    return make_design(
        engine, slug="klimadebat", terms=("klima",), arenas_config={"google_search": config}, credits=credits
    )


def collect(engine, run_id: str = "r1", now: datetime = NOW, attempts: int = 1):
    return collection.collect_arena(
        engine,
        design_slug="klimadebat",
        month=MARCH,
        arena_name="google_search",
        dagster_run_id=run_id,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=attempts, log=log, backoff_base_seconds=0.0),
        now=now,
        credential_key=CREDENTIAL_KEY,
    )


def ledger(engine, design: uuid.UUID) -> list[tuple[str, str | None, int, uuid.UUID | None]]:
    with engine.connect() as conn:
        owner = conn.execute(sa.text("SELECT owner_id FROM query_designs WHERE id = :d"), {"d": design}).scalar_one()
    entries, _ = CreditService(engine).history(owner, limit=200)
    return [(e.transaction_type, e.arena, e.credits_consumed, e.collection_run_id) for e in reversed(entries)]


def test_end_to_end_serper_spends_its_estimate_and_the_ledger_names_arena_and_run(engine, google_server):
    design = google_design(engine, google_server)
    add_platform_credential(engine, "google_search", "serper", SERPER_KEY, tier="medium")
    serper_pages(google_server)

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 24
    # One query, three pages, all used: the estimate is spent exactly (it is the most a run spends).
    assert (outcome.credits_reserved, outcome.credits_spent) == (3, 3)
    rows = {r["url"]: r for r in content_rows(engine, design)}
    row = rows["https://www.dr.dk/nyheder/indland/artikel-1-1-klima"]
    assert row["platform"] == "google_search" and row["partition"] == "content_records_2026_03"
    assert row["search_terms_matched"] == ["klima"] and row["collection_tier"] == "medium"
    undated = rows["https://www.berlingske.dk/samfund/artikel-1-3-klima"]
    assert undated["published_at"] == WINDOW[0] and undated["raw_metadata"]["published_at_source"] == "window_start"
    run_id = outcome.collection_run_id
    assert ledger(engine, design)[-2:] == [
        ("reservation", "google_search", 3, run_id),
        ("settlement", "google_search", 3, run_id),
    ]
    assert task(engine, design, "google_search")["credits_spent"] == 3


def test_end_to_end_a_later_day_adds_to_the_rank_history_and_never_a_second_row(engine, google_server):
    design = google_design(engine, google_server, max_pages=1)
    add_platform_credential(engine, "google_search", "serper", SERPER_KEY, tier="medium")
    google_server.route("/search", body("serper_page1.json"))
    collect(engine, "dag-1")

    # The next day, Google ranks the same page-1 links in the opposite order.
    moved = json.loads(fixture_bytes("google_search/serper_page1.json"))
    moved["organic"].reverse()
    google_server._routes.clear()
    google_server.route("/search", Canned(200, json.dumps(moved).encode(), JSON))
    second = collect(engine, "dag-2", now=NOW + timedelta(days=1))

    assert second.written.new == 0 and second.written.updated == 10
    rows = content_rows(engine, design)
    assert len(rows) == 10
    top = next(r for r in rows if r["url"] == "https://www.dr.dk/nyheder/indland/artikel-1-1-klima")
    assert top["raw_metadata"]["rank_history"] == [
        {"day": "2026-03-31", "rank": 1, "query": "klima"},
        {"day": "2026-04-01", "rank": 10, "query": "klima"},
    ]
    assert top["raw_metadata"]["rank"] == 10  # the latest sighting
    assert top["published_at"] == datetime(2026, 3, 4, tzinfo=UTC)

    # The same day again, by hand (the checkpoint says finished): no call, nothing changes.
    before = len(google_server.requests_to("/search"))
    third = collect(engine, "dag-2-igen", now=NOW + timedelta(days=1, hours=1))
    assert len(google_server.requests_to("/search")) == before and third.credits_spent == 0
    assert len(content_rows(engine, design)) == 10


def test_ingest_merges_a_rank_history_without_repeating_an_entry(engine):
    design = make_design(engine, terms=("klima",))
    entry = {"day": "2026-03-31", "rank": 2, "query": "klima"}
    later = {"day": "2026-04-01", "rank": 5, "query": "klima"}

    def row(history, rank):
        metadata = {"rank": rank, "rank_history": history}
        return record(design, "a1", datetime(2026, 3, 4, tzinfo=UTC), platform="google_search", metadata=metadata)

    assert ingest.write_batch(engine, [row([entry], 2)]).new == 1
    assert ingest.write_batch(engine, [row([entry], 2)]).unchanged == 1  # the same sighting again
    assert ingest.write_batch(engine, [row([later], 5)]).updated == 1
    assert ingest.write_batch(engine, [row([entry, later], 5)]).unchanged == 1
    (stored,) = content_rows(engine, design)
    assert stored["raw_metadata"]["rank_history"] == [entry, later] and stored["raw_metadata"]["rank"] == 5
    # A key that is not a list is replaced as any other key is.
    assert ingest.write_batch(engine, [row("kaputt", 6)]).updated == 1
    assert content_rows(engine, design)[0]["raw_metadata"]["rank_history"] == "kaputt"


def test_end_to_end_killed_on_page_three_then_rerun_the_same_day_pays_each_page_once(engine, google_server):
    design = google_design(engine, google_server)
    add_platform_credential(engine, "google_search", "serper", SERPER_KEY, tier="medium")
    google_server.route("/search", body("serper_page1.json"), header=page(1))
    google_server.route("/search", body("serper_page2.json"), header=page(2))
    # Page 3 fails on both attempts of the first run, then answers.
    google_server.route(
        "/search", Canned(500, b"down"), Canned(500, b"down"), body("serper_page3.json"), header=page(3)
    )

    with pytest.raises(ServerError):
        collect(engine, "r1", attempts=2)
    assert len(content_rows(engine, design)) == 20
    first = task(engine, design, "google_search")
    assert first["status"] == "failed" and first["credits_spent"] == 2

    rerun = collect(engine, "r2", now=NOW + timedelta(minutes=30), attempts=2)

    assert rerun.status == "completed" and rerun.written.new == 4 and rerun.credits_spent == 1
    assert [b["page"] for b in google_server.bodies] == [1, 2, 3, 3, 3]  # pages 1 and 2 never again
    assert len(content_rows(engine, design)) == 24
    entries = ledger(engine, design)
    charged = sum(c for kind, _, c, _ in entries if kind == "settlement") - sum(
        c for kind, _, c, _ in entries if kind == "refund"
    )
    assert charged == 3  # each page charged once over both runs

    # Run again after the query finished: no paid call at all.
    again = collect(engine, "r3", now=NOW + timedelta(hours=1))
    assert len(google_server.bodies) == 5 and again.credits_spent == 0


def test_end_to_end_the_reservation_is_a_ceiling(engine, google_server, monkeypatch):
    design = google_design(engine, google_server)
    add_platform_credential(engine, "google_search", "serper", SERPER_KEY, tier="medium")
    serper_pages(google_server)
    # A reservation smaller than the run needs (an admin raised the price after it was made).
    monkeypatch.setattr(GoogleSearchArena, "estimate_credits", lambda self, spec: 2)

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 20
    assert "stopped at the reserved 2 credits (2 spent)" in outcome.message
    assert [b["page"] for b in google_server.bodies] == [1, 2]
    done = task(engine, design, "google_search")
    assert (done["credits_reserved"], done["credits_spent"]) == (2, 2)
    run_id = outcome.collection_run_id
    assert ledger(engine, design)[-2:] == [
        ("reservation", "google_search", 2, run_id),
        ("settlement", "google_search", 2, run_id),
    ]


def test_end_to_end_a_refused_key_is_switched_off_and_the_next_one_is_used(engine, google_server):
    google_design(engine, google_server, max_pages=1)
    add_platform_credential(engine, "google_search", "a-ugyldig", "serper-fixture-key-bad", tier="medium")
    add_platform_credential(engine, "google_search", "b-tom", "serper-fixture-key-empty", tier="medium")
    add_platform_credential(engine, "google_search", "c-god", SERPER_KEY, tier="medium")
    google_server.route(
        "/search", error(403, "serper_error_unauthorized.json"), header=("x-api-key", "serper-fixture-key-bad")
    )
    google_server.route(
        "/search", error(400, "serper_error_no_credits.json"), header=("x-api-key", "serper-fixture-key-empty")
    )
    google_server.route("/search", body("serper_page1.json"), header=("x-api-key", SERPER_KEY))
    with engine.begin() as conn:  # the good key is the most used, so the pool tries the others first
        conn.execute(
            sa.text("UPDATE api_credentials SET quota_used_today = 5, quota_date = :d WHERE credential_name = 'c-god'"),
            {"d": NOW.date()},
        )

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 10 and outcome.credits_spent == 1
    bad, empty = (platform_credential(engine, "google_search", n) for n in ("a-ugyldig", "b-tom"))
    assert bad["is_active"] is False and "Unauthorized" in bad["last_error"]
    assert empty["is_active"] is False and "Not enough credits" in empty["last_error"]
    assert "serper-fixture-key" not in bad["last_error"] + empty["last_error"]


def test_end_to_end_a_spent_serpapi_key_rests_until_midnight(engine, google_server):
    design = google_design(engine, google_server, tier="premium")
    add_platform_credential(engine, "google_search", "brugt", SERPAPI_KEY, tier="premium")
    google_server.route("/search.json", error(429, "serpapi_error_run_out.json"))

    with pytest.raises(ArenaError, match="spent until 00:00 UTC"):
        collect(engine)

    assert platform_credential(engine, "google_search", "brugt")["exhausted_until"] == datetime(2026, 4, 1, tzinfo=UTC)
    assert content_rows(engine, design) == [] and task(engine, design, "google_search")["credits_spent"] == 0
