"""The dedup pass: URL normalisation, banding, grouping, marking, and the Dagster asset and check.

The demo corpus (``observatory_pipelines/demo/data``) is collected for real, and every duplicate
its manifest plants must come out grouped, with nothing else grouped but one case the demo does
not list: ``landmand_jens`` retweets a post by ``sofie_kjaer_dk``, which is a near-duplicate
(3 bits apart) of it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import networkx as nx
import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from observatory_pipelines.core.collection import ingest, text
from observatory_pipelines.core.collection.records import COLUMNS
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.processing import dedup
from observatory_pipelines.core.processing.dedup import normalise_url
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.processing.dedup import MARKED_AT_MOST_HALF, dedup_pass
from observatory_pipelines.defs.resources import PostgresResource
from observatory_pipelines.demo import seed as demo
from tests.factories import MARCH, make_design, record

ROOT = Path(__file__).resolve().parents[1]

MANIFEST = json.loads((demo.data_dir() / "manifest.json").read_text(encoding="utf-8"))
RETWEET = ("2033464538541371407", "2037514979398750231")  # sofie_kjaer_dk's post and its retweet
MASK64 = (1 << 64) - 1

# ---------------------------------------------------------------------------------------------
# normalise_url

URL_CASES = [
    # scheme, host, www
    ("https://nordlys.example.dk/indland/a", "https://nordlys.example.dk/indland/a"),
    ("HTTPS://NORDLYS.Example.DK/Indland/A", "https://nordlys.example.dk/Indland/A"),
    ("https://www.nordlys.example.dk/a", "https://nordlys.example.dk/a"),
    ("https://www.www.dr.dk/a", "https://dr.dk/a"),
    ("https://www.com/a", "https://www.com/a"),
    ("https://www2.dr.dk/a", "https://www2.dr.dk/a"),
    ("https://dr.dk./a", "https://dr.dk/a"),
    ("https://bruger:hemmelig@dr.dk/a", "https://dr.dk/a"),
    ("http://dr.dk/a", "http://dr.dk/a"),
    ("  https://dr.dk/a\t", "https://dr.dk/a"),
    # ports
    ("http://dr.dk:80/a", "http://dr.dk/a"),
    ("https://dr.dk:443/a", "https://dr.dk/a"),
    ("https://dr.dk:0443/a", "https://dr.dk/a"),
    ("https://dr.dk:8443/a", "https://dr.dk:8443/a"),
    ("http://dr.dk:443/a", "http://dr.dk:443/a"),
    ("https://dr.dk:/a", "https://dr.dk/a"),
    # international domain names
    ("https://grøn.dk/a", "https://xn--grn-1na.dk/a"),
    ("https://GRØN.DK/a", "https://xn--grn-1na.dk/a"),
    ("https://xn--grn-1na.dk/a", "https://xn--grn-1na.dk/a"),
    ("https://www.bu\u0308cher.de/", "https://xn--bcher-kva.de"),
    ("https://straße.de/a", "https://strasse.de/a"),
    # path: case, trailing slashes, dot segments, percent-encoding
    ("https://dr.dk/", "https://dr.dk"),
    ("https://dr.dk", "https://dr.dk"),
    ("https://dr.dk/a/b/", "https://dr.dk/a/b"),
    ("https://dr.dk/a//", "https://dr.dk/a"),
    ("https://dr.dk/a/./b/../c", "https://dr.dk/a/c"),
    ("https://dr.dk/a/%2e%2E/b", "https://dr.dk/b"),
    ("https://dr.dk/nyheder/grøn", "https://dr.dk/nyheder/gr%C3%B8n"),
    ("https://dr.dk/nyheder/gr%c3%b8n", "https://dr.dk/nyheder/gr%C3%B8n"),
    ("https://dr.dk/%7Ebruger/%41bc%2d1", "https://dr.dk/~bruger/Abc-1"),
    ("https://dr.dk/a%2Fb", "https://dr.dk/a%2Fb"),
    ("https://dr.dk/100%", "https://dr.dk/100%25"),
    ('https://dr.dk/a"b<c>', "https://dr.dk/a%22b%3Cc%3E"),
    # query: tracking parameters, order, empties, encoding
    ("https://dr.dk/a?utm_source=twitter&utm_medium=social", "https://dr.dk/a"),
    ("https://dr.dk/a?UTM_Campaign=x&id=3", "https://dr.dk/a?id=3"),
    ("https://dr.dk/a?fbclid=IwAR0&gclid=x&_ga=1.2&ref=forside&source=rss", "https://dr.dk/a"),
    ("https://dr.dk/a?utm%5Fsource=x&id=3", "https://dr.dk/a?id=3"),
    ("https://dr.dk/a?reference=1", "https://dr.dk/a?reference=1"),
    ("https://dr.dk/a?b=2&a=1", "https://dr.dk/a?a=1&b=2"),
    ("https://dr.dk/a?a=2&a=1", "https://dr.dk/a?a=1&a=2"),
    ("https://dr.dk/a?&&id=3&", "https://dr.dk/a?id=3"),
    ("https://dr.dk/a?", "https://dr.dk/a"),
    ("https://dr.dk/a?flag", "https://dr.dk/a?flag"),
    ("https://dr.dk/a?q=gr%c3%b8n+omstilling", "https://dr.dk/a?q=gr%C3%B8n+omstilling"),
    ("https://dr.dk/a#kommentarer", "https://dr.dk/a"),
    ("https://dr.dk/a/?utm_source=x#top", "https://dr.dk/a"),
    # IP literals
    ("http://[2001:DB8:0:0:0:0:0:1]:8080/a", "http://[2001:db8::1]:8080/a"),
    ("http://192.168.0.1/a", "http://192.168.0.1/a"),
    # not URLs
    (None, None),
    (12345, None),
    (b"https://dr.dk/a", None),
    ("", None),
    ("   ", None),
    ("ikke en adresse", None),
    ("dr.dk/nyheder", None),
    ("www.dr.dk/nyheder", None),
    ("//dr.dk/nyheder", None),
    ("mailto:redaktion@dr.dk", None),
    ("ftp://dr.dk/fil", None),
    ("javascript:alert(1)", None),
    ("https://", None),
    ("https:///nyheder", None),
    ("https://dr .dk/a", None),
    ("https://dr.dk/a b", None),
    ("https://dr.dk/a\nb", None),
    ("http://[::1/a", None),
    ("http://[not-an-address]/a", None),
    ("https://dr..dk/a", None),
    ("https://-dr.dk/a", None),
    ("https://" + "a" * 64 + ".dk/a", None),
    ("https://dr.dk:99999/a", None),
    ("https://dr.dk:8o/a", None),
]


@pytest.mark.parametrize(("url", "expected"), URL_CASES)
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def test_the_demo_links_normalise_to_their_articles():
    for case in MANIFEST["url_duplicates"]:
        assert normalise_url(case["shared_in"]["url"]) == normalise_url(case["article"]["url"]), case["case"]


_HOSTS = st.sampled_from(["dr.dk", "WWW.DR.dk", "grøn.dk", "xn--grn-1na.dk", "[::1]", "10.0.0.1", "dr.dk.", "a_b.dk"])
_URL_TEXT = st.text(alphabet="aZ09-._~%/?&=#+:@!$'()*,;ø\"<>^{}|", max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["http", "https", "HTTP"]), _HOSTS, st.sampled_from(["", ":80", ":443", ":8080", ":"]), _URL_TEXT
)
def test_normalise_url_is_idempotent(scheme, host, port, rest):
    once = normalise_url(f"{scheme}://{host}{port}/{rest}")
    assert once is not None
    assert normalise_url(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_normalise_url_never_raises(value):
    result = normalise_url(value)
    assert result is None or result.startswith(("http://", "https://"))


# ---------------------------------------------------------------------------------------------
# Banding and components


def _signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _flip(value: int, bits) -> int:
    return _signed(value ^ sum(1 << b for b in bits))


def _pairs(hashes: list[int]) -> set[tuple[int, int]]:
    left, right, _ = dedup.near_pairs(np.array(hashes, dtype=np.int64))
    return set(zip(left.tolist(), right.tolist()))


_HASH = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=300, deadline=None)
@given(_HASH, st.sets(st.integers(0, 63), min_size=1, max_size=3), st.lists(_HASH, max_size=20))
def test_banding_always_finds_hashes_within_three_bits(base, bits, noise):
    others = [h for h in noise if h not in (base, _flip(base, bits))]
    found = _pairs([base, _flip(base, bits), *others])
    assert (0, 1) in found


@settings(max_examples=300, deadline=None)
@given(_HASH, st.sets(st.integers(0, 63), min_size=4, max_size=64))
def test_banding_never_pairs_hashes_four_or_more_bits_apart(base, bits):
    assert _pairs([base, _flip(base, bits)]) == set()


@settings(max_examples=100, deadline=None)
@given(st.lists(_HASH, min_size=1, max_size=12, unique=True), st.data())
def test_banding_finds_exactly_the_pairs_all_pairs_would(bases, data):
    hashes = list(bases)
    for base in bases:
        for bits in data.draw(st.lists(st.sets(st.integers(0, 63), min_size=1, max_size=6), max_size=3)):
            hashes.append(_flip(base, bits))
    hashes = list(dict.fromkeys(hashes))
    brute = {
        (i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes)) if text.hamming(hashes[i], hashes[j]) <= 3
    }
    assert _pairs(hashes) == brute


def test_a_crowded_bucket_is_skipped_and_counted(monkeypatch):
    monkeypatch.setattr(dedup, "MAX_BUCKET", 2)
    base = 0x5A5A_5A5A_5A5A_5A5A
    # Four hashes that differ only in the lowest block: they share every key not using it.
    left, right, scan = dedup.near_pairs(np.array([base, base ^ 1, base ^ 2, base ^ 4], dtype=np.int64))
    assert len(left) == 0 and scan.buckets_skipped == 6


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.data())
def test_connected_components_agree_with_networkx(size, data):
    edges = data.draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=40))
    labels = dedup.connected_components(size, np.array([a for a, _ in edges]), np.array([b for _, b in edges]))
    graph = nx.Graph()
    graph.add_nodes_from(range(size))
    graph.add_edges_from(edges)
    for component in nx.connected_components(graph):
        assert {int(labels[node]) for node in component} == {min(component)}


# ---------------------------------------------------------------------------------------------
# Grouping, in memory

T0 = datetime(2026, 3, 5, 12, tzinfo=timezone.utc)
ARENAS = {"rss": "rss_feeds", "gdelt": "gdelt"}
ARTICLE_TEXT = (
    "Regeringen vil udskyde det næste udbud af havvind i Nordsøen til efteråret, fordi selskaberne beder "
    "om bedre vilkår. Det oplyser klimaministeren til avisen i dag. Branchen har længe advaret om, at "
    "stigende renter og dyrere stål gør projekterne urentable, og flere udviklere har trukket sig fra "
    "tidligere udbud i både Danmark og Norge."
)
EDITED_TEXT = ARTICLE_TEXT.replace("flere udviklere", "store udviklere")  # 2 bits from ARTICLE_TEXT
OTHER_TEXT = "Landbruget skal betale en CO2-afgift fra 2030, men de første år er afgiften lav og fradraget stort."


def _frame(rows: list[dict]) -> pl.DataFrame:
    filled = [
        {
            "id": r["id"],
            "published_at": r.get("published_at", T0),
            "platform": r["platform"],
            "arena": r.get("arena", ARENAS.get(r["platform"], "file_import")),
            "content_type": r.get("content_type", "article" if r["platform"] in ARENAS else "post"),
            "url": r.get("url"),
            "content_hash": text.content_hash(r.get("text")),
            "simhash": text.simhash(r.get("text")),
        }
        for r in rows
    ]
    return pl.DataFrame(
        filled,
        schema={
            "id": pl.Utf8,
            "published_at": pl.Datetime("us", "UTC"),
            "platform": pl.Utf8,
            "arena": pl.Utf8,
            "content_type": pl.Utf8,
            "url": pl.Utf8,
            "content_hash": pl.Utf8,
            "simhash": pl.Int64,
        },
    )


def _links(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(pairs, schema={"id": pl.Utf8, "link": pl.Utf8}, orient="row")


def _marks(rows: list[dict], links=()) -> dict[str, tuple[str, str]]:
    marks = dedup.group_duplicates(_frame(rows), _links(list(links))).marks()
    return {r["id"]: (r["canonical_id"], r["kind"]) for r in marks.iter_rows(named=True)}


def test_identical_texts_are_duplicates_only_across_platforms_or_arenas():
    same_platform = [
        {"id": "a", "platform": "x_twitter", "text": OTHER_TEXT},
        {"id": "b", "platform": "x_twitter", "text": OTHER_TEXT},
    ]
    assert _marks(same_platform) == {}
    other_arena = [*same_platform, {"id": "c", "platform": "x_twitter", "arena": "zeeschuimer", "text": OTHER_TEXT}]
    assert _marks(other_arena) == {"b": ("a", "exact"), "c": ("a", "exact")}


def test_near_duplicates_link_records_on_any_platform():
    assert text.hamming(text.simhash(ARTICLE_TEXT), text.simhash(EDITED_TEXT)) <= 3
    rows = [
        {"id": "a", "platform": "rss", "text": ARTICLE_TEXT, "url": "https://nordlys.example.dk/a"},
        {"id": "b", "platform": "rss", "text": EDITED_TEXT, "url": "https://fjordposten.example.dk/b"},
        {"id": "c", "platform": "rss", "text": OTHER_TEXT, "url": "https://fjordposten.example.dk/c"},
    ]
    assert _marks(rows) == {"b": ("a", "near")}


def test_sharing_an_articles_link_makes_a_post_its_duplicate_but_not_of_other_sharers():
    rows = [
        {"id": "article", "platform": "rss", "text": ARTICLE_TEXT, "url": "https://nordlys.example.dk/a/"},
        {"id": "p1", "platform": "x_twitter", "text": "Læs den her", "url": "https://x.com/a/status/1"},
        {"id": "p2", "platform": "x_twitter", "text": "Godt skrevet", "url": "https://x.com/b/status/2"},
        {"id": "p3", "platform": "x_twitter", "text": "Se her", "url": "https://x.com/c/status/3"},
        {"id": "p4", "platform": "x_twitter", "text": "Og her", "url": "https://x.com/d/status/4"},
    ]
    links = [
        ("p1", "https://www.nordlys.example.dk/a?utm_source=twitter"),
        ("p2", "http://nordlys.example.dk/a"),
        ("p3", "https://elsewhere.example.org/b"),
        ("p4", "https://elsewhere.example.org/b"),
        ("p3", "https://nordlys.example.dk/"),
        ("p4", "https://nordlys.example.dk"),
    ]
    # p2 links over http (the article is https); p3 and p4 share a link to a page outside the corpus
    # and the outlet's front page, which make them duplicates of nothing.
    assert _marks(rows, links) == {"p1": ("article", "url")}


def test_the_canonical_is_the_article_then_the_earliest_then_the_smallest_id():
    later = T0 + timedelta(hours=1)
    rows = [
        {"id": "b-post", "platform": "x_twitter", "text": ARTICLE_TEXT, "published_at": T0},
        {"id": "c-article", "platform": "rss", "text": ARTICLE_TEXT, "published_at": later},
        {"id": "a-article", "platform": "gdelt", "text": ARTICLE_TEXT, "published_at": later},
    ]
    assert {k: v[0] for k, v in _marks(rows).items()} == {"b-post": "a-article", "c-article": "a-article"}
    posts = [
        {"id": "b", "platform": "x_twitter", "text": OTHER_TEXT, "published_at": T0},
        {"id": "a", "platform": "tiktok", "text": OTHER_TEXT, "published_at": later},
        {"id": "c", "platform": "instagram", "text": OTHER_TEXT, "published_at": T0},
    ]
    assert {k: v[0] for k, v in _marks(posts).items()} == {"a": "b", "c": "b"}


def test_a_chain_of_rules_is_one_group_whatever_the_row_order():
    rows = [
        {
            "id": "article",
            "platform": "rss",
            "text": ARTICLE_TEXT,
            "url": "https://nordlys.example.dk/a",
            "published_at": T0 + timedelta(hours=2),
        },
        {"id": "copy", "platform": "tiktok", "text": ARTICLE_TEXT, "url": "https://www.tiktok.com/@a/video/1"},
        {"id": "edit", "platform": "x_twitter", "text": EDITED_TEXT, "url": "https://x.com/a/status/1"},
        {"id": "share", "platform": "x_twitter", "text": "Læs her", "url": "https://x.com/b/status/2"},
    ]
    links = [("share", "https://nordlys.example.dk/a")]
    expected = {"copy": ("article", "exact+near"), "edit": ("article", "near"), "share": ("article", "url")}
    assert _marks(rows, links) == expected
    for seed in range(5):
        shuffled = random.Random(seed).sample(rows, len(rows))
        assert _marks(shuffled, links) == expected


def test_nothing_to_group():
    empty = _frame([])
    grouping = dedup.group_duplicates(empty, _links([]))
    assert grouping.groups == 0 and grouping.marks().height == 0
    assert grouping.groups_by_kind == {"url": 0, "exact": 0, "near": 0}


# ---------------------------------------------------------------------------------------------
# The demo corpus, in PostgreSQL


def _rows(engine, design_id) -> dict[str, dict]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT id::text AS id, platform, platform_id, content_type, published_at, raw_metadata, "
                "xmin::text AS xmin FROM content_records WHERE query_design_id = :d"
            ),
            {"d": design_id},
        ).mappings()
        return {r["platform_id"]: dict(r) for r in found}


def _planted() -> list[tuple[str, str, str, str]]:
    """(case, rule, platform id, platform id) of every duplicate the manifest plants."""
    cases = [(c["case"], "exact", *(i["id"] for i in c["items"])) for c in MANIFEST["exact_duplicates"]]
    cases += [(c["case"], "near", *(i["id"] for i in c["items"])) for c in MANIFEST["near_duplicates"]]
    cases += [(c["case"], "url", c["article"]["id"], c["shared_in"]["id"]) for c in MANIFEST["url_duplicates"]]
    return cases + [("retweet", "near", *RETWEET)]


def _without_marks(metadata) -> dict:
    return {k: v for k, v in (metadata or {}).items() if k not in ("duplicate_of", "duplicate_kind")}


def test_the_demo_duplicates_are_found_marked_and_nothing_else(engine, demo_corpus):
    before = _rows(engine, demo_corpus.design_id)

    result = dedup.run_dedup(engine, demo_corpus.design_id, MARCH)

    after = _rows(engine, demo_corpus.design_id)
    assert len(after) == len(before) == result.records  # nothing deleted
    planted = _planted()
    assert result.groups_by_kind == {"exact": 4, "near": 5, "url": 4}
    assert result.groups == len(planted) and result.duplicates == len(planted) == result.marked
    for case, rule, a, b in planted:
        canonical, duplicate = sorted((after[a], after[b]), key=lambda r: "duplicate_of" in r["raw_metadata"])
        assert "duplicate_of" not in canonical["raw_metadata"], case
        assert duplicate["raw_metadata"]["duplicate_of"] == canonical["id"], case
        assert duplicate["raw_metadata"]["duplicate_kind"] == rule, case
        first = min((after[a], after[b]), key=lambda r: (r["content_type"] != "article", r["published_at"], r["id"]))
        assert canonical is first, case
    for case in MANIFEST["url_duplicates"]:
        assert after[case["shared_in"]["id"]]["raw_metadata"]["duplicate_of"] == after[case["article"]["id"]]["id"]
    in_cases = {pid for _, _, a, b in planted for pid in (a, b)}
    assert not [pid for pid, r in after.items() if pid not in in_cases and "duplicate_of" in r["raw_metadata"]]
    for pid, row in after.items():  # every other metadata key is as it was
        assert _without_marks(row["raw_metadata"]) == before[pid]["raw_metadata"], pid
    assert "| canonical | url | rss |" in result.sample_markdown()


def test_marking_again_writes_nothing(engine, demo_corpus):
    dedup.run_dedup(engine, demo_corpus.design_id, MARCH)
    before = _rows(engine, demo_corpus.design_id)

    again = dedup.run_dedup(engine, demo_corpus.design_id, MARCH)

    assert (again.marked, again.unmarked) == (0, 0)
    assert again.duplicates == len(_planted())
    assert {pid: r["xmin"] for pid, r in _rows(engine, demo_corpus.design_id).items()} == {
        pid: r["xmin"] for pid, r in before.items()
    }


def test_marks_follow_the_data_and_keep_sibling_keys(engine, demo_corpus):
    dedup.run_dedup(engine, demo_corpus.design_id, MARCH)
    e2_tiktok = MANIFEST["exact_duplicates"][1]["items"][1]["id"]
    lone = "2028387331587235841"  # a minister's post that duplicates nothing
    with engine.begin() as conn:
        # The TikTok caption of E2 is edited (so it no longer duplicates the article), and a
        # stale mark is left on a record that is no duplicate.
        conn.execute(
            sa.text(
                "UPDATE content_records SET content_hash = 'edited', simhash = 0, "
                'raw_metadata = raw_metadata || \'{"note": "kept"}\' WHERE platform_id = :p'
            ),
            {"p": e2_tiktok},
        )
        conn.execute(
            sa.text(
                "UPDATE content_records SET raw_metadata = raw_metadata || "
                '\'{"duplicate_of": "x", "duplicate_kind": "url"}\' WHERE platform_id = :p'
            ),
            {"p": lone},
        )

    result = dedup.run_dedup(engine, demo_corpus.design_id, MARCH)

    rows = _rows(engine, demo_corpus.design_id)
    assert (result.marked, result.unmarked) == (0, 2)
    assert "duplicate_of" not in rows[e2_tiktok]["raw_metadata"]
    assert rows[e2_tiktok]["raw_metadata"]["note"] == "kept"
    assert "duplicate_kind" not in rows[lone]["raw_metadata"] and "duplicate_of" not in rows[lone]["raw_metadata"]


def test_json_null_metadata_is_marked(engine, demo_corpus):
    e4_tiktok = MANIFEST["exact_duplicates"][3]["items"][1]["id"]
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE content_records SET raw_metadata = 'null'::jsonb WHERE platform_id = :p"), {"p": e4_tiktok}
        )

    dedup.run_dedup(engine, demo_corpus.design_id, MARCH)

    rows = _rows(engine, demo_corpus.design_id)
    e4_x = MANIFEST["exact_duplicates"][3]["items"][0]["id"]
    assert rows[e4_tiktok]["raw_metadata"] == {"duplicate_of": rows[e4_x]["id"], "duplicate_kind": "exact"}


def test_another_corpus_is_left_alone(engine, demo_corpus):
    other = make_design(engine, "andet-design")
    # The same post in another design's corpus, already carrying a (wrong) mark.
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {', '.join(COLUMNS)} FROM content_records WHERE platform_id = '2028773629843394563'")
        ).one()
    copied = list(row)
    copied[COLUMNS.index("query_design_id")] = other
    copied[COLUMNS.index("raw_metadata")] = json.dumps({"duplicate_of": "someone"})
    ingest.write_batch(engine, [copied])

    dedup.run_dedup(engine, demo_corpus.design_id, MARCH)

    (kept,) = _rows(engine, other).values()
    assert kept["raw_metadata"] == {"duplicate_of": "someone"}


# ---------------------------------------------------------------------------------------------
# Dagster


def _materialize(db_url, instance, slug: str = demo.DESIGN_SLUG):
    instance.add_dynamic_partitions(query_design_partitions.name, [slug])
    return dg.materialize(
        [dedup_pass],
        partition_key=corpus_key(MARCH, slug),
        instance=instance,
        resources={"postgres": PostgresResource(database_url=db_url)},
        raise_on_error=False,
    )


def test_the_asset_marks_the_demo_and_its_check_passes(engine, db_url, instance, demo_corpus):
    result = _materialize(db_url, instance)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("dedup_pass")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert (metadata["groups_exact"], metadata["groups_near"], metadata["groups_url"]) == (4, 5, 4)
    assert metadata["records_marked"] == metadata["rows_written"] == len(_planted())
    assert "| group | role | rules | platform |" in metadata["sample_groups"]
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == MARKED_AT_MOST_HALF and check.passed


def test_the_check_warns_when_most_of_the_corpus_is_marked(engine, db_url, instance):
    design = make_design(engine, "kopier")
    ingest.write_batch(
        engine,
        [
            record(
                design,
                platform_id,
                T0,
                text=OTHER_TEXT,
                platform=platform,
                url=None,
                author=None,
                collected=T0,
                hashed=True,
            )
            for platform_id, platform in (("1", "x_twitter"), ("2", "tiktok"), ("3", "instagram"))
        ],
    )

    result = _materialize(db_url, instance, "kopier")

    assert result.success  # a WARN check never fails the run
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("2 of 3 records (67%) were marked as duplicates")


def test_an_unknown_design_fails_in_one_line(db_url, instance):
    result = _materialize(db_url, instance, "findes-ikke")

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "no query design with slug 'findes-ikke'" in message and "\n" not in message.strip()


# ---------------------------------------------------------------------------------------------
# Templated text: bounded, and honest about what it left out

#: A bot campaign's vocabulary: every post is 45 words drawn from these (each word once).
CAMPAIGN = list(
    dict.fromkeys(
        "klima grøn omstilling vindmøller havvind landbruget regeringen skal nu handle for vores børn og fremtid "
        "det er på tide at vi tager ansvar stem på os ved næste valg danmark kan gå forrest med afgift ny "
        "energi til alle".split()
    )
)


def campaign_picks(count: int, seed: int = 3) -> Iterator[np.ndarray]:
    """Posts of 45 words drawn from ``CAMPAIGN``, as word numbers, 100,000 posts at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, 100_000):
        yield rng.integers(0, len(CAMPAIGN), (min(100_000, count - start), 45))


def campaign_simhash(picks: np.ndarray) -> np.ndarray:
    """The SimHashes of posts given as word numbers, computed as ``text.simhash`` does (a majority
    vote of the words' 64-bit hashes), without hashing any text."""
    words = text._feature_hashes(CAMPAIGN)
    signs = np.unpackbits(words.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little").astype(np.int32) * 2 - 1
    counts = np.zeros((len(picks), len(CAMPAIGN)), dtype=np.int32)
    np.add.at(counts, (np.arange(len(picks))[:, None], picks), 1)
    bits = ((counts @ signs) > 0).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0].view(np.int64)


def campaign_simhashes(count: int, seed: int = 3) -> np.ndarray:
    """SimHashes of ``count`` posts of 45 words drawn from ``CAMPAIGN``."""
    return np.concatenate([campaign_simhash(picks) for picks in campaign_picks(count, seed)] or [np.empty(0, np.int64)])


def test_the_campaign_model_is_text_simhash():
    rng = np.random.default_rng(11)
    for _ in range(20):
        post = " ".join(rng.choice(CAMPAIGN, 45))
        words = post.split()
        counts = np.array([words.count(w) for w in CAMPAIGN])
        signs = (
            np.unpackbits(
                text._feature_hashes(CAMPAIGN).view(np.uint8).reshape(-1, 8), axis=1, bitorder="little"
            ).astype(np.int64)
            * 2
            - 1
        )
        bits = ((counts @ signs) > 0).astype(np.uint8)
        modelled = int(np.packbits(bits, bitorder="little").view("<u8")[0].view(np.int64))
        assert modelled == text.simhash(post)


def test_chunks_and_components_find_what_all_pairs_at_once_would(monkeypatch):
    hashes = np.unique(campaign_simhashes(20_000))
    whole_left, whole_right, whole = dedup.near_pairs(hashes)
    assert whole.candidates_skipped == 0 and len(whole_left) > 1_000
    monkeypatch.setattr(dedup, "PAIR_CHUNK", 5_000)
    left, right, _ = dedup.near_pairs(hashes)
    assert set(zip(left.tolist(), right.tolist())) == set(zip(whole_left.tolist(), whole_right.tolist()))
    labels, _ = dedup.near_components(hashes)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(hashes)))
    graph.add_edges_from(zip(whole_left.tolist(), whole_right.tolist()))
    for component in nx.connected_components(graph):
        assert len({int(labels[node]) for node in component}) == 1
        assert int(labels[next(iter(component))]) == min(component)


def test_a_spent_candidate_budget_leaves_the_largest_buckets_out_and_says_how_much(monkeypatch):
    hashes = np.unique(campaign_simhashes(20_000))
    _, _, whole = dedup.near_pairs(hashes)
    monkeypatch.setattr(dedup, "MAX_CANDIDATES", whole.candidates // 4)
    left, _, bounded = dedup.near_pairs(hashes)
    assert bounded.candidates <= whole.candidates // 4
    assert bounded.candidates + bounded.candidates_skipped == whole.candidates
    assert 0 < len(left)


#: The subprocess's own peak RSS (``VmHWM``: ``ru_maxrss`` would include the test process's, as
#: Linux keeps it across exec).
PEAK = "next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:'))"


def test_a_million_templated_posts_group_in_bounded_memory():
    """The pass that outgrew 24 GB: a million posts from one 45-word vocabulary, in a process of
    its own so its peak memory is its own."""
    script = (
        "import numpy as np\n"
        "from observatory_pipelines.core.processing import dedup\n"
        "from tests.test_dedup import campaign_simhashes\n"
        "hashes = np.unique(campaign_simhashes(1_000_000))\n"
        "labels, scan = dedup.near_components(hashes)\n"
        "grouped = int((labels != np.arange(len(labels))).sum())\n"
        f"peak = {PEAK}\n"
        "print(len(hashes), grouped, scan.candidates, scan.candidates_skipped, scan.buckets_skipped, peak)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    distinct, grouped, checked, left_out, buckets, peak = map(int, done.stdout.split())
    assert distinct > 900_000 and grouped > 0
    assert checked <= dedup.MAX_CANDIDATES and left_out + buckets > 0  # bounded, and says so
    assert peak < 2 * 1024**3


#: The whole pass's own memory (its peak above the RSS it started from) over ``WHOLE_PASS_RECORDS``
#: templated records and their 12.8 M near candidates. Measured (issue 16, VmHWM): 186 MB, and
#: 318 MB before the corpus was held as numbers (same marks). A million such records:
#: docs/benchmarks.md § Dedup.
WHOLE_PASS_RECORDS = 100_000
WHOLE_PASS_BYTES = 250 * 2**20


def _campaign_records(engine, design_id, count: int) -> tuple[int, int]:
    """``count`` records of a bot campaign in March: a fifth articles, the rest X posts, every text
    45 words from ``CAMPAIGN``. Every 20th post is copied word for word to TikTok, every 20th
    other post shares an earlier article's link. Returns (copies, sharers)."""
    words = np.array(CAMPAIGN, dtype=object)
    copies = sharers = 0
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        columns = "published_at, platform, arena, platform_id, content_type, url, text_content, query_design_id, "
        columns += "content_hash, simhash, raw_metadata"
        with cur.copy(f"COPY content_records ({columns}) FROM STDIN") as copy:
            i = 0
            article = None
            for picks in campaign_picks(count, seed=13):
                simhashes = campaign_simhash(picks)
                for post, simhash in zip(picks, simhashes.tolist(), strict=True):
                    body = " ".join(words[post])
                    at = T0 + timedelta(seconds=i * 7)
                    row = [
                        at,
                        "x_twitter",
                        "zeeschuimer",
                        f"x-{i}",
                        "post",
                        f"https://x.com/bruger{i % 997}/status/{i}",
                    ]
                    metadata = {}
                    if i % 5 == 0:
                        article = f"https://nordlys.example.dk/indland/kampagne-{i}"
                        row[1:6] = ["rss", "rss_feeds", f"rss-{i}", "article", article]
                    elif i % 20 == 1:
                        copy.write_row(  # a second later: the post stays its group's original
                            [
                                at + timedelta(seconds=1),
                                "tiktok",
                                "file_import",
                                f"tt-{i}",
                                "video",
                                f"https://www.tiktok.com/@b/video/{i}",
                            ]
                            + [body, design_id, text.content_hash(body), simhash, "{}"]
                        )
                        copies += 1
                    elif i % 20 == 3 and article:
                        metadata = {"links": [article.replace("https://", "https://www.") + "?utm_source=x"]}
                        sharers += 1
                    copy.write_row(row + [body, design_id, text.content_hash(body), simhash, json.dumps(metadata)])
                    i += 1
    return copies, sharers


def test_the_whole_pass_over_templated_posts_stays_small(engine, db_url):
    """Load, group and mark, in a process of its own: the pass's own memory over templated
    records is bounded, and every planted copy and shared link is still grouped."""
    design_id = make_design(engine, slug="kampagne")
    copies, sharers = _campaign_records(engine, design_id, WHOLE_PASS_RECORDS)
    script = (
        "import os, sys\n"
        "from observatory_pipelines.core.platform import database\n"
        "from observatory_pipelines.core.processing import dedup\n"
        "engine = database.make_engine(sys.argv[1])\n"
        "before = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "result = dedup.run_dedup(engine, sys.argv[2], sys.argv[3])\n"
        f"peak = {PEAK}\n"
        "print(result.records, result.duplicates, result.near_scan.candidates, before, peak)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db_url, str(design_id), MARCH],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    records, duplicates, checked, before, peak = map(int, done.stdout.split())
    assert records == WHOLE_PASS_RECORDS + copies and checked > 0
    assert peak - before < WHOLE_PASS_BYTES, f"the pass took {(peak - before) / 2**20:.0f} MB"
    with engine.connect() as conn:
        marked = dict(
            conn.execute(
                sa.text(
                    "SELECT platform, count(*) FILTER (WHERE raw_metadata ? 'duplicate_of') FROM content_records "
                    "WHERE query_design_id = :d AND (platform = 'tiktok' OR raw_metadata ? 'links') GROUP BY platform"
                ),
                {"d": design_id},
            ).all()
        )
    assert marked == {"tiktok": copies, "x_twitter": sharers} and duplicates >= copies + sharers
