"""TelegramArena: public channels read from the t.me/s web preview, replayed from fixtures.

Fixtures in ``tests/fixtures/telegram/`` follow the preview's markup as research notes §4.1 lists
it (the selectors widely used scrapers read: ``tgme_widget_message[data-post]``, ``time[datetime]``,
``tme_messages_more[data-before]``); a channel without a public preview redirects to
``t.me/<channel>``.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import privacy
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
from observatory_pipelines.core.collection.arenas.errors import ArenaError, MalformedResponse, ServerError
from observatory_pipelines.core.collection.arenas.file_import import read_import_file
from observatory_pipelines.core.collection.arenas.telegram import TelegramArena, parse_count, parse_preview
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import (
    MARCH,
    SALT,
    FakeClock,
    add_actor_list,
    content_rows,
    make_actor,
    make_design,
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
