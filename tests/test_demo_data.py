"""The bundled demo data holds what its manifest (``demo/data/manifest.json``) says it holds.

Planted duplicates are checked with the pipeline's own fingerprints (``core.text``), so an edit to
the data or to the fingerprints that would hide a case from the dedup pass fails here first.
"""

from __future__ import annotations

import csv
import difflib
import html
import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import feedparser
import pytest

from observatory_pipelines.core.collection import terms, text
from observatory_pipelines.core.collection.arenas.base import CollectedItem, CollectionContext, QuerySpec, Rejected
from observatory_pipelines.core.collection.arenas.file_import import FileImportArena, read_import_file
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.demo import seed as demo

DATA = Path(str(resources.files("observatory_pipelines.demo") / "data"))
MANIFEST = json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))
IMPORTS = DATA / "imports" / "klimadebat"
X_FILE = "zeeschuimer-export-twitter.com-2026-03-31T20-00-00.ndjson"
TIKTOK_FILE = "zeeschuimer-export-tiktok.com-2026-03-31T20-05-00.ndjson"
INSTAGRAM_FILE = "4cat-instagram-klimadebat-2026-03.csv"
MARCH_START = datetime(2026, 3, 1, tzinfo=timezone.utc)
APRIL_START = datetime(2026, 4, 1, tzinfo=timezone.utc)
MATCHER = terms.TermMatcher(MANIFEST["design"]["terms"])


def fold(value: str) -> str:
    return " ".join(value.lower().split())


def strip_html(value: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", value))


def load_feeds() -> dict[tuple[str, str], dict]:
    """Every feed entry by (file, entry id): the text an RSS arena reads (full text first), title, time."""
    entries = {}
    for path in sorted((DATA / "feeds").glob("*.xml")):
        for entry in feedparser.parse(path.read_bytes()).entries:
            body = entry.content[0].value if entry.get("content") else entry.summary
            published = datetime(*entry.published_parsed[:6], tzinfo=timezone.utc)
            entries[(f"feeds/{path.name}", entry.id)] = {
                "text": strip_html(body),
                "title": entry.title,
                "url": entry.link,
                "published": published,
            }
    return entries


def load_imports() -> tuple[dict[tuple[str, str], CollectedItem], list[Rejected]]:
    items, rejected = {}, []
    for path in sorted(IMPORTS.iterdir()):
        with open(path, "rb") as stream:
            for output in read_import_file(path.name, stream):
                if isinstance(output, Rejected):
                    rejected.append(output)
                else:
                    items[(f"imports/klimadebat/{path.name}", output.platform_id)] = output
    return items, rejected


FEEDS = load_feeds()
IMPORTED, REJECTED = load_imports()


def text_of(ref: dict) -> str:
    key = (ref["file"], ref["id"])
    return FEEDS[key]["text"] if key in FEEDS else IMPORTED[key].text_content


def published_of(key: tuple[str, str]) -> datetime:
    return FEEDS[key]["published"] if key in FEEDS else IMPORTED[key].published_at


def test_data_ships_as_package_resources():
    for name in ("README.md", "manifest.json", "feeds/nordlys.xml", f"imports/klimadebat/{X_FILE}"):
        assert (resources.files("observatory_pipelines.demo") / "data" / name).is_file()
    assert demo.DESIGN_SLUG == MANIFEST["design"]["slug"]
    assert tuple(demo.TERMS) == tuple(MANIFEST["design"]["terms"])


@pytest.mark.parametrize(
    "name, version, count",
    [("nordlys.xml", "rss20", 20), ("fjordposten.xml", "rss20", 15), ("tingbladet.xml", "atom10", 15)],
)
def test_feeds_parse_cleanly(name, version, count):
    parsed = feedparser.parse((DATA / "feeds" / name).read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == version
    assert len(parsed.entries) == count
    for entry in parsed.entries:
        assert entry.get("id") and entry.get("link") and entry.get("published_parsed")


def test_feeds_hold_items_that_match_no_term_for_the_rss_filter():
    unmatched = {name: 0 for name in ("feeds/nordlys.xml", "feeds/fjordposten.xml", "feeds/tingbladet.xml")}
    for (name, _), entry in FEEDS.items():
        if not MATCHER.match(entry["title"], entry["text"]):
            unmatched[name] += 1
    assert unmatched == {"feeds/nordlys.xml": 7, "feeds/fjordposten.xml": 4, "feeds/tingbladet.xml": 5}


def test_every_ndjson_line_parses_but_the_one_deliberate_bad_line():
    bad = {(entry["file"], entry["line"]) for entry in MANIFEST["rejected_lines"]}
    assert len(bad) == 1
    for path in IMPORTS.glob("*.ndjson"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if (f"imports/klimadebat/{path.name}", number) in bad:
                with pytest.raises(json.JSONDecodeError):
                    json.loads(line)
            else:
                assert isinstance(json.loads(line)["data"], dict)
    assert [r.source for r in REJECTED] == [f"{X_FILE}:{line}" for _, line in bad]


def test_imports_hold_the_documented_items():
    by_file: dict[str, list[CollectedItem]] = {}
    for (name, _), item in IMPORTED.items():
        by_file.setdefault(name.rsplit("/", 1)[1], []).append(item)
    sizes = {name: len(items) for name, items in by_file.items()}
    assert sizes == {X_FILE: 26, TIKTOK_FILE: 10, INSTAGRAM_FILE: 10}
    x_authors = [item.author_platform_id for item in by_file[X_FILE]]
    assert len(set(x_authors)) == 12
    assert sum(x_authors.count(a) > 1 for a in set(x_authors)) >= 8  # co-occurrence needs repeat authors


def test_instagram_csv_has_4cat_columns():
    with open(IMPORTS / INSTAGRAM_FILE, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
    assert reader.fieldnames == [
        "id",
        "thread_id",
        "parent_id",
        "collected_from_url",
        "body",
        "author",
        "author_fullname",
        "author_is_verified",
        "author_avatar_url",
        "timestamp",
        "type",
        "url",
        "image_url",
        "media_url",
        "hashtags",
        "num_likes",
        "num_comments",
        "num_media",
        "location_name",
        "location_latlong",
        "location_city",
        "unix_timestamp",
    ]
    for row in rows:
        stamp = datetime.fromtimestamp(int(row["unix_timestamp"]), tz=timezone.utc)
        assert stamp.strftime("%Y-%m-%d %H:%M:%S") == row["timestamp"]


@pytest.mark.parametrize("case", MANIFEST["exact_duplicates"], ids=lambda c: c["case"])
def test_exact_duplicates_are_identical_after_normalisation(case):
    first, second = (text_of(ref) for ref in case["items"])
    assert fold(first) == fold(second)
    assert text.content_hash(first) == text.content_hash(second)
    assert case["items"][0]["file"] != case["items"][1]["file"]
    assert MATCHER.match(first), "an unmatched feed item would be filtered before dedup"


@pytest.mark.parametrize("case", MANIFEST["near_duplicates"], ids=lambda c: c["case"])
def test_near_duplicates_differ_slightly_and_stay_within_three_bits(case):
    first, second = (text_of(ref) for ref in case["items"])
    assert min(len(first.split()), len(second.split())) >= 30
    edits = [d for d in difflib.ndiff(first.split(), second.split()) if d[0] in "+-"]
    assert 0 < len(edits) <= 4
    assert text.content_hash(first) != text.content_hash(second)
    assert text.hamming(text.simhash(first), text.simhash(second)) <= 3
    assert MATCHER.match(first) and MATCHER.match(second)


def canonical_url(url: str) -> str:
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("utm_"))
    return urlunsplit(("https", parts.netloc.removeprefix("www."), parts.path.rstrip("/"), query, ""))


@pytest.mark.parametrize("case", MANIFEST["url_duplicates"], ids=lambda c: c["case"])
def test_url_duplicates_share_an_article_link(case):
    article = FEEDS[(case["article"]["file"], case["article"]["id"])]
    post = IMPORTED[(case["shared_in"]["file"], case["shared_in"]["id"])]
    assert article["url"] == case["article"]["url"]
    assert case["shared_in"]["url"] in post.raw_metadata["links"]
    assert canonical_url(case["shared_in"]["url"]) == canonical_url(article["url"])


def test_one_person_posts_on_two_platforms_under_two_names():
    (person,) = MANIFEST["same_person"]
    for account in person["accounts"]:
        for ref in account["posts"]:
            item = IMPORTED[(ref["file"], ref["id"])]
            assert item.platform == account["platform"]
            assert item.author_platform_id == account["username"]
            assert item.author_display_name == account["display_name"]
            assert MATCHER.match(item.text_content)
    names = [a["display_name"] for a in person["accounts"]]
    assert names[0] != names[1] and fold(names[0].replace("æ", "ae")) == fold(names[1])


def test_the_public_figure_is_the_one_the_demo_seeds():
    (figure,) = MANIFEST["public_figures"]
    assert (figure["name"], figure["platform"], figure["username"]) == (
        demo.PUBLIC_FIGURE["name"],
        demo.PUBLIC_FIGURE["platform"],
        demo.PUBLIC_FIGURE["username"],
    )
    for ref in figure["posts"]:
        item = IMPORTED[(ref["file"], ref["id"])]
        assert item.author_platform_id == figure["username"]
        assert item.raw_metadata["author_user_id"] == figure["user_id"]


def test_every_item_lies_in_march_2026_utc_but_the_listed_few():
    outside = {(ref["file"], ref["id"]) for ref in MANIFEST["outside_march"]}
    assert len(outside) == 7
    for key in [*FEEDS, *IMPORTED]:
        in_march = MARCH_START <= published_of(key) < APRIL_START
        assert in_march != (key in outside), key


def test_the_file_import_arena_reads_the_demo_folder_for_march():
    spec = QuerySpec(
        design_slug="klimadebat",
        terms=tuple(MANIFEST["design"]["terms"]),
        actors=(),
        window_start=MARCH_START,
        window_end=APRIL_START,
        tier=Tier.FREE,
        options={},
    )
    ctx = CollectionContext(http=None, import_dir=str(DATA / "imports"))
    outputs = list(FileImportArena().collect(spec, ctx))
    items = [o for o in outputs if isinstance(o, CollectedItem)]
    assert len(items) == 46
    # Three fall outside March; the arena passes them on and the orchestrator filters them.
    assert sum(not MARCH_START <= i.published_at < APRIL_START for i in items) == 3
    assert [o.source for o in outputs if isinstance(o, Rejected)] == [f"{X_FILE}:14"]
    assert {i.platform for i in items} == {"x_twitter", "tiktok", "instagram"}
