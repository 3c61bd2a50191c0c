"""Text fingerprints and term matching, the same for every arena.

- ``normalise_for_hash`` folds case, whitespace and URLs, so the same text posted on two arenas
  (one with a tracking link, one without) hashes the same.
- ``content_hash`` is SHA-256 over that normal form: exact duplicates across arenas.
- ``simhash`` is a 64-bit Charikar SimHash over the words of the same normal form: near-duplicates
  differ in few bits. Words alone, not word n-grams: on post-sized texts every extra n-gram a small
  edit touches pushes the distance past the 3-bit threshold (measured on a 49-word news lead: one
  replaced word moves 3.8 bits on average with words, 4.4 with words and bigrams, 5.5 with
  trigrams added). It is stored as a signed bigint (PostgreSQL has no unsigned).
- Which terms a text matches is ``core.collection.terms``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from html.parser import HTMLParser

import numpy as np

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise_for_hash(text: str | None) -> str:
    if not text:
        return ""
    # The checks spare the work on text that needs none (most of it), with the same result.
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    folded = text.casefold()
    if "http" in folded or "www." in folded:
        folded = _URL.sub(" ", folded)
    return _SPACE.sub(" ", folded).strip()


def content_hash(text: str | None) -> str | None:
    """SHA-256 hex of the normalised text; None when nothing is left to hash."""
    return fingerprints(text)[0]


#: Words repeat (Zipf): each frequent one is hashed once, whatever the corpus size. A plain dict,
#: emptied when full, so memory stays bounded; an LRU cache's bookkeeping cost more than the hash.
_WORD_HASHES: dict[str, bytes] = {}
_WORD_HASHES_KEPT = 1 << 17


def _word_hash(word: str) -> bytes:
    if len(_WORD_HASHES) >= _WORD_HASHES_KEPT:
        _WORD_HASHES.clear()
    digest = _WORD_HASHES[word] = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return digest


def _feature_hashes(tokens: list[str]) -> np.ndarray:
    known = _WORD_HASHES.get
    return np.frombuffer(b"".join([known(token) or _word_hash(token) for token in tokens]), dtype="<u8")


def _simhash_of(tokens: list[str]) -> int | None:
    if not tokens:
        return None
    hashes = _feature_hashes(tokens).view(np.uint8).reshape(-1, 8)
    # One row of 64 bits per feature (little-endian, bit i of the hash in column i); a bit is set
    # in the result when most features set it. Packed and read back as int64: signed, as stored.
    ones = np.add.reduce(np.unpackbits(hashes, axis=1, bitorder="little"), axis=0, dtype=np.int32)
    return int(np.packbits(ones * 2 > len(tokens), bitorder="little").view("<i8")[0])


def simhash(text: str | None) -> int | None:
    """64-bit SimHash as a signed int64; None for texts with no words."""
    return fingerprints(text)[1]


def fingerprints(text: str | None) -> tuple[str | None, int | None]:
    """``(content_hash, simhash)`` of one text, normalising it once."""
    normal = normalise_for_hash(text)
    if not normal:
        return None, None
    return hashlib.sha256(normal.encode("utf-8")).hexdigest(), _simhash_of(_WORD.findall(normal))


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


_BLOCK_TAGS = frozenset(
    "address article aside blockquote dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 header hr "
    "li main nav ol p pre section table td th tr ul".split()
)
_INVISIBLE_TAGS = frozenset({"script", "style", "template"})
_LINE_BREAK = "\x01"  # <br>: a new line inside a block, where other blocks get a blank line


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._invisible_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_TAGS:
            self._invisible_depth += 1
        elif tag == "br":
            self.parts.append(_LINE_BREAK)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_TAGS:
            self._invisible_depth = max(0, self._invisible_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._invisible_depth:
            self.parts.append(data)


def html_to_text(markup: str, keep_paragraphs: bool = False) -> str:
    """Visible text of an HTML fragment: tags dropped, entities decoded, scripts and styles skipped.

    Block boundaries become breaks, so "<p>slut</p><p>Ny</p>" never reads "slutNy". On one line
    by default; ``keep_paragraphs`` keeps one blank line between blocks (for post bodies).
    """
    parser = _VisibleText()
    parser.feed(markup)
    parser.close()
    blocks = []
    for block in "".join(parser.parts).split("\n"):
        lines = [" ".join(line.split()) for line in block.split(_LINE_BREAK)]
        lines = [line for line in lines if line]
        if lines:
            blocks.append(("\n" if keep_paragraphs else " ").join(lines))
    return ("\n\n" if keep_paragraphs else " ").join(blocks)
