"""The bluesky arena against the local HTTP server: searchPosts and getAuthorFeed fixtures in the
lexicons' shapes (tests/fixtures/bluesky), sessions from app passwords in the credential pool on
real PostgreSQL, each documented error, a fuzz of the parser, and a collection end to end."""

from __future__ import annotations

import copy
import io
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.accounts import pool
from observatory_pipelines.core.collection import privacy
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import get_arena
from observatory_pipelines.core.collection.arenas.base import (
    ActorHandle,
    CollectedItem,
    CollectionContext,
    Interaction,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.arenas.bluesky import parse_author_feed, parse_search_page
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    QuotaExceeded,
)
from observatory_pipelines.core.collection.arenas.file_import import read_import_file
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import (
    CREDENTIAL_KEY,
    MARCH,
    SALT,
    add_platform_credential,
    content_rows,
    make_design,
    platform_credentials,
    task,
)
from tests.http_fixtures import ArenaServer, Canned, fixture_bytes

UTC = timezone.utc
NOW = datetime(2026, 4, 2, 12, tzinfo=UTC)
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
JSON = {"Content-Type": "application/json; charset=utf-8"}
SESSION = "/xrpc/com.atproto.server.createSession"
SEARCH = "/xrpc/app.bsky.feed.searchPosts"
FEED = "/xrpc/app.bsky.feed.getAuthorFeed"
APP_PASSWORD = "kq7x-2mfd-ærøp-9zzt"
SECRET = json.dumps({"identifier": "observatoriet.bsky.social", "password": APP_PASSWORD}, ensure_ascii=False)
METTE = "did:plc:mk4vq2w7xo3nfr6ctb5zl8ja"
SOREN = "did:plc:s0r3nq6hv2kjx4ybw7tdp5fe"
ASTRID = "did:plc:a5tr1dk9mw2qe7lzn4vc6xhb"
GONE = "did:plc:d3l3t3dxq7ww2kfm4r6ybn5z"


def uri(did: str, rkey: str) -> str:
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def page(name: str, headers: dict[str, str] | None = None) -> Canned:
    return Canned(200, fixture_bytes(f"bluesky/{name}.json"), {**JSON, **(headers or {})})


def session(token: str) -> Canned:
    document = json.loads(fixture_bytes("bluesky/create_session.json"))
    document["accessJwt"] = token
    return Canned(200, json.dumps(document).encode(), JSON)


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


@pytest.fixture
def xrpc():
    server = ArenaServer()
    server.start()
    yield server
    server.stop()


def quick_http(log=lambda message: None) -> HttpClient:
    return HttpClient(max_attempts=2, backoff_base_seconds=0.0, sleep=lambda s: None, log=log)


def spec(server, terms=("klima",), actors=(), **options) -> QuerySpec:
    options = {"base_url": server.url("/xrpc"), "slice_hours": 744, "min_interval_seconds": 0, **options}
    return QuerySpec("bluesky-test", terms, actors, WINDOW[0], WINDOW[1], Tier.FREE, options)


class Run:
    """One collection by the arena with a pool on ``engine``; what it yielded, searched and logged."""

    def __init__(self, engine, query: QuerySpec):
        self.searched: list[str] = []
        self.logs: list[str] = []
        arena = get_arena("bluesky")
        credentials = pool.for_arena(engine, arena, "free", key=CREDENTIAL_KEY, clock=lambda: NOW, log=self.logs.append)
        self.ctx = CollectionContext(
            http=quick_http(self.logs.append),
            credentials=credentials,
            now=lambda: NOW,
            log=self.logs.append,
            searched=self.searched.append,
        )
        self.outputs = list(arena.collect(query, self.ctx))
        self.items = [o for o in self.outputs if isinstance(o, CollectedItem)]
        self.rejected = [o for o in self.outputs if isinstance(o, Rejected)]


def collect(engine, query: QuerySpec) -> Run:
    return Run(engine, query)


def by_id(run: Run) -> dict[str, CollectedItem]:
    return {item.platform_id: item for item in run.items}


# --- search ---------------------------------------------------------------------------------------------


def test_search_follows_the_cursor_over_pages_and_keeps_to_the_month(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(SEARCH, page("search_klima_page1"), page("search_klima_page2"), page("search_klima_page3"))

    run = collect(engine, spec(xrpc))

    assert [item.platform_id.rsplit("/", 1)[1] for item in run.items] == [
        "3mf2kz7xqa22c",
        "3mf2m3aab4x2d",
        "3mf3bq6rrt52s",
        "3mf5tkx2ljm2h",
        "3mf7h2m5wqs2y",
        "3mf9v1de0qq2k",
        "3mfcz7r2pxl2b",  # 23:59:59.999 on 31 March is in; the February and April posts are not
    ]
    searches = xrpc.requests_to(SEARCH)
    assert [r.query.get("cursor") for r in searches] == [None, ["3"], ["6"]]
    assert searches[0].query["q"] == ["klima"] and searches[0].query["limit"] == ["100"]
    assert searches[0].query["since"] == ["2026-03-01T00:00:00.000Z"]
    assert searches[0].query["until"] == ["2026-04-01T00:00:00.000Z"]
    assert {r.headers["authorization"] for r in searches} == {"Bearer token-a"}
    assert len(xrpc.requests_to(SESSION)) == 1  # one login for the whole run
    assert run.searched == ["search:klima"] and {item.source for item in run.items} == {"search:klima"}
    assert platform_credentials(engine, "bluesky")[0]["quota_used_today"] == 3  # each page is one use


def test_a_month_is_searched_a_day_at_a_time_with_no_gap(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(SEARCH, page("search_empty"))

    run = collect(engine, spec(xrpc, terms=("klima", '"grøn omstilling" -atomkraft'), slice_hours=24))

    searches = xrpc.requests_to(SEARCH)
    assert len(searches) == 2 * 31 and run.items == []
    assert {r.query["q"][0] for r in searches} == {"klima", '"grøn omstilling"'}
    klima = [r for r in searches if r.query["q"] == ["klima"]]
    assert klima[0].query["since"] == ["2026-03-01T00:00:00.000Z"]
    assert all(a.query["until"] == b.query["since"] for a, b in zip(klima, klima[1:]))
    assert klima[-1].query["until"] == ["2026-04-01T00:00:00.000Z"]
    assert run.searched == ["search:klima", 'search:"grøn omstilling"']


def test_posts_map_to_the_record_fields_with_danish_text_media_and_interactions(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(SEARCH, page("search_klima_page1"), page("search_klima_page2"), page("search_empty"))

    items = by_id(collect(engine, spec(xrpc)))

    lov = items[uri(METTE, "3mf2kz7xqa22c")]
    assert lov.url == f"https://bsky.app/profile/{METTE}/post/3mf2kz7xqa22c"
    assert lov.author_platform_id == METTE and lov.author_display_name == "Mette Ærø Jørgensen"
    assert lov.text_content.startswith("Klima: Folketinget vedtager ny klimalov i dag – stor dag for den grønne")
    assert lov.published_at == datetime(2026, 3, 4, 10, 15, tzinfo=UTC) and lov.language == "da"
    assert (lov.likes_count, lov.shares_count, lov.comments_count) == (17, 6, 2)  # shares: 5 reposts + 1 quote
    assert lov.media_urls == [
        "https://cdn.bsky.app/img/feed_fullsize/plain/did:plc:mk4vq2w7xo3nfr6ctb5zl8ja/bafkreiklimalov@jpeg"
    ]
    assert lov.interactions == [Interaction("mention", author_id=SOREN)]
    assert lov.raw_metadata["handle"] == "mette-klimadebat.bsky.social" and "mette" not in lov.url

    reply = items[uri(SOREN, "3mf2m3aab4x2d")]
    assert reply.interactions == [Interaction("reply", platform_id=lov.platform_id, author_id=METTE)]
    assert reply.author_display_name == "soren.dk"  # no display name: the handle is shown, the DID is the id
    assert reply.author_platform_id == SOREN

    # Deleted posts are still named by their URI, which carries their author's DID.
    orphan = items[uri(ASTRID, "3mf3bq6rrt52s")]
    assert orphan.interactions == [Interaction("reply", platform_id=uri(GONE, "3mf3aaaaaaa2a"), author_id=GONE)]
    gone_quote = items[uri(METTE, "3mf5tkx2ljm2h")]
    assert gone_quote.interactions == [Interaction("quote", platform_id=uri(GONE, "3mf4zzzzzzz2z"), author_id=GONE)]
    assert gone_quote.media_urls == ["https://www.dr.dk/lyd/p1/klimapodcast"]

    quote = items[uri(ASTRID, "3mf7h2m5wqs2y")]
    assert quote.interactions == [Interaction("quote", platform_id=lov.platform_id, author_id=METTE)]
    assert quote.language is None  # the post gave no langs
    video = items[uri(METTE, "3mf9v1de0qq2k")]
    assert video.media_urls[0].endswith("/playlist.m3u8")


# --- actor lists ------------------------------------------------------------------------------------------


def test_an_actor_feed_pages_back_to_the_month_start_past_pins_and_reposts(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(FEED, page("author_feed_page1"), page("author_feed_page2"), page("search_empty"))
    mette = ActorHandle("bluesky", username="mette-klimadebat.bsky.social", user_id=METTE)
    other = ActorHandle("x_twitter", username="mette_dk")

    run = collect(engine, spec(xrpc, terms=(), actors=(mette, other)))

    feeds = xrpc.requests_to(FEED)
    assert len(feeds) == 2 and feeds[0].query["actor"] == [METTE]
    assert feeds[1].query["cursor"] == ["2026-03-03T06:30:00.000Z"]
    assert [item.platform_id.rsplit("/", 1)[1] for item in run.items] == [
        "3mf9v1de0qq2k",
        "3mf5tkx2ljm2h",
        "3mf2aaa7hhb2c",  # about coffee, not climate: an actor list keeps everything the actor posts
        "3mf2kz7xqa22c",
    ]
    assert run.searched == [f"actor:{METTE}"] and {item.source for item in run.items} == {f"actor:{METTE}"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b'{"error":"InvalidRequest","message":"Profile not found"}'),
        (400, b'{"error":"AccountDeactivated","message":"Account is deactivated"}'),
        (404, b'{"error":"NotFound","message":"Not Found"}'),
    ],
)
def test_a_deleted_or_deactivated_actor_is_a_rejection_not_a_failure(engine, xrpc, status, body):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(FEED, Canned(status, body, JSON))
    xrpc.route(SEARCH, page("search_klima_page3"))
    actor = ActorHandle("bluesky", username="slettet.bsky.social")

    run = collect(engine, spec(xrpc, actors=(actor,)))

    assert [r.source for r in run.rejected] == ["actor:slettet.bsky.social"]
    assert "slettet.bsky.social" in run.rejected[0].reason and "\n" not in run.rejected[0].reason
    assert len(run.items) == 1  # the search still delivered
    assert platform_credentials(engine, "bluesky")[0]["is_active"]


# --- errors -----------------------------------------------------------------------------------------------


def test_a_refused_credential_is_switched_off_and_the_next_one_used(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forsker-1", SECRET)
    add_platform_credential(engine, "bluesky", "forsker-2", SECRET)
    xrpc.route(SESSION, session("token-a"), session("token-b"))
    xrpc.route(
        SEARCH,
        Canned(401, b'{"error":"AuthenticationRequired","message":"Invalid token"}', JSON),
        header=bearer("token-a"),
    )
    xrpc.route(SEARCH, page("search_klima_page3"), header=bearer("token-b"))

    run = collect(engine, spec(xrpc))

    assert len(run.items) == 1
    rows = platform_credentials(engine, "bluesky")
    assert sorted(r["is_active"] for r in rows) == [False, True]
    refused = next(r for r in rows if not r["is_active"])
    assert "401" in refused["last_error"] and APP_PASSWORD not in refused["last_error"]
    assert len(xrpc.requests_to(SEARCH, header=bearer("token-a"))) == 1  # never retried with it
    assert not any(APP_PASSWORD in line or "token-a" in line for line in run.logs)


def test_a_refused_app_password_with_no_other_credential_fails_in_one_line(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(
        SESSION, Canned(401, b'{"error":"AuthenticationRequired","message":"Invalid identifier or password"}', JSON)
    )

    with pytest.raises(CredentialError) as err:
        collect(engine, spec(xrpc))

    assert "no active bluesky credential" in str(err.value) and "\n" not in str(err.value)
    [row] = platform_credentials(engine, "bluesky")
    assert not row["is_active"] and APP_PASSWORD not in row["last_error"]


def test_a_429_rests_the_credential_as_long_as_asked_and_rotates(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forsker-1", SECRET)
    add_platform_credential(engine, "bluesky", "forsker-2", SECRET)
    xrpc.route(SESSION, session("token-a"), session("token-b"))
    limited = b'{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}'
    xrpc.route(SEARCH, Canned(429, limited, {**JSON, "Retry-After": "90"}), header=bearer("token-a"))
    xrpc.route(SEARCH, page("search_klima_page3"), header=bearer("token-b"))

    run = collect(engine, spec(xrpc))

    assert len(run.items) == 1
    rested = [r for r in platform_credentials(engine, "bluesky") if r["exhausted_until"] is not None]
    assert [r["exhausted_until"] for r in rested] == [NOW + timedelta(seconds=90)]
    assert all(r["is_active"] for r in platform_credentials(engine, "bluesky"))


def test_a_429_without_retry_after_rests_until_the_reset_bluesky_announced(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    reset = str(int(NOW.timestamp()) + 120)
    spent = {
        "ratelimit-limit": "3000",
        "ratelimit-remaining": "0",
        "ratelimit-reset": reset,
        "ratelimit-policy": "3000;w=300",
    }
    limited = Canned(429, b'{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}', JSON)
    xrpc.route(SEARCH, page("search_klima_page1", spent), limited)

    with pytest.raises(QuotaExceeded) as err:
        collect(engine, spec(xrpc))

    assert err.value.retry_at == NOW + timedelta(seconds=120)
    assert platform_credentials(engine, "bluesky")[0]["exhausted_until"] == NOW + timedelta(seconds=120)


def test_an_expired_token_logs_in_again_once_without_blaming_the_credential(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"), session("token-b"))
    expired = Canned(400, b'{"error":"ExpiredToken","message":"Token has expired"}', JSON)
    xrpc.route(SEARCH, page("search_empty"), expired, header=bearer("token-a"))
    xrpc.route(SEARCH, page("search_klima_page3"), header=bearer("token-b"))

    first = collect(engine, spec(xrpc))
    second = collect(engine, spec(xrpc))  # the cached token has expired in between

    assert first.items == [] and len(second.items) == 1
    assert len(xrpc.requests_to(SESSION)) == 2
    assert platform_credentials(engine, "bluesky")[0]["is_active"]


def test_server_errors_are_retried_by_the_http_client(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(SEARCH, Canned(502, b"<html>Bad Gateway</html>"), page("search_klima_page3"))

    run = collect(engine, spec(xrpc))

    assert len(run.items) == 1 and len(xrpc.requests_to(SEARCH)) == 2


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["posts"][0]["author"].pop("did"), "author.did"),
        (lambda d: d["posts"][1].pop("uri"), "uri"),
        (lambda d: d["posts"][2]["record"].pop("createdAt"), "record.createdAt"),
        (lambda d: d.pop("posts"), "posts"),
    ],
)
def test_a_changed_response_shape_fails_loudly_naming_the_field(engine, xrpc, mutate, field):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    document = json.loads(fixture_bytes("bluesky/search_klima_page1.json"))
    mutate(document)
    xrpc.route(SEARCH, Canned(200, json.dumps(document).encode(), JSON))

    with pytest.raises(MalformedResponse) as err:
        collect(engine, spec(xrpc))

    assert f"'{field}'" in str(err.value) and "\n" not in str(err.value)


def test_a_session_without_an_access_token_fails_naming_it(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(
        SESSION, Canned(200, b'{"did":"did:plc:0bs3rv4t0ryk2x7qjw5mnd3a","handle":"observatoriet.bsky.social"}', JSON)
    )

    with pytest.raises(MalformedResponse, match="'accessJwt'"):
        collect(engine, spec(xrpc))


def test_options_are_checked_and_named():
    arena = get_arena("bluesky")
    with pytest.raises(ValueError, match="option 'sort'"):
        arena.validate_options({"sort": "nyeste"})
    with pytest.raises(ValueError, match="no option 'instances'"):
        arena.validate_options({"instances": []})
    with pytest.raises(ValueError, match="option 'page_limit'"):
        arena.validate_options({"page_limit": 101})
    assert arena.validate_options({})["base_url"] == "https://bsky.social/xrpc"
    assert arena.enabled_by_default is False and arena.needs_credential


# --- the parser, fuzzed -----------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_PAGE = json.loads(fixture_bytes("bluesky/search_klima_page2.json"))
_KEYS = st.sampled_from(["uri", "author", "did", "record", "createdAt", "embed", "record", "facets", "langs", "reply"])


def _replace(document, path: list[str], value):
    node = document
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node[path[-1]] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_JSON)
def test_the_parser_raises_nothing_but_malformed_response_on_any_json(document):
    for parse in (parse_search_page, parse_author_feed):
        try:
            parse(document, "search:klima")
        except MalformedResponse as err:
            assert "\n" not in str(err)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 2), path=st.lists(_KEYS, min_size=1, max_size=3), value=_JSON)
def test_the_parser_survives_any_field_of_a_real_page_replaced(index, path, value):
    document = copy.deepcopy(_PAGE)
    _replace(document["posts"][index], path, value)
    try:
        items, _ = parse_search_page(document, "search:klima")
    except MalformedResponse:
        return
    assert all(isinstance(item.platform_id, str) and item.platform_id for item in items)


# --- same post, same fields: the file import ----------------------------------------------------------------


def test_a_post_imported_from_4cat_gets_the_same_platform_id_url_and_author_as_the_api_gives(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(SEARCH, page("search_klima_page1"), page("search_empty"))
    from_api = by_id(collect(engine, spec(xrpc)))[uri(METTE, "3mf2kz7xqa22c")]
    # The same post as 4CAT's bsky datasource maps it (author by handle, link with the handle).
    row = {
        "id": uri(METTE, "3mf2kz7xqa22c"),
        "thread_id": uri(METTE, "3mf2kz7xqa22c"),
        "created_at": "2026-03-04T10:15:00+00:00",
        "author": "mette-klimadebat.bsky.social",
        "author_id": METTE,
        "body": from_api.text_content,
        "link": "https://bsky.app/profile/mette-klimadebat.bsky.social/post/3mf2kz7xqa22c",
        "like_count": 17,
        "quote_count": 1,
        "reply_count": 2,
        "repost_count": 5,
        "languages": "da",
        "author_display_name": "Mette Ærø Jørgensen",
        "timestamp": 1772619300,
    }
    [from_file] = read_import_file("4cat-bluesky-klima.ndjson", io.BytesIO(json.dumps(row).encode() + b"\n"), None)

    assert isinstance(from_file, CollectedItem)
    same = ("platform", "platform_id", "url", "author_platform_id", "published_at", "language", "shares_count")
    assert {k: getattr(from_file, k) for k in same} == {k: getattr(from_api, k) for k in same}
    assert privacy.pseudonymise(
        from_file.platform, from_file.author_platform_id, SALT.encode()
    ) == privacy.pseudonymise(from_api.platform, from_api.author_platform_id, SALT.encode())
    assert from_file.author_display_name == "Mette Ærø Jørgensen"


# --- end to end -------------------------------------------------------------------------------------------


def test_collection_end_to_end_stores_posts_with_pseudonymised_interactions(engine, xrpc, monkeypatch):
    monkeypatch.setenv("OBSERVATORY_CREDENTIAL_KEY", CREDENTIAL_KEY)
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    xrpc.route(SESSION, session("token-a"))
    xrpc.route(SEARCH, page("search_klima_page1"), page("search_klima_page2"), page("search_klima_page3"))
    options = {"base_url": xrpc.url("/xrpc"), "slice_hours": 744, "min_interval_seconds": 0}
    design = make_design(
        engine, "bluesky-klima", terms=("klima",), arenas_config={"bluesky": {"enabled": True, "options": options}}
    )
    logs: list[str] = []

    started = time.perf_counter()
    outcome = collection.collect_arena(
        engine,
        design_slug="bluesky-klima",
        month=MARCH,
        arena_name="bluesky",
        dagster_run_id="run-bsky",
        salt=SALT,
        http_factory=quick_http,
        now=NOW,
        log=logs.append,
    )
    elapsed = time.perf_counter() - started

    assert outcome.status == "completed" and outcome.written.new == 7, outcome.message
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    reply = rows[uri(SOREN, "3mf2m3aab4x2d")]
    assert reply["platform"] == "bluesky" and reply["url"] == f"https://bsky.app/profile/{SOREN}/post/3mf2m3aab4x2d"
    assert reply["pseudonymized_author_id"] == privacy.pseudonymise("bluesky", SOREN, SALT.encode())
    [link] = reply["raw_metadata"]["interactions"]
    assert link == {
        "kind": "reply",
        "platform_id": uri(METTE, "3mf2kz7xqa22c"),
        "author": privacy.pseudonymise("bluesky", METTE, SALT.encode()),
    }
    assert rows[uri(METTE, "3mf2kz7xqa22c")]["search_terms_matched"] == ["klima"]
    assert task(engine, design, "bluesky")["status"] == "completed"
    assert not any(APP_PASSWORD in line for line in logs)
    print(f"bluesky: {7 / elapsed:.0f} records/s end to end on fixtures")


def test_the_arena_refuses_to_start_without_terms_or_actors(engine, xrpc):
    add_platform_credential(engine, "bluesky", "forskning", SECRET)
    with pytest.raises(ArenaError, match="neither terms nor Bluesky actors"):
        collect(engine, spec(xrpc, terms=()))
