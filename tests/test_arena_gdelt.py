import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import CollectedItem, CollectionContext, QuerySpec, Rejected
from observatory_pipelines.core.collection.arenas.errors import ArenaError, MalformedResponse
from observatory_pipelines.core.collection.arenas.gdelt import (
    DEFAULT_BASE_URL,
    GdeltArena,
    GdeltQuery,
    GdeltQueryRejected,
    build_queries,
    parse_artlist,
    time_slices,
)
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import HttpClient
from tests.factories import FakeClock
from tests.http_fixtures import Canned, fixture_bytes

UTC = timezone.utc
JSON = {"content-type": "application/json; charset=utf-8"}
DAY1 = datetime(2025, 3, 4, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def make_spec(start=DAY1, end=DAY1 + timedelta(days=2), terms=("klima", '"grøn omstilling"'), **options) -> QuerySpec:
    return QuerySpec("klima", terms, (), start, end, Tier.FREE, options)


def run(arena_server, spec: QuerySpec, *responses: Canned, **client_options):
    """Collect ``spec`` against canned GDELT answers; returns (results, requests, clock, log)."""
    url = arena_server.route("/api/v2/doc/doc", *responses)
    clock = FakeClock()
    log: list[str] = []
    http = HttpClient(sleep=clock.sleep, clock=clock.clock, random=lambda: 1.0, **client_options)
    ctx = CollectionContext(http=http, log=log.append, now=lambda: datetime(2025, 3, 20, tzinfo=UTC))
    spec = replace(spec, options={"base_url": url, "min_interval_seconds": 0, **spec.options})
    results = list(GdeltArena().collect(spec, ctx))
    return results, arena_server.requests_to("/api/v2/doc/doc"), clock, log


def artlist(*articles: dict) -> Canned:
    return Canned(200, json.dumps({"articles": list(articles)}).encode(), JSON)


def article(n: int, seen: datetime) -> dict:
    return {
        "url": f"https://www.dr.dk/nyheder/{n}",
        "title": f"Artikel {n}",
        "seendate": seen.strftime("%Y%m%dT%H%M%SZ"),
        "domain": "dr.dk",
        "language": "Danish",
        "sourcecountry": "Denmark",
    }


def full_slice(seen: datetime, size: int = 250) -> Canned:
    return artlist(*(article(n, seen) for n in range(size)))


def items(results) -> list[CollectedItem]:
    return [r for r in results if isinstance(r, CollectedItem)]


def window(request) -> tuple[str, str]:
    return request.query["startdatetime"][0], request.query["enddatetime"][0]


def test_the_arena_is_registered():
    # The registry imports every built-in arena; file_import is written separately.
    pytest.importorskip("observatory_pipelines.core.collection.arenas.file_import")
    assert registry()["gdelt"] is GdeltArena


def test_gdelt_is_free_and_keeps_what_it_matched_server_side():
    assert GdeltArena.platform == "gdelt" and GdeltArena.keep_unmatched is True
    for tier in Tier:
        assert GdeltArena().estimate_credits(replace(make_spec(), tier=tier)) == 0
        assert GdeltArena().credits_used(replace(make_spec(), tier=tier), items=5_000, api_calls=40) == 0


@pytest.mark.parametrize(
    ("terms", "query"),
    [
        (("klima",), "klima sourcecountry:DA sourcelang:danish"),
        (("klima", '"grøn omstilling"'), '(klima OR "grøn omstilling") sourcecountry:DA sourcelang:danish'),
        (
            ('"Mette  Frederiksen"', "covid-19", "  "),
            '("Mette Frederiksen" OR "covid-19") sourcecountry:DA sourcelang:danish',
        ),
        (("#dkpol", "havvind OR vindmøller"), "(dkpol OR havvind OR vindmøller) sourcecountry:DA sourcelang:danish"),
    ],
)
def test_words_and_phrases_share_one_ored_query(terms, query):
    assert [q.text for q in build_queries(terms, "DA", "danish")] == [query]


def test_each_all_of_clause_is_a_query_of_its_own_that_names_its_term():
    design_terms = ["klima", '(havvind OR "nye vindmøller") støj -(atomkraft OR kul)', "grøn omstilling"]
    assert build_queries(design_terms, None, "danish") == [
        GdeltQuery("klima sourcelang:danish", "klima"),
        GdeltQuery("havvind støj -atomkraft -kul sourcelang:danish", design_terms[1]),
        GdeltQuery('"nye vindmøller" støj -atomkraft -kul sourcelang:danish', design_terms[1]),
        GdeltQuery("grøn omstilling sourcelang:danish", "grøn omstilling"),
    ]


def test_gdelt_refuses_what_it_cannot_search_in_one_line():
    with pytest.raises(ArenaError, match=r"cannot exclude the group -\(vind sol\)"):
        build_queries(["klima -(vind sol)"], "DA", "danish")
    with pytest.raises(ArenaError, match="never closed"):
        build_queries(['"klima'], "DA", "danish")


def test_query_filters_can_be_dropped():
    assert build_queries(["klima"], None, None) == [GdeltQuery("klima", "klima")]


def test_a_design_without_terms_cannot_search_gdelt():
    with pytest.raises(ArenaError, match="add terms"):
        build_queries(["", "  "], "DA", "danish")


def test_time_slices_cover_the_window_exactly():
    assert time_slices(at(4), at(5, 12), 24) == [(at(4), at(5)), (at(5), at(5, 12))]


def test_collect_maps_articles_across_daily_slices(arena_server):
    day1 = Canned(200, fixture_bytes("gdelt/artlist_day1.json"), JSON)
    day2 = Canned(200, fixture_bytes("gdelt/artlist_day2.json"), JSON)
    results, requests, _, _ = run(arena_server, make_spec(), day1, day2)

    assert [window(r) for r in requests] == [("20250304000000", "20250305000000"), ("20250305000000", "20250306000000")]
    query = requests[0].query
    assert query["query"] == ['(klima OR "grøn omstilling") sourcecountry:DA sourcelang:danish']
    fixed = {key: query[key] for key in ("mode", "format", "maxrecords", "sort")}
    assert fixed == {"mode": ["artlist"], "format": ["json"], "maxrecords": ["250"], "sort": ["DateDesc"]}
    assert requests[0].headers["user-agent"].startswith("observatory-pipelines/")

    got = items(results)
    # Day 1: the article seen on 3 March is outside the window. Day 2: the DR article again is a duplicate.
    assert [i.author_platform_id for i in got] == ["dr.dk", "politiken.dk", "altinget.dk", "tv2.dk", "thelocal.dk"]
    dr = got[0]
    assert dr.platform == "gdelt" and dr.content_type == "article"
    assert dr.platform_id == hashlib.sha256(dr.url.encode()).hexdigest()
    assert dr.published_at == datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    assert dr.title == "Regeringen fremlægger klimaplan for landbruget"
    assert dr.author_display_name == "dr.dk" and dr.language == "da"
    assert dr.media_urls == ["https://asset.dr.dk/img/klima.jpg"]
    assert dr.raw_metadata == {
        "domain": "dr.dk",
        "sourcecountry": "Denmark",
        "language": "Danish",
        "url_mobile": None,
        "seendate": "20250304T101500Z",
    }
    assert got[1].media_urls == []
    assert got[-1].language == "en"
    [reject] = [r for r in results if isinstance(r, Rejected)]
    assert reject.reason == "GDELT article has no url; skipped"
    assert reject.source == "2025-03-05T00:00:00Z/2025-03-06T00:00:00Z"


def test_a_full_slice_is_halved_until_below_the_cap(arena_server):
    spec = make_spec(start=at(4), end=at(5), slice_hours=24)
    results, requests, _, _ = run(
        arena_server,
        spec,
        full_slice(at(4, 10)),  # the whole day: capped, so discarded and split
        full_slice(at(4, 3)),  # 00:00-12:00: still capped, split again
        artlist(article(1, at(4, 1)), article(2, at(4, 2))),  # 00:00-06:00
        artlist(article(3, at(4, 7))),  # 06:00-12:00
        artlist(article(4, at(4, 13)), article(5, at(4, 20))),  # 12:00-24:00
    )
    assert [window(r) for r in requests] == [
        ("20250304000000", "20250305000000"),
        ("20250304000000", "20250304120000"),
        ("20250304000000", "20250304060000"),
        ("20250304060000", "20250304120000"),
        ("20250304120000", "20250305000000"),
    ]
    assert [i.title for i in items(results)] == [f"Artikel {n}" for n in range(1, 6)]
    assert not [r for r in results if isinstance(r, Rejected)]


def test_a_slice_still_full_at_15_minutes_is_reported_not_silently_capped(arena_server):
    spec = make_spec(start=at(4, 10), end=at(4, 10, 30), slice_hours=0.5, max_records=3)
    results, requests, _, log = run(arena_server, spec, full_slice(at(4, 10, 5), size=3))
    assert [window(r) for r in requests] == [
        ("20250304100000", "20250304103000"),
        ("20250304100000", "20250304101500"),
        ("20250304101500", "20250304103000"),
    ]
    assert requests[0].query["maxrecords"] == ["3"]
    rejects = [r for r in results if isinstance(r, Rejected)]
    assert [r.source for r in rejects] == [
        "2025-03-04T10:00:00Z/2025-03-04T10:15:00Z",
        "2025-03-04T10:15:00Z/2025-03-04T10:30:00Z",
    ]
    assert rejects[0].reason == (
        "GDELT returned its 3-record cap even for a 15-minute slice, so some articles are missing; "
        "narrow the design's terms"
    )
    assert len(items(results)) == 3  # the same three articles both times, deduplicated
    assert sum("is full, cannot split" in line for line in log) == 2


def test_no_matches_is_an_empty_object(arena_server):
    results, requests, _, _ = run(arena_server, make_spec(), Canned(200, fixture_bytes("gdelt/no_match.json"), JSON))
    assert results == [] and len(requests) == 2


def test_an_invalid_query_raises_a_non_retryable_one_line_error(arena_server):
    html = Canned(200, fixture_bytes("gdelt/invalid_query.html"), {"content-type": "text/html"})
    with pytest.raises(GdeltQueryRejected) as caught:
        run(arena_server, make_spec(), html)
    assert isinstance(caught.value, MalformedResponse) and not caught.value.retryable
    assert str(caught.value) == (
        "gdelt: GDELT rejected the query: The specified phrase is too short.; fix the design's terms or gdelt options"
    )


def test_other_text_answers_are_retryable():
    with pytest.raises(MalformedResponse) as caught:
        parse_artlist(b"<html><body>Service temporarily overloaded</body></html>", "text/html")
    assert type(caught.value) is MalformedResponse and caught.value.retryable
    assert "Service temporarily overloaded" in str(caught.value)


def test_429_text_body_is_retried_with_5_second_spacing(arena_server):
    limited = Canned(429, fixture_bytes("gdelt/rate_limited.txt"), {"content-type": "text/plain"})
    spec = make_spec(end=DAY1 + timedelta(days=1), min_interval_seconds=5)
    day1 = Canned(200, fixture_bytes("gdelt/artlist_day1.json"), JSON)
    results, requests, clock, _ = run(arena_server, spec, limited, day1)
    assert len(requests) == 2 and len(items(results)) == 3
    assert clock.waits == [1.0, 4.0]  # backoff, then the rest of GDELT's 5 s spacing


def test_control_characters_are_stripped_before_decoding():
    [item] = parse_artlist(fixture_bytes("gdelt/control_chars.json"), "application/json")
    assert item.title == "Minister under pres i samråd"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"articles": [', "invalid JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"articles": {"url": "x"}}', "'articles' is not a list"),
        (b"[" * 100_000, "invalid JSON"),
    ],
)
def test_malformed_json_raises_malformed_response(body, error):
    with pytest.raises(MalformedResponse, match=error):
        parse_artlist(body, "application/json")


def test_odd_articles_are_rejected_or_mapped_leniently():
    body = json.dumps(
        {
            "articles": [
                42,
                {"url": ""},
                {"url": "https://x.dk/a", "seendate": "yesterday", "language": "Klingon", "domain": 7},
            ]
        }
    ).encode()
    not_object, no_url, odd = parse_artlist(body, "application/json", "slice")
    assert not_object == Rejected("GDELT article is not a JSON object; skipped", "slice")
    assert no_url == Rejected("GDELT article has no url; skipped", "slice")
    assert odd.published_at is None and odd.language is None
    assert odd.author_platform_id == "x.dk"  # no usable domain: taken from the URL


def test_an_empty_body_means_no_matches():
    assert parse_artlist(b"  \n", "text/html") == []


def test_old_windows_get_a_warning_in_the_log(arena_server):
    spec = make_spec(start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 2, tzinfo=UTC))
    _, _, _, log = run(arena_server, spec, Canned(200, b"{}", JSON))
    assert log == ["gdelt: the window ends over 90 days ago; GDELT may return little or nothing that old"]


def test_default_options():
    assert GdeltArena().validate_options({}) == {
        "source_country": "DA",
        "source_language": "danish",
        "base_url": DEFAULT_BASE_URL,
        "slice_hours": 24.0,
        "max_records": 250,
        "min_interval_seconds": 5.0,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"country": "DA"}, "no option 'country'"),
        ({"source_country": "DA OR x"}, "source_country"),
        ({"source_language": 5}, "source_language"),
        ({"base_url": "api.gdeltproject.org"}, "base_url"),
        ({"slice_hours": 0.1}, "slice_hours"),
        ({"slice_hours": "24"}, "slice_hours"),
        ({"max_records": 251}, "max_records"),
        ({"max_records": True}, "max_records"),
        ({"min_interval_seconds": -5}, "min_interval_seconds"),
    ],
)
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        GdeltArena().validate_options(options)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_ARTICLE = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(st.text(max_size=40), _JSON_VALUES)
        for key in ("url", "url_mobile", "title", "seendate", "socialimage", "domain", "language", "sourcecountry")
    },
)
_BODIES = st.one_of(
    st.binary(max_size=500),
    _JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(st.one_of(_ARTICLE, _JSON_VALUES), max_size=5).map(lambda a: json.dumps({"articles": a}).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
_CONTENT_TYPES = st.sampled_from(["application/json; charset=utf-8", "text/html", "text/plain", ""])


@settings(max_examples=200, deadline=None)
@given(body=_BODIES, content_type=_CONTENT_TYPES)
def test_fuzz_parse_artlist_raises_only_documented_errors(body, content_type):
    try:
        results = parse_artlist(body, content_type, "slice")
    except MalformedResponse as err:  # GdeltQueryRejected included
        assert "\n" not in str(err)
        return
    for result in results:
        assert isinstance(result, (CollectedItem, Rejected))
        if isinstance(result, CollectedItem):
            assert result.url and len(result.platform_id) == 64
            assert result.published_at is None or result.published_at.tzinfo is UTC


def test_an_article_found_by_several_queries_is_one_item_naming_each_term(arena_server):
    noon = at(4, 12)
    boolean = "(havvind OR vindmøller) støj"
    spec = make_spec(end=at(5), terms=("klima", boolean))
    results, requests, _, _ = run(
        arena_server,
        spec,
        artlist(article(1, noon), article(2, noon)),  # the shared query: klima
        artlist(article(2, noon), article(3, noon)),  # havvind støj
        artlist(),  # vindmøller støj
    )

    assert [r.query["query"][0] for r in requests] == [
        "klima sourcecountry:DA sourcelang:danish",
        "havvind støj sourcecountry:DA sourcelang:danish",
        "vindmøller støj sourcecountry:DA sourcelang:danish",
    ]
    got = {i.url.rsplit("/", 1)[1]: i.matched_terms for i in items(results)}
    assert got == {"1": ("klima",), "2": ("klima", boolean), "3": (boolean,)}
