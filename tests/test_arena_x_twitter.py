"""The x_twitter arena against canned answers in the providers' documented formats
(tests/fixtures/x_twitter): TwitterAPI.io's advanced search at medium and the X API v2 full-archive
search at premium. Paging within the month, the mapping of every field (and that it equals the
Zeeschuimer X import's for the same post), queries from terms and accounts, the estimate against
what a run spends, a run stopped at its reservation, a killed run re-run the same day without paying
twice, the next day's ``since_id``/``since_time``, the error table, a fuzz of the parsers, and the
credit history, end to end through the credential pool on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import (
    ActorHandle,
    Checkpoint,
    CollectedItem,
    CollectionContext,
    Interaction,
    QuerySpec,
    Resume,
)
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
)
from observatory_pipelines.core.collection.arenas.file_import.mappers import from_zeeschuimer
from observatory_pipelines.core.collection.arenas.x_twitter import (
    XTwitterArena,
    build_queries,
    error_text,
    medium_item,
    parse_medium,
    premium_items,
)
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.collection.spending import Budget
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from observatory_pipelines.core.platform.settings import Secret
from tests.factories import (
    CREDENTIAL_KEY,
    MARCH,
    SALT,
    FakeClock,
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
JSON = {"content-type": "application/json"}
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
NOW = datetime(2026, 3, 31, 22, tzinfo=UTC)
MEDIUM_PATH = "/twitter/tweet/advanced_search"
PREMIUM_PATH = "/2/tweets/search/all"
PATHS = {Tier.MEDIUM: MEDIUM_PATH, Tier.PREMIUM: PREMIUM_PATH}
KEY = "twapi-fixture-key-0001"
POST_A = "2036000000000000001"


@pytest.fixture
def x_server():
    server = ArenaServer()
    server.start()
    yield server
    server.stop()


def body(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"x_twitter/{name}"), JSON)


def error(status: int, name: str, **headers: str) -> Canned:
    return Canned(status, fixture_bytes(f"x_twitter/{name}"), {**JSON, **headers})


def document(name: str) -> Any:
    return json.loads(fixture_bytes(f"x_twitter/{name}"))


def pages(tier: Tier) -> list[Canned]:
    prefix = tier.value
    return [body(f"{prefix}_page1.json"), body(f"{prefix}_page2.json"), body(f"{prefix}_page3.json")]


def reroute(server: ArenaServer, path: str, *responses: Canned) -> None:
    """Replace what ``path`` answers from now on (the server healed, or broke)."""
    with server._lock:
        server._routes[path] = list(responses)


class Lease:
    def __init__(self, secret: str) -> None:
        self.id, self.secret, self.name, self.platform = uuid.uuid4(), Secret(secret), "konto-1", "x_twitter"
        self.refusals: list[str] = []

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)


class Credential:
    """``ctx.credentials`` with one credential, as the pool's ``call`` uses it once per request."""

    def __init__(self, secret: str = KEY) -> None:
        self.lease = Lease(secret)
        self.calls = 0

    def call(self, request, *, platform=None, cost=1):
        self.calls += 1
        return request(self.lease)


def spec(tier: Tier = Tier.MEDIUM, terms=("klima",), actors=(), **options) -> QuerySpec:
    return QuerySpec("klimadebat", terms, actors, WINDOW[0], WINDOW[1], tier, options)


def run(server: ArenaServer, query: QuerySpec, resumes: dict[str, Resume] | None = None, reserved: int = 10_000):
    clock = FakeClock()
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, max_attempts=1)
    searched: list[str] = []
    credential = Credential()
    budget = Budget(reserved=reserved)
    ctx = CollectionContext(
        http=http,
        credentials=credential,
        searched=searched.append,
        budget=budget,
        resume=(resumes or {}).get,
    )
    query = replace(query, options={"base_url": server.base_url, **query.options})
    results = list(XTwitterArena().collect(query, ctx))
    return results, searched, credential, budget


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def checkpoints(results) -> list[Checkpoint]:
    return [r for r in results if isinstance(r, Checkpoint)]


# --- registry, queries ----------------------------------------------------------------------------------


def test_x_is_registered_paid_keyed_and_off_unless_a_design_asks():
    arena = registry()["x_twitter"]
    assert arena.metered and arena.needs_credential and not arena.enabled_by_default
    assert arena.platform == "x_twitter" and arena.supported_tiers == frozenset({Tier.MEDIUM, Tier.PREMIUM})


def test_terms_are_a_query_each_and_accounts_are_batched_under_the_length_limit():
    options = XTwitterArena().validate_options({})
    query = spec(terms=("klima", '"grøn omstilling" -atomkraft', "(havvind OR solceller) støj -(kul OR olie)"))
    assert build_queries(query, options) == [
        ("klima lang:da", "klima"),
        ('"grøn omstilling" -atomkraft lang:da', '"grøn omstilling" -atomkraft'),
        (
            "((havvind støj -(kul OR olie)) OR (solceller støj -(kul OR olie))) lang:da",
            "(havvind OR solceller) støj -(kul OR olie)",
        ),
    ]
    handles = tuple(ActorHandle("x_twitter", f"politiker_{n:03d}") for n in range(60))
    others = (ActorHandle("bluesky", "ikke_x"), ActorHandle("x_twitter", "@politiker_000"))
    batched = build_queries(spec(terms=(), actors=handles + others), options)
    assert all(term is None for _, term in batched) and len(batched) == 3
    assert all(len(q) <= 512 - 45 for q, _ in batched)
    assert batched[0][0].startswith("(from:politiker_000 OR from:politiker_001 OR")
    assert sum(q.count("from:") for q, _ in batched) == 60  # the duplicate and the Bluesky actor are left out
    assert len(build_queries(spec(Tier.PREMIUM, terms=(), actors=handles), options)) == 2  # 1024 characters
    unfiltered = {**options, "language_filter": False, "exclude_replies": True}
    assert build_queries(spec(), unfiltered) == [("klima -filter:replies", "klima")]
    assert build_queries(spec(Tier.PREMIUM), unfiltered) == [("klima -is:reply", "klima")]
    with pytest.raises(ArenaError, match="makes a query of"):
        build_queries(spec(terms=(" ".join(["ordet"] * 120),)), options)


def test_options_are_checked():
    arena = XTwitterArena()
    for bad in ({"max_results": 5}, {"max_pages": 0}, {"language_filter": "ja"}, {"pris": 1}, {"base_url": "ftp://x"}):
        with pytest.raises(ValueError):
            arena.validate_options(bad)


# --- paging and mapping -----------------------------------------------------------------------------------


def test_medium_pages_through_the_month_and_maps_every_field(x_server):
    x_server.route(MEDIUM_PATH, *pages(Tier.MEDIUM))

    results, searched, credential, budget = run(x_server, spec(max_pages=5))

    found = items(results)
    assert [i.platform_id for i in found] == [
        POST_A,
        "2035800000000000002",
        "2035600000000000004",
        "2035000000000000101",
        "2035000000000000102",
        "2035000000000000103",
    ]
    reply, retweet, quote = found[:3]
    assert (reply.platform, reply.content_type, reply.url) == (
        "x_twitter",
        "post",
        f"https://x.com/mette_klima/status/{POST_A}",
    )
    assert reply.text_content == "@fixture_bo Grøn omstilling på Ærø kræver mere havvind #klima https://t.co/Xyz1"
    assert reply.published_at == datetime(2026, 3, 10, 9, 15, tzinfo=UTC) and reply.language == "da"
    assert (reply.author_platform_id, reply.author_display_name) == ("mette_klima", "Mette Ørsted")
    assert (reply.views_count, reply.likes_count, reply.shares_count, reply.comments_count) == (4711, 42, 7, 3)
    assert reply.raw_metadata == {
        "author_user_id": "1480000000000000042",
        "conversation_id": "2035999999999999999",
        "in_reply_to": "2035999999999999999",
        "quote_count": 1,
        "hashtags": ["klima"],
        "links": ["https://eksempel.example.dk/havvind"],
    }
    assert reply.interactions == [
        Interaction("reply", platform_id="2035999999999999999", handle="fixture_bo"),
        Interaction("mention", handle="fixture_bo"),
    ]
    assert reply.matched_terms == ("klima",) and reply.source == searched[0] == "x search: klima lang:da"
    assert (
        retweet.text_content == "RT @fixture_anna: Vindmøllerne ved Thyborøn kører for fuld kraft i dag – klima på vej"
    )
    assert retweet.raw_metadata["retweet_of"] == "2035700000000000003"
    assert Interaction("repost", platform_id="2035700000000000003", handle="fixture_anna") in retweet.interactions
    assert quote.raw_metadata["quoted"] == "2035500000000000005"
    assert quote.interactions == [Interaction("quote", platform_id="2035500000000000005", handle="fixture_bo")]
    requests = x_server.requests_to(MEDIUM_PATH)
    assert [r.query.get("cursor", [""])[0] for r in requests] == ["", "DAACCgACGdy4-side-2", "DAACCgACGdy4-side-3"]
    assert requests[0].query["query"] == ["klima lang:da since_time:1772323200 until_time:1775001600"]
    assert requests[0].query["queryType"] == ["Latest"] and requests[0].headers["x-api-key"] == KEY
    assert [c.finished for c in checkpoints(results)] == [False, False, True]
    # $0.15 per 1,000 tweets, at least 15 of TwitterAPI.io's credits a request: 1 credit a page here.
    assert budget.spent == 3 and credential.calls == 3


def test_premium_pages_with_next_token_and_maps_from_includes(x_server):
    x_server.route(PREMIUM_PATH, *pages(Tier.PREMIUM))

    results, searched, _, budget = run(x_server, spec(Tier.PREMIUM, max_results=10))

    found = items(results)
    assert len(found) == 6 and searched == ["x search: klima lang:da"]
    reply, retweet, quote = found[:3]
    assert reply.url == f"https://x.com/mette_klima/status/{POST_A}"
    assert (reply.views_count, reply.likes_count, reply.shares_count, reply.comments_count) == (4711, 42, 7, 3)
    assert reply.interactions == [
        Interaction("reply", platform_id="2035999999999999999", handle="fixture_bo"),
        Interaction("mention", handle="fixture_bo"),
    ]
    assert (
        retweet.text_content == "RT @fixture_anna: Vindmøllerne ved Thyborøn kører for fuld kraft i dag – klima på vej"
    )
    assert quote.interactions == [Interaction("quote", platform_id="2035500000000000005", handle="fixture_bo")]
    first, second, third = x_server.requests_to(PREMIUM_PATH)
    assert first.query["start_time"] == ["2026-03-01T00:00:00Z"] and first.query["end_time"] == ["2026-04-01T00:00:00Z"]
    assert first.query["max_results"] == ["10"] and "next_token" not in first.query
    assert "referenced_tweets.id.author_id" in first.query["expansions"][0]
    assert second.query["next_token"] == ["b26v89c19zqg8o3fpzbkk"]
    assert third.query["next_token"] == ["b26v89c19zqg8o3fpzbkl"]
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert budget.spent == 5 * 6  # $0.005 a post read


def test_an_empty_answer_costs_the_minimum_at_medium_and_nothing_at_premium(x_server):
    x_server.route(MEDIUM_PATH, body("medium_empty.json"))
    x_server.route(PREMIUM_PATH, body("premium_empty.json"))
    assert run(x_server, spec())[3].spent == 1
    assert run(x_server, spec(Tier.PREMIUM))[3].spent == 0


def test_the_same_post_from_a_zeeschuimer_file_and_from_both_providers_is_one_item(x_server):
    envelope = json.loads(fixture_bytes("x_twitter/zeeschuimer-x-same-post.ndjson").decode().splitlines()[0])
    imported = from_zeeschuimer(envelope, envelope["data"], {}, "zeeschuimer")
    assert isinstance(imported, CollectedItem)
    medium = medium_item(document("medium_page1.json")["tweets"][0], "x search")
    (premium, *_), _, _ = premium_items(document("premium_page1.json"), "x search")

    for collected in (medium, premium):
        for field in (
            "platform",
            "platform_id",
            "content_type",
            "url",
            "published_at",
            "text_content",
            "language",
            "author_platform_id",
            "author_display_name",
            "views_count",
            "likes_count",
            "shares_count",
            "comments_count",
            "interactions",
        ):
            assert getattr(collected, field) == getattr(imported, field), field
        shared = {k: v for k, v in imported.raw_metadata.items() if k in collected.raw_metadata}
        assert shared == collected.raw_metadata
    # Same platform and author id: the same pseudonym.
    assert pseudonym(imported.platform, imported.author_platform_id) == pseudonym("x_twitter", "mette_klima")


# --- cost: the estimate, the reservation ----------------------------------------------------------------


@pytest.mark.parametrize(("tier", "options", "estimate", "spent"), [
    # medium: queries × max_pages × price.of(20) = 1 × 3 × ceil(20 × 0.15) = 9; the fixture's
    # three pages of 3, 2 and 1 tweets cost the 15-credit minimum each (1 of ours): 3.
    (Tier.MEDIUM, {"max_pages": 3}, 9, 3),
    # premium: queries × max_pages × price.of(max_results) = 1 × 3 × 10 × 5 = 150; 6 posts read: 30.
    (Tier.PREMIUM, {"max_pages": 3, "max_results": 10}, 150, 30),
])  # fmt: skip
def test_the_estimate_is_an_upper_bound_of_what_a_run_spends(x_server, tier, options, estimate, spent):
    x_server.route(PATHS[tier], *pages(tier))
    query = spec(tier, **options)

    assert XTwitterArena().estimate_credits(query) == estimate
    assert run(x_server, query)[3].spent == spent
    # Documented tolerance: never under what is spent; equal when every page is full (20 tweets,
    # max_results posts); with the fixture's short pages 3× (medium) and 5× (premium) over.
    with_accounts = spec(tier, actors=(ActorHandle("x_twitter", "mette_klima"),), **options)
    assert XTwitterArena().estimate_credits(with_accounts) == 2 * estimate


# --- end to end through the runner and the pool on PostgreSQL ---------------------------------------------


def x_design(engine, server: ArenaServer, tier: Tier = Tier.MEDIUM, credits: int = 10_000, **options) -> uuid.UUID:
    config = {"enabled": True, "tier": tier.value, "options": {"base_url": server.base_url, "max_pages": 3, **options}}
    return make_design(
        engine, slug="klimadebat", terms=("klima",), arenas_config={"x_twitter": config}, credits=credits
    )


def collect(engine, run_id: str = "r1", now: datetime = NOW):
    return collection.collect_arena(
        engine,
        design_slug="klimadebat",
        month=MARCH,
        arena_name="x_twitter",
        dagster_run_id=run_id,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=1, log=log),
        now=now,
        credential_key=CREDENTIAL_KEY,
    )


def ledger(engine, design: uuid.UUID) -> list[tuple[str, int, str | None, uuid.UUID | None]]:
    entries, _ = CreditService(engine).history(owner_of(engine, design), limit=200)
    return sorted((e.transaction_type, e.credits_consumed, e.arena, e.collection_run_id) for e in entries)


def test_end_to_end_pages_are_stored_charged_and_in_the_credit_history(engine, x_server):
    design = x_design(engine, x_server, Tier.PREMIUM, max_results=10)
    add_platform_credential(engine, "x_twitter", "x-bearer", KEY, tier="premium")
    x_server.route(PREMIUM_PATH, *pages(Tier.PREMIUM))

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 6
    assert (outcome.credits_reserved, outcome.credits_spent) == (150, 30)
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert rows[POST_A]["url"] == f"https://x.com/mette_klima/status/{POST_A}"
    assert rows[POST_A]["pseudonymized_author_id"] == pseudonym("x_twitter", "mette_klima")
    assert rows[POST_A]["raw_metadata"]["interactions"][0]["author"] == pseudonym("x_twitter", "fixture_bo")
    assert task(engine, design, "x_twitter")["credits_spent"] == 30
    run_id = outcome.collection_run_id
    mine = [
        (kind, credits) for kind, credits, arena, ran in ledger(engine, design) if (arena, ran) == ("x_twitter", run_id)
    ]
    # The settlement closes the reservation and the refund gives back what was not spent: 150 − 120 = 30.
    assert sorted(mine) == [("refund", 120), ("reservation", 150), ("settlement", 150)]


def test_end_to_end_a_run_stops_at_its_reservation_stores_what_it_fetched_and_settles(engine, x_server, monkeypatch):
    design = x_design(engine, x_server, Tier.PREMIUM, max_results=10)
    add_platform_credential(engine, "x_twitter", "x-bearer", KEY, tier="premium")
    x_server.route(PREMIUM_PATH, *pages(Tier.PREMIUM))
    # A reservation smaller than the options allow (as when an admin's price file changes between
    # the estimate and the run): after two pages (15 + 10) the third, which may cost 50, does not fit in 49.
    monkeypatch.setattr(XTwitterArena, "estimate_credits", lambda self, spec: 74)

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 5
    assert len(x_server.requests_to(PREMIUM_PATH)) == 2
    assert "stopped at the reserved 74 credits (25 spent)" in outcome.message
    row = task(engine, design, "x_twitter")
    assert row["status"] == "completed" and "stopped at the reserved" in (row.get("error_message") or outcome.message)
    assert row["credits_spent"] == outcome.credits_spent == 25 <= outcome.credits_reserved
    mine = [e for e in ledger(engine, design) if e[2] == "x_twitter" and e[3] == outcome.collection_run_id]
    assert sorted((k, c) for k, c, _, _ in mine) == [("refund", 49), ("reservation", 74), ("settlement", 74)]


@pytest.mark.parametrize("tier", [Tier.MEDIUM, Tier.PREMIUM])
def test_end_to_end_a_killed_run_re_run_the_same_day_does_not_pay_twice(engine, x_server, tier):
    design = x_design(engine, x_server, tier, **({"max_results": 10} if tier == Tier.PREMIUM else {}))
    add_platform_credential(engine, "x_twitter", "nøgle", KEY, tier=tier.value)
    path = PATHS[tier]
    first_pages = pages(tier)
    x_server.route(path, first_pages[0], first_pages[1], Canned(500, b"upstream broke"))

    with pytest.raises(ServerError):
        collect(engine, "r1")

    assert len(content_rows(engine, design)) == 5  # pages 1–2 stored before page 3 failed
    first = task(engine, design, "x_twitter")
    assert first["status"] == "failed"
    asked_before = len(x_server.requests_to(path))
    reroute(x_server, path, first_pages[2])

    again = collect(engine, "r2", now=NOW + timedelta(minutes=30))

    later = x_server.requests_to(path)[asked_before:]
    assert len(later) == 1  # only page 3: pages 1–2 were not asked again
    position = "cursor" if tier == Tier.MEDIUM else "next_token"
    assert later[0].query[position] == [
        document(f"{tier.value}_page2.json").get("next_cursor") or "b26v89c19zqg8o3fpzbkl"
    ]
    assert again.status == "completed" and len(content_rows(engine, design)) == 6
    once = {Tier.MEDIUM: 1 + 1 + 1, Tier.PREMIUM: 15 + 10 + 5}[tier]
    assert first["credits_spent"] + again.credits_spent == once

    # The source finished today: a third run makes no paid call at all.
    asked = len(x_server.requests_to(path))
    third = collect(engine, "r3", now=NOW + timedelta(hours=1))
    assert len(x_server.requests_to(path)) == asked and third.credits_spent == 0 and third.status == "completed"


@pytest.mark.parametrize("tier", [Tier.MEDIUM, Tier.PREMIUM])
def test_end_to_end_the_next_day_asks_only_for_what_is_newer(engine, x_server, tier):
    x_design(engine, x_server, tier)
    add_platform_credential(engine, "x_twitter", "nøgle", KEY, tier=tier.value)
    x_server.route(PATHS[tier], *pages(tier))
    collect(engine, "r1", now=NOW - timedelta(days=1))
    asked = len(x_server.requests_to(PATHS[tier]))
    reroute(x_server, PATHS[tier], body(f"{tier.value}_empty.json"))

    collect(engine, "r2", now=NOW)

    (request,) = x_server.requests_to(PATHS[tier])[asked:]
    if tier == Tier.MEDIUM:  # the newest createdAt seen, Tue Mar 10 09:15:00 UTC
        newest = int(datetime(2026, 3, 10, 9, 15, tzinfo=UTC).timestamp())
        assert request.query["query"] == [f"klima lang:da since_time:{newest} until_time:1775001600"]
    else:
        assert request.query["since_id"] == [POST_A] and "start_time" not in request.query


# --- the error table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tier", "status", "name"), [
    (Tier.MEDIUM, 401, "medium_error_401.json"),
    (Tier.MEDIUM, 403, "medium_error_403.json"),
    (Tier.PREMIUM, 401, "premium_error_401.json"),
    (Tier.PREMIUM, 403, "premium_error_403.json"),
])  # fmt: skip
def test_end_to_end_a_refused_key_is_switched_off_and_nothing_is_stored_or_charged(
    engine, x_server, tier, status, name
):
    design = x_design(engine, x_server, tier)
    add_platform_credential(engine, "x_twitter", "afvist", KEY, tier=tier.value)
    x_server.route(PATHS[tier], error(status, name))

    with pytest.raises(ArenaError) as failed:
        collect(engine)

    refused = platform_credential(engine, "x_twitter", "afvist")
    assert refused["is_active"] is False and f"HTTP {status}" in refused["last_error"]
    assert KEY not in refused["last_error"] and KEY not in str(failed.value) and "\n" not in str(failed.value)
    assert content_rows(engine, design) == [] and task(engine, design, "x_twitter")["credits_spent"] == 0


def test_end_to_end_402_out_of_credits_switches_the_key_off_and_fails_in_one_line(engine, x_server):
    design = x_design(engine, x_server)
    add_platform_credential(engine, "x_twitter", "tom-konto", KEY, tier="medium")
    add_platform_credential(engine, "x_twitter", "anden-konto", "twapi-fixture-key-0002", tier="medium")
    x_server.route(MEDIUM_PATH, error(402, "medium_error_402.json"))

    with pytest.raises(ArenaError) as failed:
        collect(engine)

    message = str(failed.value)
    assert "HTTP 402" in message and "Credits is not enough" in message and "recharge" in message
    assert len(x_server.requests_to(MEDIUM_PATH)) == 1  # not retried, not rotated
    spent_accounts = [platform_credential(engine, "x_twitter", n)["is_active"] for n in ("tom-konto", "anden-konto")]
    assert spent_accounts.count(False) == 1
    failed_task = task(engine, design, "x_twitter")
    assert failed_task["status"] == "failed" and failed_task["error_message"] == message
    assert content_rows(engine, design) == [] and failed_task["credits_spent"] == 0


def test_end_to_end_429_rests_the_key_for_retry_after(engine, x_server):
    x_design(engine, x_server)
    add_platform_credential(engine, "x_twitter", "travl", KEY, tier="medium")
    x_server.route(MEDIUM_PATH, error(429, "medium_error_429.json", **{"Retry-After": "30"}))

    with pytest.raises(ArenaError):
        collect(engine)

    rested = platform_credential(engine, "x_twitter", "travl")
    assert rested["is_active"] and rested["exhausted_until"] == NOW + timedelta(seconds=30)


@pytest.mark.parametrize(("tier", "answer", "raised", "said"), [
    (Tier.MEDIUM, Canned(200, fixture_bytes("x_twitter/medium_error_200.json"), JSON), ArenaError, "unbalanced parentheses"),
    (Tier.MEDIUM, Canned(400, fixture_bytes("x_twitter/medium_error_400.json"), JSON), ArenaError, "HTTP 400"),
    (Tier.MEDIUM, Canned(429, b"", {"Retry-After": "7"}), RateLimited, "HTTP 429"),
    (Tier.PREMIUM, Canned(429, fixture_bytes("x_twitter/premium_error_429.json"), {**JSON, "x-rate-limit-remaining": "0"}), RateLimited, "Rate limit exceeded"),
    (Tier.PREMIUM, Canned(400, fixture_bytes("x_twitter/premium_error_400.json"), JSON), ArenaError, "Invalid Request"),
    (Tier.PREMIUM, Canned(401, fixture_bytes("x_twitter/premium_error_401.json"), JSON), CredentialError, "HTTP 401"),
    (Tier.MEDIUM, Canned(500, b"<html>oops</html>"), ServerError, "500"),
    (Tier.MEDIUM, Canned(200, b"<html>login</html>", {"content-type": "text/html"}), MalformedResponse, "not JSON"),
    (Tier.MEDIUM, Canned(200, b'{"tweets": {"nej": 1}}', JSON), MalformedResponse, "no 'tweets' list"),
    (Tier.PREMIUM, Canned(200, b'{"data": []}', JSON), MalformedResponse, "no 'meta'"),
    (Tier.PREMIUM, Canned(200, b'{"data": [{"id": "1"}], "meta": {}}', JSON), MalformedResponse, "unreadable time"),
])  # fmt: skip
def test_the_error_table(x_server, tier, answer, raised, said):
    x_server.route(PATHS[tier], answer)
    with pytest.raises(raised) as failed:
        run(x_server, spec(tier))
    message = str(failed.value)
    assert said in message and "\n" not in message and KEY not in message and message.startswith("x_twitter: ")
    if raised is RateLimited:
        assert failed.value.retry_after and failed.value.retry_after > 0


def test_402_is_reported_on_the_lease_and_not_charged(x_server):
    x_server.route(MEDIUM_PATH, error(402, "medium_error_402.json"))
    clock = FakeClock()
    credential, budget = Credential(), Budget(reserved=100)
    ctx = CollectionContext(
        http=HttpClient(sleep=clock.sleep, clock=clock.clock, max_attempts=1), credentials=credential, budget=budget
    )
    with pytest.raises(ArenaError, match="out of credits"):
        list(XTwitterArena().collect(spec(base_url=x_server.base_url), ctx))
    assert credential.lease.refusals and budget.spent == 0 and credential.calls == 1


# --- fuzz -----------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
tweet_like = st.fixed_dictionaries(
    {
        "id": json_values | st.sampled_from(["2036000000000000001", "٣٤"]),
        "createdAt": json_values
        | st.sampled_from(["Tue Mar 10 09:15:00 +0000 2026", "Tue Foo 99 99:99:99 +9999 2026"]),
        "created_at": json_values | st.sampled_from(["2026-03-10T09:15:00.000Z"]),
        "author": st.dictionaries(st.sampled_from(["userName", "name", "id"]), json_values),
        "author_id": json_values,
        "entities": st.dictionaries(st.sampled_from(["hashtags", "urls", "user_mentions", "mentions"]), json_values),
        "referenced_tweets": json_values,
        "retweeted_tweet": json_values,
        "quoted_tweet": json_values,
        "public_metrics": st.dictionaries(st.sampled_from(["like_count", "impression_count"]), json_values),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, tweet_like), json_values)
def test_fuzzed_answers_map_or_fail_in_one_line(tweet, extra):
    for parse in (
        lambda: medium_item(tweet, "fuzz"),
        lambda: parse_medium({"tweets": [tweet], "has_next_page": extra, "next_cursor": extra}),
        lambda: parse_medium(tweet),
        lambda: premium_items({"data": [tweet], "includes": extra, "meta": {"next_token": extra}}, "fuzz"),
        lambda: premium_items(tweet, "fuzz"),
    ):
        try:
            result = parse()
            if isinstance(result, CollectedItem):
                assert result.url.endswith(f"/status/{result.platform_id}")
        except MalformedResponse as err:
            assert "\n" not in str(err) and str(err).startswith("x_twitter: ")
    assert isinstance(error_text(extra), str) and "\n" not in error_text({"detail": "a"})
