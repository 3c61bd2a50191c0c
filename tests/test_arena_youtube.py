"""The youtube arena against canned Data API v3 answers (tests/fixtures/youtube): search.list paging
within the month, videos.list statistics, channel uploads, comment threads, private and deleted
videos, Google's error envelope (a spent quota rests a key, an invalid key is switched off), quota
units as credits (the estimate against what a run spends), a fuzz of the parsers, and end to end
through the credential pool on PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    CredentialError,
    MalformedResponse,
    RateLimited,
)
from observatory_pipelines.core.collection.arenas.youtube import (
    YouTubeArena,
    build_queries,
    error_reasons,
    parse_comment_threads,
    parse_playlist,
    parse_search,
    video_item,
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
from tests.http_fixtures import ArenaServer, Canned, fixture_bytes

UTC = timezone.utc
JSON = {"content-type": "application/json; charset=UTF-8"}
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
NOW = datetime(2026, 3, 31, 22, tzinfo=UTC)
API_KEY = "AIzaFixtureKey-god-0001"


class KeyRoutingServer(ArenaServer):
    """The shared fixture server; the ``key`` query parameter is also offered as an ``x-test-key``
    header, so each API key meets its own answers (``route(..., header=("x-test-key", key))``)."""

    def _handler_class(self):
        handler = super()._handler_class()

        class Handler(handler):  # type: ignore[valid-type,misc]
            def do_GET(self) -> None:
                key = parse_qs(urlsplit(self.path).query).get("key")
                if key:
                    self.headers["X-Test-Key"] = key[0]
                super().do_GET()

        return Handler


@pytest.fixture
def youtube_server():
    server = KeyRoutingServer()
    server.start()
    yield server
    server.stop()


def body(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"youtube/{name}"), JSON)


def error(status: int, name: str, **headers: str) -> Canned:
    return Canned(status, fixture_bytes(f"youtube/{name}"), {**JSON, **headers})


def document(name: str) -> Any:
    return json.loads(fixture_bytes(f"youtube/{name}"))


def answer(doc: Any) -> Canned:
    return Canned(200, json.dumps(doc).encode(), JSON)


def spec(terms=("klima", '"grøn omstilling"'), actors=(), **options) -> QuerySpec:
    return QuerySpec("klimadebat", terms, actors, WINDOW[0], WINDOW[1], Tier.FREE, options)


def run(server: ArenaServer, query: QuerySpec, arena: YouTubeArena | None = None, **client):
    clock = FakeClock()
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, **client)
    searched: list[str] = []
    key = OneCredential("youtube", API_KEY, name="kanal-1")
    ctx = CollectionContext(http=http, credentials=key, searched=searched.append)
    arena = arena or YouTubeArena()
    options = {"base_url": server.base_url, **query.options}
    results = list(arena.collect(replace(query, options=options), ctx))
    return results, searched, key, arena


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def rejected(results) -> list[Rejected]:
    return [r for r in results if isinstance(r, Rejected)]


def test_youtube_is_registered_keyed_and_off_unless_a_design_asks():
    arena = registry()["youtube"]
    assert arena.needs_credential and not arena.enabled_by_default and arena.platform == "youtube"


def test_one_word_terms_share_one_query_and_others_use_minus():
    assert build_queries(["klima", '"grøn omstilling"', "havvind støj -atomkraft"]) == [
        ('klima|"grøn omstilling"', None),
        ("havvind støj -atomkraft", "havvind støj -atomkraft"),
    ]
    with pytest.raises(ArenaError, match="cannot exclude the group"):
        build_queries(["klima -(atomkraft kul)"])


def test_search_pages_then_statistics_in_the_month_with_danish_text(youtube_server):
    youtube_server.route("/search", body("search_page1.json"), body("search_page2.json"))
    youtube_server.route("/videos", body("videos_page1.json"), body("videos_page2.json"))

    results, searched, key, arena = run(youtube_server, spec())

    first, second = items(results)
    assert (first.platform, first.platform_id, first.content_type) == ("youtube", "dQw4w9WgXc0", "video")
    assert first.url == "https://www.youtube.com/watch?v=dQw4w9WgXc0"
    assert first.author_platform_id == "UCdrnyheder00000000000a" and first.author_display_name == "DR Nyheder"
    assert (first.views_count, first.likes_count, first.comments_count) == (1520, 33, 12)
    assert first.language == "da" and first.title == "Folketingets debat om klima – uddrag"
    assert first.media_urls == ["https://i.ytimg.com/vi/dQw4w9WgXc0/hqdefault.jpg"]
    assert first.published_at == datetime(2026, 3, 2, 18, tzinfo=UTC)
    assert second.text_content == "Øens færger sejler nu på el. Vindmøller og solceller."
    assert second.language == "da" and second.likes_count is None  # da-DK; likes hidden
    (private,) = rejected(results)  # found by search, gone before videos.list
    assert "pRiV4t3vId0 is private or deleted" in private.reason
    assert searched == ['youtube search: klima|"grøn omstilling"'] and first.source == searched[0]
    pages = youtube_server.requests_to("/search")
    assert [p.query.get("pageToken") for p in pages] == [None, ["CDIQAA"]]
    assert pages[0].query["publishedAfter"] == ["2026-03-01T00:00:00Z"]
    assert pages[0].query["publishedBefore"] == ["2026-04-01T00:00:00Z"]
    assert (pages[0].query["regionCode"], pages[0].query["relevanceLanguage"]) == (["DK"], ["da"])
    assert pages[0].query["q"] == ['klima|"grøn omstilling"'] and pages[0].query["maxResults"] == ["50"]
    assert youtube_server.requests_to("/videos")[0].query["id"] == ["dQw4w9WgXc0,Xy7_kLm2Q-a"]
    assert key.costs == [100, 1, 100, 1] and arena.units_spent == 202


def test_many_search_pages_and_batches_of_fifty(youtube_server):
    ids = [f"vid{n:08d}" for n in range(120)]
    pages, videos = [], []
    for start in range(0, 120, 50):
        chunk = ids[start : start + 50]
        page = {"items": [{"id": {"kind": "youtube#video", "videoId": v}} for v in chunk]}
        if start + 50 < 120:
            page["nextPageToken"] = f"side{start + 50}"
        pages.append(answer(page))
        template = document("videos_page1.json")["items"][0]
        videos.append(answer({"items": [{**template, "id": v} for v in chunk]}))
    youtube_server.route("/search", *pages)
    youtube_server.route("/videos", *videos)

    started = time.perf_counter()
    results, _, key, _ = run(youtube_server, spec(terms=("klima",)))
    elapsed = time.perf_counter() - started

    assert [i.platform_id for i in items(results)] == ids
    assert [i.matched_terms for i in items(results)][0] == ("klima",)
    assert key.costs == [100, 1] * 3 and elapsed < 10


def test_a_channel_goes_through_its_uploads_and_stops_at_the_month(youtube_server):
    youtube_server.route("/channels", body("channels.json"))
    youtube_server.route("/playlistItems", body("playlist_items.json"))
    youtube_server.route("/videos", body("videos_page1.json"))

    query = spec(terms=(), actors=(ActorHandle("youtube", "DR Nyheder", "UCdrnyheder00000000000a"),))
    results, searched, key, _ = run(youtube_server, query)

    assert [i.platform_id for i in items(results)][0] == "dQw4w9WgXc0"
    assert youtube_server.requests_to("/channels")[0].query["id"] == ["UCdrnyheder00000000000a"]
    assert youtube_server.requests_to("/playlistItems")[0].query["playlistId"] == ["UUdrnyheder00000000000a"]
    # April's video, the deleted one without a date and February's are never asked for.
    assert youtube_server.requests_to("/videos")[0].query["id"] == ["dQw4w9WgXc0"]
    assert len(youtube_server.requests_to("/playlistItems")) == 1
    assert searched == ["youtube channel UCdrnyheder00000000000a"] and key.costs == [1, 1, 1]


def test_a_deleted_channel_is_a_rejection(youtube_server):
    youtube_server.route("/channels", body("channels_empty.json"))

    results, _, _, _ = run(youtube_server, spec(terms=(), actors=(ActorHandle("youtube", "@slettet_kanal"),)))

    (gone,) = rejected(results)
    assert "no channel @slettet_kanal" in gone.reason and gone.source == "youtube channel @slettet_kanal"
    assert youtube_server.requests_to("/channels")[0].query["forHandle"] == ["@slettet_kanal"]


def test_comments_reply_to_the_video_and_to_their_thread_and_disabled_comments_are_rejected(youtube_server):
    youtube_server.route("/search", answer({"items": document("search_page1.json")["items"]}))
    youtube_server.route("/videos", body("videos_page1.json"))
    youtube_server.route("/commentThreads", body("comment_threads.json"), error(403, "error_comments_disabled.json"))

    results, _, _, _ = run(youtube_server, spec(comments=True))

    video, top, reply, _second_video = items(results)
    assert (top.content_type, top.platform_id) == ("comment", "UgzKlimaTraad1")
    assert top.text_content == "Godt at de endelig taler om CO2-afgiften! 👍"
    assert top.author_platform_id.startswith("UCsøren_ørsted")
    assert top.interactions == [Interaction("reply", platform_id="dQw4w9WgXc0", author_id=video.author_platform_id)]
    assert reply.interactions == [Interaction("reply", platform_id="UgzKlimaTraad1", author_id=top.author_platform_id)]
    assert top.url == "https://www.youtube.com/watch?v=dQw4w9WgXc0&lc=UgzKlimaTraad1"
    (disabled,) = rejected(results)
    assert "commentsDisabled" in disabled.reason


def test_google_errors_by_reason(youtube_server):
    youtube_server.route("/search", error(403, "error_quota_exceeded.json"))
    with pytest.raises(RateLimited) as spent:
        run(youtube_server, spec())
    assert "quotaExceeded" in str(spent.value) and spent.value.retry_after is None

    for status, name in ((400, "error_key_invalid.json"), (403, "error_forbidden.json")):
        server = KeyRoutingServer()
        server.start()
        try:
            server.route("/search", error(status, name))
            with pytest.raises(CredentialError) as refused:
                run(server, spec())
            assert f"HTTP {status}" in str(refused.value) and API_KEY not in str(refused.value)
        finally:
            server.stop()


def test_429_5xx_and_a_changed_shape(youtube_server):
    youtube_server.route("/search", Canned(429, b"", {"Retry-After": "30"}))
    with pytest.raises(RateLimited) as limited:
        run(youtube_server, spec())
    assert limited.value.retry_after == 30

    server = KeyRoutingServer()
    server.start()
    try:
        server.route("/search", Canned(503, b"backend error"), body("search_page2.json"))
        server.route("/videos", answer({"items": [{"id": "pRiV4t3vId0", "kind": "youtube#video"}]}))
        with pytest.raises(MalformedResponse) as malformed:
            run(server, spec())
        assert str(malformed.value) == "youtube: YouTube video has no 'snippet'; the API may have changed"
        assert len(server.requests_to("/search")) == 2  # the 503 was retried
    finally:
        server.stop()


def test_the_estimate_covers_what_a_run_spends(youtube_server):
    youtube_server.route("/search", body("search_page1.json"), body("search_page2.json"))
    youtube_server.route("/videos", body("videos_page1.json"), body("videos_page2.json"))
    query = spec(max_search_pages=2)

    estimate = YouTubeArena().estimate_credits(query)
    _, _, _, arena = run(youtube_server, query)

    # Documented tolerance: never under what is spent; equal when every page allowed is used.
    assert estimate == arena.credits_used(query, 0, 0) == 2 * (100 + 1)
    cheaper = spec(max_search_pages=2, search_cost_units=1)
    assert YouTubeArena().estimate_credits(cheaper) == 2 * (1 + 1)
    with_comments = spec(max_search_pages=2, comments=True)
    assert YouTubeArena().estimate_credits(with_comments) == 202 + 2 * 50
    channels = spec(terms=(), actors=(ActorHandle("youtube", None, "UCx"),), max_playlist_pages=3)
    assert YouTubeArena().estimate_credits(channels) == 1 + 3 * 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
video_like = st.fixed_dictionaries(
    {
        "id": json_values,
        "snippet": st.dictionaries(
            st.sampled_from(["publishedAt", "channelId", "title", "description", "thumbnails", "defaultAudioLanguage"]),
            json_values | st.sampled_from(["2026-03-02T18:00:00Z", "UCx", "da-DK"]),
        ),
        "statistics": st.dictionaries(st.sampled_from(["viewCount", "likeCount", "commentCount"]), json_values),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, video_like))
def test_fuzzed_answers_map_or_fail_in_one_line(doc):
    for parse in (
        lambda: video_item(doc, "fuzz"),
        lambda: parse_search(doc),
        lambda: parse_playlist(doc),
        lambda: parse_comment_threads(doc, "v", None, "fuzz"),
    ):
        try:
            result = parse()
            if isinstance(result, CollectedItem):
                assert result.url == f"https://www.youtube.com/watch?v={result.platform_id}"
        except MalformedResponse as err:
            assert "\n" not in str(err)
    assert isinstance(error_reasons(doc), list)


# --- end to end: collect_arena through the credential pool on PostgreSQL -------------------------------


def youtube_design(engine, server: ArenaServer, **options) -> uuid.UUID:
    config = {"enabled": True, "options": {"base_url": server.base_url, "max_search_pages": 2, **options}}
    return make_design(
        engine, slug="klimadebat", terms=("klima", '"grøn omstilling"'), arenas_config={"youtube": config}
    )


def collect(engine, run_id: str = "r1"):
    return collection.collect_arena(
        engine,
        design_slug="klimadebat",
        month=MARCH,
        arena_name="youtube",
        dagster_run_id=run_id,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=1, log=log),
        now=NOW,
        credential_key=CREDENTIAL_KEY,
    )


def test_end_to_end_a_spent_key_rests_an_invalid_one_is_switched_off_and_units_are_credits(engine, youtube_server):
    design = youtube_design(engine, youtube_server)
    add_platform_credential(engine, "youtube", "a-ugyldig", "AIzaFixtureKey-ugyldig-400")
    add_platform_credential(engine, "youtube", "b-brugt", "AIzaFixtureKey-brugt-403")
    add_platform_credential(engine, "youtube", "c-god", API_KEY, quota=10_000)
    with engine.begin() as conn:  # the good key is the most used, so the pool tries the others first
        conn.execute(
            sa.text("UPDATE api_credentials SET quota_used_today = 5, quota_date = :d WHERE credential_name = :n"),
            {"d": NOW.date(), "n": "c-god"},
        )
    for path in ("/search", "/videos"):
        youtube_server.route(
            path, error(400, "error_key_invalid.json"), header=("x-test-key", "AIzaFixtureKey-ugyldig-400")
        )
        youtube_server.route(
            path, error(403, "error_quota_exceeded.json"), header=("x-test-key", "AIzaFixtureKey-brugt-403")
        )
    youtube_server.route(
        "/search", body("search_page1.json"), body("search_page2.json"), header=("x-test-key", API_KEY)
    )
    youtube_server.route(
        "/videos", body("videos_page1.json"), body("videos_page2.json"), header=("x-test-key", API_KEY)
    )

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 2 and outcome.rejected == 1
    rows = {r["platform_id"]: r for r in content_rows(engine, design)}
    assert rows["dQw4w9WgXc0"]["url"] == "https://www.youtube.com/watch?v=dQw4w9WgXc0"
    assert rows["dQw4w9WgXc0"]["pseudonymized_author_id"] == pseudonym("youtube", "UCdrnyheder00000000000a")
    assert rows["Xy7_kLm2Q-a"]["language"] == "da"
    invalid, spent = (
        platform_credential(engine, "youtube", "a-ugyldig"),
        platform_credential(engine, "youtube", "b-brugt"),
    )
    assert invalid["is_active"] is False and "keyInvalid" in invalid["last_error"]
    assert "AIzaFixtureKey-ugyldig-400" not in invalid["last_error"]
    assert spent["is_active"] and spent["exhausted_until"] == datetime(2026, 4, 1, tzinfo=UTC)
    assert platform_credential(engine, "youtube", "c-god")["quota_used_today"] == 5 + 202
    assert (outcome.credits_reserved, outcome.credits_spent) == (202, 202)
    assert len(youtube_server.requests_to("/search", ("x-test-key", "AIzaFixtureKey-ugyldig-400"))) == 1


def test_end_to_end_a_changed_shape_fails_the_task_and_writes_no_empty_rows(engine, youtube_server):
    design = youtube_design(engine, youtube_server)
    add_platform_credential(engine, "youtube", "god", API_KEY)
    youtube_server.route("/search", answer({"kind": "youtube#searchListResponse"}))

    with pytest.raises(MalformedResponse):
        collect(engine)

    failed = task(engine, design, "youtube")
    assert failed["status"] == "failed"
    assert failed["error_message"] == "youtube: YouTube search answer has no 'items'; the API may have changed"
    assert content_rows(engine, design) == []


def test_end_to_end_every_key_spent_fails_saying_when(engine, youtube_server):
    youtube_design(engine, youtube_server)
    add_platform_credential(engine, "youtube", "brugt", API_KEY)
    youtube_server.route("/search", error(403, "error_quota_exceeded.json"))

    with pytest.raises(ArenaError) as spent:
        collect(engine)

    assert "spent until 00:00 UTC" in str(spent.value)
    assert platform_credential(engine, "youtube", "brugt")["exhausted_until"] == NOW.replace(hour=0) + timedelta(days=1)
