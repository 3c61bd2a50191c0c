"""The event_registry arena against canned getArticles answers (tests/fixtures/event_registry): paging
within the month, the mapping, tokens as credits (recent vs archive searches, the estimate against
what a run spends), a run that stops at its reservation, a killed run resumed without paying twice,
the error table, a fuzz of the parsers, and end to end through the credit ledger on PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import event_registry, registry
from observatory_pipelines.core.collection.arenas.base import Checkpoint, CollectedItem, CollectionContext, QuerySpec
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
)
from observatory_pipelines.core.collection.arenas.event_registry import (
    EventRegistryArena,
    article_item,
    build_queries,
    error_text,
    parse_page,
    tokens_per_search,
)
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.collection.spending import Budget, BudgetExhausted
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
    owner_of,
    platform_credential,
    pseudonym,
    task,
)
from tests.http_fixtures import ArenaServer, Canned, fixture_bytes

UTC = timezone.utc
JSON = {"content-type": "application/json; charset=UTF-8"}
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
NOW = datetime(2026, 3, 31, 22, tzinfo=UTC)
RECENT = datetime(2026, 3, 20, tzinfo=UTC)  # March 1 is within the last 30 days: 1 token a search
API_KEY = "er-fixture-key-0001-ø"
PATH = "/api/v1/article/getArticles"
PER_PAGE = 15  # 1 token × 15 credits


def pages(server: ArenaServer) -> list[int]:
    return [b["articlesPage"] for b in server.json_bodies(PATH)]


@pytest.fixture
def er_server(monkeypatch):
    monkeypatch.setattr(event_registry, "_now", lambda: RECENT)
    server = ArenaServer()
    server.start()
    yield server
    server.stop()


def body(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"event_registry/{name}"), JSON)


def error(status: int, name: str, **headers: str) -> Canned:
    return Canned(status, fixture_bytes(f"event_registry/{name}"), {**JSON, **headers})


def spec(terms=("klima", '"grøn omstilling"'), **options) -> QuerySpec:
    options = {"articles_count": 2, "min_interval_seconds": 0.0, **options}
    return QuerySpec("klimadebat", terms, (), WINDOW[0], WINDOW[1], Tier.MEDIUM, options)


def run(server: ArenaServer, query: QuerySpec, budget: Budget | None = None):
    clock = FakeClock()
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, max_attempts=1)
    searched: list[str] = []
    key = OneCredential("event_registry", API_KEY, name="nyheder")
    ctx = CollectionContext(http=http, credentials=key, searched=searched.append, budget=budget)
    options = {"base_url": server.base_url, **query.options}
    results = list(EventRegistryArena().collect(replace(query, options=options), ctx))
    return results, searched, key


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def route_pages(server: ArenaServer) -> None:
    server.route(PATH, body("page1.json"), body("page2.json"), body("page3.json"))


def test_event_registry_is_registered_keyed_metered_and_off_unless_a_design_asks():
    arena = registry()["event_registry"]
    assert arena.needs_credential and arena.metered and not arena.enabled_by_default
    assert arena.platform == "event_registry" and arena.supported_tiers == frozenset({Tier.MEDIUM})


def test_one_word_terms_share_one_search_and_others_use_ignore_keyword():
    (shared, own) = build_queries(["klima", '"grøn omstilling"', "#dkpol", "havvind støj -atomkraft"])
    assert shared[1] == {"keyword": ["klima", "grøn omstilling", "dkpol"], "keywordOper": "or"}
    assert own[1] == {"keyword": ["havvind", "støj"], "keywordOper": "and", "ignoreKeyword": ["atomkraft"]}
    assert own[2] == "havvind støj -atomkraft" and shared[2] is None


def test_pages_within_the_month_with_every_field_mapped(er_server):
    route_pages(er_server)

    results, searched, key = run(er_server, spec(source_location_uri="http://en.wikipedia.org/wiki/Denmark"))

    found = items(results)
    assert [i.platform_id for i in found] == [f"80{n:08d}" for n in range(1, 6)]
    first = found[0]
    assert (first.platform, first.content_type) == ("event_registry", "article")
    assert first.url == "https://politiken.dk/klima/art1001/"
    assert first.title == "Grøn omstilling: Ærø får eldrevne færger"
    assert first.text_content.startswith("Færgerne mellem Ærøskøbing og Svendborg")
    assert first.published_at == datetime(2026, 3, 2, 7, 15, tzinfo=UTC) and first.language == "da"
    assert (first.author_platform_id, first.author_display_name) == ("politiken.dk", "Søren Ørsted, Åse Mølgaard")
    assert first.media_urls == ["https://politiken.dk/billeder/1.jpg"]
    assert first.raw_metadata == {
        "source_uri": "politiken.dk",
        "source_title": "Politiken",
        "authors": ["Søren Ørsted", "Åse Mølgaard"],
        "lang": "dan",
        "sentiment": 0.1,
        "data_type": "news",
        "is_duplicate": False,
    }
    assert found[1].author_display_name == "DR" and found[1].media_urls == []  # no byline: the outlet's name
    assert searched == ["event_registry search: klima | grøn omstilling"] and first.source == searched[0]

    sent = er_server.json_bodies(PATH)
    assert pages(er_server) == [1, 2, 3]
    assert sent[0]["apiKey"] == API_KEY and sent[0]["keyword"] == ["klima", "grøn omstilling"]
    assert (sent[0]["dateStart"], sent[0]["dateEnd"], sent[0]["lang"]) == ("2026-03-01", "2026-03-31", "dan")
    assert sent[0]["sourceLocationUri"] == "http://en.wikipedia.org/wiki/Denmark"
    assert (sent[0]["articlesCount"], sent[0]["articlesSortBy"], sent[0]["resultType"]) == (2, "date", "articles")
    assert sent[0]["dataType"] == ["news", "blog"] and sent[0]["keywordOper"] == "or"
    checkpoints = [r for r in results if isinstance(r, Checkpoint)]
    assert [(c.state, c.finished) for c in checkpoints] == [
        ({"page": 2}, False),
        ({"page": 3}, False),
        ({"page": 4}, True),
    ]
    assert key.costs == [1, 1, 1]


def test_recent_searches_cost_one_token_and_archive_searches_five_a_year():
    assert tokens_per_search(*WINDOW, now=RECENT) == 1
    assert tokens_per_search(*WINDOW, now=datetime(2026, 12, 6, tzinfo=UTC)) == 5


def test_the_estimate_covers_what_a_run_spends(er_server, monkeypatch):
    route_pages(er_server)
    query = spec(max_pages=5)
    arena = EventRegistryArena()

    estimate = arena.estimate_credits(query)
    budget = Budget(reserved=estimate)
    run(er_server, query, budget=budget)

    # Documented tolerance: the estimate is queries × max_pages × per page; a run spends one
    # page's price per page it asked for, so estimate ≥ spent, equal when every page allowed is used.
    assert estimate == 1 * 5 * PER_PAGE and budget.spent == 3 * PER_PAGE and budget.calls == 3
    assert arena.estimate_credits(spec(max_pages=3)) == budget.spent
    monkeypatch.setattr(event_registry, "_now", lambda: datetime(2026, 12, 6, tzinfo=UTC))
    assert arena.estimate_credits(query) == 5 * 5 * PER_PAGE  # the archive: 5 tokens a search
    assert arena.estimate_credits(spec(terms=("klima", "havvind -atomkraft"), max_pages=2)) == 2 * 2 * 5 * PER_PAGE


def test_a_budget_too_small_stops_before_the_request_it_cannot_pay(er_server):
    route_pages(er_server)
    budget = Budget(reserved=40)
    with pytest.raises(BudgetExhausted) as stop:
        run(er_server, spec(), budget=budget)
    assert pages(er_server) == [1, 2] and budget.spent == 30
    assert stop.value.summary == "stopped at the reserved 40 credits (30 spent); 1 results not fetched"


# --- the error table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canned", "raised", "says"),
    [
        (lambda: error(401, "error_invalid_key.json"), CredentialError, "Invalid API key"),
        (lambda: error(200, "error_invalid_key.json"), CredentialError, "Invalid API key"),
        (lambda: error(402, "error_no_tokens.json"), RateLimited, "no tokens left"),
        (lambda: error(200, "error_no_tokens.json"), RateLimited, "no tokens left"),
        (lambda: error(429, "error_too_many.json", **{"Retry-After": "30"}), RateLimited, "too many requests"),
        (lambda: error(400, "error_bad_query.json"), ArenaError, "Unrecognized value"),
        (lambda: Canned(500, b"Internal Server Error"), ServerError, "HTTP 500"),
        (
            lambda: Canned(200, b"<html>Vedligeholdelse</html>", {"content-type": "text/html"}),
            MalformedResponse,
            "not JSON",
        ),
        (lambda: Canned(200, b'{"events": {}}', JSON), MalformedResponse, "no 'articles'"),
    ],
)
def test_errors_are_one_line_and_never_show_the_key(er_server, canned, raised, says):
    er_server.route(PATH, canned())
    budget = Budget(reserved=1_000)
    with pytest.raises(raised) as failed:
        run(er_server, spec(), budget=budget)
    message = str(failed.value)
    assert says in message and "\n" not in message and API_KEY not in message
    if says == "too many requests":
        assert failed.value.retry_after == 30
    if raised is not MalformedResponse:
        assert budget.spent == 0  # a refusal is not a search: nothing is counted


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
article_like = st.dictionaries(
    st.sampled_from(
        ["uri", "url", "title", "body", "date", "time", "dateTime", "lang", "source", "authors", "sentiment"]
    ),
    json_values | st.sampled_from(["2026-03-02T07:15:00Z", "2026-03-02", "dan", "https://dr.dk/x", "æøå"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, article_like, st.fixed_dictionaries({"articles": json_values})))
def test_fuzzed_answers_map_or_fail_in_one_line(doc):
    try:
        article_item(doc, "fuzz")
        parse_page(doc)
    except MalformedResponse as err:
        assert "\n" not in str(err)
    assert error_text(doc) is None or "\n" not in error_text(doc)


# --- end to end: collect_arena through the credit ledger and the pool on PostgreSQL -------------------


def er_design(engine, server: ArenaServer, credits: int = 1_000, **options) -> uuid.UUID:
    config = {
        "enabled": True,
        "tier": "medium",
        "options": {
            "base_url": server.base_url,
            "articles_count": 2,
            "max_pages": 5,
            "min_interval_seconds": 0.0,
            **options,
        },
    }
    return make_design(
        engine,
        slug="klimadebat",
        terms=("klima", '"grøn omstilling"'),
        arenas_config={"event_registry": config},
        credits=credits,
    )


def collect(engine, run_id: str = "r1"):
    return collection.collect_arena(
        engine,
        design_slug="klimadebat",
        month=MARCH,
        arena_name="event_registry",
        dagster_run_id=run_id,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=1, log=log),
        now=NOW,
        credential_key=CREDENTIAL_KEY,
    )


def ledger(engine, design) -> list:
    entries, _ = CreditService(engine).history(owner_of(engine, design), limit=100)
    return list(reversed(entries))


def test_end_to_end_stores_articles_and_charges_what_it_searched(engine, er_server):
    design = er_design(engine, er_server)
    add_platform_credential(engine, "event_registry", "nyheder", API_KEY, tier="medium")
    route_pages(er_server)

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 5
    assert (outcome.credits_reserved, outcome.credits_spent) == (5 * PER_PAGE, 3 * PER_PAGE)
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert rows["8000000001"]["url"] == "https://politiken.dk/klima/art1001/"
    assert rows["8000000001"]["pseudonymized_author_id"] == pseudonym("event_registry", "politiken.dk")
    entries = ledger(engine, design)
    # The ledger settles the whole reservation and refunds what was not used.
    assert [(e.transaction_type, e.credits_consumed) for e in entries] == [
        ("reservation", 75),
        ("settlement", 75),
        ("refund", 30),
    ]
    assert all(e.arena == "event_registry" and e.collection_run_id == outcome.collection_run_id for e in entries)


def test_end_to_end_a_run_that_reaches_its_reservation_stops_stores_and_settles(engine, er_server, monkeypatch):
    design = er_design(engine, er_server)
    add_platform_credential(engine, "event_registry", "nyheder", API_KEY, tier="medium")
    route_pages(er_server)
    # A reservation smaller than the run needs (as when prices rose after the estimate was made).
    monkeypatch.setattr(EventRegistryArena, "estimate_credits", lambda self, spec: 40)

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 4 and pages(er_server) == [1, 2]
    assert "stopped at the reserved 40 credits (30 spent); 1 results not fetched" in outcome.message
    finished = task(engine, design, "event_registry")
    assert (finished["credits_reserved"], finished["credits_spent"]) == (40, 30)
    assert finished["status"] == "completed" and "stopped at the reserved" in outcome.message
    entries = ledger(engine, design)
    assert [(e.transaction_type, e.credits_consumed) for e in entries] == [
        ("reservation", 40),
        ("settlement", 40),
        ("refund", 10),
    ]
    assert all(e.arena == "event_registry" and e.collection_run_id == outcome.collection_run_id for e in entries)


def test_end_to_end_a_killed_run_resumes_and_never_pays_twice(engine, er_server):
    design = er_design(engine, er_server)
    add_platform_credential(engine, "event_registry", "nyheder", API_KEY, tier="medium")
    er_server.route(PATH, body("page1.json"), body("page2.json"), Canned(500, b"backend error"))

    with pytest.raises(ServerError):
        collect(engine, "r1")
    first = task(engine, design, "event_registry")
    assert first["status"] == "failed" and first["credits_spent"] == 2 * PER_PAGE
    assert len(content_rows(engine, design)) == 4

    er_server.reset_routes()
    er_server.route(PATH, body("page3.json"))
    before = len(er_server.json_bodies(PATH))
    second = collect(engine, "r2")
    assert pages(er_server)[before:] == [3]  # pages 1 and 2 are not asked for again
    assert second.status == "completed" and second.credits_spent == PER_PAGE
    assert len(content_rows(engine, design)) == 5

    asked = len(er_server.requests)
    third = collect(engine, "r3")
    assert len(er_server.requests) == asked and third.credits_spent == 0  # finished today: no paid call
    entries = ledger(engine, design)
    settled = sum(e.credits_consumed for e in entries if e.transaction_type == "settlement")
    refunded = sum(e.credits_consumed for e in entries if e.transaction_type == "refund")
    assert settled - refunded == 3 * PER_PAGE  # the three pages, once


def test_end_to_end_a_bad_key_is_switched_off_and_a_spent_plan_rests_the_key(engine, er_server):
    design = er_design(engine, er_server)
    add_platform_credential(engine, "event_registry", "nyheder", API_KEY, tier="medium")
    er_server.route(PATH, error(401, "error_invalid_key.json"))

    with pytest.raises(CredentialError):
        collect(engine, "r1")
    refused = platform_credential(engine, "event_registry", "nyheder")
    assert refused["is_active"] is False and "Invalid API key" in refused["last_error"]
    assert API_KEY not in refused["last_error"]
    assert task(engine, design, "event_registry")["credits_spent"] == 0

    add_platform_credential(engine, "event_registry", "brugt", "er-fixture-key-0002", tier="medium")
    er_server.reset_routes()
    er_server.route(PATH, error(402, "error_no_tokens.json"))
    with pytest.raises(ArenaError) as spent:
        collect(engine, "r2")
    assert "spent until 00:00 UTC" in str(spent.value)
    assert platform_credential(engine, "event_registry", "brugt")["exhausted_until"] == datetime(2026, 4, 1, tzinfo=UTC)


def test_end_to_end_malformed_json_fails_in_one_line_and_stores_nothing(engine, er_server):
    design = er_design(engine, er_server)
    add_platform_credential(engine, "event_registry", "nyheder", API_KEY, tier="medium")
    er_server.route(PATH, Canned(200, b"{not json", JSON))

    with pytest.raises(MalformedResponse):
        collect(engine)

    failed = task(engine, design, "event_registry")
    assert failed["status"] == "failed" and "\n" not in failed["error_message"]
    assert "not JSON" in failed["error_message"] and content_rows(engine, design) == []
