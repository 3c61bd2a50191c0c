from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import CollectedItem, CollectionContext, QuerySpec, Rejected
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.arenas.rss_feeds import (
    DEFAULT_DANISH_FEEDS,
    RssFeedsArena,
    html_to_text,
    outlet_slug,
    parse_feed,
)
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import FakeClock
from tests.http_fixtures import FIXTURES, Canned, fixture_bytes

MARCH_2025 = (datetime(2025, 3, 1, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
RSS = {"content-type": "application/rss+xml; charset=utf-8"}


def make_spec(**options) -> QuerySpec:
    return QuerySpec(
        design_slug="klima",
        terms=("klima",),
        actors=(),
        window_start=MARCH_2025[0],
        window_end=MARCH_2025[1],
        tier=Tier.FREE,
        options=options,
    )


def parse(name: str, feed_url: str | None = None) -> list[CollectedItem | Rejected]:
    feed_url = feed_url or f"https://www.eksempel.dk/rss/{name}"
    return list(parse_feed(fixture_bytes(f"rss/{name}"), feed_url, make_spec()))


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def rejected(results) -> list[Rejected]:
    return [r for r in results if isinstance(r, Rejected)]


def context(**client_options) -> tuple[CollectionContext, FakeClock, list[str]]:
    sleeps = FakeClock()
    log: list[str] = []
    http = HttpClient(sleep=sleeps.sleep, clock=sleeps.clock, random=lambda: 1.0, **client_options)
    return CollectionContext(http=http, log=log.append), sleeps, log


def collect(*feeds: str, ctx: CollectionContext | None = None, **options) -> list[CollectedItem | Rejected]:
    ctx = ctx or context()[0]
    spec = make_spec(feeds=list(feeds), min_interval_seconds=0, **options)
    return list(RssFeedsArena().collect(spec, ctx))


def test_the_arena_is_registered():
    # The registry imports every built-in arena; file_import is written separately.
    pytest.importorskip("observatory_pipelines.core.collection.arenas.file_import")
    assert registry()["rss_feeds"] is RssFeedsArena


def test_feeds_are_a_free_plain_source_filtered_afterwards():
    assert RssFeedsArena.platform == "rss"
    assert RssFeedsArena.keep_unmatched is False
    assert RssFeedsArena().estimate_credits(make_spec()) == 0


def test_rss20_keeps_only_items_inside_the_half_open_window():
    results = parse("rss20_content_media.xml")
    assert [i.platform_id for i in items(results)] == [
        "eksempel-politik-1001",
        "eksempel-politik-1002",  # 31 March 23:30 UTC is still March
        "https://www.eksempel.dk/debat/udateret-5",  # undated: kept, the orchestrator dates it
    ]
    # Excluded: 28 Feb 23:59:59 UTC, and 1 April 02:00 +02:00, which is exactly 1 April 00:00 UTC.
    undated = items(results)[2]
    assert undated.published_at is None and undated.raw_metadata["guid"] is None


def test_rss20_maps_content_media_and_metadata():
    first = items(parse("rss20_content_media.xml"))[0]
    assert first.platform == "rss"
    assert first.content_type == "article"
    assert first.published_at == datetime(2025, 3, 4, 9, 15, tzinfo=timezone.utc)
    assert first.published_at.tzinfo is not None
    assert first.title == "Regeringen fremlægger ny klimaplan"
    assert first.url == "https://www.eksempel.dk/politik/klimaplan-1"
    # content:encoded wins over the shorter description; paragraphs become spaces, scripts vanish.
    assert first.text_content == "Regeringen vil halvere udledningen. Oppositionen er kritisk."
    assert first.author_display_name == "Mette Jensen"
    assert first.author_platform_id == "eksempel.dk"
    assert first.language == "da"  # from <language>da-DK</language>
    assert first.media_urls == [
        "https://www.eksempel.dk/lyd/klima.mp3",
        "https://www.eksempel.dk/img/klima.jpg",
        "https://www.eksempel.dk/img/klima-lille.jpg",
    ]
    assert first.raw_metadata == {
        "feed_url": "https://www.eksempel.dk/rss/rss20_content_media.xml",
        "feed_title": "Eksempel Nyheder - Politik",
        "categories": ["Politik", "Klima"],
        "guid": "eksempel-politik-1001",
    }


def test_entries_without_id_or_link_are_rejected():
    [reject] = rejected(parse("rss20_content_media.xml"))
    assert "'Uden id og link' has neither id nor link" in reject.reason
    assert reject.source == "https://www.eksempel.dk/rss/rss20_content_media.xml"


def test_latin1_feed_with_html_entities_keeps_danish_letters_intact():
    faerge, cykelstier = items(parse("rss20_entities_da_latin1.xml"))
    assert faerge.title == "Færgen til Ærø er forsinket"
    assert faerge.text_content == 'Blåbær, "rødgrød" & fløde på Århus Næste afsnit — slut.'
    assert cykelstier.title == "Østerbro får nye cykelstier"
    assert cykelstier.text_content == "Københavns Kommune & borgerne er enige."
    assert faerge.raw_metadata["feed_title"] == "Nyheder fra Ærø & Møn"


def test_atom10_entries():
    skat, opdateret = items(parse("atom10.xml", "file:///srv/demo/atom10.xml"))
    assert skat.title == "Skat & velfærd i Ærø Kommune"
    assert skat.text_content == "Overskrift Første afsnit. Anden linje."
    assert skat.published_at == datetime(2025, 3, 9, 7, 0, tzinfo=timezone.utc)
    assert skat.author_display_name == "Søren Østergaard"
    assert skat.media_urls == ["https://atom.example.dk/billeder/skat.png"]
    assert skat.raw_metadata["categories"] == ["Økonomi"]
    # A file:// feed has no host, so the outlet comes from the feed's own link.
    assert skat.author_platform_id == "example.dk"
    # Only <updated>: used as the publication time. A text/plain summary keeps its literal "<".
    assert opdateret.published_at == datetime(2025, 3, 10, 11, 0, tzinfo=timezone.utc)
    assert opdateret.text_content == "a < b og b > c"


def test_language_falls_back_to_the_specs_language():
    feed = b'<rss version="2.0"><channel><title>T</title><item><link>https://x.dk/1</link></item></channel></rss>'
    [item] = parse_feed(feed, "https://x.dk/rss", make_spec())
    assert item.language == "da"


def test_malformed_but_readable_feed_yields_its_entries_and_one_rejected():
    results = parse("malformed_readable.xml")
    assert [i.url for i in items(results)] == ["https://rodet.example.dk/1", "https://rodet.example.dk/2"]
    [reject] = rejected(results)
    assert reject.reason.startswith("feed is malformed (") and "read 2 entries anyway" in reject.reason
    assert "\n" not in reject.reason


def test_truncated_feed_file_yields_what_was_complete():
    results = parse("truncated.xml")
    assert [i.title for i in items(results)] == ["Hel artikel"]
    assert any("malformed" in r.reason for r in rejected(results))


def test_an_html_page_instead_of_a_feed_is_one_rejected():
    [reject] = parse("html_page.html")
    assert reject == Rejected(
        "the URL returned an HTML page, not an RSS or Atom feed; check the feed URL",
        "https://www.eksempel.dk/rss/html_page.html",
    )


@pytest.mark.parametrize("body", [b"", b"just some text", b'{"json": true}', b"\x00\xff\xfe binary"])
def test_non_feeds_are_one_rejected(body):
    [reject] = parse_feed(body, "https://x.dk/feed", make_spec())
    assert isinstance(reject, Rejected) and "check the feed" in reject.reason


def test_an_empty_but_valid_feed_yields_nothing():
    feed = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Tom</title></channel></rss>'
    assert list(parse_feed(feed, "https://x.dk/feed", make_spec())) == []


def test_bytes_naming_a_file_are_parsed_as_a_document_not_opened():
    path = str(FIXTURES / "rss" / "atom10.xml").encode()
    [result] = parse_feed(path, "https://x.dk/feed", make_spec())
    assert isinstance(result, Rejected)  # had feedparser opened the file, its two entries would be here


def test_one_dead_feed_among_three_does_not_sink_the_others(arena_server):
    first = arena_server.route("/dr/politik", Canned(200, fixture_bytes("rss/rss20_content_media.xml"), RSS))
    dead = arena_server.route("/gone/rss", Canned(404, b"Not Found"))
    atom = Canned(200, fixture_bytes("rss/atom10.xml"), {"content-type": "application/atom+xml"})
    third = arena_server.route("/atom", atom)
    ctx, _, log = context()
    results = collect(first, dead, third, ctx=ctx)
    assert len(items(results)) == 3 + 2
    dead_rejects = [r for r in rejected(results) if r.source == dead]
    assert len(dead_rejects) == 1 and "HTTP 404 from 127.0.0.1/gone/rss" in dead_rejects[0].reason
    assert any(line.startswith("rss_feeds: skipped a feed: rss_feeds: HTTP 404") for line in log)
    assert ctx.http.api_calls == 3


def test_a_feed_failing_with_5xx_or_truncation_is_retried_then_rejected(arena_server):
    flaky = arena_server.route("/flaky", Canned(503), Canned(200, fixture_bytes("rss/atom10.xml")))
    cut = arena_server.route("/cut", Canned(200, fixture_bytes("rss/rss20_content_media.xml"), truncate=True))
    ctx, sleeps, _ = context(max_attempts=2)
    results = collect(flaky, cut, ctx=ctx)
    assert len(items(results)) == 2
    [reject] = rejected(results)
    assert reject.source == cut and "truncated" in reject.reason
    assert sleeps.waits == [1.0, 1.0]


def test_when_every_feed_fails_the_arena_raises_the_last_error(arena_server):
    a = arena_server.route("/a", Canned(404))
    b = arena_server.route("/b", Canned(410))
    arena = RssFeedsArena()
    results = arena.collect(make_spec(feeds=[a, b], min_interval_seconds=0), context()[0])
    assert isinstance(next(results), Rejected)
    assert isinstance(next(results), Rejected)
    with pytest.raises(ArenaError, match="HTTP 410"):
        next(results)


def test_unreadable_feeds_are_not_errors(arena_server):
    html = arena_server.route("/html", Canned(200, fixture_bytes("rss/html_page.html"), {"content-type": "text/html"}))
    assert [r.source for r in collect(html)] == [html]


def test_items_are_deduplicated_across_feeds(arena_server):
    body = fixture_bytes("rss/rss20_content_media.xml")
    a = arena_server.route("/a", Canned(200, body, RSS))
    b = arena_server.route("/b", Canned(200, body, RSS))
    assert len(items(collect(a, b))) == 3


def test_feeds_are_spaced_by_min_interval(arena_server):
    body = fixture_bytes("rss/atom10.xml")
    a = arena_server.route("/a", Canned(200, body))
    b = arena_server.route("/b", Canned(200, body))
    ctx, sleeps, _ = context()
    list(RssFeedsArena().collect(make_spec(feeds=[a, b], min_interval_seconds=2.5), ctx))
    assert sleeps.waits == [2.5]


def test_file_feeds_are_read_without_http(tmp_path):
    ctx, _, _ = context()
    missing = (tmp_path / "missing.xml").as_uri()
    results = collect((FIXTURES / "rss" / "atom10.xml").as_uri(), missing, ctx=ctx)
    assert len(items(results)) == 2
    [reject] = rejected(results)
    assert reject.source == missing and "cannot read feed file" in reject.reason
    assert ctx.http.api_calls == 0
    with pytest.raises(ArenaError, match="check the path"):
        collect(missing)


def test_options_default_to_the_danish_outlets():
    options = RssFeedsArena().validate_options({})
    assert options == {"feeds": list(DEFAULT_DANISH_FEEDS), "min_interval_seconds": 1.0}
    assert len(DEFAULT_DANISH_FEEDS) == 10
    assert {outlet_slug(f.split("/")[2]) for f in DEFAULT_DANISH_FEEDS} == {
        "dr.dk",
        "tv2.dk",
        "politiken.dk",
        "berlingske.dk",
        "information.dk",
        "altinget.dk",
        "ekstrabladet.dk",
        "bt.dk",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"feed": []}, "no option 'feed'"),
        ({"feeds": "https://dr.dk/rss"}, "non-empty list"),
        ({"feeds": []}, "non-empty list"),
        ({"feeds": ["ftp://dr.dk/rss"]}, "'ftp://dr.dk/rss'"),
        ({"feeds": ["https://"]}, "'https://'"),
        ({"feeds": [42]}, "42"),
        ({"min_interval_seconds": -1}, "min_interval_seconds"),
    ],
)
def test_bad_options_name_the_key_or_value(options, message):
    with pytest.raises(ValueError, match=message):
        RssFeedsArena().validate_options(options)


@pytest.mark.parametrize(
    ("host", "slug"),
    [
        ("www.dr.dk", "dr.dk"),
        ("feeds.services.tv2.dk", "tv2.dk"),
        ("politiken.dk", "politiken.dk"),
        ("feeds.bbc.co.uk", "bbc.co.uk"),
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost"),
    ],
)
def test_outlet_slug(host, slug):
    assert outlet_slug(host) == slug


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>slut.</p><p>Ny</p>", "slut. Ny"),
        ("linje<br>linje<br/>", "linje linje"),
        ("R&oslash;dgr&oslash;d &amp; fl&#248;de&nbsp;!", "Rødgrød & fløde !"),
        ("<style>p{}</style><script>x()</script>synlig", "synlig"),
        ("<b>fed</b>tekst", "fedtekst"),
        ("a < b", "a < b"),
        ("<p>uafsluttet", "uafsluttet"),
    ],
)
def test_html_to_text(markup, text):
    assert html_to_text(markup) == text


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_XML_PIECES = st.sampled_from(
    [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<?xml version="1.0" encoding="bogus"?>',
        '<rss version="2.0">',
        "</rss>",
        "<channel>",
        "</channel>",
        "<item>",
        "</item>",
        "<entry>",
        "</entry>",
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        "</feed>",
        "<title>",
        "</title>",
        "<link>",
        "</link>",
        "<guid>",
        "</guid>",
        "<pubDate>",
        "</pubDate>",
        "<updated>",
        "</updated>",
        "<description>",
        "</description>",
        "<![CDATA[",
        "]]>",
        "&amp;",
        "&oslash;",
        "&#0;",
        "&#xD800;",
        "<p>",
        "</p>",
        "<br/>",
        "<script>",
        "Tue, 04 Mar 2025 10:15:00 +0100",
        "2025-03-09T08:00:00Z",
        "31 Feb 99999",
        "https://x.dk/a",
        "æøå",
        '<enclosure url="https://x.dk/e.mp3"/>',
        '<media:content xmlns:media="http://search.yahoo.com/mrss/" url="u"/>',
        "<language>",
        "</language>",
        "da-DK",
        "<",
        ">",
        '"',
        "\x00",
    ]
)
_XMLISH = st.lists(st.one_of(_XML_PIECES, st.text(max_size=20)), max_size=40).map("".join)


def _assert_only_documented_results(data: bytes, content_type: str | None) -> None:
    for result in parse_feed(data, "https://x.dk/feed", make_spec(), content_type):
        assert isinstance(result, (CollectedItem, Rejected))
        if isinstance(result, Rejected):
            assert "\n" not in result.reason
        else:
            assert result.published_at is None or MARCH_2025[0] <= result.published_at < MARCH_2025[1]


@FUZZ
@given(
    data=st.binary(max_size=2000),
    content_type=st.one_of(st.none(), st.sampled_from(["text/html", "application/xml; charset=latin-1"])),
)
def test_fuzz_parse_feed_on_arbitrary_bytes(data, content_type):
    _assert_only_documented_results(data, content_type)


@FUZZ
@given(text=_XMLISH, encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_fuzz_parse_feed_on_xml_ish_text(text, encoding):
    _assert_only_documented_results(text.encode(encoding, "replace"), None)
