"""TelegramArena: public channels read from the t.me/s web preview, replayed from fixtures.

Fixtures in ``tests/fixtures/telegram/`` follow the preview's markup as research notes §4.1 lists
it (the selectors widely used scrapers read: ``tgme_widget_message[data-post]``, ``time[datetime]``,
``tme_messages_more[data-before]``); a channel without a public preview redirects to
``t.me/<channel>``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import privacy
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas import registry, telegram
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
    QuotaExceeded,
    ServerError,
)
from observatory_pipelines.core.collection.arenas.file_import import read_import_file
from observatory_pipelines.core.collection.arenas.telegram import TelegramArena, parse_count, parse_preview
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import (
    CREDENTIAL_KEY,
    MARCH,
    SALT,
    FakeClock,
    add_actor_list,
    add_platform_credential,
    content_rows,
    make_actor,
    make_design,
    platform_credential,
    pseudonym,
    task,
)
from tests.http_fixtures import Canned, fixture_bytes

UTC = timezone.utc
HTML = {"content-type": "text/html; charset=utf-8"}
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def page(name: str) -> Canned:
    return Canned(200, fixture_bytes(f"telegram/{name}.html"), HTML)


def the_channel() -> tuple[Canned, ...]:
    return page("channel_page1"), page("channel_page2"), page("channel_page3")


def make_spec(actors=(), **options) -> QuerySpec:
    return QuerySpec("klimadebat", ("klima",), tuple(actors), *WINDOW, Tier.FREE, options)


def run(arena_server, spec: QuerySpec, **client_options):
    """Collect ``spec`` against the fixture server; returns (results, searched sources, clock, log)."""
    clock = FakeClock()
    log: list[str] = []
    searched: list[str] = []
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, **client_options)
    ctx = CollectionContext(http=http, log=log.append, searched=searched.append)
    spec = replace(spec, options={"base_url": arena_server.base_url, "min_interval_seconds": 0, **spec.options})
    results = list(TelegramArena().collect(spec, ctx))
    return results, searched, clock, log


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def rejected(results) -> list[Rejected]:
    return [r for r in results if isinstance(r, Rejected)]


def test_the_arena_is_registered_free_and_off_unless_configured():
    assert registry()["telegram"] is TelegramArena
    arena = TelegramArena()
    assert arena.enabled_by_default is False and arena.keep_unmatched is False
    assert arena.estimate_credits(make_spec()) == 0 and arena.credits_used(make_spec(), 500, 30) == 0


def test_pages_back_until_the_month_starts_and_keeps_the_window(arena_server):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    results, searched, _, log = run(arena_server, make_spec(channels=["klimanyt_dk"]))

    requests = arena_server.requests_to("/s/klimanyt_dk")
    assert [r.query.get("before") for r in requests] == [None, ["1240"], ["1236"]]
    assert requests[0].headers["user-agent"].startswith("observatory-pipelines/")
    got = items(results)
    # April (1242, 1243) is after the window; 1232 and 1233 (00:30+01:00) are still February in UTC.
    assert sorted(i.platform_id for i in got) == [f"klimanyt_dk/{n}" for n in (1234, 1235, *range(1236, 1242))]
    assert min(i.published_at for i in got) == datetime(2026, 3, 1, tzinfo=UTC)
    assert searched == ["t.me/s/klimanyt_dk"] and {i.source for i in got} == {"t.me/s/klimanyt_dk"}
    assert rejected(results) == []
    assert log == ["telegram: 8 messages in the window from t.me/s/klimanyt_dk (3 pages)"]


def test_messages_map_text_views_media_and_interactions(arena_server):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    by_id = {i.platform_id: i for i in items(run(arena_server, make_spec(channels=["klimanyt_dk"]))[0])}

    first = by_id["klimanyt_dk/1240"]
    assert first.platform == "telegram" and first.content_type == "post"
    assert first.url == "https://t.me/klimanyt_dk/1240"
    assert first.author_platform_id == "klimanyt_dk" and first.author_display_name == "Klimanyt DK"
    assert first.text_content == (
        "Ny rapport: vindmøller på havet leverede 52 % af strømmen i marts.\nLæs mere på dr.dk"
    )
    assert first.views_count == 3400 and first.published_at == datetime(2026, 3, 30, 8, 5, tzinfo=UTC)

    assert by_id["klimanyt_dk/1236"].text_content.endswith("Æblegrød og kaffe til alle fremmødte i Ålborg.")
    assert by_id["klimanyt_dk/1236"].published_at == datetime(2026, 3, 12, 13, 45, tzinfo=UTC)
    assert by_id["klimanyt_dk/1236"].raw_metadata["link_preview"] == {
        "url": "https://www.altinget.dk/klima/artikel/groen-omstilling-koster",
        "site_name": "Altinget",
        "title": "Grøn omstilling koster – men hvem betaler?",
    }
    forwarded = by_id["klimanyt_dk/1237"]
    assert forwarded.views_count == 4_000_000
    assert forwarded.interactions == [Interaction("repost", platform_id="energinyt/877", handle="energinyt")]
    assert forwarded.raw_metadata["forwarded_from_name"] == "Energinyt"
    assert by_id["klimanyt_dk/1238"].media_urls == ["https://cdn4.telesco.pe/file/vindmoelle-esbjerg.jpg"]
    reply = by_id["klimanyt_dk/1239"]
    assert reply.interactions == [Interaction("reply", platform_id="klimanyt_dk/1230", handle="klimanyt_dk")]
    assert reply.media_urls == ["https://cdn4.telesco.pe/file/oversvoemmelse-vejle.mp4"]
    assert reply.raw_metadata["signature"] == "Søren Ødegaard" and reply.raw_metadata["edited"] is True
    assert by_id["klimanyt_dk/1241"].interactions == [
        Interaction("mention", handle="gronnetanker"),
        Interaction("mention", handle="landbrugsavisen"),
    ]
    photo_only = by_id["klimanyt_dk/1235"]
    assert photo_only.text_content is None and photo_only.views_count is None


@pytest.mark.parametrize(
    ("text", "count"),
    [("987", 987), ("1.2K", 1200), ("15K", 15_000), ("3M", 3_000_000), ("2,5k", 2500), ("", None), ("mange", None)],
)
def test_abbreviated_counts(text, count):
    assert parse_count(text) == count


def test_channels_come_from_actor_lists_and_the_option_once_each(arena_server):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    arena_server.route("/s/tom_kanal", page("empty_channel"))
    actors = [
        ActorHandle("telegram", username="@KlimaNyt_DK"),
        ActorHandle("bluesky", username="klimanyt.bsky.social"),
        ActorHandle("telegram", username="tom_kanal"),
    ]
    results, searched, _, _ = run(arena_server, make_spec(actors, channels=["https://t.me/klimanyt_dk"]))
    assert searched == ["t.me/s/klimanyt_dk", "t.me/s/tom_kanal"]
    assert len(items(results)) == 8
    assert rejected(results) == [
        Rejected("channel 'tom_kanal' shows no messages in its web preview", "t.me/s/tom_kanal")
    ]


def test_a_private_or_missing_channel_is_a_rejection_and_the_others_are_read(arena_server):
    # Telegram redirects the preview of a channel it will not show to the channel's contact page.
    arena_server.route("/s/lukket_kanal", Canned(302, headers={"Location": "/lukket_kanal"}))
    arena_server.route("/lukket_kanal", page("no_public_preview"))
    arena_server.route("/s/slettet_kanal", Canned(404, b"Not Found", {"content-type": "text/plain"}))
    arena_server.route("/s/klimanyt_dk", *the_channel())
    spec = make_spec(channels=["lukket_kanal", "slettet_kanal", "klimanyt_dk"])
    results, searched, _, _ = run(arena_server, spec)

    assert len(searched) == 3 and len(items(results)) == 8
    private, deleted = rejected(results)
    assert private == Rejected(
        "channel 'lukket_kanal' has no public web preview (it does not exist, is private, or is a user)",
        "t.me/s/lukket_kanal",
    )
    assert deleted.source == "t.me/s/slettet_kanal" and "HTTP 404" in deleted.reason and "\n" not in deleted.reason


def test_changed_markup_fails_loudly_in_one_line(arena_server):
    arena_server.route("/s/klimanyt_dk", page("changed_markup"))
    with pytest.raises(MalformedResponse) as caught:
        run(arena_server, make_spec(channels=["klimanyt_dk"]))
    message = str(caught.value)
    assert "\n" not in message and "tgme_widget_message" in message and "t.me/s/klimanyt_dk" in message


def test_a_message_without_its_time_names_the_missing_field():
    body = fixture_bytes("telegram/channel_page2.html").replace(b'<time datetime="2026-03-15T11:00:00+00:00"', b"<time")
    with pytest.raises(MalformedResponse, match=r"^telegram: message klimanyt_dk/1237 has no time\[datetime\]$"):
        parse_preview(body, "t.me/s/klimanyt_dk")


def test_a_message_without_data_post_fails_the_page():
    body = fixture_bytes("telegram/channel_page2.html").replace(b'data-post="klimanyt_dk/1238"', b"")
    with pytest.raises(MalformedResponse, match=r"^telegram: t.me/s/klimanyt_dk has a message without data-post$"):
        parse_preview(body, "t.me/s/klimanyt_dk")


def test_429_waits_for_retry_after_then_continues(arena_server):
    limited = Canned(429, b"Too Many Requests", {"Retry-After": "7"})
    arena_server.route("/s/klimanyt_dk", page("channel_page1"), limited, page("channel_page2"), page("channel_page3"))
    results, _, clock, _ = run(arena_server, make_spec(channels=["klimanyt_dk"]))
    assert clock.waits == [7.0] and len(items(results)) == 8


def test_server_errors_are_retried_then_fail_the_task(arena_server):
    arena_server.route("/s/klimanyt_dk", Canned(502, b"Bad Gateway"))
    with pytest.raises(ServerError, match="HTTP 502"):
        run(arena_server, make_spec(channels=["klimanyt_dk"]), max_attempts=3)
    assert len(arena_server.requests_to("/s/klimanyt_dk")) == 3


def test_a_design_without_channels_is_refused():
    ctx = CollectionContext(http=None)
    with pytest.raises(ArenaError, match="no channels to collect"):
        list(TelegramArena().collect(make_spec([ActorHandle("bluesky", username="x.bsky.social")]), ctx))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"channel": ["a"]}, "has no option 'channel'"),
        ({"channels": "klimanyt_dk"}, "must be a list"),
        ({"channels": ["https://example.org/x"]}, "not a channel username"),
        ({"base_url": "t.me"}, "base_url"),
        ({"max_pages_per_channel": 0}, "max_pages_per_channel"),
        ({"min_interval_seconds": -1}, "min_interval_seconds"),
    ],
)
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        TelegramArena().validate_options(options)


def test_the_page_cap_is_reported_not_silent(arena_server):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    results, _, _, _ = run(arena_server, make_spec(channels=["klimanyt_dk"], max_pages_per_channel=2))
    [cap] = rejected(results)
    assert "max_pages_per_channel" in cap.reason and len(items(results)) == 6


_FRAGMENTS = st.sampled_from(
    [
        '<div class="tgme_widget_message" data-post="kanal/12">',
        '<div class="tgme_widget_message" data-post="kanal/x">',
        '<div class="tgme_widget_message">',
        '<a class="tgme_widget_message_date"><time datetime="2026-03-04T10:15:00+00:00">',
        '<time datetime="ikke en dato">',
        '<div class="tgme_widget_message_text">Grøn <b>omstilling</b><br/>æøå</div>',
        '<span class="tgme_widget_message_views">1.2K</span>',
        '<a class="tgme_widget_message_reply" href="https://t.me/kanal/3">',
        '<a class="tgme_widget_message_forwarded_from_name" href="javascript:x">',
        '<a class="tgme_widget_message_photo_wrap" style="background-image:url(\'https://cdn/x.jpg\')">',
        '<div class="tgme_channel_info">',
        '<a class="tme_messages_more" data-before="99999999999999999999">',
        "</div>",
        "</a>",
        "<?xml version='1.0' encoding='utf-8'?>",
        "\x00",
    ]
)
_BODIES = st.one_of(
    st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=12).map(lambda p: "".join(p).encode()),
    st.binary(max_size=300),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_BODIES)
def test_fuzz_parse_preview_raises_only_documented_errors(body):
    try:
        page = parse_preview(body, "t.me/s/kanal")
    except MalformedResponse as err:
        assert "\n" not in str(err)
        return
    for item in page.messages:
        assert item.platform_id.startswith("kanal/") and item.url.startswith("https://t.me/kanal/")
        assert item.published_at is not None and item.published_at.tzinfo is not None


def test_parsing_is_fast_enough_to_show_a_slow_mapper():
    body = fixture_bytes("telegram/channel_page2.html")
    started = time.perf_counter()
    parsed = sum(len(parse_preview(body, "t.me/s/klimanyt_dk").messages) for _ in range(200))
    rate = parsed / (time.perf_counter() - started)
    print(f"telegram: {rate:,.0f} records/s on fixtures")
    assert rate > 500


# --- the same post collected by the arena and imported from 4CAT ------------------------------------

# 4CAT's telegram datasource (datasources/telegram/search_telegram.py, map_item) writes these columns;
# the message is klimanyt_dk/1237 of the preview fixture, as 4CAT's CSV export shows it.
FOURCAT_CSV = (
    "id,thread_id,chat,author,author_username,author_name,author_is_bot,body,reply_to,views,timestamp,"
    "unix_timestamp,timestamp_edited,unix_timestamp_edited,author_forwarded_from_name,"
    "author_forwarded_from_username,timestamp_forwarded_from,unix_timestamp_forwarded_from,attachment_type,"
    "attachment_data,attachment_filename\n"
    "1237,KlimaNyt_DK,KlimaNyt_DK,1001234567890,KlimaNyt_DK,Klimanyt DK,False,"
    '"Klimarådet: Danmark når ikke 70 %-målet uden nye tiltag.",,4012345,2026-03-15 12:00:00,1773572400,,,'
    "Energinyt,energinyt,2026-03-15 10:30:00,1773567000,,,\n"
).encode()


def test_the_same_post_from_the_preview_and_a_4cat_export_is_one_record(arena_server):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    [collected] = [
        i for i in items(run(arena_server, make_spec(channels=["klimanyt_dk"]))[0]) if i.platform_id.endswith("/1237")
    ]
    [imported] = list(read_import_file("4cat-telegram-klimanyt.csv", io.BytesIO(FOURCAT_CSV), None))
    assert isinstance(imported, CollectedItem)

    fields = ("platform", "platform_id", "url", "author_platform_id", "text_content", "published_at")
    assert {f: getattr(imported, f) for f in fields} == {f: getattr(collected, f) for f in fields}
    salt = SALT.encode()
    assert privacy.pseudonymise(imported.platform, imported.author_platform_id, salt) == privacy.pseudonymise(
        collected.platform, collected.author_platform_id, salt
    )
    assert imported.raw_metadata["author_user_id"] == "1001234567890"
    assert imported.interactions == [Interaction("repost", handle="energinyt")]


def test_a_4cat_ndjson_row_keyed_chat_dash_id_is_the_same_post_too():
    row = {
        "id": "KlimaNyt_DK-1237",
        "thread_id": "KlimaNyt_DK",
        "chat": "KlimaNyt_DK",
        "author": 1001234567890,
        "author_username": "KlimaNyt_DK",
        "author_name": "Klimanyt DK",
        "body": "Klimarådet: Danmark når ikke 70 %-målet uden nye tiltag.",
        "reply_to": 1230,
        "views": 4012345,
        "unix_timestamp": 1773572400,
    }
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    [imported] = list(read_import_file("4cat-telegram-klimanyt.ndjson", io.BytesIO(line), None))
    assert isinstance(imported, CollectedItem)
    assert (imported.platform, imported.platform_id, imported.url, imported.author_platform_id) == (
        "telegram",
        "klimanyt_dk/1237",
        "https://t.me/klimanyt_dk/1237",
        "klimanyt_dk",
    )
    assert imported.interactions == [Interaction("reply", platform_id="klimanyt_dk/1230", handle="klimanyt_dk")]


def test_a_4cat_group_message_keeps_its_member_as_author():
    row = {"id": 88, "chat": "klimadebat_gruppe", "author": 5550001, "author_username": "", "body": "Enig!"}
    line = (json.dumps(row) + "\n").encode()
    [imported] = list(read_import_file("4cat-telegram-gruppe.ndjson", io.BytesIO(line), None))
    assert isinstance(imported, CollectedItem)
    assert (imported.platform_id, imported.author_platform_id) == ("klimadebat_gruppe/88", "5550001")


# --- end to end, on PostgreSQL -------------------------------------------------------------------------


def test_collect_arena_stores_the_channels_matching_messages(engine, arena_server):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    config = {"telegram": {"options": {"base_url": arena_server.base_url, "min_interval_seconds": 0}}}
    design = make_design(engine, slug="telegram-klima", arenas_config=config)
    add_actor_list(engine, design, make_actor(engine, "Klimanyt DK", ("telegram", "KlimaNyt_DK")).id)
    outcome = collection.collect_arena(
        engine,
        design_slug="telegram-klima",
        month=MARCH,
        arena_name="telegram",
        dagster_run_id="run-tg",
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=2, sleep=lambda s: None, log=log),
        now=datetime(2026, 4, 2, 12, tzinfo=UTC),
    )

    assert outcome.status == "completed", outcome.message
    rows = content_rows(engine, design)
    # The design's terms (klima, grøn omstilling, CO2-afgift, vindmøller) are matched locally.
    assert [r["platform_id"] for r in rows] == [f"klimanyt_dk/{n}" for n in (1236, 1238, 1240, 1241)]
    assert {r["partition"] for r in rows} == {"content_records_2026_03"}
    assert {r["pseudonymized_author_id"] for r in rows} == {pseudonym("telegram", "klimanyt_dk")}
    assert {r["url"] for r in rows} >= {"https://t.me/klimanyt_dk/1240"}
    assert task(engine, design, "telegram")["status"] == "completed"


def test_a_design_that_does_not_configure_telegram_skips_it(engine):
    design = make_design(engine, slug="uden-telegram")
    outcome = collection.collect_arena(
        engine, design_slug="uden-telegram", month=MARCH, arena_name="telegram", dagster_run_id="run-0", salt=SALT
    )
    assert outcome.status == "skipped" and content_rows(engine, design) == []


# --- the Telethon path (option client: telethon) ----------------------------------------------------
#
# MTProto is not HTTP, so the fixture server cannot answer it: ``telethon_client_factory`` is swapped
# for a fake that resolves channels and yields real ``telethon.tl.types.Message`` objects, newest
# first and strictly older than ``offset_date``, as Telethon's ``iter_messages`` does.

KLIMA_ID, ENERGI_ID, HEMMELIG_ID = 1_001_234_567, 1_009_876_543, 1_005_550_001
NOW = datetime(2026, 4, 2, 12, tzinfo=UTC)


def tg_message(message_id: int, when: datetime, text: str | None = None, *, channel_id: int = KLIMA_ID, **fields):
    from telethon.tl.types import Message, PeerChannel

    return Message(id=message_id, peer_id=PeerChannel(channel_id), date=when, message=text, post=True, **fields)


def klimanyt_messages() -> list:
    """klimanyt_dk around March 2026: two April messages, March's, then February's, newest first."""
    from telethon.tl.types import (
        MessageActionPinMessage,
        MessageEntityMention,
        MessageFwdHeader,
        MessageMediaWebPage,
        MessageReactions,
        MessageReplies,
        MessageReplyHeader,
        MessageService,
        PeerChannel,
        ReactionCount,
        ReactionEmoji,
        WebPage,
    )

    mention_text = "🌍 Tak til @GronneTanker og @landbrugsavisen for debatten om CO2-afgift på landbruget."
    return [
        tg_message(1243, datetime(2026, 4, 1, 9, tzinfo=UTC), "April: nyt fra Folketinget om klima."),
        tg_message(1242, datetime(2026, 4, 1, 0, 0, tzinfo=UTC), "Midnat i april."),
        tg_message(
            1241,
            datetime(2026, 3, 31, 21, 30, tzinfo=UTC),
            mention_text,
            # Offsets in UTF-16 units: the globe emoji counts two.
            entities=[MessageEntityMention(offset=11, length=13), MessageEntityMention(offset=28, length=16)],
            views=1200,
        ),
        tg_message(
            1240,
            datetime(2026, 3, 30, 8, 5, tzinfo=UTC),
            "Ny rapport: vindmøller på havet leverede 52 % af strømmen i marts.\n\nLæs mere på dr.dk",
            views=3400,
            forwards=87,
            replies=MessageReplies(replies=14, replies_pts=0),
            reactions=MessageReactions(
                results=[
                    ReactionCount(reaction=ReactionEmoji("👍"), count=120),
                    ReactionCount(reaction=ReactionEmoji("❤"), count=31),
                ]
            ),
        ),
        MessageService(
            id=1239,
            peer_id=PeerChannel(KLIMA_ID),
            date=datetime(2026, 3, 20, tzinfo=UTC),
            action=MessageActionPinMessage(),
        ),
        tg_message(
            1238,
            datetime(2026, 3, 16, 7, 0, tzinfo=UTC),
            "Oversvømmelse i Vejle: se billederne.",
            reply_to=MessageReplyHeader(reply_to_msg_id=1230),
            post_author="Søren Ødegaard",
            edit_date=datetime(2026, 3, 16, 7, 20, tzinfo=UTC),
        ),
        tg_message(
            1237,
            datetime(2026, 3, 15, 12, 0, tzinfo=UTC),
            "Klimarådet: Danmark når ikke 70 %-målet uden nye tiltag.",
            fwd_from=MessageFwdHeader(
                date=datetime(2026, 3, 15, 10, 30, tzinfo=UTC), from_id=PeerChannel(ENERGI_ID), channel_post=877
            ),
            views=4_012_345,
        ),
        tg_message(
            1236,
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
            "Grøn omstilling koster. Æblegrød og kaffe til alle fremmødte i Ålborg.",
            media=MessageMediaWebPage(
                webpage=WebPage(
                    id=1,
                    url="https://www.altinget.dk/klima/artikel/groen-omstilling-koster",
                    display_url="altinget.dk/klima/artikel/groen-omstilling-koster",
                    hash=0,
                    site_name="Altinget",
                    title="Grøn omstilling koster – men hvem betaler?",
                )
            ),
        ),
        tg_message(1235, datetime(2026, 2, 28, 23, 59, tzinfo=UTC), "Februars sidste nyt."),
        *(tg_message(n, datetime(2026, 2, 10, tzinfo=UTC), "Gammelt nyt.") for n in range(1234, 1200, -1)),
    ]


class FakeTelethon:
    """One Telethon client: channels by username, each (entity, messages newest first); ``failure``
    is raised on connect (a refused session, a FloodWait)."""

    def __init__(self, channels: dict, *, authorized: bool = True, failure: Exception | None = None):
        self.channels = channels
        self.authorized = authorized
        self.failure = failure
        self.connected = False
        self.offset_dates: list[datetime] = []
        self.read: list[int] = []

    def connect(self) -> None:
        if self.failure is not None:
            raise self.failure
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def is_user_authorized(self) -> bool:
        return self.authorized

    def get_entity(self, what):
        from telethon.tl.types import PeerChannel

        if isinstance(what, PeerChannel):
            named = {ENERGI_ID: "Energinyt", KLIMA_ID: "KlimaNyt_DK"}
            if what.channel_id not in named:
                raise ValueError(f"Could not find the input entity for {what!r}")
            return SimpleNamespace(id=what.channel_id, username=named[what.channel_id], title=None)
        found = self.channels.get(what)
        if isinstance(found, Exception):
            raise found
        if found is None:
            raise ValueError(f'No user has "{what}" as username')
        return found[0]

    def iter_messages(self, entity, offset_date=None):
        assert self.connected
        self.offset_dates.append(offset_date)
        for message in next(
            found[1] for found in self.channels.values() if isinstance(found, tuple) and found[0] is entity
        ):
            if offset_date is None or message.date < offset_date:
                self.read.append(message.id)
                yield message


def klimanyt_channels() -> dict:
    return {
        "klimanyt_dk": (SimpleNamespace(id=KLIMA_ID, username="KlimaNyt_DK", title="Klimanyt DK"), klimanyt_messages())
    }


def secret(session: str) -> str:
    return json.dumps({"api_id": 2040123, "api_hash": "0123456789abcdef0123456789abcdef", "session": session})


@pytest.fixture
def telethon_clients(monkeypatch):
    """Fake clients by session string; the factory records the sessions it was asked for."""
    clients: dict[str, FakeTelethon] = {}
    asked: list[tuple[str, int, str]] = []

    def factory(session: str, api_id: int, api_hash: str) -> FakeTelethon:
        asked.append((session, api_id, api_hash))
        return clients[session]

    monkeypatch.setattr(telegram, "telethon_client_factory", factory)
    clients_asked = SimpleNamespace(clients=clients, asked=asked)
    return clients_asked


class OneLease:
    """``ctx.credentials`` for unit tests: every call gets the same lease of one session."""

    def __init__(self, session: str):
        from observatory_pipelines.core.platform.settings import Secret

        self.lease = SimpleNamespace(
            name="forsker-1", field=lambda name: Secret(str(json.loads(secret(session))[name]))
        )

    def call(self, request):
        return request(self.lease)


def run_telethon(session: str, channels: list[str]):
    log: list[str] = []
    searched: list[str] = []
    ctx = CollectionContext(http=None, log=log.append, searched=searched.append, credentials=OneLease(session))
    results = list(TelegramArena().collect(make_spec(channels=channels, client="telethon"), ctx))
    return results, searched, log


def test_telethon_reads_the_month_back_to_its_start_with_danish_text(telethon_clients):
    telethon_clients.clients["sess-1"] = client = FakeTelethon(klimanyt_channels())
    results, searched, log = run_telethon("sess-1", ["klimanyt_dk"])

    assert telethon_clients.asked == [("sess-1", 2040123, "0123456789abcdef0123456789abcdef")]
    assert client.offset_dates == [WINDOW[1]] and not client.connected
    # Paging stops at the first February message; the 34 older ones are never asked for.
    assert client.read == [1241, 1240, 1239, 1238, 1237, 1236, 1235]
    by_id = {i.platform_id: i for i in items(results)}
    assert sorted(by_id) == [f"klimanyt_dk/{n}" for n in (1236, 1237, 1238, 1240, 1241)]  # no pinned-notice
    assert rejected(results) == [] and searched == ["telethon:klimanyt_dk"]
    assert log == ["telegram: 5 messages in the window from telethon:klimanyt_dk"]

    first = by_id["klimanyt_dk/1240"]
    assert (first.url, first.author_platform_id, first.author_display_name) == (
        "https://t.me/klimanyt_dk/1240",
        "klimanyt_dk",
        "Klimanyt DK",
    )
    assert first.text_content == "Ny rapport: vindmøller på havet leverede 52 % af strømmen i marts.\nLæs mere på dr.dk"
    assert (first.views_count, first.shares_count, first.comments_count) == (3400, 87, 14)
    assert first.raw_metadata == {"channel": "klimanyt_dk", "message_id": 1240, "reactions": 151}
    assert by_id["klimanyt_dk/1236"].published_at == datetime(2026, 3, 1, tzinfo=UTC)
    assert by_id["klimanyt_dk/1236"].text_content.endswith("Æblegrød og kaffe til alle fremmødte i Ålborg.")
    assert by_id["klimanyt_dk/1236"].raw_metadata["link_preview"] == {
        "url": "https://www.altinget.dk/klima/artikel/groen-omstilling-koster",
        "site_name": "Altinget",
        "title": "Grøn omstilling koster – men hvem betaler?",
    }
    assert by_id["klimanyt_dk/1237"].interactions == [
        Interaction("repost", platform_id="energinyt/877", handle="energinyt")
    ]
    reply = by_id["klimanyt_dk/1238"]
    assert reply.interactions == [Interaction("reply", platform_id="klimanyt_dk/1230", handle="klimanyt_dk")]
    assert reply.raw_metadata["signature"] == "Søren Ødegaard" and reply.raw_metadata["edited"] is True
    assert by_id["klimanyt_dk/1241"].interactions == [
        Interaction("mention", handle="gronnetanker"),
        Interaction("mention", handle="landbrugsavisen"),
    ]


def test_one_message_read_by_the_preview_and_by_telethon_is_one_item(arena_server, telethon_clients):
    arena_server.route("/s/klimanyt_dk", *the_channel())
    [web] = [
        i for i in items(run(arena_server, make_spec(channels=["klimanyt_dk"]))[0]) if i.platform_id.endswith("/1240")
    ]
    telethon_clients.clients["sess-1"] = FakeTelethon(klimanyt_channels())
    [api] = [i for i in items(run_telethon("sess-1", ["klimanyt_dk"])[0]) if i.platform_id.endswith("/1240")]

    fields = ("platform", "platform_id", "url", "author_platform_id", "text_content", "published_at", "views_count")
    assert {f: getattr(api, f) for f in fields} == {f: getattr(web, f) for f in fields}
    salt = SALT.encode()
    assert privacy.pseudonymise(api.platform, api.author_platform_id, salt) == privacy.pseudonymise(
        web.platform, web.author_platform_id, salt
    )


def test_telethon_rejects_a_private_or_missing_channel_and_reads_the_others(telethon_clients):
    from telethon.errors import ChannelPrivateError, UsernameNotOccupiedError

    channels = {
        "hemmelig_kanal": ChannelPrivateError(request=None),
        "findes_ikke_dk": UsernameNotOccupiedError(request=None),
        **klimanyt_channels(),
    }
    telethon_clients.clients["sess-1"] = FakeTelethon(channels)
    results, searched, _ = run_telethon("sess-1", ["hemmelig_kanal", "findes_ikke_dk", "ukendt_dk", "klimanyt_dk"])

    assert rejected(results) == [
        Rejected(
            "channel 'hemmelig_kanal' could not be read with Telethon (ChannelPrivateError)", "telethon:hemmelig_kanal"
        ),
        Rejected(
            "channel 'findes_ikke_dk' could not be read with Telethon (UsernameNotOccupiedError)",
            "telethon:findes_ikke_dk",
        ),
        Rejected("channel 'ukendt_dk' could not be read with Telethon (ValueError)", "telethon:ukendt_dk"),
    ]
    assert len(items(results)) == 5 and len(searched) == 4


def test_the_telethon_option_is_what_needs_a_credential():
    arena = TelegramArena()
    assert not arena.needs_credential and not arena.needs_credential_for({"client": "web"})
    assert not arena.needs_credential_for({}) and arena.needs_credential_for({"client": "telethon"})
    assert arena.validate_options({"client": "telethon"})["client"] == "telethon"
    with pytest.raises(ValueError, match="option 'client' must be one of web, telethon, not 'mtproto'"):
        arena.validate_options({"client": "mtproto"})


def test_the_preview_path_never_imports_telethon():
    code = (
        "import sys; import observatory_pipelines.definitions; "
        "from observatory_pipelines.core.collection.arenas import telegram; "
        "assert not [m for m in sys.modules if m.startswith('telethon')], 'telethon imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the Telethon path end to end, with the credential pool on PostgreSQL -------------------------


def telethon_design(engine):
    config = {"telegram": {"options": {"client": "telethon", "channels": ["klimanyt_dk"]}}}
    return make_design(engine, slug="telegram-telethon", arenas_config=config)


def used_today(engine, **uses: int) -> None:
    """Counts uses on credentials by name, so the pool (least used first) hands them out in order."""
    with engine.begin() as conn:
        for name, count in uses.items():
            conn.execute(
                sa.text("UPDATE api_credentials SET quota_used_today = :c, quota_date = :d WHERE credential_name = :n"),
                {"c": count, "d": NOW.date(), "n": name.replace("_", "-")},
            )


def collect_telethon(engine, **kwargs):
    return collection.collect_arena(
        engine,
        design_slug="telegram-telethon",
        month=MARCH,
        arena_name="telegram",
        dagster_run_id="run-telethon",
        salt=SALT,
        now=NOW,
        **kwargs,
    )


def test_end_to_end_a_flood_wait_rests_the_credential_and_the_next_reads(engine, telethon_clients):
    from telethon.errors import FloodWaitError

    design = telethon_design(engine)
    add_platform_credential(engine, "telegram", "a-travl", secret("sess-travl"))
    add_platform_credential(engine, "telegram", "b-god", secret("sess-god"))
    telethon_clients.clients["sess-travl"] = FakeTelethon({}, failure=FloodWaitError(request=None, capture=90))
    telethon_clients.clients["sess-god"] = FakeTelethon(klimanyt_channels())
    used_today(engine, b_god=5)

    outcome = collect_telethon(engine, credential_key=CREDENTIAL_KEY)

    assert outcome.status == "completed", outcome.message
    rows = content_rows(engine, design)
    # The design's terms are matched locally, as on the preview path.
    assert [r["platform_id"] for r in rows] == [f"klimanyt_dk/{n}" for n in (1236, 1240, 1241)]
    assert {r["pseudonymized_author_id"] for r in rows} == {pseudonym("telegram", "klimanyt_dk")}
    rested = platform_credential(engine, "telegram", "a-travl")
    assert rested["is_active"] and rested["exhausted_until"] == NOW + timedelta(seconds=90)
    assert "wait 90 s" in rested["last_error"] and "sess-travl" not in rested["last_error"]


def test_end_to_end_all_credentials_resting_fails_in_one_line(engine, telethon_clients):
    from telethon.errors import FloodWaitError

    design = telethon_design(engine)
    for name in ("a", "b"):
        add_platform_credential(engine, "telegram", name, secret(f"sess-{name}"))
        telethon_clients.clients[f"sess-{name}"] = FakeTelethon({}, failure=FloodWaitError(request=None, capture=600))

    with pytest.raises(QuotaExceeded) as err:
        collect_telethon(engine, credential_key=CREDENTIAL_KEY)

    message = str(err.value)
    assert message == (
        "telegram: all 2 telegram credentials (free tier) are spent until 12:10 UTC; the collection can be retried then"
    )
    assert task(engine, design, "telegram")["status"] == "failed" and content_rows(engine, design) == []


def test_end_to_end_an_unauthorised_session_is_switched_off_and_never_printed(engine, telethon_clients):
    from telethon.errors import AuthKeyUnregisteredError

    design = telethon_design(engine)
    add_platform_credential(engine, "telegram", "a-udlobet", secret("sess-udlobet-hemmelig"))
    add_platform_credential(engine, "telegram", "b-ikke-logget-ind", secret("sess-ikke-logget-ind"))
    add_platform_credential(engine, "telegram", "c-god", secret("sess-god"))
    telethon_clients.clients["sess-udlobet-hemmelig"] = FakeTelethon({}, failure=AuthKeyUnregisteredError(request=None))
    telethon_clients.clients["sess-ikke-logget-ind"] = FakeTelethon({}, authorized=False)
    telethon_clients.clients["sess-god"] = FakeTelethon(klimanyt_channels())
    used_today(engine, b_ikke_logget_ind=1, c_god=5)
    logs: list[str] = []

    outcome = collect_telethon(engine, credential_key=CREDENTIAL_KEY, log=logs.append)

    assert outcome.status == "completed" and len(content_rows(engine, design)) == 3
    expired = platform_credential(engine, "telegram", "a-udlobet")
    assert not expired["is_active"] and "AuthKeyUnregisteredError" in expired["last_error"]
    unauthorised = platform_credential(engine, "telegram", "b-ikke-logget-ind")
    assert not unauthorised["is_active"] and "not logged in" in unauthorised["last_error"]
    for text in [outcome.message or "", *logs, expired["last_error"], unauthorised["last_error"]]:
        assert "sess-" not in text and "0123456789abcdef" not in text


def test_end_to_end_telethon_without_the_key_refuses_in_one_line(engine, telethon_clients, monkeypatch):
    monkeypatch.delenv("OBSERVATORY_CREDENTIAL_KEY", raising=False)
    telethon_design(engine)
    with pytest.raises(ConfigError) as err:
        collect_telethon(engine)
    assert "OBSERVATORY_CREDENTIAL_KEY" in str(err.value) and "\n" not in str(err.value)
    assert telethon_clients.asked == []
