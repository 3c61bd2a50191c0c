"""The mastodon arena against the local HTTP server: hashtag and account timelines in the shapes
of docs.joinmastodon.org (tests/fixtures/mastodon), Link-header paging, rate-limit headers, each
documented error, a fuzz of the parser, and a collection end to end on real PostgreSQL."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import privacy
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import get_arena, mastodon
from observatory_pipelines.core.collection.arenas.base import (
    ActorHandle,
    CollectedItem,
    CollectionContext,
    Interaction,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.arenas.errors import CredentialError, MalformedResponse, RateLimited
from observatory_pipelines.core.collection.arenas.mastodon import max_id_at, parse_statuses
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import MARCH, SALT, content_rows, make_design, task
from tests.http_fixtures import Canned, fixture_bytes

UTC = timezone.utc
NOW = datetime(2026, 4, 2, 12, tzinfo=UTC)
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
JSON = {"Content-Type": "application/json; charset=utf-8"}
TAG = "/api/v1/timelines/tag/klima"
LOOKUP = "/api/v1/accounts/lookup"
STATUSES = "/api/v1/accounts/109312000000000001/statuses"
S1 = "https://mastodon.dk/users/klimaeks/statuses/116190000000000001"
S2 = "https://mastodon.dk/users/lars/statuses/116180000000000002"
S3 = "https://norden.social/users/sigrid/statuses/116149999999990001"
S4 = "https://mastodon.dk/users/klimaeks/statuses/116140000000000004"


def page(name: str, next_max_id: str | None = None, server=None, **headers: str) -> Canned:
    extra = dict(headers)
    if next_max_id:
        extra["Link"] = (
            f'<{server.url(TAG)}?max_id={next_max_id}>; rel="next", <{server.url(TAG)}?min_id=116190000000000001>; rel="prev"'
        )
    return Canned(200, fixture_bytes(f"mastodon/{name}.json"), {**JSON, **extra})


def quick_http(log=lambda message: None) -> HttpClient:
    return HttpClient(max_attempts=2, backoff_base_seconds=0.0, sleep=lambda s: None, log=log)


def spec(instances, terms=("klima",), actors=(), **options) -> QuerySpec:
    options = {"instances": instances, "min_interval_seconds": 0, **options}
    return QuerySpec("mastodon-test", terms, actors, WINDOW[0], WINDOW[1], Tier.FREE, options)


class Run:
    def __init__(self, query: QuerySpec):
        self.searched: list[str] = []
        self.logs: list[str] = []
        ctx = CollectionContext(
            http=quick_http(self.logs.append), now=lambda: NOW, log=self.logs.append, searched=self.searched.append
        )
        self.outputs = list(get_arena("mastodon").collect(query, ctx))
        self.items = [o for o in self.outputs if isinstance(o, CollectedItem)]
        self.rejected = [o for o in self.outputs if isinstance(o, Rejected)]


@pytest.fixture
def waits(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(mastodon, "_sleep", slept.append)
    return slept


# --- hashtag timelines --------------------------------------------------------------------------------------


def test_a_tag_timeline_is_paged_with_the_link_header_until_the_month_starts(arena_server, waits):
    arena_server.route(
        TAG,
        page("tag_klima_page1", "116180000000000002", arena_server),
        page("tag_klima_page2", "116080000000000005", arena_server),
        page("empty"),
    )

    run = Run(spec([arena_server.base_url]))

    assert [item.platform_id for item in run.items] == [S1, S2, S3, S4]
    requests = arena_server.requests_to(TAG)
    assert len(requests) == 2  # the February status ends the paging
    assert requests[0].query["max_id"] == [max_id_at(WINDOW[1])] and requests[0].query["limit"] == ["40"]
    assert requests[1].query["max_id"] == ["116180000000000002"]
    host = "127.0.0.1"
    assert run.searched == [f"{host}#klima"] and {item.source for item in run.items} == {f"{host}#klima"}
    assert waits == []


def test_statuses_map_to_the_record_fields_with_danish_text_media_and_interactions(arena_server):
    arena_server.route(TAG, page("tag_klima_page1", "116180000000000002", arena_server), page("tag_klima_page2"))

    items = {item.platform_id: item for item in Run(spec([arena_server.base_url])).items}

    report = items[S1]
    assert report.platform == "mastodon" and report.url == "https://mastodon.dk/@klimaeks/116190000000000001"
    assert report.text_content == (
        "Ny rapport: #klima-indsatsen halter i landbruget. Læs mere på https://www.dr.dk/nyheder/klima\n\nHvad gør vi nu?"
    )
    assert report.author_platform_id == "klimaeks@mastodon.dk" and report.author_display_name == "Kirsten Ø. Sørensen"
    assert report.published_at == datetime(2026, 3, 30, 8, 15, tzinfo=UTC) and report.language == "da"
    assert (report.likes_count, report.shares_count, report.comments_count) == (21, 7, 3)
    assert report.media_urls == ["https://files.mastodon.dk/media_attachments/files/116/190/000/original/rapport.png"]
    assert report.raw_metadata["tags"] == ["klima"] and report.raw_metadata["local_id"] == "116190000000000001"

    reply = items[S2]
    assert reply.interactions == [
        Interaction("reply", platform_id="127.0.0.1:116170000000000009", author_id="klimaeks@mastodon.dk"),
        Interaction("mention", author_id="klimaeks@mastodon.dk"),
    ]
    remote = items[S3]
    assert remote.author_platform_id == "sigrid@norden.social" and remote.language is None
    assert remote.url == "https://norden.social/@sigrid/116149999999990001"
    assert items[S4].raw_metadata["content_warning"] == "Vejret"


def test_the_same_status_read_on_two_instances_is_one_item_with_one_author(arena_server):
    arena_server.route(TAG, page("tag_klima_page2"))
    norden = arena_server.route("/norden/api/v1/timelines/tag/klima", page("norden_tag_klima"))

    run = Run(spec([arena_server.base_url, norden.removesuffix("/api/v1/timelines/tag/klima")]))

    assert [item.platform_id for item in run.items].count(S3) == 1
    on_dk = parse_statuses(json.loads(fixture_bytes("mastodon/tag_klima_page2.json")), "mastodon.dk", "")[0]
    at_home = parse_statuses(json.loads(fixture_bytes("mastodon/norden_tag_klima.json")), "norden.social", "")[0]
    same = ("platform", "platform_id", "url", "author_platform_id", "published_at", "text_content")
    assert {k: getattr(on_dk, k) for k in same} == {k: getattr(at_home, k) for k in same}
    assert len(run.searched) == 2


def test_terms_give_hashtag_timelines_for_words_and_hashtags_only(arena_server):
    arena_server.route("/api/v1/timelines/tag/dkpol", page("empty"))
    arena_server.route("/api/v1/timelines/tag/gr%C3%B8n", page("empty"))
    arena_server.route("/api/v1/timelines/tag/omstilling", page("empty"))

    run = Run(spec([arena_server.base_url], terms=("#DKpol", "grøn omstilling", '"grøn omstilling"', "CO2-afgift")))

    assert run.searched == ["127.0.0.1#dkpol", "127.0.0.1#grøn", "127.0.0.1#omstilling"]


# --- account timelines ------------------------------------------------------------------------------------


def test_an_account_is_looked_up_and_its_public_statuses_read_with_boosts_as_reposts(arena_server):
    arena_server.route(LOOKUP, page("account_lookup_klimaeks"))
    arena_server.route(STATUSES, page("account_statuses_klimaeks"))
    actor = ActorHandle("mastodon", username="klimaeks@127.0.0.1")

    run = Run(spec([arena_server.base_url], terms=(), actors=(actor,)))

    assert arena_server.requests_to(LOOKUP)[0].query["acct"] == ["klimaeks"]
    assert [r.reason.split(" is ")[1] for r in run.rejected] == ["private, not public; skipped"]
    boost, report, spring = run.items
    assert boost.interactions == [
        Interaction(
            "repost",
            platform_id="https://norden.social/users/sigrid/statuses/116159999999990042",
            author_id="sigrid@norden.social",
        )
    ]
    assert boost.text_content == "Klima-demonstration i Aalborg på lørdag" and boost.likes_count == 12
    assert boost.author_platform_id == "klimaeks@mastodon.dk"
    assert [report.platform_id, spring.platform_id] == [S1, S4]
    assert run.searched == ["127.0.0.1@klimaeks"]


@pytest.mark.parametrize("status", [404, 410])
def test_a_deleted_account_is_a_rejection_and_the_rest_is_collected(arena_server, status):
    arena_server.route(LOOKUP, Canned(status, fixture_bytes("mastodon/account_not_found.json"), JSON))
    arena_server.route(TAG, page("tag_klima_page2"))
    actor = ActorHandle("mastodon", username="forsvundet@andet.example")

    run = Run(spec([arena_server.base_url], actors=(actor,)))

    assert [r.source for r in run.rejected] == ["127.0.0.1@forsvundet@andet.example"]
    assert "deleted" in run.rejected[0].reason and len(run.items) == 2


def test_an_account_known_only_by_id_is_read_directly_and_a_gone_one_rejected(arena_server):
    arena_server.route(STATUSES, page("account_statuses_klimaeks"))
    arena_server.route(
        "/api/v1/accounts/109999999999999999/statuses", Canned(404, b'{"error":"Record not found"}', JSON)
    )
    known = ActorHandle("mastodon", user_id="109312000000000001")
    gone = ActorHandle("mastodon", user_id="109999999999999999")

    run = Run(spec([arena_server.base_url], terms=(), actors=(known, gone)))

    assert arena_server.requests_to(LOOKUP) == [] and len(run.items) == 3
    assert [r.source for r in run.rejected] == ["127.0.0.1@109312000000000001", "127.0.0.1@109999999999999999"]
    assert "deleted" in run.rejected[1].reason


# --- rate limits and errors --------------------------------------------------------------------------------


def test_the_instance_rate_limit_headers_pause_until_the_reset(arena_server, waits):
    reset = (NOW + timedelta(seconds=45)).isoformat().replace("+00:00", ".000Z")
    headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": reset}
    arena_server.route(
        TAG, page("tag_klima_page1", "116180000000000002", arena_server, **headers), page("tag_klima_page2")
    )

    run = Run(spec([arena_server.base_url]))

    assert waits == [45.0] and len(run.items) == 4
    assert any("waiting 45 s" in line for line in run.logs)


def test_a_429_waits_for_retry_after_then_carries_on(arena_server, waits):
    arena_server.route(
        TAG, Canned(429, b'{"error":"Too many requests"}', {**JSON, "Retry-After": "30"}), page("tag_klima_page2")
    )

    run = Run(spec([arena_server.base_url]))

    assert waits == [30.0] and len(run.items) == 2


def test_a_429_asking_too_long_a_wait_fails_retryably_in_one_line(arena_server, waits):
    arena_server.route(TAG, Canned(429, b'{"error":"Too many requests"}', {**JSON, "Retry-After": "3600"}))

    with pytest.raises(RateLimited) as err:
        Run(spec([arena_server.base_url]))

    assert err.value.retryable and err.value.retry_after == 3600 and "\n" not in str(err.value)
    assert waits == []


def test_server_errors_are_retried_by_the_http_client(arena_server):
    arena_server.route(TAG, Canned(503, b"<html>Service Unavailable</html>"), page("tag_klima_page2"))

    assert len(Run(spec([arena_server.base_url])).items) == 2
    assert len(arena_server.requests_to(TAG)) == 2


def test_an_instance_that_hides_its_timelines_is_a_credential_error(arena_server):
    arena_server.route(TAG, Canned(401, b'{"error":"This API requires an authenticated user"}', JSON))

    with pytest.raises(CredentialError) as err:
        Run(spec([arena_server.base_url]))

    assert not err.value.retryable and len(arena_server.requests_to(TAG)) == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d[0].pop("uri"), "uri"),
        (lambda d: d[1].pop("created_at"), "created_at"),
        (lambda d: d[0]["account"].pop("acct"), "account.acct"),
    ],
)
def test_a_changed_response_shape_fails_loudly_naming_the_field(arena_server, mutate, field):
    document = json.loads(fixture_bytes("mastodon/tag_klima_page1.json"))
    mutate(document)
    arena_server.route(TAG, Canned(200, json.dumps(document).encode(), JSON))

    with pytest.raises(MalformedResponse) as err:
        Run(spec([arena_server.base_url]))

    assert f"'{field}'" in str(err.value) and "\n" not in str(err.value)


def test_an_object_where_a_timeline_was_promised_fails_loudly(arena_server):
    arena_server.route(TAG, Canned(200, b'{"error":"Record not found"}', JSON))
    with pytest.raises(MalformedResponse, match="list of statuses"):
        Run(spec([arena_server.base_url]))


def test_options_are_checked_and_named():
    arena = get_arena("mastodon")
    with pytest.raises(ValueError, match="option 'instances'"):
        arena.validate_options({})
    with pytest.raises(ValueError, match="option 'instances'"):
        arena.validate_options({"instances": ["mastodon.dk"]})
    with pytest.raises(ValueError, match="option 'page_limit'"):
        arena.validate_options({"instances": ["https://mastodon.dk"], "page_limit": 80})
    assert arena.validate_options({"instances": ["https://mastodon.dk/"]})["instances"] == ["https://mastodon.dk"]
    assert arena.enabled_by_default is False and not arena.needs_credential and not arena.keep_unmatched


# --- the parser, fuzzed -----------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_STATUSES = json.loads(fixture_bytes("mastodon/account_statuses_klimaeks.json"))
_KEYS = st.sampled_from(
    ["id", "uri", "url", "created_at", "account", "acct", "content", "reblog", "mentions", "media_attachments", "tags"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_JSON)
def test_the_parser_raises_nothing_but_malformed_response_on_any_json(document):
    try:
        parse_statuses(document, "mastodon.dk", "mastodon.dk#klima")
    except MalformedResponse as err:
        assert "\n" not in str(err)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 4), path=st.lists(_KEYS, min_size=1, max_size=3), value=_JSON)
def test_the_parser_survives_any_field_of_a_real_page_replaced(index, path, value):
    document = copy.deepcopy(_STATUSES)
    node = document[index]
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node[path[-1]] = value
    try:
        results = parse_statuses(document, "mastodon.dk", "mastodon.dk@klimaeks")
    except MalformedResponse:
        return
    assert all(isinstance(r, Rejected) or r.platform_id for r in results)


# --- end to end -------------------------------------------------------------------------------------------


def test_collection_end_to_end_keeps_only_statuses_matching_a_term(engine, arena_server):
    arena_server.route(
        TAG, page("tag_klima_page1", "116180000000000002", arena_server), page("tag_klima_page2"), page("empty")
    )
    options = {"instances": [arena_server.base_url], "min_interval_seconds": 0}
    design = make_design(
        engine, "mastodon-klima", terms=("klima",), arenas_config={"mastodon": {"enabled": True, "options": options}}
    )

    started = time.perf_counter()
    outcome = collection.collect_arena(
        engine,
        design_slug="mastodon-klima",
        month=MARCH,
        arena_name="mastodon",
        dagster_run_id="run-masto",
        salt=SALT,
        http_factory=quick_http,
        now=NOW,
    )
    elapsed = time.perf_counter() - started

    assert outcome.status == "completed" and outcome.written.new == 3, outcome.message
    assert outcome.filtered == {"no_term_matched": 1}  # "#klimavenlig" is not the word klima
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert set(rows) == {S1, S2, S3}
    assert rows[S3]["pseudonymized_author_id"] == privacy.pseudonymise(
        "mastodon", "sigrid@norden.social", SALT.encode()
    )
    mention = rows[S2]["raw_metadata"]["interactions"][1]
    assert mention == {
        "kind": "mention",
        "platform_id": None,
        "author": privacy.pseudonymise("mastodon", "klimaeks@mastodon.dk", SALT.encode()),
    }
    assert rows[S1]["search_terms_matched"] == ["klima"] and rows[S1]["language"] == "da"
    assert task(engine, design, "mastodon")["status"] == "completed"
    print(f"mastodon: {4 / elapsed:.0f} records/s end to end on fixtures")
