"""FileImportArena: Zeeschuimer and 4CAT exports read from a folder, and never trusted.

Fixtures in ``tests/fixtures/imports/fixture/`` follow the documented shapes (Zeeschuimer's NDJSON
envelope around each platform's own object, 4CAT's mapped columns); broken input is built inline.
"""

from __future__ import annotations

import io
import json
import os
import string
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection.arenas.base import CollectedItem, CollectionContext, QuerySpec, Rejected
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.arenas.file_import import (
    DEFAULT_PATTERNS,
    MAX_LINE_BYTES,
    MAX_RAW_CHARS,
    ZEESCHUIMER_MODULES,
    FileImportArena,
    read_import_file,
    read_import_files,
)
from observatory_pipelines.core.collection.tiers import Tier

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
FIXTURE_DESIGN = FIXTURES / "fixture"
UTC = timezone.utc
MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
X_FIXTURE = "zeeschuimer-export-twitter.com-2026-03-14T10-00-00.ndjson"


def read_fixture(name: str, platform: str | None = None) -> list[CollectedItem | Rejected]:
    with open(FIXTURE_DESIGN / name, "rb") as stream:
        return list(read_import_file(name, stream, platform))


def read_bytes(name: str, data: bytes, platform: str | None = None) -> list[CollectedItem | Rejected]:
    return list(read_import_file(name, io.BytesIO(data), platform))


def items(outputs) -> list[CollectedItem]:
    return [o for o in outputs if isinstance(o, CollectedItem)]


def rejected(outputs) -> list[Rejected]:
    return [o for o in outputs if isinstance(o, Rejected)]


def counts(item: CollectedItem) -> tuple:
    return (item.views_count, item.likes_count, item.shares_count, item.comments_count)


def zeeschuimer_line(module: str, data, **envelope) -> bytes:
    line = {
        "id": 1,
        "nav_index": "1:1:1",
        "item_id": "zs-1",
        "timestamp_collected": 1773482400000,  # 2026-03-14 10:00 UTC
        "source_platform": module,
        "source_platform_url": "https://example.org/search",
        "data": data,
    }
    line.update(envelope)
    return json.dumps(line).encode() + b"\n"


def spec(slug: str = "fixture", window=MARCH, tier=Tier.FREE, **options) -> QuerySpec:
    return QuerySpec(
        design_slug=slug,
        terms=("klima",),
        actors=(),
        window_start=window[0],
        window_end=window[1],
        tier=tier,
        options=options,
    )


def context(import_dir, log=None) -> CollectionContext:
    return CollectionContext(
        http=None, import_dir=None if import_dir is None else str(import_dir), log=log or (lambda message: None)
    )


# ---------------------------------------------------------------------------------------------
# Zeeschuimer, per platform


def test_x_graphql_post_maps_text_author_counts_links_and_media():
    outputs = read_fixture(X_FIXTURE)
    assert rejected(outputs) == []
    post = items(outputs)[0]
    assert post.platform == "x_twitter"
    assert post.platform_id == "2031122334455667788"
    assert post.published_at == datetime(2026, 3, 10, 9, 15, tzinfo=UTC)
    assert post.url == "https://x.com/fixture_anna/status/2031122334455667788"
    assert post.text_content == "Ny rapport om havvind i Nordsøen: https://t.co/AbCdEf1234 #havvind"
    assert (post.author_platform_id, post.author_display_name) == ("fixture_anna", "Anna Fiktiv")
    assert counts(post) == (4711, 42, 7, 3)
    assert post.language == "da"
    assert post.media_urls == ["https://pbs.twimg.com/media/Fixture1.jpg"]
    meta = post.raw_metadata
    assert meta["links"] == ["https://eksempel.example.dk/havvind?utm_source=twitter"]
    assert meta["author_user_id"] == "1480000000000000001"
    assert meta["source_platform"] == "twitter.com" and meta["nav_index"] == "1:1:0"
    assert meta["import_file"] == X_FIXTURE
    assert meta["line"] == 1 and meta["import_format"] == "zeeschuimer"
    assert meta["raw"]["rest_id"] == "2031122334455667788"  # small objects are kept whole


def test_x_wrapped_long_post_retweet_and_adaptive_format():
    long_post, retweet, adaptive = items(read_fixture(X_FIXTURE))[1:]
    # Wrapped in TweetWithVisibilityResults, user names in user.legacy, full text in note_tweet.
    assert long_post.platform_id == "2031199990000000001"
    assert long_post.author_platform_id == "fixture_bo"
    assert long_post.text_content.endswith("retfærdigt.") and len(long_post.text_content) > 280
    assert long_post.published_at == datetime(2026, 3, 11, 17, 0, tzinfo=UTC)  # +0100 offset honoured
    assert long_post.raw_metadata["in_reply_to"] == "2031122334455667788"
    # A retweet carries the original's whole text, not the cut full_text.
    assert retweet.text_content == "RT @fixture_bo: " + long_post.text_content
    assert retweet.raw_metadata["retweet_of"] == "2031199990000000001"
    # The older "adaptive" format keeps the user beside the tweet; "und" is no language.
    assert adaptive.author_platform_id == "fixture_gammel"
    assert adaptive.url == "https://x.com/fixture_gammel/status/2031400000000000004"
    assert adaptive.language is None


def test_tiktok_videos_with_nested_or_flattened_author():
    first, second = items(read_fixture("zeeschuimer-export-tiktok.com-2026-03-14T10-05-00.ndjson"))
    assert (first.platform, first.content_type) == ("tiktok", "video")
    assert first.url == "https://www.tiktok.com/@fixture_tiktoker/video/7614000000000000001"
    assert first.published_at == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    assert counts(first) == (35000, 1200, 45, 88)
    assert first.raw_metadata["hashtags"] == ["klima", "havvind"]
    assert len(first.media_urls) == 2
    # Author as a bare handle, createTime and statsV2 as strings.
    assert (second.author_platform_id, second.author_display_name) == ("fixture_landmand", "Fiktiv Landmand")
    assert second.published_at == datetime(2026, 3, 11, 11, 0, tzinfo=UTC)
    assert (second.views_count, second.likes_count) == (8800, 310)


def test_tiktok_comments_are_comments_on_tiktok():
    (comment,) = items(read_fixture("zeeschuimer-export-tiktok-comments-2026-03-14T10-06-00.ndjson"))
    assert (comment.platform, comment.content_type) == ("tiktok", "comment")
    assert comment.platform_id == "7614000000000100001"
    assert comment.author_platform_id == "fixture_kommentator"
    assert comment.raw_metadata["video_id"] == "7614000000000000001"
    assert comment.likes_count == 12


def test_instagram_item_list_and_graph_formats_share_the_shortcode_id():
    carousel, graph = items(read_fixture("zeeschuimer-export-instagram.com-2026-03-14T10-10-00.ndjson"))
    assert carousel.platform_id == "DFixTur3aB1"
    assert carousel.url == "https://www.instagram.com/p/DFixTur3aB1/"
    assert carousel.text_content == "Solopgang over havvind-parken 🌅 #havvind"
    assert carousel.published_at == datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    assert (carousel.author_platform_id, carousel.author_display_name) == ("fixture_foto", "Fiktiv Fotograf")
    assert (carousel.likes_count, carousel.comments_count) == (530, 14)
    assert carousel.media_urls[-1].endswith("2.mp4") and len(carousel.media_urls) == 3
    assert carousel.raw_metadata["media_id"] == "3580000000000000001"
    assert graph.platform_id == "DFixTur3aB2"
    assert graph.text_content == "Grøn omstilling på landet"
    assert (graph.likes_count, graph.comments_count) == (77, 3)


def test_threads_posts():
    (post,) = items(read_fixture("zeeschuimer-export-threads.net-2026-03-14T10-15-00.ndjson"))
    assert post.platform == "threads"
    assert post.url == "https://www.threads.com/@fixture_traad/post/DFixThr3ad1"
    assert (post.likes_count, post.shares_count, post.comments_count) == (21, 2, 9)


def test_gab_and_truth_social_statuses_become_plain_text():
    (gab,) = items(read_fixture("zeeschuimer-export-gab.com-2026-03-14T10-20-00.ndjson"))
    assert gab.platform == "gab"
    assert gab.text_content == "Vindmøller overalt & ingen spørger os.\nHvad med #dkpol?\n\nAnden linje"
    assert gab.published_at == datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
    assert (gab.likes_count, gab.shares_count, gab.comments_count) == (3, 1, 0)
    assert gab.media_urls == ["https://media.gab.com/fixture.jpg"]
    status, boost = items(read_fixture("zeeschuimer-export-truthsocial.com-2026-03-14T10-25-00.ndjson"))
    assert status.platform == "truth_social" and status.author_platform_id == "fixture_truth"
    assert boost.text_content == "Klima er vigtigt"  # a boost's text lives in the boosted status
    assert boost.raw_metadata["reblog_of"] == "114455667788990011"


def test_unknown_module_gets_a_generic_mapping_and_collection_time():
    outputs = read_fixture("zeeschuimer-export-bilibili.com-2026-03-14T10-30-00.ndjson")
    (item,) = items(outputs)
    assert item.platform == "bilibili"
    assert item.platform_id == "BV1fixture"  # Zeeschuimer's item_id when the object has no id
    assert item.text_content == "Klima video"
    assert item.published_at == datetime(2026, 3, 14, 10, 30, tzinfo=UTC)
    assert item.raw_metadata["published_at_source"] == "timestamp_collected"
    assert [r.source for r in rejected(outputs)] == ["zeeschuimer-export-bilibili.com-2026-03-14T10-30-00.ndjson:2"]


@pytest.mark.parametrize(
    "module, platform",
    [
        ("twitter.com", "x_twitter"),
        ("tiktok.com", "tiktok"),
        ("tiktok-comments", "tiktok"),
        ("instagram.com", "instagram"),
        ("threads.net", "threads"),
        ("gab.com", "gab"),
        ("truthsocial.com", "truth_social"),
        ("linkedin.com", "linkedin"),
        ("9gag.com", "9gag"),
        ("imgur.com", "imgur"),
        ("douyin.com", "douyin"),
        ("pinterest.com", "pinterest"),
        ("xiaohongshu.com", "xiaohongshu"),
        ("xiaohongshu-comments", "xiaohongshu"),
    ],
)
def test_every_zeeschuimer_module_maps_to_a_platform(module, platform):
    assert ZEESCHUIMER_MODULES[module][0] == platform
    data = {"id": "p1", "text": "klima", "created_at": "2026-03-05T10:00:00Z"}
    outputs = read_bytes("export.ndjson", zeeschuimer_line(module, data))
    assert all(isinstance(o, CollectedItem) and o.platform == platform for o in outputs)


def test_douyin_maps_aweme_objects():
    data = {
        "aweme_id": "7480000000000000001",
        "desc": "抖音 klima",
        "create_time": 1772000000,
        "author": {"uid": "1001", "unique_id": "dy_fixture", "nickname": "DY"},
        "statistics": {"digg_count": 5, "comment_count": 1, "share_count": 2, "play_count": 90},
    }
    (item,) = read_bytes("douyin.ndjson", zeeschuimer_line("douyin.com", data))
    assert (item.platform, item.content_type, item.author_platform_id) == ("douyin", "video", "dy_fixture")
    assert item.url == "https://www.douyin.com/video/7480000000000000001"
    assert counts(item) == (90, 5, 2, 1)


def test_large_platform_objects_are_not_stored_whole():
    data = {"id": "big", "desc": "klima", "createTime": 1773000000, "padding": "x" * (MAX_RAW_CHARS + 1)}
    (item,) = read_bytes("big.ndjson", zeeschuimer_line("tiktok.com", data))
    assert "raw" not in item.raw_metadata
    assert item.raw_metadata["raw_omitted_chars"] > MAX_RAW_CHARS


@pytest.mark.parametrize("count", [100, 700, 900, 1200])
def test_a_stored_platform_object_never_exceeds_the_bound_however_its_numbers_are_written(count):
    # Short lines are kept without measuring; numbers written short (1e15) grow the most when the
    # object is written again, and even those must stay under the bound once stored.
    numbers = ", ".join(["1e15"] * count)
    line = (
        b'{"source_platform": "tiktok.com", "item_id": "n", "data": {"id": "n", "desc": "klima", '
        b'"createTime": 1773000000, "stats": [' + numbers.encode() + b"]}}\n"
    )
    (item,) = read_bytes("tal.ndjson", line)
    if "raw" in item.raw_metadata:
        stored = json.dumps(item.raw_metadata["raw"], ensure_ascii=False, separators=(",", ":"))
        assert len(stored) <= MAX_RAW_CHARS
    else:
        assert item.raw_metadata["raw_omitted_chars"] > MAX_RAW_CHARS


# ---------------------------------------------------------------------------------------------
# 4CAT


def test_4cat_stored_ndjson_reads_the_import_meta():
    (item,) = items(read_fixture("tiktok-9f8e7d6c5b4a.ndjson"))
    assert (item.platform, item.platform_id) == ("tiktok", "7614000000000000003")
    assert item.text_content == "Gemt i 4CAT: klima"
    assert item.raw_metadata["import_format"] == "4cat_ndjson"
    assert item.raw_metadata["nav_index"] == "8:1:1"
    assert "__import_meta" not in item.raw_metadata["raw"]


def test_4cat_mapped_ndjson_takes_its_platform_from_the_file_name():
    first, second = items(read_fixture("4cat-tiktok-klima.ndjson"))
    assert (first.platform, first.content_type) == ("tiktok", "video")
    assert first.platform_id == "7614000000000000004"
    assert first.published_at == datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
    assert first.url == "https://www.tiktok.com/@fixture_4cat/video/7614000000000000004"
    assert (first.author_platform_id, first.author_display_name) == ("fixture_4cat", "Fiktiv 4CAT")
    assert counts(first) == (1900, 90, 2, 4)
    assert first.raw_metadata["hashtags"] == ["klima", "vindmøller"]
    assert second.published_at == datetime(2026, 3, 16, 11, 30, tzinfo=UTC)  # "timestamp" alone, read as UTC


def test_4cat_mapped_ndjson_platform_from_field_option_or_one_rejection():
    line = {"id": "a1", "body": "klima", "timestamp": "2026-03-02 10:00:00"}
    data = b"".join(json.dumps(line | {"id": f"a{i}"}).encode() + b"\n" for i in range(3))
    # No field, no telling file name, no option: one rejection for the whole file.
    outputs = read_bytes("export.ndjson", data)
    assert len(outputs) == 1 and isinstance(outputs[0], Rejected)
    assert "platform" in outputs[0].reason and outputs[0].source == "export.ndjson"
    assert {o.platform for o in read_bytes("export.ndjson", data, platform="instagram")} == {"instagram"}
    explicit = json.dumps(line | {"platform": "twitter"}).encode()
    assert read_bytes("export.ndjson", explicit, platform="instagram")[0].platform == "x_twitter"


def test_4cat_csv_with_bom_crlf_and_a_body_over_two_lines():
    first, second = items(read_fixture("4cat-instagram-klima.csv"))
    assert (first.platform, first.platform_id) == ("instagram", "DFixCsv0001")
    assert first.text_content == "Første linje om klima\nAnden linje om landbruget #klima"
    assert first.published_at == datetime(2026, 3, 17, 8, 0, tzinfo=UTC)
    assert (first.author_platform_id, first.author_display_name) == ("fixture_csv", "Fiktiv CSV")
    assert first.likes_count == 1204  # "1,204"
    assert first.comments_count is None  # 4CAT's -1 means unknown
    assert first.media_urls == ["https://scontent.cdninstagram.com/fixture/csv1.jpg"]
    assert first.raw_metadata["import_format"] == "4cat_csv" and first.raw_metadata["line"] == 2
    assert second.raw_metadata["line"] == 4  # the first record spans lines 2-3
    assert second.published_at == datetime(2026, 3, 18, 9, 30, tzinfo=UTC)


def test_csv_without_a_known_platform_is_rejected_whole_until_the_option_is_set():
    (only,) = read_fixture("export-fra-excel.csv")
    assert isinstance(only, Rejected)
    assert "option 'platform'" in only.reason and "4cat-<platform>-" in only.reason
    (item,) = read_fixture("export-fra-excel.csv", platform="instagram")
    assert item.text_content == "Klima; med semikolon"  # Danish Excel's semicolons
    assert item.likes_count == 5


def test_csv_missing_columns_is_one_rejection_naming_them():
    outputs = read_bytes("4cat-instagram-x.csv", b"id,author,likes\n1,a,2\n3,b,4\n")
    assert len(outputs) == 1
    assert "body" in outputs[0].reason and "timestamp" in outputs[0].reason and "id," not in outputs[0].reason


def test_csv_ragged_rows_are_rejected_and_good_rows_kept():
    data = (
        b"id,body,timestamp\n"
        b"1,klima,2026-03-01 10:00:00\n"
        b"2,for,mange,felter\n"
        b"3\n"
        b"\n"
        b"4,klima igen,2026-03-02 10:00:00\n"
        b',"uden id",2026-03-02 11:00:00\n'
    )
    outputs = read_bytes("4cat-x_twitter-ragged.csv", data)
    assert [i.platform_id for i in items(outputs)] == ["1", "4"]
    assert [r.source for r in rejected(outputs)] == [
        "4cat-x_twitter-ragged.csv:3",
        "4cat-x_twitter-ragged.csv:4",
        "4cat-x_twitter-ragged.csv:7",
    ]
    assert rejected(outputs)[0].reason == "row has 4 fields but the header has 3"


def test_csv_unterminated_quote_costs_only_the_record():
    data = b'id,body,timestamp\n1,"never closed,2026-03-01 10:00:00\n' + b"x" * 200_000 + b"\n"
    outputs = read_bytes("4cat-tiktok-q.csv", data)
    assert items(outputs) == []
    assert rejected(outputs)  # field-size or end-of-data error, reported, not raised


# ---------------------------------------------------------------------------------------------
# Robustness: normal input, not edge cases


def test_bad_ndjson_lines_are_rejected_one_by_one():
    good = zeeschuimer_line("tiktok.com", {"id": "ok", "desc": "klima", "createTime": 1773000000})
    data = b"".join(
        [
            good,
            b"{not json\n",
            b"[1, 2, 3]\n",
            b'"just a string"\n',
            b"42\n",
            b"   \n",
            b'{"neither": "format"}\n',
            zeeschuimer_line("tiktok.com", "data is a string"),
            zeeschuimer_line("tiktok.com", {"id": "ok2", "desc": "k\u00e6r", "createTime": 1773000000}),
        ]
    )
    outputs = read_bytes("mixed.ndjson", data)
    assert [i.platform_id for i in items(outputs)] == ["ok", "ok2"]
    reasons = {r.source.rsplit(":", 1)[1]: r.reason for r in rejected(outputs)}
    assert reasons["2"].startswith("invalid JSON")
    assert reasons["3"] == "line is a JSON list, not an object"
    assert reasons["4"] == "line is a JSON str, not an object"
    assert reasons["5"] == "line is a JSON int, not an object"
    assert "neither" in reasons["7"]
    assert "no data object" in reasons["8"]
    assert set(reasons) == {"2", "3", "4", "5", "7", "8"}
    assert all("\n" not in r.reason for r in rejected(outputs))


def test_nul_bytes_surrogates_and_nan_are_cleaned():
    data = {"id": "n1", "desc": "kli\u0000ma \ud800", "createTime": 1773000000, "x": float("nan")}
    line = zeeschuimer_line("tiktok.com", data)  # json.dumps writes NaN, which is not JSON
    line = line[:10] + b"\x00" + line[10:]  # a raw NUL byte as well, as 4CAT strips them
    (item,) = read_bytes("nul.ndjson", line)
    assert item.text_content == "klima ?"
    assert item.raw_metadata["raw"]["x"] is None
    json.dumps(item.raw_metadata, allow_nan=False).encode("utf-8")  # PostgreSQL will take it


@pytest.mark.parametrize(
    "escaped",
    [rb"kli\u0000ma", rb"klima \uDFFF", rb"klima \udbff", rb"klima \uD83D\uDE00"],
    ids=["nul", "upper-case-low-surrogate", "high-surrogate", "surrogate-pair"],
)
def test_escaped_nul_and_surrogates_are_cleaned_however_the_file_spells_them(escaped):
    # Only an escape can bring a NUL or a surrogate into a decoded line; every spelling of one must
    # still reach the cleaning, or PostgreSQL refuses the whole batch.
    line = zeeschuimer_line("tiktok.com", {"id": "e1", "desc": "PLACEHOLDER", "createTime": 1773000000})
    (item,) = read_bytes("escapes.ndjson", line.replace(b"PLACEHOLDER", escaped))
    assert item.text_content.startswith("kli") and "\x00" not in item.text_content
    json.dumps(item.raw_metadata, ensure_ascii=False).encode("utf-8")  # no lone surrogate left


def test_invalid_utf8_is_replaced_and_flagged():
    line = zeeschuimer_line("tiktok.com", {"id": "u1", "desc": "KLIMA", "createTime": 1773000000})
    line = line.replace(b"KLIMA", b"kl\xffima")
    (item,) = read_bytes("latin.ndjson", line)
    assert item.text_content == "kl\ufffdima"
    assert item.raw_metadata["encoding_repaired"] is True
    csv_data = b"id,body,timestamp\n1,gr\xf8n omstilling,2026-03-01 10:00:00\n2,ok,2026-03-01 10:00:00\n"
    flagged, clean = read_bytes("4cat-instagram-latin1.csv", csv_data)
    assert flagged.raw_metadata["encoding_repaired"] is True
    assert "encoding_repaired" not in clean.raw_metadata


def test_oversized_line_is_skipped_and_the_next_line_still_reads():
    good = zeeschuimer_line("tiktok.com", {"id": "after", "desc": "klima", "createTime": 1773000000})
    huge = b'{"pad": "' + b"x" * MAX_LINE_BYTES + b'"}\n'
    outputs = read_bytes("huge.ndjson", good + huge + good.replace(b'"after"', b'"after2"'))
    assert [i.platform_id for i in items(outputs)] == ["after", "after2"]
    (too_long,) = rejected(outputs)
    assert too_long.source == "huge.ndjson:2" and "5 MB" in too_long.reason
    csv_data = b"id,body,timestamp\n" + b"y" * (MAX_LINE_BYTES + 10) + b"\n1,ok,2026-03-01 10:00:00\n"
    csv_outputs = read_bytes("4cat-tiktok-huge.csv", csv_data)
    assert [i.platform_id for i in items(csv_outputs)] == ["1"]
    assert [r.source for r in rejected(csv_outputs)] == ["4cat-tiktok-huge.csv:2"]


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_files_are_one_rejection(data):
    assert read_bytes("empty.csv", data) == [Rejected("file is empty", "empty.csv")]


def test_utf16_and_json_array_files_are_rejected_with_a_fix():
    (utf16,) = read_bytes("4cat-x-utf16.csv", "id,body,timestamp\n".encode("utf-16"))
    assert "UTF-8" in utf16.reason
    (array,) = read_bytes("dump.json.csv", b'[{"id": 1}]')
    assert "one JSON object per line" in array.reason


def test_format_is_told_by_content_not_extension():
    line = zeeschuimer_line("tiktok.com", {"id": "c1", "desc": "klima", "createTime": 1773000000})
    assert [i.platform_id for i in read_bytes("misnamed.csv", line)] == ["c1"]
    csv_data = b"id,body,timestamp\n1,klima,2026-03-01 10:00:00\n"
    assert [i.platform_id for i in read_bytes("4cat-tiktok-a.txt", csv_data)] == ["1"]


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("9999-12-31 23:59:59", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2026-03-05T10:00:00Z", datetime(2026, 3, 5, 10, tzinfo=UTC)),
        ("2026-03-05T11:00:00+01:00", datetime(2026, 3, 5, 10, tzinfo=UTC)),
        ("Thu, 05 Mar 2026 11:00:00 +0100", datetime(2026, 3, 5, 10, tzinfo=UTC)),
        (1772704800000, datetime(2026, 3, 5, 10, tzinfo=UTC)),  # milliseconds
        ("1772704800", datetime(2026, 3, 5, 10, tzinfo=UTC)),
    ],
)
def test_timestamps_are_parsed_whatever_their_plausibility(value, expected):
    line = json.dumps({"id": "t", "body": "klima", "timestamp": value}).encode()
    (item,) = read_bytes("4cat-tiktok-times.ndjson", line)
    assert item.published_at == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45 99:00:00", "1e400", "Tue Foo 99 25:00:00 +0000 2026"])
def test_unparsable_dates_give_none_and_a_flag(value):
    line = json.dumps({"id": "t", "body": "x", "timestamp": value}).encode()
    (item,) = read_bytes("4cat-tiktok-bad.ndjson", line)
    assert item.published_at is None
    assert item.raw_metadata["published_at_unparsed"] == value


def test_zeeschuimer_unparsable_date_falls_back_to_collection_time():
    tweet = {"rest_id": "1", "legacy": {"created_at": "garbage", "full_text": "x"}}
    line = zeeschuimer_line("twitter.com", tweet)
    (item,) = read_bytes("x.ndjson", line)
    assert item.published_at == datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
    assert item.raw_metadata["published_at_unparsed"] == "garbage"
    assert item.raw_metadata["published_at_source"] == "timestamp_collected"


def test_counts_that_cannot_be_stored_become_none():
    stats = {"diggCount": -1, "playCount": 2**64, "shareCount": True, "commentCount": "many"}
    line = zeeschuimer_line("tiktok.com", {"id": "c", "createTime": 1, "stats": stats})
    (item,) = read_bytes("c.ndjson", line)
    assert counts(item) == (None, None, None, None)


def test_reading_works_over_any_named_streams():
    line = zeeschuimer_line("tiktok.com", {"id": "s1", "desc": "klima", "createTime": 1773000000})
    outputs = list(read_import_files([("a/one.ndjson", io.BytesIO(line)), ("two.csv", io.BytesIO(b""))]))
    assert isinstance(outputs[0], CollectedItem) and outputs[0].raw_metadata["import_file"] == "a/one.ndjson"
    assert outputs[1] == Rejected("file is empty", "two.csv")


# ---------------------------------------------------------------------------------------------
# The arena


def test_arena_declares_itself_as_designed():
    arena = FileImportArena()
    assert (arena.name, arena.platform, arena.keep_unmatched) == ("file_import", "import", True)
    assert arena.supported_tiers == frozenset(Tier)
    assert arena.estimate_credits(spec(tier=Tier.PREMIUM)) == 0


def test_options_are_validated_with_the_bad_key_named():
    arena = FileImportArena()
    assert arena.validate_options({}) == {"files": list(DEFAULT_PATTERNS), "platform": None}
    assert arena.validate_options({"platform": "Twitter", "files": ["x/*.csv"]}) == {
        "files": ["x/*.csv"],
        "platform": "x_twitter",
    }
    for bad, key in [
        ({"feeds": []}, "feeds"),
        ({"files": "*.csv"}, "files"),
        ({"files": []}, "files"),
        ({"files": ["../other/*.csv"]}, "files"),
        ({"files": ["/etc/*.csv"]}, "files"),
        ({"platform": 3}, "platform"),
        ({"platform": " - "}, "platform"),
    ]:
        with pytest.raises(ValueError, match=key):
            arena.validate_options(bad)


def test_collect_reads_the_design_folder_and_leaves_the_window_to_the_orchestrator():
    logs: list[str] = []
    window = (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 13, tzinfo=UTC))
    outputs = list(FileImportArena().collect(spec(window=window), context(FIXTURES, logs.append)))
    dated = [i for i in items(outputs) if i.published_at is not None]
    # Files are not queried by date: every item comes out, and the orchestrator filters by month.
    assert any(not window[0] <= i.published_at < window[1] for i in dated)
    assert {i.platform for i in dated} >= {"x_twitter", "tiktok", "instagram", "threads"}
    everything = list(FileImportArena().collect(spec(window=MARCH), context(FIXTURES)))
    assert len(items(everything)) == len(items(outputs))
    assert any("export-fra-excel.csv: 0 items read, 1 rejected" in line for line in logs)


def test_collect_yields_undated_items_and_leaves_judging_them_to_the_orchestrator(tmp_path):
    design = tmp_path / "d"
    design.mkdir()
    undated = {"id": "u", "body": "x", "timestamp": "?"}
    (design / "4cat-instagram-undated.ndjson").write_text(json.dumps(undated))
    (item,) = FileImportArena().collect(spec("d"), context(tmp_path))
    assert item.published_at is None


def test_collect_files_option_subfolders_case_and_hidden_files(tmp_path):
    design = tmp_path / "d"
    (design / "sub" / "deeper").mkdir(parents=True)
    line = zeeschuimer_line("tiktok.com", {"id": "1", "desc": "klima", "createTime": 1773000000})
    (design / "EXPORT.NDJSON").write_bytes(line)
    (design / "sub" / "deeper" / "b.jsonl").write_bytes(line.replace(b'"1"', b'"2"'))
    (design / ".hidden.ndjson").write_bytes(line.replace(b'"1"', b'"3"'))
    (design / "notes.txt").write_text("not an export")
    found = [i.platform_id for i in FileImportArena().collect(spec("d"), context(tmp_path))]
    assert found == ["1", "2"]
    only_sub = FileImportArena().collect(spec("d", files=["sub/**/*.jsonl"]), context(tmp_path))
    assert [i.platform_id for i in only_sub] == ["2"]


def test_missing_folders_are_one_rejection_saying_where_files_go(tmp_path):
    (missing,) = FileImportArena().collect(spec("nowhere"), context(tmp_path))
    assert isinstance(missing, Rejected) and str(tmp_path / "nowhere") in missing.reason
    (unset,) = FileImportArena().collect(spec(), context(None))
    assert "import folder" in unset.reason


def test_unreadable_folders_raise_arena_errors(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ArenaError, match="is a file"):
        list(FileImportArena().collect(spec("afile"), context(tmp_path)))
    with pytest.raises(ArenaError, match="not supported yet"):
        list(FileImportArena().collect(spec(), context("s3://bucket/imports")))
    with pytest.raises(ArenaError, match="cannot name a folder"):
        list(FileImportArena().collect(spec(".."), context(tmp_path)))
    (tmp_path / "locked").mkdir()

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", denied)  # os.walk lists folders with os.scandir
    with pytest.raises(ArenaError, match="permissions"):
        list(FileImportArena().collect(spec("locked"), context(tmp_path)))


def test_a_file_that_will_not_open_is_one_rejection(tmp_path):
    design = tmp_path / "d"
    design.mkdir()
    (design / "gone.ndjson").symlink_to(tmp_path / "missing-target")
    (only,) = FileImportArena().collect(spec("d"), context(tmp_path))
    assert only.source == "gone.ndjson" and only.reason.startswith("cannot read file")


# ---------------------------------------------------------------------------------------------
# Fuzzing: whatever the bytes, items or rejections, never an exception


def check_outputs(outputs) -> None:
    for output in outputs:
        assert isinstance(output, (CollectedItem, Rejected))
        if isinstance(output, Rejected):
            assert "\n" not in output.reason
            continue
        assert isinstance(output.platform_id, str) and output.platform_id
        assert output.published_at is None or output.published_at.tzinfo is not None
        for count in (output.views_count, output.likes_count, output.shares_count, output.comments_count):
            assert count is None or (isinstance(count, int) and 0 <= count < 2**63)
        assert all(isinstance(u, str) for u in output.media_urls)
        json.dumps(output.raw_metadata, allow_nan=False).encode("utf-8")


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
platform_keys = st.sampled_from(
    [
        "id",
        "rest_id",
        "legacy",
        "core",
        "desc",
        "createTime",
        "author",
        "stats",
        "code",
        "caption",
        "taken_at",
        "user",
        "content",
        "account",
        "created_at",
        "full_text",
        "tweet",
        "note_tweet",
        "carousel_media",
        "retweeted_status_result",
        "reblog",
        "text",
        "cid",
        "aweme_id",
        "statistics",
        "title",
        "url",
    ]
)
platform_objects = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(platform_keys, children, max_size=6),
    max_leaves=25,
)


@FUZZ
@given(
    data=st.binary(max_size=3000),
    name=st.sampled_from(["f.ndjson", "f.jsonl", "f.csv", "4cat-tiktok-f.csv"]),
)
def test_fuzz_arbitrary_bytes_never_raise(data, name):
    check_outputs(read_bytes(name, data))


@FUZZ
@given(
    module=st.sampled_from([*ZEESCHUIMER_MODULES, "unknown.example"]),
    data=platform_objects,
    envelope=st.dictionaries(st.sampled_from(["item_id", "timestamp_collected", "nav_index"]), json_values),
)
def test_fuzz_zeeschuimer_lines_with_odd_platform_objects(module, data, envelope):
    lines = zeeschuimer_line(module, data, **envelope) + zeeschuimer_line(module, {"x": data})
    check_outputs(read_bytes("zs.ndjson", lines))


@FUZZ
@given(
    rows=st.lists(st.lists(st.text(alphabet=string.printable + 'æøå"', max_size=30), max_size=6), max_size=8),
    header=st.permutations(["id", "body", "timestamp", "unix_timestamp", "likes", "author", "url"]),
)
def test_fuzz_4cat_csv_rows(rows, header):
    text = ",".join(header) + "\n" + "\n".join(",".join(row) for row in rows)
    check_outputs(read_bytes("4cat-instagram-fuzz.csv", text.encode("utf-8")))


@FUZZ
@given(
    row=st.dictionaries(
        st.sampled_from(
            [
                "id",
                "body",
                "timestamp",
                "unix_timestamp",
                "likes",
                "author",
                "url",
                "image_url",
                "hashtags",
                "language",
                "platform",
            ]
        ),
        json_values,
    )
)
def test_fuzz_4cat_mapped_ndjson(row):
    check_outputs(read_bytes("4cat-tiktok-fuzz.ndjson", json.dumps(row).encode()))
