"""The tiktok arena against canned Research API answers (tests/fixtures/tiktok): the client-credentials
token, the video query paged with cursor + search_id over a month split into ≤30-day windows, the
mapping (the same item as the file import's Zeeschuimer TikTok video), the error envelope, the
daily quota kept by the credential pool (records as the unit), checkpoints (a killed run resumes
without asking for stored pages again), a fuzz of the parsers, and end to end on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import (
    ActorHandle,
    Checkpoint,
    CollectedItem,
    CollectionContext,
    QuerySpec,
)
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
)
from observatory_pipelines.core.collection.arenas.file_import.mappers import from_zeeschuimer
from observatory_pipelines.core.collection.arenas.tiktok import (
    FIELDS,
    TikTokArena,
    build_queries,
    error_of,
    parse_page,
    video_item,
    windows,
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
SECRET = json.dumps({"client_key": "awfixturekey0001", "client_secret": "hemmelig-nøgle-0001"})
QUERY = "/v2/research/video/query/"
TOKEN = "/v2/oauth/token/"


@pytest.fixture
def tiktok_server():
    server = ArenaServer()
    server.start()
    server.route(TOKEN, body("token.json"))
    yield server
    server.stop()


def body(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"tiktok/{name}"), JSON)


def error(status: int, name: str, **headers: str) -> Canned:
    return Canned(status, fixture_bytes(f"tiktok/{name}"), {**JSON, **headers})


def spec(terms=("klima", '"grøn omstilling"'), actors=(), **options) -> QuerySpec:
    return QuerySpec("klimadebat", terms, actors, WINDOW[0], WINDOW[1], Tier.MEDIUM, options)


def run(server: ArenaServer, query: QuerySpec, budget: Budget | None = None, resume=None):
    clock = FakeClock()
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, max_attempts=1)
    searched: list[str] = []
    key = OneCredential("tiktok", SECRET, name="forskning")
    ctx = CollectionContext(
        http=http, credentials=key, searched=searched.append, budget=budget, resume=resume or (lambda source: None)
    )
    options = {"base_url": server.base_url, **query.options}
    results = list(TikTokArena().collect(replace(query, options=options), ctx))
    return results, searched, key


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def route_month(server: ArenaServer) -> None:
    server.route(QUERY, body("query_page1.json"), body("query_page2.json"), body("query_page3.json"))
    server.route(QUERY, body("query_window2.json"))


def test_tiktok_is_registered_keyed_metered_and_off_unless_a_design_asks():
    arena = registry()["tiktok"]
    assert arena.needs_credential and arena.metered and not arena.enabled_by_default
    assert arena.platform == "tiktok" and arena.supported_tiers == frozenset({Tier.MEDIUM})


def test_a_month_is_split_into_windows_of_at_most_thirty_days():
    assert [(f"{a:%m%d}", f"{b:%m%d}") for a, b in windows(*WINDOW)] == [("0301", "0330"), ("0331", "0331")]
    april = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    assert [(f"{a:%m%d}", f"{b:%m%d}") for a, b in windows(*april)] == [("0401", "0430")]
    february = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    assert len(windows(*february)) == 1


def test_terms_become_keyword_conditions_and_exclusions_go_into_not():
    (shared, own) = build_queries(["klima", '"grøn omstilling"', "#dkpol", "havvind støj -atomkraft"], "DK")
    region = {"operation": "IN", "field_name": "region_code", "field_values": ["DK"]}
    assert shared[1] == {
        "and": [region],
        "or": [
            {"operation": "IN", "field_name": "keyword", "field_values": ["klima", "grøn omstilling"]},
            {"operation": "IN", "field_name": "hashtag_name", "field_values": ["dkpol"]},
        ],
    }
    assert shared[2] is None  # three terms share the query
    assert own[1] == {
        "and": [
            region,
            {"operation": "EQ", "field_name": "keyword", "field_values": ["havvind"]},
            {"operation": "EQ", "field_name": "keyword", "field_values": ["støj"]},
        ],
        "not": [{"operation": "EQ", "field_name": "keyword", "field_values": ["atomkraft"]}],
    }
    assert own[2] == "havvind støj -atomkraft"
    assert build_queries(["klima"], None)[0][1]["and"] == []


def test_pages_and_windows_with_every_field_mapped(tiktok_server):
    route_month(tiktok_server)

    results, searched, key = run(tiktok_server, spec())

    first, second, third, fourth = items(results)
    assert (first.platform, first.platform_id, first.content_type) == ("tiktok", "7345678901234567890", "video")
    assert first.url == "https://www.tiktok.com/@dr_nyheder/video/7345678901234567890"
    assert first.published_at == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert first.text_content == "Grøn omstilling på Ærø: færgerne sejler på strøm #klima"
    assert (first.author_platform_id, first.author_display_name) == ("dr_nyheder", "dr_nyheder")
    assert (first.views_count, first.likes_count, first.shares_count, first.comments_count) == (15200, 830, 41, 97)
    assert first.raw_metadata == {
        "hashtags": ["klima", "ærø"],
        "region_code": "DK",
        "voice_to_text": "Vi står her på havnen i Ærøskøbing",
        "video_duration": 58,
    }
    assert second.platform_id == "7345678901234567891"  # the docs' example spells it video_id
    assert second.url == "https://www.tiktok.com/@klimaforsker.dk/video/7345678901234567891"
    assert third.author_platform_id == "søren_på_cykel" and "voice_to_text" not in third.raw_metadata
    assert fourth.published_at == datetime(2026, 3, 31, 21, tzinfo=UTC)
    assert searched == ["tiktok query: klima | grøn omstilling"] and first.source == searched[0]

    sent = tiktok_server.json_bodies(QUERY)
    assert [(q["start_date"], q["end_date"], q["cursor"], q.get("search_id")) for q in sent] == [
        ("20260301", "20260330", 0, None),
        ("20260301", "20260330", 100, "7351234567890123456"),
        ("20260301", "20260330", 200, "7351234567890123456"),
        ("20260331", "20260331", 0, None),
    ]
    assert sent[0]["max_count"] == 100 and sent[0]["query"]["or"][0]["field_values"] == ["klima", "grøn omstilling"]
    request = tiktok_server.requests_to(QUERY)[0]
    assert request.query["fields"] == [FIELDS] and request.headers["authorization"] == "Bearer clt.fixtureToken0001"
    token_form = dict(p.split("=", 1) for p in tiktok_server.requests_to(TOKEN)[0].body.decode().split("&"))
    assert token_form["grant_type"] == "client_credentials" and token_form["client_key"] == "awfixturekey0001"
    assert len(tiktok_server.requests_to(TOKEN)) == 1  # one token for the run
    assert key.costs == [100] * 4  # records are the pool's unit: 100 a request
    checkpoints = [r for r in results if isinstance(r, Checkpoint)]
    assert [(c.state["window"], c.state["cursor"], c.finished) for c in checkpoints] == [
        (0, 100, False),
        (0, 200, False),
        (1, 0, False),
        (2, 0, True),
    ]


def test_accounts_are_one_username_query_without_region(tiktok_server):
    tiktok_server.route(QUERY, body("query_page3.json"), body("query_empty.json"))
    actors = (ActorHandle("tiktok", "@dr_nyheder"), ActorHandle("youtube", "DR"), ActorHandle("tiktok", "tv2nyhederne"))

    results, searched, _ = run(tiktok_server, spec(terms=(), actors=actors))

    assert [i.platform_id for i in items(results)] == ["7345678901234567892"]
    assert tiktok_server.json_bodies(QUERY)[0]["query"] == {
        "and": [{"operation": "IN", "field_name": "username", "field_values": ["dr_nyheder", "tv2nyhederne"]}]
    }
    assert searched == ["tiktok query: accounts dr_nyheder,tv2nyhederne"]


def test_one_video_from_a_zeeschuimer_file_and_from_the_api_is_one_item(tiktok_server):
    api = video_item(json.loads(fixture_bytes("tiktok/query_page1.json"))["data"]["videos"][0], "api")
    meta = {"source_platform": "tiktok.com", "item_id": "7345678901234567890", "timestamp_collected": 1775000000000}
    imported = from_zeeschuimer(meta, json.loads(fixture_bytes("tiktok/zeeschuimer_video.json")), {}, "fil")

    assert isinstance(imported, CollectedItem)
    for field in (
        "platform",
        "platform_id",
        "url",
        "author_platform_id",
        "content_type",
        "published_at",
        "text_content",
    ):
        assert getattr(api, field) == getattr(imported, field), field
    assert (api.views_count, api.likes_count, api.shares_count, api.comments_count) == (
        imported.views_count,
        imported.likes_count,
        imported.shares_count,
        imported.comments_count,
    )
    assert pseudonym("tiktok", api.author_platform_id) == pseudonym("tiktok", imported.author_platform_id)
    assert api.raw_metadata["hashtags"] == imported.raw_metadata["hashtags"]


def test_the_estimate_is_zero_credits_and_the_requests_it_needs_are_documented(tiktok_server):
    route_month(tiktok_server)
    query = spec(max_pages=3)
    arena = TikTokArena()

    assert arena.estimate_credits(query) == 0
    # 1 query × 2 windows × 3 pages: what the pool's daily quota must cover at most.
    assert arena.requests_needed(query) == 6
    assert arena.requests_needed(spec(actors=(ActorHandle("tiktok", "dr_nyheder"),), max_pages=2)) == 2 * 2 * 2
    budget = Budget(reserved=0)
    results, _, key = run(tiktok_server, query, budget=budget)
    # A zero price still goes through the budget: every request asked for at most 0 and spent 0.
    assert (budget.calls, budget.spent) == (4, 0) and len(items(results)) == 4
    assert len(key.costs) == 4 <= arena.requests_needed(query)


def test_max_pages_caps_each_window(tiktok_server):
    route_month(tiktok_server)
    results, _, _ = run(tiktok_server, spec(max_pages=1))
    sent = tiktok_server.json_bodies(QUERY)
    assert [(q["start_date"], q["cursor"]) for q in sent] == [("20260301", 0), ("20260331", 0)]


# --- the error table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canned", "raised", "says"),
    [
        (lambda: error(401, "error_token_invalid.json"), CredentialError, "access_token_invalid"),
        (lambda: error(403, "error_scope.json"), CredentialError, "scope_not_authorized"),
        (lambda: error(429, "error_rate_limit.json", **{"Retry-After": "30"}), RateLimited, "rate_limit_exceeded"),
        (lambda: error(400, "error_invalid_params.json"), ArenaError, "invalid_params: Invalid date range"),
        (lambda: error(500, "error_internal.json"), ServerError, "HTTP 500"),
        (
            lambda: Canned(200, b"<html>Vedligeholdelse</html>", {"content-type": "text/html"}),
            MalformedResponse,
            "not JSON",
        ),
        (lambda: Canned(200, b'{"data": "\xc3\xa6"}', JSON), MalformedResponse, "no 'data'"),
    ],
)
def test_errors_are_one_line(tiktok_server, canned, raised, says):
    tiktok_server.route(QUERY, canned())
    with pytest.raises(raised) as failed:
        run(tiktok_server, spec())
    message = str(failed.value)
    assert says in message and "\n" not in message and "hemmelig" not in message and "clt." not in message
    if raised is RateLimited:
        assert failed.value.retry_after == 30
    if says == "access_token_invalid":  # one fresh token first: tokens may expire early
        assert len(tiktok_server.requests_to(TOKEN)) == 2 and len(tiktok_server.requests_to(QUERY)) == 2


def test_a_refused_client_key_is_a_credential_error(tiktok_server):
    tiktok_server.reset_routes()
    tiktok_server.route(TOKEN, error(401, "token_refused.json"))
    with pytest.raises(CredentialError) as refused:
        run(tiktok_server, spec())
    assert "invalid_client" in str(refused.value) and "hemmelig" not in str(refused.value)
    assert tiktok_server.requests_to(QUERY) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
video_like = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "video_id",
            "create_time",
            "username",
            "video_description",
            "view_count",
            "hashtag_names",
            "video_duration",
        ]
    ),
    json_values | st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(["7345678901234567890", "ærø"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, video_like, st.fixed_dictionaries({"data": json_values})))
def test_fuzzed_answers_map_or_fail_in_one_line(doc):
    for parse in (lambda: video_item(doc, "fuzz"), lambda: parse_page(doc)):
        try:
            result = parse()
            if isinstance(result, CollectedItem):
                assert result.platform_id.isdigit()
                assert result.url is None or result.url.endswith(f"/video/{result.platform_id}")
        except MalformedResponse as err:
            assert "\n" not in str(err)
    code, message = error_of(doc)
    assert isinstance(code, str) and isinstance(message, str)


# --- end to end: collect_arena through the credential pool on PostgreSQL -------------------------------


def tiktok_design(engine, server: ArenaServer, **options) -> uuid.UUID:
    config = {"enabled": True, "tier": "medium", "options": {"base_url": server.base_url, **options}}
    return make_design(
        engine, slug="klimadebat", terms=("klima", '"grøn omstilling"'), arenas_config={"tiktok": config}
    )


def collect(engine, run_id: str = "r1", now: datetime = NOW):
    return collection.collect_arena(
        engine,
        design_slug="klimadebat",
        month=MARCH,
        arena_name="tiktok",
        dagster_run_id=run_id,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=1, log=log),
        now=now,
        credential_key=CREDENTIAL_KEY,
    )


def quota_used(engine, name: str = "forskning") -> int:
    return platform_credential(engine, "tiktok", name)["quota_used_today"]


def test_end_to_end_stores_pseudonymised_videos_at_zero_credits(engine, tiktok_server):
    design = tiktok_design(engine, tiktok_server)
    add_platform_credential(engine, "tiktok", "forskning", SECRET, quota=100_000, tier="medium")
    route_month(tiktok_server)

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 4
    assert (outcome.credits_reserved, outcome.credits_spent) == (0, 0)
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    first = rows["7345678901234567890"]
    assert first["url"] == "https://www.tiktok.com/@dr_nyheder/video/7345678901234567890"
    assert first["pseudonymized_author_id"] == pseudonym("tiktok", "dr_nyheder")
    assert quota_used(engine) == 4 * 100
    entries, _ = CreditService(engine).history(owner_of(engine, design))
    assert all(e.arena == "tiktok" and e.collection_run_id == outcome.collection_run_id for e in entries)


def test_end_to_end_the_daily_quota_stops_the_run_saying_when_it_resets(engine, tiktok_server):
    design = tiktok_design(engine, tiktok_server)
    add_platform_credential(engine, "tiktok", "forskning", SECRET, quota=100_000, tier="medium")
    with engine.begin() as conn:  # 998 requests (99,800 records' worth) used today: two are left
        conn.execute(
            sa.text("UPDATE api_credentials SET quota_used_today = 99800, quota_date = :d WHERE platform = 'tiktok'"),
            {"d": NOW.date()},
        )
    route_month(tiktok_server)

    with pytest.raises(ArenaError) as spent:
        collect(engine)

    line = str(spent.value)
    assert line == (
        "tiktok: the only tiktok credential (medium tier) is spent until 00:00 UTC; the collection can be retried then"
    )
    failed = task(engine, design, "tiktok")
    assert failed["status"] == "failed" and failed["error_message"] == line
    assert len(content_rows(engine, design)) == 2 and len(tiktok_server.json_bodies(QUERY)) == 2
    assert quota_used(engine) == 100_000


def test_end_to_end_a_killed_run_resumes_without_asking_for_stored_pages(engine, tiktok_server):
    design = tiktok_design(engine, tiktok_server)
    add_platform_credential(engine, "tiktok", "forskning", SECRET, quota=100_000, tier="medium")
    tiktok_server.route(QUERY, body("query_page1.json"), body("query_page2.json"), error(500, "error_internal.json"))

    with pytest.raises(ServerError):
        collect(engine, "r1")
    assert len(content_rows(engine, design)) == 2

    tiktok_server.reset_routes()
    tiktok_server.route(TOKEN, body("token.json"))
    tiktok_server.route(QUERY, body("query_page3.json"), body("query_window2.json"))
    before = len(tiktok_server.json_bodies(QUERY))
    outcome = collect(engine, "r2")

    resumed = tiktok_server.json_bodies(QUERY)[before:]
    assert [(q["start_date"], q["cursor"], q.get("search_id")) for q in resumed] == [
        ("20260301", 200, "7351234567890123456"),
        ("20260331", 0, None),
    ]
    assert outcome.status == "completed" and outcome.written.new == 2 and len(content_rows(engine, design)) == 4
    # Each page's request counted once (the failed one too: TikTok counts requests, not answers).
    assert quota_used(engine) == (3 + 2) * 100

    asked = len(tiktok_server.requests)
    again = collect(engine, "r3")
    assert again.status == "completed" and len(tiktok_server.requests) == asked  # no token, no query
    assert quota_used(engine) == 500
    entries, _ = CreditService(engine).history(owner_of(engine, design))
    assert sum(e.credits_consumed for e in entries if e.transaction_type == "settlement") == 0


def test_end_to_end_a_changed_shape_fails_the_task_and_stores_nothing(engine, tiktok_server):
    design = tiktok_design(engine, tiktok_server)
    add_platform_credential(engine, "tiktok", "forskning", SECRET, quota=100_000, tier="medium")
    tiktok_server.route(QUERY, Canned(200, b'{"error": {"code": "ok"}}', JSON))

    with pytest.raises(MalformedResponse):
        collect(engine)

    failed = task(engine, design, "tiktok")
    assert failed["error_message"] == "tiktok: TikTok query answer has no 'data'; the API may have changed"
    assert content_rows(engine, design) == []


def test_end_to_end_a_refused_credential_is_switched_off(engine, tiktok_server):
    tiktok_design(engine, tiktok_server)
    add_platform_credential(engine, "tiktok", "forskning", SECRET, quota=100_000, tier="medium")
    tiktok_server.reset_routes()
    tiktok_server.route(TOKEN, error(401, "token_refused.json"))

    with pytest.raises(CredentialError):
        collect(engine)

    refused = platform_credential(engine, "tiktok", "forskning")
    assert refused["is_active"] is False and "invalid_client" in refused["last_error"]
    assert "hemmelig" not in refused["last_error"] and "awfixturekey0001" not in refused["last_error"]
