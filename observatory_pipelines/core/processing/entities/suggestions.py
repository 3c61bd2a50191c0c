"""Match suggestions: which authors are probably the same person or organisation, found and stored
for a curator to accept or reject (``suggest_matches``), and the name and handle keys they rest on.

Suggestions are made per month and across every query design, because actors are global. The authors active in the month are the author accounts (``platform`` +
``author_platform_id``) of that month's content; an account that a platform presence claims is
its actor. Each author is compared with the others and with the actor registry (actors, their
aliases and platform presences). A *side* of a suggestion is an actor, or an account no actor
claims yet. Three kinds of evidence:

- ``exact_name``: equal names after ``normalise_name`` (NFKC, casefold, anything but letters and
  digits, emoji included, made a space). Danish letters are kept: Kjær and Kjaer are two spellings,
  not one, so transliterations are left to ``fuzzy_name``, which scores them below an exact match.
  Score 1.
- ``shared_username``: equal handles on two platforms (casefolded, without a leading ``@``), score
  1; or equal once a trailing country code after a separator (``_dk``, ``.se``, ``-no``, ... see
  ``COUNTRY_SUFFIXES``) and then every ``_``, ``.`` and ``-`` are removed (``sofie_kjaer_dk`` and
  ``sofiekjaer``), score 0.9, for keys of at least ``MIN_LOOSE_HANDLE`` characters. Numeric ids and
  URIs are not handles and are never compared.
- ``fuzzy_name``: rapidfuzz ``token_sort_ratio`` of the names as normalised and of the names
  folded (``fold_name``: æ→ae, ø→oe, å→aa, accents dropped); the score is the mean of the two, so
  "Sofie Kjær"/"Sofie Kjaer" scores 0.93, and pairs reach ``FUZZY_THRESHOLD``. Names shorter than
  ``MIN_FUZZY_LETTERS`` letters are too short for a ratio to mean anything.

Rules for every pair: at least one side is active this month; the two sides differ (an account
is never suggested against its own actor); two platform accounts on the *same* platform are not
paired (one platform account per person is the norm, so same-platform lookalikes are namesakes);
a name or username shared by more than ``MAX_SHARED_NAME`` sides is too common to suggest anything.

Scale: nothing is compared all-pairs. Exact names and handles are grouped by key in dicts. Fuzzy
names are compared within blocks (names sharing a word's first three folded letters), each active
name against the block's names, this month's and the registry's, aliases included, with rapidfuzz's
vectorised ``cdist``; 100,000 authors and 10,000 actors take about 25 s on two cores. pg_trgm was
measured for the registry side and left out: its GIN index (``idx_actors_name_trgm``) reads the
posting list of every trigram of a name, and trigrams such as "sen" occur in most Danish names, so a
lookup cost 10 ms against 10,000 actors (PostgreSQL 15), over 15 minutes for that month.

Authors of outlet platforms (``OUTLET_PLATFORMS``) take no part: their author id is the outlet's
domain and their display name a byline, so neither names the account's owner.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import sqlalchemy as sa
from rapidfuzz import fuzz, process

from observatory_pipelines.core.platform import markdown, months
from observatory_pipelines.core.processing.entities.curation import ALIAS_FROM_SPLIT

OUTLET_PLATFORMS = ("rss", "gdelt")
#: Country codes that accounts append to a shared name ("sofie_kjaer_dk").
COUNTRY_SUFFIXES = ("dk", "se", "no", "fi", "is", "fo", "gl", "de", "nl", "uk", "eu")
MIN_LOOSE_HANDLE = 4
FUZZY_THRESHOLD = 0.85
MIN_FUZZY_LETTERS = 6
MAX_SHARED_NAME = 20
#: Letters of a word that name its fuzzy block.
BLOCK_PREFIX = 3
#: Queries per rapidfuzz cdist call: bounds the score matrix of a large block (a common surname).
CDIST_ROWS = 1_024
EXACT_SCORE = 1.0
LOOSE_HANDLE_SCORE = 0.9
#: Suggestions upserted per statement: the statement's parameters are built in memory, and a month
#: can hold hundreds of thousands of suggestions.
STORE_BATCH = 5_000
#: The stored suggestions a run returns (``SuggestionResult.rows``), best first: the asset shows
#: the first 25, and the table holds them all.
ROWS_KEPT = 1_000

_HANDLE = re.compile(r"^[\w.\-]+$")
_SEPARATORS = re.compile(r"[._\-]")
_COUNTRY_SUFFIX = re.compile(r"[._\-](?:" + "|".join(COUNTRY_SUFFIXES) + r")$")
_TRANSLITERATION = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"})


#: The rules as users read them (the asset's description and docs/analysis.md are made from this).
RULES = f"""The authors are the accounts (platform + author id) that posted in the month; an account a platform
presence claims counts as its actor. Each is compared with the others and with the actor registry
(actors, aliases, platform presences):
- exact_name (score 1): equal names up to case, spacing, punctuation and emoji; æ/ø/å are kept,
  so "Kjær" and "Kjaer" are left to fuzzy_name;
- shared_username: the same handle on two platforms (score 1), or the same once a trailing country
  code such as _dk and every '_', '.', '-' are removed (score 0.9);
- fuzzy_name: rapidfuzz token_sort_ratio, the mean of the ratio as written and with æ→ae, ø→oe, å→aa
  and accents dropped, at least {FUZZY_THRESHOLD}, among names sharing a word's first three
  letters (blocking, never all pairs).
Never paired: an account with its own actor, two accounts on the same platform, or a name or username
shared by more than {MAX_SHARED_NAME} authors (counted in too_common). RSS and GDELT authors
(outlet domains and bylines) take no part."""


def normalise_name(name: str) -> str:
    """Case, width, spacing, punctuation and emoji removed; letters (æ, ø, å, é) kept as they are."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def fold_name(name: str) -> str:
    """``normalise_name``, then Danish letters transliterated and accents dropped: "kjær" → "kjaer"."""
    decomposed = unicodedata.normalize("NFKD", normalise_name(name).translate(_TRANSLITERATION))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def handle_keys(handle: str) -> tuple[str, str] | None:
    """(strict, loose) keys of a username, or None when it is an id or a URI, not a handle."""
    strict = unicodedata.normalize("NFKC", handle).casefold().strip().lstrip("@")
    if not strict or not _HANDLE.match(strict) or strict.isdigit():
        return None
    return strict, _SEPARATORS.sub("", _COUNTRY_SUFFIX.sub("", strict))


@dataclass(frozen=True)
class Side:
    """One side of a suggestion: an actor, or an author account that no actor claims."""

    actor_id: uuid.UUID | None
    platform: str | None
    account: str | None
    name: str

    @cached_property
    def key(self) -> tuple[str, ...]:
        if self.actor_id is not None:
            return ("actor", str(self.actor_id))
        return ("account", self.platform or "", (self.account or "").lower())

    def label(self) -> str:
        if self.actor_id is not None:
            return f"actor {self.name}"
        return f"{self.platform} @{self.account} ({self.name})"


@dataclass(frozen=True)
class _Evidence:
    """A name or handle, where it was seen, and the side it belongs to."""

    side: Side
    value: str
    platform: str | None  # the platform account it was seen on; None for registry names
    account: str | None
    active: bool

    # Computed once per name: a month compares each name many times.
    @cached_property
    def written(self) -> str:
        return normalise_name(self.value)

    @cached_property
    def folded(self) -> str:
        return fold_name(self.value)

    @cached_property
    def prefixes(self) -> set[str]:
        """The first three folded letters of each word; none when the name is too short for a
        ratio to mean anything."""
        if sum(ch.isalnum() for ch in self.folded) < MIN_FUZZY_LETTERS:
            return set()
        return {word[:BLOCK_PREFIX] for word in self.folded.split() if len(word) >= BLOCK_PREFIX}

    def where(self) -> str:
        return f"{self.platform} @{self.account}" if self.platform else f"actor {self.side.name}"

    def describe(self) -> str:
        return f"'{self.value}' ({self.where()})"


def _pairable(a: _Evidence, b: _Evidence) -> bool:
    if a.side.key == b.side.key or not (a.active or b.active):
        return False
    return not (a.platform and a.platform == b.platform)


@dataclass(frozen=True)
class Suggestion:
    kind: str
    left: Side
    right: Side
    score: float
    reason: str
    status: str = "open"

    @property
    def pair_key(self) -> str:
        return json.dumps([list(self.left.key), list(self.right.key)], ensure_ascii=False, separators=(",", ":"))


def _suggestion(kind: str, a: Side, b: Side, score: float, reason: str) -> Suggestion:
    left, right = sorted((a, b), key=lambda side: side.key)
    return Suggestion(kind, left, right, round(score, 4), reason)


@dataclass
class SuggestionResult:
    month: str
    authors: int
    counts: dict[str, int]
    inserted: int
    updated: int
    removed: int
    #: Names and usernames shared by more than MAX_SHARED_NAME sides, so not suggested.
    too_common: int
    #: The best ``ROWS_KEPT`` suggestions stored for the month (this run's, and earlier decisions).
    rows: list[Suggestion] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class _Registry:
    names: dict[uuid.UUID, str]
    aliases: list[tuple[uuid.UUID, str]]
    presences: list[tuple[uuid.UUID, str, str | None, str | None]]  # actor, platform, user id, username
    by_account: dict[tuple[str, str], uuid.UUID]


def _load_registry(conn: sa.Connection) -> _Registry:
    names: dict[uuid.UUID, str] = dict(conn.execute(sa.text("SELECT id, canonical_name FROM actors")).all())
    aliases = conn.execute(
        sa.text("SELECT actor_id, alias FROM actor_aliases WHERE source IS DISTINCT FROM :split"),
        {"split": ALIAS_FROM_SPLIT},
    ).all()
    presences = conn.execute(
        sa.text("SELECT actor_id, platform, platform_user_id, platform_username FROM actor_platform_presences")
    ).all()
    # The same account → actor lookup that collection uses (core.collection._author_directory).
    by_account = {
        (platform, account.lower()): actor_id
        for actor_id, platform, user_id, username in presences
        for account in (user_id, username)
        if account
    }
    return _Registry(names, [tuple(a) for a in aliases], [tuple(p) for p in presences], by_account)


@dataclass(frozen=True)
class _Author:
    platform: str
    account: str
    display_name: str | None
    actor_id: uuid.UUID | None


def _active_authors(conn: sa.Connection, month: str, registry: _Registry) -> list[_Author]:
    start, end = months.month_bounds(month)
    rows = conn.execute(
        sa.text(
            """
            SELECT platform, min(author_platform_id) AS account,
                   mode() WITHIN GROUP (ORDER BY author_display_name) AS display_name,
                   mode() WITHIN GROUP (ORDER BY author_id) AS actor_id
            FROM content_records
            WHERE published_at >= :start AND published_at < :end
              AND author_platform_id IS NOT NULL
              AND platform <> ALL(CAST(:outlets AS text[]))
            GROUP BY platform, lower(author_platform_id)
            """
        ),
        {"start": start, "end": end, "outlets": list(OUTLET_PLATFORMS)},
    ).all()
    # A presence added after the content was collected still claims the account.
    return [
        _Author(platform, account, display_name, actor_id or registry.by_account.get((platform, account.lower())))
        for platform, account, display_name, actor_id in rows
    ]


class _Collector:
    """The best suggestion per (kind, pair): one pair can be seen through several names."""

    def __init__(self) -> None:
        self.best: dict[tuple[str, str], Suggestion] = {}

    def add(self, suggestion: Suggestion) -> None:
        key = (suggestion.kind, suggestion.pair_key)
        current = self.best.get(key)
        if current is None or suggestion.score > current.score:
            self.best[key] = suggestion


def _exact_names(named: list[_Evidence], found: _Collector) -> int:
    groups: dict[str, list[_Evidence]] = defaultdict(list)
    for evidence in named:
        if evidence.written:
            groups[evidence.written].append(evidence)
    skipped = 0
    for group in groups.values():
        sides = {e.side.key for e in group}
        if len(sides) < 2 or not any(e.active for e in group):
            continue
        if len(sides) > MAX_SHARED_NAME:
            skipped += 1
            continue
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if _pairable(a, b):
                    found.add(
                        _suggestion(
                            "exact_name",
                            a.side,
                            b.side,
                            EXACT_SCORE,
                            f"same name '{a.value}': {a.where()} and {b.where()}",
                        )
                    )
    return skipped


def _shared_usernames(handles: list[_Evidence], found: _Collector) -> int:
    groups: dict[str, list[tuple[str, _Evidence]]] = defaultdict(list)
    for evidence in handles:
        keys = handle_keys(evidence.value)
        if keys:
            groups[keys[1]].append((keys[0], evidence))
    skipped = 0
    for loose, group in groups.items():
        sides = {e.side.key for _, e in group}
        if len(sides) < 2 or not any(e.active for _, e in group):
            continue
        if len(sides) > MAX_SHARED_NAME:
            skipped += 1  # "news", "info": a generic handle
            continue
        for i, (strict_a, a) in enumerate(group):
            for strict_b, b in group[i + 1 :]:
                if not _pairable(a, b):
                    continue
                if strict_a == strict_b:
                    found.add(
                        _suggestion(
                            "shared_username",
                            a.side,
                            b.side,
                            EXACT_SCORE,
                            f"same username '{a.value}' on {a.platform} and {b.platform}",
                        )
                    )
                elif len(loose) >= MIN_LOOSE_HANDLE:
                    found.add(
                        _suggestion(
                            "shared_username",
                            a.side,
                            b.side,
                            LOOSE_HANDLE_SCORE,
                            f"usernames '{a.value}' on {a.platform} and '{b.value}' on {b.platform} are equal "
                            "without '_', '.', '-' and a country suffix",
                        )
                    )
    return skipped


def _fuzzy_pair(a: _Evidence, b: _Evidence, found: _Collector) -> None:
    # Equal as written is exact_name's call (which may have found the name too common).
    if a.written == b.written or not _pairable(a, b):
        return
    written = fuzz.token_sort_ratio(a.written, b.written)
    score = (written + fuzz.token_sort_ratio(a.folded, b.folded)) / 200
    if score >= FUZZY_THRESHOLD:
        found.add(
            _suggestion(
                "fuzzy_name", a.side, b.side, score, f"similar names ({score:.0%}): {a.describe()} and {b.describe()}"
            )
        )


def _fuzzy_blocks(named: list[_Evidence]) -> Iterator[tuple[list[_Evidence], list[_Evidence]]]:
    """(active names, names to compare them with) per block: the names that share a word's first
    three folded letters. One shared word is enough, so "Anne Christensen" meets "Anne Kristensen"."""
    blocks: dict[str, list[_Evidence]] = defaultdict(list)
    for evidence in named:
        for prefix in evidence.prefixes:
            blocks[prefix].append(evidence)
    for members in blocks.values():
        yield [e for e in members if e.active], members


def _fuzzy_names(named: list[_Evidence], found: _Collector) -> None:
    """Each active name against the names (active or registry) it shares a block with."""
    # Both ratios as whole numbers: a pair is scored exactly (in _fuzzy_pair) when their sum comes
    # within rounding of the threshold, and the folded ratio alone must reach what that sum needs.
    least_sum = math.floor(200 * FUZZY_THRESHOLD) - 1
    least_folded = max(0, least_sum - 100)
    compared: set[tuple[int, int]] = set()
    for queries, choices in _fuzzy_blocks(named):
        if not queries or len(choices) < 2:
            continue
        choice_folded = [c.folded for c in choices]
        choice_written = [c.written for c in choices]
        for start in range(0, len(queries), CDIST_ROWS):
            rows = queries[start : start + CDIST_ROWS]
            folded = process.cdist(
                [q.folded for q in rows],
                choice_folded,
                scorer=fuzz.token_sort_ratio,
                score_cutoff=least_folded,
                dtype=np.uint8,
                workers=-1,
            )
            written = process.cdist(
                [q.written for q in rows], choice_written, scorer=fuzz.token_sort_ratio, dtype=np.uint8, workers=-1
            )
            close = (folded > 0) & (folded.astype(np.uint16) + written >= least_sum)
            for i, j in zip(*close.nonzero()):
                a, b = rows[i], choices[j]
                pair = (id(a), id(b)) if id(a) < id(b) else (id(b), id(a))
                if a is not b and pair not in compared:
                    compared.add(pair)
                    _fuzzy_pair(a, b, found)


def _actor_side(actor_id: uuid.UUID, registry: _Registry) -> Side:
    return Side(actor_id, None, None, registry.names[actor_id])


def _evidence(authors: list[_Author], registry: _Registry) -> tuple[list[_Evidence], list[_Evidence]]:
    """Names and handles of this month's authors and of the registry, each with its side."""
    active_actors = {a.actor_id for a in authors if a.actor_id is not None}
    names: list[_Evidence] = []
    handles: list[_Evidence] = []
    for author in authors:
        if author.actor_id is not None:
            side = _actor_side(author.actor_id, registry)
        else:
            side = Side(None, author.platform, author.account, author.display_name or author.account)
        if author.display_name:
            names.append(_Evidence(side, author.display_name, author.platform, author.account, True))
        handles.append(_Evidence(side, author.account, author.platform, author.account, True))
    registry_names = [(actor_id, name) for actor_id, name in registry.names.items()] + registry.aliases
    for actor_id, name in registry_names:
        names.append(_Evidence(_actor_side(actor_id, registry), name, None, None, actor_id in active_actors))
    for actor_id, platform, user_id, username in registry.presences:
        side = _actor_side(actor_id, registry)
        for handle in {h for h in (username, user_id) if h}:
            handles.append(_Evidence(side, handle, platform, handle, actor_id in active_actors))
    return names, handles


_UPSERT = sa.text(
    """
    INSERT INTO actor_match_suggestions AS s
        (month, kind, pair_key, left_actor_id, left_platform, left_account, left_name,
         right_actor_id, right_platform, right_account, right_name, score, reason)
    SELECT :month, * FROM unnest(
        CAST(:kind AS text[]), CAST(:pair_key AS text[]),
        CAST(:left_actor_id AS uuid[]), CAST(:left_platform AS text[]), CAST(:left_account AS text[]),
        CAST(:left_name AS text[]),
        CAST(:right_actor_id AS uuid[]), CAST(:right_platform AS text[]), CAST(:right_account AS text[]),
        CAST(:right_name AS text[]),
        CAST(:score AS double precision[]), CAST(:reason AS text[]))
    ON CONFLICT ON CONSTRAINT uq_actor_match_suggestions_month_kind_pair_key DO UPDATE SET
        left_name = EXCLUDED.left_name, right_name = EXCLUDED.right_name,
        score = EXCLUDED.score, reason = EXCLUDED.reason, updated_at = now()
    WHERE (s.left_name, s.right_name, s.score, s.reason)
        IS DISTINCT FROM (EXCLUDED.left_name, EXCLUDED.right_name, EXCLUDED.score, EXCLUDED.reason)
    RETURNING (s.xmax = 0) AS inserted
    """
)

# A suggestion no longer found is dropped while open; a curator's decision is kept.
_REMOVE_STALE = sa.text(
    """
    DELETE FROM actor_match_suggestions s
    WHERE s.month = :month AND s.status = 'open'
      AND NOT EXISTS (
          SELECT 1 FROM unnest(CAST(:kind AS text[]), CAST(:pair_key AS text[])) AS f(kind, pair_key)
          WHERE f.kind = s.kind AND f.pair_key = s.pair_key)
    """
)

_MONTH_ROWS = sa.text(
    """
    SELECT kind, left_actor_id, left_platform, left_account, left_name,
           right_actor_id, right_platform, right_account, right_name, score, reason, status
    FROM actor_match_suggestions WHERE month = :month
    ORDER BY score DESC, kind, pair_key
    LIMIT :limit
    """
)


def _store(conn: sa.Connection, month: str, suggestions: list[Suggestion]) -> tuple[int, int, int]:
    pair_keys = [s.pair_key for s in suggestions]
    inserted = updated = 0
    for start in range(0, len(suggestions), STORE_BATCH):
        columns: dict[str, list] = defaultdict(list)
        for s, pair_key in zip(suggestions[start : start + STORE_BATCH], pair_keys[start : start + STORE_BATCH]):
            columns["kind"].append(s.kind)
            columns["pair_key"].append(pair_key)
            for prefix, side in (("left", s.left), ("right", s.right)):
                columns[f"{prefix}_actor_id"].append(side.actor_id)
                columns[f"{prefix}_platform"].append(side.platform)
                columns[f"{prefix}_account"].append(side.account)
                columns[f"{prefix}_name"].append(side.name)
            columns["score"].append(s.score)
            columns["reason"].append(s.reason)
        for (was_inserted,) in conn.execute(_UPSERT, {"month": month, **columns}):
            inserted += was_inserted
            updated += not was_inserted
    removed = conn.execute(
        _REMOVE_STALE, {"month": month, "kind": [s.kind for s in suggestions], "pair_key": pair_keys}
    ).rowcount
    return inserted, updated, removed


def suggest_matches(engine: sa.Engine, month: str) -> SuggestionResult:
    """Find and store the month's candidate matches; see the module docstring for the rules."""
    months.parse_month(month)
    with engine.begin() as conn:
        registry = _load_registry(conn)
        authors = _active_authors(conn, month, registry)
        names, handles = _evidence(authors, registry)
        found = _Collector()
        too_common = _exact_names(names, found) + _shared_usernames(handles, found)
        _fuzzy_names(names, found)
        suggestions = sorted(found.best.values(), key=lambda s: (s.kind, s.pair_key))
        inserted, updated, removed = _store(conn, month, suggestions)
        rows = [
            Suggestion(kind, Side(la, lp, lacc, ln), Side(ra, rp, racc, rn), score, reason, status)
            for kind, la, lp, lacc, ln, ra, rp, racc, rn, score, reason, status in conn.execute(
                _MONTH_ROWS, {"month": month, "limit": ROWS_KEPT}
            )
        ]
    counts = {kind: 0 for kind in ("exact_name", "shared_username", "fuzzy_name")}
    for s in suggestions:
        counts[s.kind] += 1
    return SuggestionResult(month, len(authors), counts, inserted, updated, removed, too_common, rows)


def suggestions_markdown(rows: Sequence[Suggestion], limit: int = 25) -> str:
    """The best ``limit`` suggestions as a markdown table, for the Dagster UI."""
    return markdown.table(
        ["kind", "score", "left", "right", "reason", "status"],
        [(s.kind, s.score, s.left.label(), s.right.label(), s.reason, s.status) for s in rows],
        limit=limit,
        rest="in actor_match_suggestions.",
    )
