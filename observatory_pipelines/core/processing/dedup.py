"""Cross-arena dedup of one corpus (query design × month): group the records that are the same
content, elect one canonical record per group, mark the others. Nothing is deleted.

Three rules link two records of the corpus:

- **url**: the same normalised URL (``normalise_url``). Either both records have it as their own
  ``url`` (the same article from RSS and GDELT), or one record's ``url`` is a link another record
  shares (``raw_metadata.links``, e.g. an X post linking a feed article): sharing an article's link
  makes the post a duplicate of the article. Two posts that share the same link are *not* linked to
  each other unless the linked page itself is in the corpus. A site's front page (no path, no
  query) is never a key: links to ``https://dr.dk`` say nothing about which item is meant.
- **exact**: the same ``content_hash`` (text after case, whitespace and URL folding) on a different
  platform or arena. Identical texts on one platform and arena are kept apart by this rule:
  copypasta, bots and campaigns posting the same words are discourse, not collection artefacts.
- **near**: SimHashes at most 3 of 64 bits apart (the same wire story in two outlets, a
  cross-post with one word changed, a retweet of a long post), on any platform. Pairs with the same
  ``content_hash`` are left to the exact rule. (Identical copies on one platform still join a
  group when any of them has a near or cross-platform duplicate: groups are transitive.)
  SimHash works on words only, so very short texts that differ in punctuation ("Enig!", "Enig.")
  are near-duplicates; the WARN check on the share of marked records is the guard against that.

Groups are the connected components over all three rules (so a chain A~B~C is one group even when
A and C are not alike). The canonical record of a group is elected by, in order:

1. articles first (``content_type = 'article'``): a publisher's article is the original that
   posts copy or share;
2. the earliest ``published_at``;
3. the smallest ``id``.

Every other member gets ``raw_metadata.duplicate_of`` (the canonical id, text) and
``raw_metadata.duplicate_kind`` (the rules that tied it to its group, e.g. ``"near+url"``).
Re-running is idempotent: only rows whose marks change are written, and records that are no
longer duplicates (data changed) lose both keys. Other ``raw_metadata`` keys are never touched.

Near-duplicates are found by banding, never by comparing all pairs. The 64 bits are cut into five
blocks (13, 13, 13, 13 and 12 bits); two hashes at most 3 bits apart differ in at most three
blocks, so they agree on at least two (pigeonhole). Each of the 10 block pairs is a table keyed by
those ~26 bits; hashes sharing a key are candidates, verified by counting differing bits. Four
16-bit blocks (one shared block) would be exact too, but measured on Danish-like text (stop words
bias SimHash bits), its candidates grow with the square of the corpus: 2.2 M at 100,000 distinct
hashes and 20 M at 300,000, against 45,000 and 425,000 with block pairs. A bucket holding more
than ``MAX_BUCKET`` distinct hashes (templated spam) is skipped and counted: its pairs are found
only if they also share another, smaller bucket.

Memory and time are bounded whatever the text looks like. Candidates are checked a chunk of
``PAIR_CHUNK`` at a time and folded into component labels at once, so no list of pairs is kept;
each key table checks at most a tenth of ``MAX_CANDIDATES``, smallest buckets first (the likeliest
real near-copies). On templated text, whose SimHashes crowd together (1M posts drawn from one
45-word vocabulary), the pass used to hold every candidate pair of every table before checking one
and outgrew 24 GB; what the bounds leave out is reported (``NearScan``) rather than guessed.

The corpus itself is held as a few numbers per record, not as text (``load_compact``): COPY
streams the month in (published_at, id) order, and each piece of ``LOAD_CHUNK_BYTES`` is turned
into 64-bit keys at once and dropped: the id as its two halves, ``content_hash``, platform with
arena, and the normalised URLs (own and shared) as 64-bit hashes. The row number stands for
(published_at, id), so the canonical is the group's smallest row among its articles, else among
all. Two different values share a 64-bit key with a probability of about 3 in 10⁸ in a corpus of
a million, which would link two records wrongly. The marks go to PostgreSQL ``MARK_BATCH`` at a
time through a staging table, and only the rows whose marks change are written.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import polars as pl
import sqlalchemy as sa

from observatory_pipelines.core.models import ITEM_COPY_KIND
from observatory_pipelines.core.platform import database, markdown, months

# ---------------------------------------------------------------------------------------------
# URL normalisation

#: Query parameters that say where a click came from, not what page it is (compared lower-cased).
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "ref",
        "ref_src",
        "source",
    }
)
TRACKING_PREFIXES = ("utm_",)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = frozenset(_UNRESERVED | set(_SUB_DELIMS) | set(":@/"))
_QUERY_SAFE = frozenset(_PATH_SAFE | {"?"})
_ALL_SAFE = {
    _PATH_SAFE: re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*"),
    _QUERY_SAFE: re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*"),
}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3986 appendix B, restricted to absolute URLs with an authority and no whitespace or
# control characters anywhere: scheme, authority, path, query (the fragment is matched, not kept).
_URL_PARTS = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#\s\x00-\x1f\x7f]*)([^?#\s\x00-\x1f\x7f]*)"
    r"(?:\?([^#\s\x00-\x1f\x7f]*))?(?:#[^\s\x00-\x1f\x7f]*)?"
)
_IPV6_AUTHORITY = re.compile(r"\[([^\]]*)\](?::([^:]*))?")
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def normalise_url(url: object) -> str | None:
    """The comparison key of a web address, or None when ``url`` is not an http(s) URL.

    Pure and total: any input gives a string or None, never an exception. The contract:

    - Leading and trailing whitespace is ignored; any whitespace or control character left inside
      means "not a URL" (None), as do non-strings, other schemes (``mailto:``, ``ftp:``,
      ``javascript:``), scheme-less text (``www.dr.dk/x``, ``//dr.dk/x``), a missing or malformed
      host, and a port that is not a number from 0 to 65535.
    - The scheme is lower-cased and kept (``http`` and ``https`` stay distinct).
    - User name and password are dropped.
    - The host is lower-cased; one trailing dot is dropped; an internationalised name becomes
      punycode with Python's ``idna`` codec (IDNA 2003: ``Grøn.dk`` and ``xn--grn-1na.dk`` are one
      host; ``ß`` maps to ``ss``); leading ``www.`` labels are dropped while two or more labels remain
      (``www.dr.dk`` → ``dr.dk``, but ``www.com`` stays). IPv6 literals are compressed (``[::1]``).
    - The port is dropped when it is the scheme's default (80, 443), kept otherwise.
    - Path and query keep their case. Their percent-encoding is normalised (RFC 3986 6.2.2):
      escapes of unreserved characters (letters, digits, ``-._~``) are decoded, other escapes get
      upper-case hex, characters a URL may not hold literally (non-ASCII letters, ``"<>\\^`{|}``)
      are UTF-8 percent-encoded, and a ``%`` that starts no escape becomes ``%25``. So ``/grøn``,
      ``/gr%c3%b8n`` and ``/gr%C3%B8n`` are one path.
    - The path loses its dot segments (``/a/./b/../c`` → ``/a/c``) and its trailing slashes; a
      bare ``/`` becomes empty (``https://dr.dk/`` → ``https://dr.dk``).
    - Query pairs split on ``&``; empty pairs and tracking parameters are dropped (any key starting
      with ``utm_``, and ``TRACKING_PARAMETERS``; keys compared case-insensitively after decoding);
      the rest are sorted as strings. ``+`` is left as written. No pairs left: no ``?``.
    - The fragment (``#...``) is dropped.

    The result is ``scheme://host[:port]path[?query]``: a key for comparing, not always a page
    that loads (``http`` kept, fragments of single-page apps dropped).
    """
    if not isinstance(url, str):
        return None
    parts = _URL_PARTS.fullmatch(url.strip())
    if parts is None:
        return None
    scheme, userinfo_and_host, path, query = parts.groups()
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    authority = _normalise_authority(userinfo_and_host.rpartition("@")[2], _DEFAULT_PORTS[scheme])
    if authority is None:
        return None
    path = _remove_dot_segments(_normalise_escapes(path, _PATH_SAFE)).rstrip("/")
    query = _normalise_query(query or "")
    return f"{scheme}://{authority}{path}{'?' + query if query else ''}"


@functools.lru_cache(maxsize=65_536)  # a corpus names few hosts, many times
def _normalise_authority(host_and_port: str, default_port: int) -> str | None:
    bracketed = _IPV6_AUTHORITY.fullmatch(host_and_port)
    host: str | None
    if bracketed:
        literal, port = bracketed.groups()
        try:
            host = f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            return None
    else:
        host, _, port = host_and_port.rpartition(":") if ":" in host_and_port else (host_and_port, "", None)
        host = _normalise_host(host)
        if host is None:
            return None
    if port:
        if not port.isascii() or not port.isdigit() or int(port) > 65_535:
            return None
        if int(port) != default_port:
            return f"{host}:{int(port)}"
    return host


def _normalise_host(host: str) -> str | None:
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return None
    while labels[0] == "www" and len(labels) >= 3:
        labels = labels[1:]
    return ".".join(labels)


def _normalise_escapes(component: str, safe: frozenset[str]) -> str:
    if _ALL_SAFE[safe].fullmatch(component):
        return component
    out: list[str] = []
    i = 0
    while i < len(component):
        char = component[i]
        if char == "%":
            match = _ESCAPE.match(component, i)
            if match:
                decoded = chr(int(match.group(1), 16))
                out.append(decoded if decoded in _UNRESERVED else "%" + match.group(1).upper())
                i += 3
                continue
            out.append("%25")
        elif char in safe:
            out.append(char)
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output)


def _normalise_query(query: str) -> str:
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        key = _normalise_escapes(key, _QUERY_SAFE)
        folded = key.lower()
        if folded in TRACKING_PARAMETERS or folded.startswith(TRACKING_PREFIXES):
            continue
        kept.append(key + sep + _normalise_escapes(value, _QUERY_SAFE))
    return "&".join(sorted(kept))


# ---------------------------------------------------------------------------------------------
# Grouping: pure functions over polars frames

KINDS = ("url", "exact", "near")
NEAR_MAX_BITS = 3
#: (shift, width) of the five SimHash blocks; any two of them make a banding key of ≤ 26 bits.
BLOCKS = ((0, 13), (13, 13), (26, 13), (39, 13), (52, 12))
#: Buckets with more distinct hashes than this are skipped: a bucket's pairs grow with its size squared.
MAX_BUCKET = 500
#: Candidate pairs checked in one pass, at most (a tenth per key table, smallest buckets first).
#: Ordinary text needs far fewer (45,000 at 100,000 distinct hashes and 425,000 at 300,000, so
#: about 5 M at a million); templated
#: text, whose SimHashes crowd together, would otherwise need billions.
MAX_CANDIDATES = 50_000_000
#: Candidate pairs held in memory at once.
PAIR_CHUNK = 500_000
CORPUS_COLUMNS = ["id", "published_at", "platform", "arena", "content_type", "url", "content_hash", "simhash"]

#: The rules as users read them (the asset's description and docs/analysis.md are made from this).
RULES = f"""Two records are linked when:
- url: they have the same normalised URL, as their own url, or one shares the other's url as a
  link (raw_metadata.links): an X post sharing a feed article is a duplicate of that article. Two
  posts sharing a link are not linked unless the linked page is in the corpus. Normalised: scheme
  and host lower-cased, www. dropped, default port dropped, IDN hosts as punycode, percent-encoding
  normalised, tracking parameters ({", ".join(sorted(TRACKING_PARAMETERS))}, and any starting
  {" or ".join(TRACKING_PREFIXES)}) dropped, query sorted, trailing slash and fragment dropped; the
  path keeps its case. Front pages never link.
- exact: the same content_hash (text with case, whitespace and URLs folded) on a different
  platform or arena (identical posts on one platform are kept: copypasta is discourse);
- near: SimHashes at most {NEAR_MAX_BITS} of 64 bits apart, on any platform, found by banding, not
  all pairs: the 64 bits are cut into {len(BLOCKS)} blocks ({", ".join(str(w) for _, w in BLOCKS)} bits),
  and two hashes that close agree on at least {len(BLOCKS) - NEAR_MAX_BITS} of them.

A group is every record linked directly or through others. Its canonical record: articles first,
then the earliest published_at, then the smallest id. Every other member gets
raw_metadata.duplicate_of (the canonical id) and raw_metadata.duplicate_kind (the rules that
linked it, e.g. "near+url"); records that are no longer duplicates lose both; other metadata keys
are kept and unchanged rows are not rewritten. Nothing is deleted."""

_ROOT_URL = re.compile(r"^https?://[^/?]+$")


def connected_components(
    size: int, left: np.ndarray, right: np.ndarray, labels: np.ndarray | None = None
) -> np.ndarray:
    """Each node's component label (the smallest node number in it), for nodes ``0..size-1``.

    Vectorised hooking and pointer jumping (Shiloach–Vishkin): a few numpy passes over the edges
    instead of a Python loop per edge. ``labels`` continues from an earlier call's result, so
    edges can be added a chunk at a time without keeping them.
    """
    labels = np.arange(size, dtype=np.int64) if labels is None else labels.copy()
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    while True:
        while True:  # flatten every tree to a star
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        roots_left, roots_right = labels[left], labels[right]
        differ = roots_left != roots_right
        if not differ.any():
            return labels
        low = np.minimum(roots_left[differ], roots_right[differ])
        np.minimum.at(labels, roots_left[differ], low)
        np.minimum.at(labels, roots_right[differ], low)


@dataclass
class NearScan:
    """What one banding pass looked at, and what it left out to stay within its bounds."""

    #: Candidate pairs whose distance was checked.
    candidates: int = 0
    #: Buckets left out for holding more than ``MAX_BUCKET`` hashes.
    buckets_skipped: int = 0
    #: Candidate pairs left out because a key table's share of ``MAX_CANDIDATES`` was spent.
    candidates_skipped: int = 0


def _close_pairs(hashes: np.ndarray, max_bits: int, scan: NearScan) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of distinct hashes at most ``max_bits`` apart, a chunk at a time (see the module
    docstring). At most ``PAIR_CHUNK`` candidates are held at once, and each key table checks at
    most its share of ``MAX_CANDIDATES``, smallest buckets first: on templated text, where SimHashes
    crowd together, memory and time stay bounded and what was left out is counted."""
    if max_bits > len(BLOCKS) - 2:
        raise ValueError(f"banding over {len(BLOCKS)} blocks finds pairs at most {len(BLOCKS) - 2} bits apart")
    unsigned = np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64)
    blocks = [(unsigned >> np.uint64(shift)) & np.uint64((1 << width) - 1) for shift, width in BLOCKS]
    index = pl.Series("i", np.arange(len(unsigned), dtype=np.uint32))
    tables = list(combinations(range(len(BLOCKS)), 2))
    per_table = MAX_CANDIDATES // len(tables)
    for a, b in tables:
        # One table at a time: a table's hash map stays small enough for the CPU caches
        # (measured 1.3 × faster at a million hashes than one frame holding all ten tables).
        keyed = pl.DataFrame({"key": (blocks[a] << np.uint64(BLOCKS[b][1])) | blocks[b], "i": index})
        shared = keyed.filter(pl.col("key").is_duplicated())
        buckets = shared.group_by("key").agg(size=pl.len())
        scan.buckets_skipped += buckets.filter(pl.col("size") > MAX_BUCKET).height
        buckets = (
            buckets.filter(pl.col("size") <= MAX_BUCKET)
            .with_columns(pairs=(pl.col("size") * (pl.col("size") - 1) // 2).cast(pl.Int64))
            .sort("pairs", "key")
            .with_columns(total=pl.col("pairs").cum_sum())
        )
        kept = buckets.filter(pl.col("total") <= per_table)
        scan.candidates_skipped += int(buckets.height and buckets["total"][-1]) - int(kept.height and kept["total"][-1])
        chunked = kept.select("key", chunk=pl.col("total") // PAIR_CHUNK)
        for part in shared.join(chunked, on="key").partition_by("chunk", include_key=False):
            pairs = part.join(part, on="key", suffix="_other").filter(pl.col("i") < pl.col("i_other"))
            left, right = pairs["i"].to_numpy(), pairs["i_other"].to_numpy()
            scan.candidates += len(left)
            close = np.bitwise_count(unsigned[left] ^ unsigned[right]) <= max_bits
            yield left[close], right[close]


def near_pairs(hashes: np.ndarray, max_bits: int = NEAR_MAX_BITS) -> tuple[np.ndarray, np.ndarray, NearScan]:
    """Index pairs ``(i, j)``, ``i < j``, of distinct SimHashes at most ``max_bits`` apart, every
    one of them (exact for ``max_bits`` ≤ 3 within the bounds ``NearScan`` reports). Holds all the
    pairs: the dedup pass uses ``near_components``, which does not."""
    scan = NearScan()
    found = pl.concat(
        [pl.DataFrame({"i": left, "j": right}) for left, right in _close_pairs(hashes, max_bits, scan)]
        or [pl.DataFrame(schema={"i": pl.UInt32, "j": pl.UInt32})]
    ).unique()
    return found["i"].to_numpy(), found["j"].to_numpy(), scan


def near_components(hashes: np.ndarray, max_bits: int = NEAR_MAX_BITS) -> tuple[np.ndarray, NearScan]:
    """Each hash's near-duplicate component label (the smallest index linked to it through pairs
    at most ``max_bits`` apart). Pairs are folded in a chunk at a time and never kept, so memory
    grows with the number of hashes, not of pairs."""
    scan = NearScan()
    labels = np.arange(len(hashes), dtype=np.int64)
    for left, right in _close_pairs(hashes, max_bits, scan):
        if len(left):
            labels = connected_components(len(hashes), left, right, labels)
    return labels, scan


def _hashed(values: pl.Expr) -> pl.Expr:
    """A 64-bit hash of each value, null where the value is null (a compact key: two different
    values share one with probability about 3 in 10⁸ in a corpus of a million)."""
    return pl.when(values.is_not_null()).then(values.hash())


def _url_keys(urls: pl.Series) -> pl.Series:
    """The hashed ``normalise_url`` of each value (computed once per distinct value); null for
    front pages and for what is not a URL."""
    distinct = urls.drop_nulls().unique()
    keys = [normalise_url(u) for u in distinct.to_list()]
    lookup = pl.DataFrame(
        {"raw": distinct, "key": [None if k is None or _ROOT_URL.match(k) else k for k in keys]},
        schema={"raw": pl.Utf8, "key": pl.Utf8},
    ).select("raw", key=_hashed(pl.col("key")))
    return urls.to_frame("raw").join(lookup, on="raw", how="left", maintain_order="left")["key"]


def _compact(part: pl.DataFrame) -> pl.DataFrame:
    """The columns grouping reads, as 64-bit keys instead of text: ``article`` (bool), ``source``
    (platform and arena), ``url_key``, ``content_key`` (content_hash) and ``simhash``."""
    return part.select(
        article=pl.col("content_type").fill_null("") == "article",
        source=pl.struct("platform", "arena").hash(),
        url_key=_url_keys(part["url"]),
        content_key=_hashed(pl.col("content_hash")),
        simhash=pl.col("simhash").cast(pl.Int64),
    )


def _link_keys(rows: pl.Series, links: pl.Series) -> pl.DataFrame:
    """row → hashed URL key of each link it shares (links that are no URL or a front page are left out)."""
    shared = pl.DataFrame({"row": rows, "link": links}).filter(pl.col("link").is_not_null())
    return shared.select("row", key=_url_keys(shared["link"])).filter(pl.col("key").is_not_null())


def _star_edges(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    """Edges from each row to the first row sharing its ``by`` value (rows already filtered)."""
    return (
        frame.with_columns(anchor=pl.col("row").min().over(by))
        .filter(pl.col("row") != pl.col("anchor"))
        .select("row", "anchor")
    )


def _url_edges(rows: pl.DataFrame, link_keys: pl.DataFrame) -> pl.DataFrame:
    own = rows.select("row", key="url_key").filter(pl.col("key").is_not_null())
    owners = own.group_by("key").agg(anchor=pl.col("row").min())
    sharing = link_keys.join(owners, on="key").filter(pl.col("row") != pl.col("anchor")).select("row", "anchor")
    return pl.concat([_star_edges(own, "key"), sharing])


def _exact_edges(rows: pl.DataFrame) -> pl.DataFrame:
    hashed = rows.select("row", "source", "content_key").filter(pl.col("content_key").is_not_null())
    across = hashed.filter(pl.col("source").n_unique().over("content_key") > 1)
    return _star_edges(across, "content_key")


def _near_edges(rows: pl.DataFrame) -> tuple[pl.DataFrame, NearScan]:
    hashed = rows.select("row", "content_key", "simhash").filter(pl.col("simhash").is_not_null())
    values = (
        hashed.group_by("simhash")
        .agg(first=pl.col("row").min(), texts=pl.col("content_key").n_unique())
        .sort("simhash")
    )
    labels, scan = near_components(values["simhash"].to_numpy())
    in_pair = labels != np.arange(len(labels))
    in_pair[labels[in_pair]] = True  # a component's smallest hash is in a pair too
    # A hash with two different texts behind it links them at distance 0; a hash with one text
    # only joins a group through a pair (the same text on one platform is the exact rule's call).
    linked = values.filter(pl.Series(in_pair) | (pl.col("texts") > 1))
    first = values["first"].to_numpy()
    joined = np.flatnonzero(labels != np.arange(len(labels)))
    edges = [
        hashed.join(linked.select("simhash", anchor="first"), on="simhash")
        .filter(pl.col("row") != pl.col("anchor"))
        .select("row", "anchor"),
        pl.DataFrame(
            {"row": first[joined], "anchor": first[labels[joined]]}, schema={"row": pl.UInt32, "anchor": pl.UInt32}
        ),
    ]
    return pl.concat(edges), scan


def _touched(size: int, edges: pl.DataFrame) -> np.ndarray:
    touched = np.zeros(size, dtype=bool)
    touched[edges["row"].to_numpy()] = True
    touched[edges["anchor"].to_numpy()] = True
    return touched


@dataclass
class Grouping:
    """What grouping found. ``members`` holds one row per record that is in a group: ``row`` (its
    position in the corpus in (published_at, id) order), ``group`` (the group's smallest row),
    ``canonical`` (the canonical record's row) and ``kind``. ``ids`` is the corpus's ``id`` and
    ``published_at`` by row, when ``group_duplicates`` was given them."""

    members: pl.DataFrame
    groups_by_kind: dict[str, int]
    near_scan: NearScan
    ids: pl.DataFrame | None = None

    @property
    def groups(self) -> int:
        return self.members["group"].n_unique()

    def duplicates(self) -> pl.DataFrame:
        """The members that are not their group's canonical: row, canonical, kind."""
        return self.members.filter(pl.col("row") != pl.col("canonical")).select("row", "canonical", "kind")

    def marks(self) -> pl.DataFrame:
        """The duplicates: id, published_at, canonical_id, kind (needs ``ids``)."""
        if self.ids is None:
            raise ValueError("this grouping was made without the corpus's ids")
        ids = self.ids
        duplicates = self.duplicates()
        return pl.DataFrame(
            {
                "id": ids["id"].gather(duplicates["row"]),
                "published_at": ids["published_at"].gather(duplicates["row"]),
                "canonical_id": ids["id"].gather(duplicates["canonical"]),
                "kind": duplicates["kind"],
            }
        )


def group_rows(rows: pl.DataFrame, link_keys: pl.DataFrame) -> Grouping:
    """Group a corpus given compactly (module docstring). ``rows`` is in (published_at, id) order
    with ``_compact``'s columns; ``link_keys`` has ``row`` and ``key``, one row per shared link.
    Memory: a few numbers per record, and edges only for the records that are in a group."""
    size = rows.height
    rows = rows.with_row_index("row")
    near, scan = _near_edges(rows)
    edges = {"url": _url_edges(rows, link_keys), "exact": _exact_edges(rows), "near": near}
    article = rows["article"].to_numpy()
    del rows
    every = pl.concat(list(edges.values()))
    labels = connected_components(size, every["row"].to_numpy(), every["anchor"].to_numpy())
    del every
    kinds = {kind: _touched(size, kind_edges) for kind, kind_edges in edges.items()}
    by_kind = {}
    for kind, kind_edges in edges.items():
        alone = connected_components(size, kind_edges["row"].to_numpy(), kind_edges["anchor"].to_numpy())
        touched = np.flatnonzero(kinds[kind])
        by_kind[kind] = int((alone[touched] == touched).sum())  # each component's smallest row is its root
        del alone
    edges.clear()
    in_group = np.zeros(size, dtype=bool)
    for touched in kinds.values():
        in_group |= touched
    member_rows = np.flatnonzero(in_group).astype(np.uint32)
    del in_group
    members = pl.DataFrame(
        {
            "row": member_rows,
            "group": labels[member_rows].astype(np.uint32),
            # The canonical: articles first, then the earliest published_at, then the smallest
            # id, which in (published_at, id) order is the smallest row.
            "order": member_rows.astype(np.int64) + np.where(article[member_rows], 0, size),
            **{kind: touched[member_rows] for kind, touched in kinds.items()},
        }
    ).select(
        "row",
        "group",
        canonical=(pl.col("order").min().over("group") % max(size, 1)).cast(pl.UInt32),
        kind=pl.concat_str([pl.when(pl.col(k)).then(pl.lit(k)) for k in KINDS], separator="+", ignore_nulls=True),
    )
    del labels, kinds, article
    return Grouping(members=members, groups_by_kind=by_kind, near_scan=scan)


def group_duplicates(corpus: pl.DataFrame, links: pl.DataFrame) -> Grouping:
    """Group the corpus's duplicates and elect each group's canonical record (module docstring).

    ``corpus`` has ``CORPUS_COLUMNS``; ``links`` has ``id`` and ``link``, one row per shared link.
    Deterministic: the same rows give the same groups, canonicals and kinds, in any order. The
    grouping's rows are positions in the corpus sorted by (published_at, id).
    """
    ordered = corpus.sort("published_at", "id")
    shared = links.join(ordered.select("id").with_row_index("row"), on="id")
    grouping = group_rows(_compact(ordered), _link_keys(shared["row"], shared["link"]))
    grouping.ids = ordered.select("id", "published_at")
    return grouping


# ---------------------------------------------------------------------------------------------
# The database side

#: Rows of the corpus parsed at once while loading: memory holds one piece of text at a time.
LOAD_CHUNK_BYTES = 4 * 2**20
#: Marks sent to PostgreSQL in one piece.
MARK_BATCH = 100_000
# The corpus as grouping reads it, in (published_at, id) order: the id as its two signed 64-bit
# halves (it is needed again only to write the marks), published_at in microseconds since the
# epoch, and the string elements of raw_metadata.links as one JSON array.
_LOAD_SQL = """
COPY (
  SELECT ('x' || encode(substring(uuid_send(id) FROM 1 FOR 8), 'hex'))::bit(64)::bigint,
         ('x' || encode(substring(uuid_send(id) FROM 9 FOR 8), 'hex'))::bit(64)::bigint,
         (extract(epoch FROM published_at) * 1000000)::bigint,
         content_type, platform, arena, url, content_hash, simhash,
         CASE WHEN jsonb_typeof(raw_metadata->'links') = 'array' THEN
           (SELECT jsonb_agg(link) FROM jsonb_array_elements(raw_metadata->'links') AS link
            WHERE jsonb_typeof(link) = 'string')
         END
  FROM content_records
  WHERE query_design_id = %s AND published_at >= %s AND published_at < %s
    AND raw_metadata->>'duplicate_kind' IS DISTINCT FROM %s
  ORDER BY published_at, id
) TO STDOUT WITH (FORMAT csv)
"""
_LOAD_SCHEMA = {
    "id_hi": pl.Int64,
    "id_lo": pl.Int64,
    "published_at": pl.Int64,
    "content_type": pl.Utf8,
    "platform": pl.Utf8,
    "arena": pl.Utf8,
    "url": pl.Utf8,
    "content_hash": pl.Utf8,
    "simhash": pl.Int64,
    "links": pl.Utf8,
}


@dataclass
class CompactCorpus:
    """A corpus as the pass holds it, a few numbers per record, by row in (published_at, id) order."""

    #: ``_compact``'s columns: what grouping reads.
    rows: pl.DataFrame
    #: ``id_hi``, ``id_lo`` (the id's two halves) and ``published_at``: what marking writes.
    ids: pl.DataFrame
    #: ``row`` and ``key``: the hashed URL of each link a record shares.
    link_keys: pl.DataFrame


def _compact_piece(piece: pl.DataFrame, first_row: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    ids = piece.select("id_hi", "id_lo", published_at=pl.col("published_at").cast(pl.Datetime("us", "UTC")))
    shared = (
        piece.select(
            row=pl.int_range(first_row, first_row + piece.height, dtype=pl.UInt32),
            link=pl.col("links").str.json_decode(pl.List(pl.Utf8)),
        )
        .filter(pl.col("link").is_not_null())
        .explode("link")
    )
    return _compact(piece), ids, _link_keys(shared["row"], shared["link"])


def load_compact(engine: sa.Engine, design_id: uuid.UUID | str, month: str) -> CompactCorpus:
    """The corpus (without the further copies of an item), read with COPY and made compact a
    piece of ``LOAD_CHUNK_BYTES`` at a time: no text is kept, and no Python object per record."""
    start, end = months.month_bounds(month)
    pieces: list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]] = []
    loaded = 0
    with database.driver_connection(engine, commit=False) as conn, conn.cursor() as cur:
        with cur.copy(_LOAD_SQL, (str(design_id), start, end, ITEM_COPY_KIND)) as copy:
            for block in database.copy_row_blocks(copy, LOAD_CHUNK_BYTES):
                piece = pl.read_csv(block, has_header=False, schema=_LOAD_SCHEMA)
                pieces.append(_compact_piece(piece, loaded))
                loaded += piece.height
    if not pieces:
        pieces.append(_compact_piece(pl.DataFrame(schema=_LOAD_SCHEMA), 0))
    rows, ids, link_keys = (pl.concat([p[i] for p in pieces], rechunk=True) for i in range(3))
    return CompactCorpus(rows=rows, ids=ids, link_keys=link_keys)


# The key matters: the planner cannot estimate how many rows carry a mark (``?`` has no
# statistics), guesses one, and picks a nested-loop anti-join, which without an index on the marks
# costs marks × marked rows (measured: 30 s at 22,000 marks).
_MARKS_DDL = (
    "CREATE TEMP TABLE dedup_marks (id uuid, published_at timestamptz, canonical_id uuid, kind text, "
    "PRIMARY KEY (id, published_at)) ON COMMIT DROP"
)
_IN_CORPUS = "c.query_design_id = %(design)s AND c.published_at >= %(start)s AND c.published_at < %(end)s"
# raw_metadata is NOT NULL, but may hold JSON null: such rows start from an empty object. Rows
# holding any other non-object JSON (never written by ingest) are left alone, not overwritten.
_MARK_SQL = f"""
UPDATE content_records AS c
SET raw_metadata = coalesce(nullif(c.raw_metadata, 'null'::jsonb), '{{}}'::jsonb)
    || jsonb_build_object('duplicate_of', m.canonical_id::text, 'duplicate_kind', m.kind)
FROM dedup_marks AS m
WHERE c.id = m.id AND c.published_at = m.published_at AND {_IN_CORPUS}
  AND jsonb_typeof(c.raw_metadata) IN ('object', 'null')
  AND (c.raw_metadata->>'duplicate_of' IS DISTINCT FROM m.canonical_id::text
       OR c.raw_metadata->>'duplicate_kind' IS DISTINCT FROM m.kind)
"""
_UNMARK_SQL = f"""
UPDATE content_records AS c
SET raw_metadata = c.raw_metadata - 'duplicate_of' - 'duplicate_kind'
WHERE {_IN_CORPUS}
  AND jsonb_typeof(c.raw_metadata) = 'object'
  AND (c.raw_metadata ? 'duplicate_of' OR c.raw_metadata ? 'duplicate_kind')
  AND c.raw_metadata->>'duplicate_kind' IS DISTINCT FROM %(item_copy)s
  AND NOT EXISTS (SELECT 1 FROM dedup_marks m WHERE m.id = c.id AND m.published_at = c.published_at)
"""


def _lock_key(design_id: uuid.UUID | str, month: str) -> int:
    digest = hashlib.sha256(f"dedup|{design_id}|{month}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class MarkCounts:
    marked: int  # rows whose duplicate_of / duplicate_kind were set or changed
    unmarked: int  # rows that lost them, being no longer duplicates


def _marks_csv(marks: pl.DataFrame) -> bytes:
    return (
        marks.select(
            "id",
            pl.col("published_at").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00"),
            "canonical_id",
            "kind",
        )
        .write_csv(include_header=False)
        .encode()
    )


def _uuid_hex(hi: np.ndarray, lo: np.ndarray) -> pl.Series:
    """The ids whose halves are ``hi`` and ``lo``, as 32 hex digits (which PostgreSQL reads as uuid)."""
    if len(hi) == 0:
        return pl.Series(dtype=pl.Utf8)
    halves = np.empty((len(hi), 2), dtype=">i8")
    halves[:, 0], halves[:, 1] = hi, lo
    return pl.Series([halves.tobytes().hex()]).str.extract_all(".{32}").explode()


def _uuid_text(ids: pl.DataFrame, rows: list[int]) -> list[str]:
    """The ids of ``rows`` in their usual text form."""
    hi, lo = ids["id_hi"].to_numpy(), ids["id_lo"].to_numpy()
    return [str(uuid.UUID(hex=h)) for h in _uuid_hex(hi[rows], lo[rows])]


def _compact_marks(duplicates: pl.DataFrame, ids: pl.DataFrame) -> Iterator[bytes]:
    """``duplicates`` (row, canonical, kind) as marks CSV, ``MARK_BATCH`` rows at a time."""
    hi, lo = ids["id_hi"].to_numpy(), ids["id_lo"].to_numpy()
    for start in range(0, duplicates.height, MARK_BATCH):
        part = duplicates.slice(start, MARK_BATCH)
        rows, canonicals = part["row"].to_numpy(), part["canonical"].to_numpy()
        yield _marks_csv(
            pl.DataFrame(
                {
                    "id": _uuid_hex(hi[rows], lo[rows]),
                    "published_at": ids["published_at"].gather(part["row"]),
                    "canonical_id": _uuid_hex(hi[canonicals], lo[canonicals]),
                    "kind": part["kind"],
                }
            )
        )


def _write_marks(engine: sa.Engine, design_id: uuid.UUID | str, month: str, batches: Iterable[bytes]) -> MarkCounts:
    """Make the corpus's marks exactly those in ``batches`` (CSV pieces of id, published_at,
    canonical_id, kind, staged one at a time), in one transaction: set ``raw_metadata.duplicate_of``
    / ``duplicate_kind`` where they differ, remove them from the corpus's other records. Unchanged
    rows are not rewritten; other keys are kept."""
    start, end = months.month_bounds(month)
    params = {"design": str(design_id), "start": start, "end": end, "item_copy": ITEM_COPY_KIND}
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        # Two passes of the same corpus at once would interleave their marks and unmarks.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(design_id, month),))
        cur.execute(_MARKS_DDL)
        with cur.copy("COPY dedup_marks FROM STDIN WITH (FORMAT csv)") as copy:
            for batch in batches:
                copy.write(batch)
        cur.execute("ANALYZE dedup_marks")  # the planner would otherwise guess its size
        cur.execute(_MARK_SQL, params)
        marked = cur.rowcount
        cur.execute(_UNMARK_SQL, params)
        unmarked = cur.rowcount
    return MarkCounts(marked=marked, unmarked=unmarked)


# ---------------------------------------------------------------------------------------------
# The pass

SAMPLE_GROUPS_PER_KIND = 2
SAMPLE_MEMBERS_PER_GROUP = 5
_SAMPLE_SQL = """
SELECT id::text AS id, platform, coalesce(title, text_content) AS title, url
FROM content_records
WHERE query_design_id = :design AND published_at >= :start AND published_at < :end AND id = ANY(:ids)
"""


@dataclass
class DedupResult:
    records: int
    groups: int
    #: The groups each rule forms on its own; a group that several rules built counts under each.
    groups_by_kind: dict[str, int]
    records_in_groups: int
    duplicates: int  # records that carry duplicate_of after the pass
    marked: int  # rows written to set or change their marks
    unmarked: int  # rows whose marks were removed
    #: How much near-duplicate checking was done, and left out to stay bounded (templated text).
    near_scan: NearScan
    seconds: dict[str, float] = field(default_factory=dict)
    #: A few groups, one row per shown member: group, role, kind, platform, title, url.
    sample: list[dict[str, str]] = field(default_factory=list)

    @property
    def share_marked(self) -> float:
        return self.duplicates / self.records if self.records else 0.0

    def sample_markdown(self) -> str:
        if not self.sample:
            return "No duplicate groups."
        return markdown.table(
            ["group", "role", "rules", "platform", "title or text", "url"],
            [
                [
                    *(markdown.shorten(m[k], 80) for k in ("group", "role", "kind", "platform", "title")),
                    markdown.shorten(m["url"], 300),
                ]
                for m in self.sample
            ],
        )


def _sample(
    engine: sa.Engine, design_id: uuid.UUID | str, month: str, grouping: Grouping, ids: pl.DataFrame
) -> list[dict[str, str]]:
    members = grouping.members.with_columns(
        size=pl.len().over("group"), role=pl.when(pl.col("row") == pl.col("canonical")).then(0).otherwise(1)
    ).sort(["size", "group", "role", "row"], descending=[True, False, False, False])
    chosen: list[int] = []
    for kind in KINDS:
        having = members.filter(pl.col("kind").str.contains(kind, literal=True))["group"].unique(maintain_order=True)
        chosen += [g for g in having.head(SAMPLE_GROUPS_PER_KIND).to_list() if g not in chosen]
    shown = (
        members.filter(pl.col("group").is_in(chosen))
        .group_by("group", maintain_order=True)
        .head(SAMPLE_MEMBERS_PER_GROUP)
    )
    if shown.height == 0:
        return []
    number = {group: i + 1 for i, group in enumerate(chosen)}
    shown = shown.sort(pl.col("group").replace_strict(number), maintain_order=True)
    shown_ids = _uuid_text(ids, shown["row"].to_list())
    start, end = months.month_bounds(month)
    with engine.connect() as conn:
        details = {
            r.id: r
            for r in conn.execute(
                sa.text(_SAMPLE_SQL), {"design": str(design_id), "start": start, "end": end, "ids": shown_ids}
            )
        }
    return [
        {
            "group": str(number[m["group"]]),
            "role": "canonical" if m["role"] == 0 else "duplicate",
            "kind": m["kind"],
            "platform": details[id_].platform,
            "title": details[id_].title or "",
            "url": details[id_].url or "",
        }
        for m, id_ in zip(shown.iter_rows(named=True), shown_ids, strict=True)
        if id_ in details  # a record deleted since the load (retention, erasure) is not shown
    ]


def run_dedup(engine: sa.Engine, design_id: uuid.UUID | str, month: str) -> DedupResult:
    """The dedup pass over one corpus: load, group, mark (see the module docstring). Memory: the
    corpus is held as a few numbers per record (``load_compact``), marks are written in pieces."""
    started = time.perf_counter()
    corpus = load_compact(engine, design_id, month)
    records, ids = corpus.rows.height, corpus.ids
    loaded = time.perf_counter()
    grouping = group_rows(corpus.rows, corpus.link_keys)
    del corpus
    duplicates = grouping.duplicates()
    grouped = time.perf_counter()
    counts = _write_marks(engine, design_id, month, _compact_marks(duplicates, ids))
    seconds = {"load": loaded - started, "group": grouped - loaded, "mark": time.perf_counter() - grouped}
    return DedupResult(
        records=records,
        groups=grouping.groups,
        groups_by_kind=grouping.groups_by_kind,
        records_in_groups=grouping.members.height,
        duplicates=duplicates.height,
        marked=counts.marked,
        unmarked=counts.unmarked,
        near_scan=grouping.near_scan,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        sample=_sample(engine, design_id, month, grouping, ids),
    )
