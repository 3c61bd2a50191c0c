"""GDELT DOC 2.0 article search (``mode=artlist``), research notes §6.

GDELT has no pagination: one request returns at most 250 articles. The window is therefore cut
into time slices, and a slice that comes back full is halved (down to 15 minutes, GDELT's update
cadence) until every slice is below the cap; a 15-minute slice that is still full is reported as a
``Rejected`` so the loss is never silent.

GDELT answers a query it cannot run with HTTP 200, ``text/html`` and a sentence of plain text.
Such answers raise ``GdeltQueryRejected`` (a ``MalformedResponse`` that is *not* retryable) when
the sentence is about the query, since retrying the same query cannot help; any other non-JSON
answer raises a plain, retryable ``MalformedResponse``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from observatory_pipelines.core.collection import terms
from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    CollectedItem,
    CollectionContext,
    QuerySpec,
    Rejected,
    design_terms,
)
from observatory_pipelines.core.collection.arenas.errors import ArenaError, MalformedResponse
from observatory_pipelines.core.collection.text import html_to_text
from observatory_pipelines.core.platform.http import validate_min_interval

ARENA = "gdelt"
DEFAULT_BASE_URL = "https://api.gdeltproject.org/api/v2/doc/doc"
MAX_RECORDS_LIMIT = 250
MIN_SLICE = timedelta(minutes=15)
# A window is a month; slices longer than a year only invite an overflowing timedelta.
MAX_SLICE_HOURS = 24 * 366
# GDELT only promises about three months of history; older windows may quietly come back empty.
SEARCHABLE_HISTORY = timedelta(days=90)

DEFAULT_OPTIONS: dict[str, Any] = {
    "source_country": "DA",  # FIPS 10-4, not ISO: Denmark is DA
    "source_language": "danish",
    "base_url": DEFAULT_BASE_URL,
    "slice_hours": 24.0,
    "max_records": MAX_RECORDS_LIMIT,
    "min_interval_seconds": 5.0,  # GDELT's 429 text asks for one request every 5 seconds
}

LANGUAGE_CODES = {"danish": "da", "english": "en", "swedish": "sv", "norwegian": "no", "german": "de"}

_SEENDATE_FORMAT = "%Y%m%dT%H%M%SZ"
_QUERY_DATETIME_FORMAT = "%Y%m%d%H%M%S"
# GDELT bodies sometimes carry raw control characters that json.loads rejects; tab/CR/LF are fine.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BARE_WORD = re.compile(r"^\w+$")
_FILTER_VALUE = re.compile(r"^[A-Za-z]+$")
# Wording of GDELT's complaints about a query (as opposed to overload or outage notices).
_QUERY_PROBLEM = re.compile(
    r"invalid|too short|too long|too common|not allowed|unsupported|unknown|illegal|syntax|parenthes|"
    r"phrase|keyword|timespan|must",
    re.IGNORECASE,
)
_MESSAGE_CHARS = 200


class GdeltQueryRejected(MalformedResponse):
    """GDELT refused the query itself (e.g. a keyword too short): fix the terms, do not retry."""

    retryable = False


@dataclass(frozen=True)
class GdeltQuery:
    """One GDELT query text, and the design term it searches for when that is only one term."""

    text: str
    term: str | None


def _gdelt_atom(atom: terms.Atom) -> str:
    # GDELT has no hashtag search; it reads a hashtag as its word, a documented superset.
    words = atom.words if isinstance(atom, terms.Phrase) else (atom.text,)
    joined = " ".join(words)
    return joined if len(words) == 1 and _BARE_WORD.match(joined) else f'"{joined}"'


def build_queries(
    raw_terms: Sequence[str], source_country: str | None, source_language: str | None
) -> list[GdeltQuery]:
    """The GDELT queries that together search for every term, each followed by the source filters.

    GDELT takes quotes, ``(a OR b)`` and ``-word`` but no nested groups, so each term is spelled as
    its all-of clauses (``Term.disjuncts``). Clauses of one word or phrase share one OR-ed query, as
    few requests as possible; any other clause is a query of its own, which also tells which term
    an article was found for.
    """
    shared: dict[str, set[str]] = {}
    own: dict[str, str] = {}
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            if len(clause.required) == 1 and not clause.excluded:
                shared.setdefault(_gdelt_atom(clause.required[0]), set()).add(term.text)
                continue
            words = [_gdelt_atom(atom) for atom in clause.required]
            try:
                words += [f"-{_gdelt_atom(atom)}" for node in clause.excluded for atom in terms.spell_exclusions(node)]
            except ValueError as group:
                raise ArenaError(
                    ARENA, f"GDELT cannot exclude the group {group} of term '{term.text}'; exclude words or phrases"
                ) from None
            own.setdefault(" ".join(words), term.text)
    if not shared and not own:
        raise ArenaError(ARENA, "the design has no search terms and GDELT only searches by terms; add terms")
    filters = [f"sourcecountry:{source_country}"] if source_country else []
    filters += [f"sourcelang:{source_language}"] if source_language else []
    queries = []
    if shared:
        atoms = list(shared)
        owners = set().union(*shared.values())
        text = atoms[0] if len(atoms) == 1 else f"({' OR '.join(atoms)})"
        queries.append(GdeltQuery(" ".join([text, *filters]), owners.pop() if len(owners) == 1 else None))
    queries += [GdeltQuery(" ".join([text, *filters]), term) for text, term in own.items()]
    return queries


def time_slices(start: datetime, end: datetime, hours: float) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive slices of ``hours`` (the last one shorter)."""
    step = timedelta(hours=hours)
    slices = []
    while start < end:
        slices.append((start, min(start + step, end)))
        start += step
    return slices


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _seen_at(seendate: str | None) -> datetime | None:
    if seendate is None:
        return None
    try:
        return datetime.strptime(seendate, _SEENDATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def article_item(article: Any, source: str = "") -> CollectedItem | Rejected:
    """One artlist article as a ``CollectedItem``, or ``Rejected`` if it has no usable URL."""
    if not isinstance(article, Mapping):
        return Rejected("GDELT article is not a JSON object; skipped", source)
    url = _text(article.get("url"))
    if url is None:
        return Rejected("GDELT article has no url; skipped", source)
    seendate = _text(article.get("seendate"))
    domain = _text(article.get("domain")) or _host(url)
    language = _text(article.get("language"))
    image = _text(article.get("socialimage"))
    return CollectedItem(
        platform="gdelt",
        platform_id=hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest(),
        published_at=_seen_at(seendate),
        content_type="article",
        url=url,
        title=_text(article.get("title")),
        language=LANGUAGE_CODES.get(language.lower()) if language else None,
        author_platform_id=domain,
        author_display_name=domain,
        media_urls=[image] if image else [],
        raw_metadata={
            "domain": domain,
            "sourcecountry": _text(article.get("sourcecountry")),
            "language": language,
            "url_mobile": _text(article.get("url_mobile")),
            "seendate": seendate,
        },
    )


def parse_artlist(body: bytes, content_type: str, source: str = "") -> list[CollectedItem | Rejected]:
    """Every article of one artlist answer, in order (``Rejected`` for unusable ones).

    Pure over its inputs. An empty body or ``{}`` means no matches. Raises only
    ``GdeltQueryRejected`` or ``MalformedResponse``.
    """
    text = _CONTROL_CHARS.sub("", body.decode("utf-8", "replace")).strip()
    if not text:
        return []
    if not text.startswith(("{", "[")) and "json" not in content_type.lower():
        message = html_to_text(text)[:_MESSAGE_CHARS] or "(no text)"
        if _QUERY_PROBLEM.search(message):
            raise GdeltQueryRejected(
                ARENA, f"GDELT rejected the query: {message}; fix the design's terms or gdelt options"
            )
        raise MalformedResponse(ARENA, f"GDELT answered with text instead of JSON: {message}; retry later")
    try:
        # strict=False: raw tabs and newlines inside strings are GDELT's, not corruption.
        document = json.loads(text, strict=False)
    except (ValueError, RecursionError):
        raise MalformedResponse(ARENA, "GDELT answered with invalid JSON; it may be overloaded, retry later") from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise MalformedResponse(ARENA, f"GDELT answered with a JSON {kind}, not an object; retry later")
    articles = document.get("articles")
    if articles is None:
        return []
    if not isinstance(articles, list):
        raise MalformedResponse(ARENA, "GDELT's 'articles' is not a list; the API may have changed")
    return [article_item(article, source) for article in articles]


def _filter_option(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _FILTER_VALUE.match(value):
        raise ValueError(f"option '{key}' must be one word of letters, or empty to drop the filter, not {value!r}")
    return value


def _is_plain_number(value: Any, kinds: type | tuple[type, ...]) -> bool:
    # bool is an int subclass, but "slice_hours: true" in a design is a mistake, not 1.
    return isinstance(value, kinds) and not isinstance(value, bool)


def _slice_label(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%dT%H:%M:%S}Z/{end:%Y-%m-%dT%H:%M:%S}Z"


@register
class GdeltArena(Arena):
    name = "gdelt"
    platform = "gdelt"
    description = "News articles from the GDELT DOC 2.0 API (Danish sources by default) that match the design's terms."
    # GDELT is free at every tier, whatever the tier table says about other arenas.
    free = True
    keep_unmatched = True
    expected_items_per_month = 5_000

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        base_url = options.get("base_url", DEFAULT_BASE_URL)
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"option 'base_url' must be an http(s) URL, not {base_url!r}")
        slice_hours = options.get("slice_hours", DEFAULT_OPTIONS["slice_hours"])
        minimum_hours = MIN_SLICE.total_seconds() / 3600
        if not _is_plain_number(slice_hours, (int, float)) or not minimum_hours <= slice_hours <= MAX_SLICE_HOURS:
            raise ValueError(
                f"option 'slice_hours' must be a number of hours from {minimum_hours} to {MAX_SLICE_HOURS}, "
                f"not {slice_hours!r}"
            )
        max_records = options.get("max_records", MAX_RECORDS_LIMIT)
        if not _is_plain_number(max_records, int) or not 1 <= max_records <= MAX_RECORDS_LIMIT:
            raise ValueError(
                f"option 'max_records' must be a whole number from 1 to {MAX_RECORDS_LIMIT}, not {max_records!r}"
            )
        return {
            "source_country": _filter_option(options, "source_country"),
            "source_language": _filter_option(options, "source_language"),
            "base_url": base_url,
            "slice_hours": float(slice_hours),
            "max_records": max_records,
            "min_interval_seconds": validate_min_interval(
                options.get("min_interval_seconds", DEFAULT_OPTIONS["min_interval_seconds"])
            ),
        }

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        queries = build_queries(spec.terms, options["source_country"], options["source_language"])
        now = ctx.now() if ctx.now else datetime.now(timezone.utc)
        if spec.window_end < now - SEARCHABLE_HISTORY:
            ctx.log(f"{self.name}: the window ends over 90 days ago; GDELT may return little or nothing that old")
        seen: set[str] = set()
        for start, end in time_slices(spec.window_start, spec.window_end, options["slice_hours"]):
            # One slice's articles from every query, so an article found by several queries is one
            # item that names every term it was found for.
            found: dict[str, CollectedItem] = {}
            try:
                for query in queries:
                    ctx.searched(query.text)
                    for result in self._search(ctx, query.text, start, end, options):
                        if not isinstance(result, CollectedItem):
                            yield result
                            continue
                        outside = result.published_at is not None and not (
                            spec.window_start <= result.published_at < spec.window_end
                        )
                        if outside or result.platform_id in seen:
                            continue
                        # An article several queries found counts towards the first one's yield.
                        result.source = query.text
                        kept = found.setdefault(result.platform_id, result)
                        if query.term is not None and query.term not in kept.matched_terms:
                            kept.matched_terms = (*kept.matched_terms, query.term)
            except Exception:
                yield from found.values()  # what the earlier queries found is kept when a later one fails
                raise
            seen.update(found)
            yield from found.values()

    def _search(
        self, ctx: CollectionContext, query: str, start: datetime, end: datetime, options: Mapping[str, Any]
    ) -> Iterator[CollectedItem | Rejected]:
        """Every article GDELT has for ``query`` in ``[start, end)``: a slice that comes back full is halved."""
        max_records = options["max_records"]
        # A stack, filled in reverse, so the halves of split slices run oldest first.
        pending = [(start, end)]
        while pending:
            start, end = pending.pop()
            results = self._fetch_slice(ctx, query, start, end, options)
            if len(results) >= max_records:
                if end - start >= 2 * MIN_SLICE:
                    middle = start + timedelta(seconds=(end - start).total_seconds() // 2)
                    pending += [(middle, end), (start, middle)]
                    continue
                minutes = round((end - start).total_seconds() / 60)
                ctx.log(f"{self.name}: the {minutes}-minute slice {_slice_label(start, end)} is full, cannot split")
                yield Rejected(
                    f"GDELT returned its {max_records}-record cap even for a {minutes}-minute slice, so some "
                    "articles are missing; narrow the design's terms",
                    _slice_label(start, end),
                )
            yield from results

    def _fetch_slice(
        self, ctx: CollectionContext, query: str, start: datetime, end: datetime, options: Mapping[str, Any]
    ) -> list[CollectedItem | Rejected]:
        params = {
            "query": query,
            "mode": "artlist",
            "format": "json",
            "maxrecords": options["max_records"],
            "sort": "DateDesc",
            "startdatetime": start.astimezone(timezone.utc).strftime(_QUERY_DATETIME_FORMAT),
            "enddatetime": end.astimezone(timezone.utc).strftime(_QUERY_DATETIME_FORMAT),
        }
        response = ctx.http.get(
            options["base_url"], params=params, arena=self.name, min_interval_seconds=options["min_interval_seconds"]
        )
        return parse_artlist(response.content, response.headers.get("content-type", ""), _slice_label(start, end))
