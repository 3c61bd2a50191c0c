"""The reddit arena against canned answers in Reddit's documented shapes (tests/fixtures/reddit):
paging with ``after`` until the month starts, the listing cap as a rejection, user listings,
comments, deleted and private items, each error of the issue's table, a fuzz of the parsers,
the same post through the 4CAT import, and end to end through the credential pool on PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import (
    ActorHandle,
    CollectedItem,
    CollectionContext,
    Interaction,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    MalformedResponse,
    RateLimited,
    ServerError,
)
from observatory_pipelines.core.collection.arenas.file_import import read_import_file
from observatory_pipelines.core.collection.arenas.reddit import (
    RedditArena,
    build_queries,
    parse_comments,
    parse_listing,
    submission_item,
)
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
    pseudonym,
    task,
)
from tests.http_fixtures import FIXTURES, ArenaServer, Canned, fixture_bytes

UTC = timezone.utc
JSON = {"content-type": "application/json; charset=UTF-8"}
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
TOKEN = "fixture-bearer-token-abc123"
NOW = datetime(2026, 3, 31, 22, tzinfo=UTC)
CLIENT = {"client_id": "klient-id-0001", "client_secret": "klient-hemmelighed-0001"}


@pytest.fixture
def reddit_server():
    server = ArenaServer()
    server.start()
    yield server
    server.stop()


def body(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"reddit/{name}"), JSON)


def document(name: str) -> Any:
    return json.loads(fixture_bytes(f"reddit/{name}"))


def listing_of(*children: dict, after: str | None = None) -> Canned:
    data = {"after": after, "before": None, "dist": len(children), "modhash": "", "children": list(children)}
    return Canned(200, json.dumps({"kind": "Listing", "data": data}).encode(), JSON)


def post(n: int, created: datetime, **fields) -> dict:
    data = {
        "id": f"1c{n:05d}",
        "name": f"t3_1c{n:05d}",
        "subreddit": "Denmark",
        "title": f"Tråd nummer {n} om klima og grøn omstilling",
        "selftext": "Hvad mener I? Æ, ø og å er med.",
        "author": f"bruger_{n % 7}",
        "author_fullname": f"t2_u{n % 7}",
        "created_utc": created.timestamp(),
        "permalink": f"/r/Denmark/comments/1c{n:05d}/traad/",
        "url": f"https://www.reddit.com/r/Denmark/comments/1c{n:05d}/traad/",
        "score": n,
        "num_comments": 0,
        "is_self": True,
    }
    data.update(fields)
    return {"kind": "t3", "data": data}


def spec(terms=("boligskat",), actors=(), **options) -> QuerySpec:
    return QuerySpec("boligdebat", terms, actors, WINDOW[0], WINDOW[1], Tier.FREE, options)


def run(server: ArenaServer, query: QuerySpec, *, token: Canned | None = None, credentials=None, **client):
    """Collect ``query`` from the fixture server; returns (results, searched sources, credentials)."""
    server.route("/api/v1/access_token", token or body("token.json"))
    clock = FakeClock()
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, **client)
    searched: list[str] = []
    creds = credentials or OneCredential("reddit", json.dumps(CLIENT))
    ctx = CollectionContext(http=http, credentials=creds, searched=searched.append)
    options = {
        "base_url": server.base_url,
        "token_url": server.url("/api/v1/access_token"),
        "min_interval_seconds": 0,
        **query.options,
    }
    results = list(RedditArena().collect(replace(query, options=options), ctx))
    return results, searched, creds


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def rejected(results) -> list[Rejected]:
    return [r for r in results if isinstance(r, Rejected)]


def test_reddit_is_registered_keyed_and_off_unless_a_design_asks():
    arena = registry()["reddit"]
    assert arena.needs_credential and not arena.enabled_by_default and arena.platform == "reddit"


def test_terms_become_reddit_boolean_queries_one_per_term():
    assert build_queries(['"grøn omstilling"', "(havvind OR vindmøller) støj", "klima -(atomkraft OR kul)"]) == [
        ('"grøn omstilling"', '"grøn omstilling"'),
        ("(havvind OR vindmøller) AND støj", "(havvind OR vindmøller) støj"),
        ("klima AND NOT (atomkraft OR kul)", "klima -(atomkraft OR kul)"),
    ]


def test_search_pages_with_after_until_the_month_starts_and_maps_danish_posts(reddit_server):
    april = document("search_page1.json")
    april["data"]["children"].insert(0, post(1, datetime(2026, 4, 1, 0, 0, 5, tzinfo=UTC)))
    reddit_server.route(
        "/search",
        Canned(200, json.dumps(april).encode(), JSON),
        body("search_page2.json"),
        Canned(500, b"must not be asked: the month has started"),
    )

    results, searched, _ = run(reddit_server, spec())

    found = items(results)
    assert [i.platform_id for i in found] == ["t3_1b9xk2a", "t3_1b9wq7d", "t3_1b9v3zz", "t3_1b8m0aa"]
    first = found[0]
    assert first.url == "https://www.reddit.com/comments/1b9xk2a/"
    assert first.title == "Hvad synes I om den nye boligskat?"
    assert "grøn omstilling af boligskatten rammer især ældre på Ærø" in (first.text_content or "")
    assert (first.author_platform_id, first.raw_metadata["author_user_id"]) == ("ostebanan_dk", "t2_7fz1q")
    assert (first.likes_count, first.comments_count, first.shares_count) == (42, 3, 0)
    assert first.published_at == datetime(2026, 3, 28, 18, 5, tzinfo=UTC)
    assert first.source == "reddit search: boligskat" and first.matched_terms == ("boligskat",)
    link = found[1]
    assert link.raw_metadata["link_url"] == "https://www.dr.dk/nyheder/indland/vindmoeller-bornholm"
    assert link.media_urls == ["https://external-preview.redd.it/vind-bornholm.jpg?width=1200"]
    deleted = found[2]  # kept for its title and thread, without author or body
    assert deleted.author_platform_id is None and deleted.text_content is None
    assert deleted.raw_metadata["removed"] == "[deleted]"
    assert searched == ["reddit search: boligskat"]
    pages = reddit_server.requests_to("/search")
    assert len(pages) == 2 and pages[1].query["after"] == ["t3_1b9v3zz"]
    assert pages[0].query["sort"] == ["new"] and pages[0].query["limit"] == ["100"]
    assert pages[0].headers["authorization"] == f"bearer {TOKEN}"
    assert pages[0].headers["user-agent"].startswith("server:observatory-pipelines:")
    token = reddit_server.requests_to("/api/v1/access_token")
    assert len(token) == 1  # one token for the whole run
    basic = base64.b64encode(f"{CLIENT['client_id']}:{CLIENT['client_secret']}".encode()).decode()
    assert token[0].headers["authorization"] == f"Basic {basic}"


def test_subreddits_are_searched_together_inside_them(reddit_server):
    reddit_server.route("/r/Denmark+danish/search", body("search_page2.json"))

    results, searched, _ = run(reddit_server, spec(subreddits=["Denmark", "r/danish"]))

    assert [i.platform_id for i in items(results)] == ["t3_1b8m0aa"]
    request = reddit_server.requests_to("/r/Denmark+danish/search")[0]
    assert request.query["restrict_sr"] == ["1"] and request.query["q"] == ["boligskat"]
    assert searched == ["reddit search r/Denmark+danish: boligskat"]


def test_a_user_listing_reads_past_a_pinned_old_post_and_stops_at_the_month(reddit_server):
    reddit_server.route("/user/fjordkatten/submitted", body("user_submitted.json"))

    results, searched, _ = run(reddit_server, spec(terms=(), actors=(ActorHandle("reddit", "fjordkatten"),)))

    assert [(i.platform_id, i.matched_terms) for i in items(results)] == [("t3_1b9aaa1", ())]
    assert searched == ["reddit user fjordkatten"]
    assert len(reddit_server.requests_to("/user/fjordkatten/submitted")) == 1


def test_a_listing_that_ends_at_its_cap_inside_the_month_is_a_rejection(reddit_server):
    march = [post(n, datetime(2026, 3, 20, 12, n, tzinfo=UTC)) for n in range(3, 0, -1)]
    reddit_server.route("/search", listing_of(*march[:2], after="t3_1c00002"), listing_of(march[2]))

    results, _, _ = run(reddit_server, spec(page_size=2, listing_cap=3))

    assert len(items(results)) == 3
    (cap,) = rejected(results)
    assert "~3-item cap at 2026-03-20 12:01 UTC" in cap.reason and cap.source == "reddit search: boligskat"


def test_many_pages_are_read_in_order_without_duplicates(reddit_server):
    days = [datetime(2026, 3, 31 - n // 4, 12, tzinfo=UTC) for n in range(40)]
    pages = [
        listing_of(*(post(n, days[n]) for n in range(start, start + 10)), after=f"t3_1c{start + 9:05d}")
        for start in range(0, 40, 10)
    ]
    pages.append(listing_of(post(99, datetime(2026, 2, 28, tzinfo=UTC))))
    reddit_server.route("/search", *pages)

    started = time.perf_counter()
    results, _, credentials = run(reddit_server, spec())
    elapsed = time.perf_counter() - started

    assert [i.platform_id for i in items(results)] == [f"t3_1c{n:05d}" for n in range(40)]
    assert sum(credentials.costs) == 5 and len(reddit_server.requests_to("/search")) == 5
    assert elapsed < 10


def test_comments_where_the_design_asks_reply_to_their_parents(reddit_server):
    reddit_server.route("/search", listing_of(document("search_page1.json")["data"]["children"][0]))
    reddit_server.route("/comments/1b9xk2a", body("comments.json"))

    results, _, _ = run(reddit_server, spec(comments=True))

    post_item, first, nested = items(results)
    assert post_item.platform_id == "t3_1b9xk2a"
    assert (first.platform_id, first.content_type) == ("t1_kq1a", "comment")
    assert first.url == "https://www.reddit.com/comments/1b9xk2a/_/kq1a/"
    assert first.interactions == [Interaction("reply", platform_id="t3_1b9xk2a", handle="ostebanan_dk")]
    assert nested.interactions == [Interaction("reply", platform_id="t1_kq1a", handle="grøn_bonde")]
    assert nested.text_content == "Enig – især for pensionisterne på Ærø."
    (removed,) = rejected(results)  # a removed comment is a tombstone; the "more" stub is not expanded
    assert "t1_kq2b is removed" in removed.reason
    assert reddit_server.requests_to("/comments/1b9xk2a")[0].query["sort"] == ["new"]


def test_a_private_subreddit_or_deleted_account_is_a_rejection_and_the_rest_is_collected(reddit_server):
    reddit_server.route("/r/hemmelig/search", Canned(403, fixture_bytes("reddit/error_private_subreddit.json"), JSON))
    reddit_server.route("/user/slettet_bruger/submitted", Canned(404, fixture_bytes("reddit/error_not_found.json")))
    reddit_server.route("/user/fjordkatten/submitted", body("user_submitted.json"))
    actors = (ActorHandle("reddit", "slettet_bruger"), ActorHandle("reddit", "fjordkatten"))

    results, searched, _ = run(reddit_server, spec(actors=actors, subreddits=["hemmelig"]))

    private, deleted = rejected(results)
    assert "HTTP 403" in private.reason and "private" in private.reason
    assert "HTTP 404" in deleted.reason and deleted.source == "reddit user slettet_bruger"
    assert [i.platform_id for i in items(results)] == ["t3_1b9aaa1"]
    assert searched == ["reddit search r/hemmelig: boligskat", "reddit user slettet_bruger", "reddit user fjordkatten"]


def test_a_429_in_a_200_body_and_a_429_are_rate_limits(reddit_server):
    reddit_server.route("/search", body("error_429_in_200.json"))
    with pytest.raises(RateLimited):
        run(reddit_server, spec())

    other = ArenaServer()
    other.start()
    try:
        other.route(
            "/search", Canned(429, b'{"message": "Too Many Requests", "error": 429}', {"X-Ratelimit-Reset": "42"})
        )
        with pytest.raises(RateLimited) as limited:
            run(other, spec())
        assert limited.value.retry_after == 42
    finally:
        other.stop()


def test_5xx_is_retried_by_the_http_client(reddit_server):
    reddit_server.route("/search", Canned(503, b"upstream"), body("search_page2.json"))

    results, _, _ = run(reddit_server, spec())

    assert [i.platform_id for i in items(results)] == ["t3_1b8m0aa"]
    reddit_server.requests.clear()
    reddit_server.route("/r/nede/search", Canned(502, b"nede"))
    with pytest.raises(ServerError):
        run(reddit_server, spec(subreddits=["nede"]), max_attempts=2)


def test_a_missing_required_field_fails_in_one_line_naming_it(reddit_server):
    broken = post(1, datetime(2026, 3, 5, tzinfo=UTC))
    del broken["data"]["created_utc"]
    reddit_server.route("/search", listing_of(broken))

    with pytest.raises(MalformedResponse) as malformed:
        run(reddit_server, spec())

    assert str(malformed.value) == "reddit: Reddit submission has no 'created_utc'; the API may have changed"


def test_options_are_checked():
    with pytest.raises(ValueError, match="no option 'subreddit'"):
        RedditArena().validate_options({"subreddit": "Denmark"})
    with pytest.raises(ValueError, match="'comments' must be true or false"):
        RedditArena().validate_options({"comments": "ja"})
    with pytest.raises(ArenaError, match="no terms and no reddit accounts"):
        list(
            RedditArena().collect(
                spec(terms=()), CollectionContext(http=None, credentials=OneCredential("reddit", json.dumps(CLIENT)))
            )
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
listing_like = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {
                "after": st.none() | st.text(max_size=10),
                "children": st.lists(
                    st.fixed_dictionaries(
                        {
                            "kind": st.sampled_from(["t3", "t1", "more"]),
                            "data": st.dictionaries(
                                st.sampled_from(
                                    [
                                        "name",
                                        "created_utc",
                                        "author",
                                        "title",
                                        "selftext",
                                        "score",
                                        "url",
                                        "preview",
                                        "media",
                                    ]
                                ),
                                json_values,
                                max_size=9,
                            ),
                        }
                    ),
                    max_size=4,
                ),
            }
        )
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, listing_like))
def test_fuzzed_listings_map_or_fail_in_one_line(doc):
    try:
        children, _ = parse_listing(doc)
        for kind, data in children:
            if kind == "t3":
                item = submission_item(data, "fuzz")
                assert (
                    item.platform_id.startswith("t3_") and item.url and item.url.startswith("https://www.reddit.com/")
                )
        parse_comments([doc, doc], "fuzz")
    except (MalformedResponse, RateLimited) as err:
        assert "\n" not in str(err)


def test_the_same_post_from_the_api_and_a_4cat_export_is_the_same_record(reddit_server):
    reddit_server.route("/search", listing_of(document("search_page1.json")["data"]["children"][0]))
    reddit_server.route("/comments/1b9xk2a", body("comments.json"))
    results, _, _ = run(reddit_server, spec(comments=True))
    api = {i.platform_id: i for i in items(results)}
    name = "4cat-reddit-boligskat.csv"
    with open(FIXTURES / "reddit" / name, "rb") as stream:
        imported = [i for i in read_import_file(name, stream) if isinstance(i, CollectedItem)]

    assert [i.platform_id for i in imported] == ["t3_1b9xk2a", "t1_kq1a"]
    for item in imported:
        twin = api[item.platform_id]
        assert (item.platform, item.url, item.content_type) == (twin.platform, twin.url, twin.content_type)
        assert item.published_at == twin.published_at
        assert pseudonym(item.platform, item.author_platform_id or "") == pseudonym(
            twin.platform, twin.author_platform_id or ""
        )


# --- end to end: collect_arena through the credential pool on PostgreSQL -------------------------------


def reddit_design(engine, server: ArenaServer, **options) -> uuid.UUID:
    config = {
        "enabled": True,
        "options": {
            "base_url": server.base_url,
            "token_url": server.url("/api/v1/access_token"),
            "min_interval_seconds": 0,
            **options,
        },
    }
    return make_design(engine, slug="boligdebat", terms=("boligskat",), arenas_config={"reddit": config})


def basic(client: dict) -> tuple[str, str]:
    return (
        "authorization",
        "Basic " + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode(),
    )


def collect(engine, run_id: str = "r1"):
    return collection.collect_arena(
        engine,
        design_slug="boligdebat",
        month=MARCH,
        arena_name="reddit",
        dagster_run_id=run_id,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=1, log=log),
        now=NOW,
        credential_key=CREDENTIAL_KEY,
    )


def test_end_to_end_a_refused_client_is_switched_off_and_the_next_collects(engine, reddit_server):
    design = reddit_design(engine, reddit_server)
    refused = {"client_id": "afvist-klient", "client_secret": "afvist-hemmelighed-401"}
    add_platform_credential(engine, "reddit", "a-afvist", json.dumps(refused))
    add_platform_credential(engine, "reddit", "b-god", json.dumps(CLIENT))
    reddit_server.route(
        "/api/v1/access_token", Canned(401, fixture_bytes("reddit/token_invalid_client.json")), header=basic(refused)
    )
    reddit_server.route("/api/v1/access_token", body("token.json"), header=basic(CLIENT))
    reddit_server.route("/search", body("search_page1.json"), body("search_page2.json"))

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 4
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert set(rows) == {"t3_1b9xk2a", "t3_1b9wq7d", "t3_1b9v3zz", "t3_1b8m0aa"}
    assert rows["t3_1b9xk2a"]["pseudonymized_author_id"] == pseudonym("reddit", "ostebanan_dk")
    assert rows["t3_1b9xk2a"]["url"] == "https://www.reddit.com/comments/1b9xk2a/"
    assert rows["t3_1b9v3zz"]["pseudonymized_author_id"] is None
    off = platform_credential(engine, "reddit", "a-afvist")
    assert off["is_active"] is False and "HTTP 401" in off["last_error"]
    assert "afvist-hemmelighed-401" not in off["last_error"]
    assert platform_credential(engine, "reddit", "b-god")["is_active"]


def test_end_to_end_a_changed_shape_fails_the_task_loudly_and_writes_no_empty_rows(engine, reddit_server):
    design = reddit_design(engine, reddit_server)
    add_platform_credential(engine, "reddit", "god", json.dumps(CLIENT))
    reddit_server.route("/api/v1/access_token", body("token.json"))
    reddit_server.route("/search", Canned(200, b'{"kind": "Listing", "data": {"after": null}}', JSON))

    with pytest.raises(MalformedResponse):
        collect(engine)

    failed = task(engine, design, "reddit")
    assert failed["status"] == "failed"
    assert failed["error_message"] == "reddit: Reddit listing has no 'children'; the API may have changed"
    assert content_rows(engine, design) == []


def test_end_to_end_a_429_rests_the_client_and_rotates(engine, reddit_server):
    reddit_design(engine, reddit_server)
    busy = {"client_id": "travl-klient", "client_secret": "travl-hemmelighed-429"}
    add_platform_credential(engine, "reddit", "a-travl", json.dumps(busy))
    add_platform_credential(engine, "reddit", "b-god", json.dumps(CLIENT))
    with engine.begin() as conn:  # the busy client is the least used, so the pool hands it out first
        conn.execute(
            sa.text("UPDATE api_credentials SET quota_used_today = 5, quota_date = :d WHERE credential_name = :n"),
            {"d": NOW.date(), "n": "b-god"},
        )
    busy_token = json.dumps({"access_token": "travl-token-xyz", "token_type": "bearer", "expires_in": 3600})
    reddit_server.route("/api/v1/access_token", Canned(200, busy_token.encode(), JSON), header=basic(busy))
    reddit_server.route("/api/v1/access_token", body("token.json"), header=basic(CLIENT))
    reddit_server.route(
        "/search",
        Canned(429, fixture_bytes("reddit/error_429_in_200.json"), {"Retry-After": "90"}),
        header=("authorization", "bearer travl-token-xyz"),
    )
    reddit_server.route("/search", body("search_page2.json"), header=("authorization", f"bearer {TOKEN}"))

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 1
    rested = platform_credential(engine, "reddit", "a-travl")
    assert rested["is_active"] and rested["exhausted_until"] == NOW + timedelta(seconds=90)
    assert len(reddit_server.requests_to("/search", ("authorization", "bearer travl-token-xyz"))) == 1
