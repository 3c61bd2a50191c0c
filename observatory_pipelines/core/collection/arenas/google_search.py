"""Google organic results through Serper.dev (tier medium) or SerpAPI (tier premium), research notes §5.

Queries
    One query per all-of alternative of each design term (``Term.disjuncts``): required words as
    they are, phrases quoted, hashtags read as the word, exclusions spelled ``-word`` /
    ``-"phrase"`` (an excluded all-of group cannot be spelled and is refused in one line). The
    same query from two terms is sent once and names both terms. Google has no actor search: the
    design's actor lists are not searched (the arena logs it once).

The month
    ``tbs=cdr:1,cd_min:M/D/YYYY,cd_max:M/D/YYYY`` (the window's first and last day). Locale from
    the options: ``gl`` (dk), ``hl`` (da) and, for SerpAPI, ``google_domain`` (google.dk).

Paging and checkpoints
    Pages 1..``max_pages`` of ``num`` results (Serper ``page``, SerpAPI ``start`` = (page-1)·num);
    a page with fewer than ``num`` organic results (or, on SerpAPI, no ``serpapi_pagination.next``)
    ends the query. After each page the arena yields ``Checkpoint(source, {"page": next page},
    finished)``. Neither API can skip results already stored, so: a run again on the **same UTC
    day** resumes each query at its checkpoint (no page is fetched or paid twice, a finished query
    is not searched at all); a run on a **later day** searches every query again from page 1, on
    purpose: Google's ranking moves, and each sighting is added to the result's rank history.

Records
    ``platform`` ``google_search``; ``platform_id`` the SHA-256 of the normalised link
    (``normalise_url``: scheme and host lower-cased, default port, fragment and trailing slash
    dropped), so a result seen on another day or by another query is the same record;
    ``url`` the link, ``title``, ``text_content`` the snippet. ``published_at`` is Google's
    ``date`` when it is an absolute date ("4. mar. 2025", "Mar 4, 2025", "2025-03-04"), at 00:00
    UTC of that day; a relative date ("for 3 dage siden") or none at all gives the window's start
    (the month is all Google's date filter tells), marked ``published_at_source: window_start``.
    ``raw_metadata``: ``position`` (the provider's), ``rank`` (ours: (page-1)·num + place on the
    page), ``page``, ``query``, ``date`` (as shown), ``displayed_link``, ``domain``, ``provider``
    and ``rank_history``: ``[{"day", "rank", "query"}]``, one entry per day and query the link
    was seen; ingest keeps the entries of every collection (``ingest.ACCUMULATED``).

Cost (``prices.price("google_search", tier)``, credits per request)
    ``estimate = queries × max_pages × price.of(num)``, the most one run can spend; each answered
    page is charged ``price.of(results)`` (per request, so the same for any number of results).
    Refused requests (4xx, 5xx) are not charged. SerpAPI does not bill a search it serves from
    its cache, but its answer does not say so (serpapi/public-roadmap#2674 [S]: "compare
    ``processed_at`` to now"), so every answered SerpAPI request is charged [U]; a "no results"
    answer (an error search, free [S]) is not. One Serper credit per request of at most 10
    results [U]: ``num`` is capped at 10, so a request never costs more than ``price.of(num)``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from observatory_pipelines.core.collection import prices, terms
from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    Checkpoint,
    CollectedItem,
    CollectionContext,
    QuerySpec,
    Rejected,
    design_terms,
)
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
)
from observatory_pipelines.core.collection.spending import Budget
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import parse_retry_after, validate_min_interval, where

ARENA = "google_search"
PROVIDERS = {Tier.MEDIUM: "serper", Tier.PREMIUM: "serpapi"}
BASE_URLS = {"serper": "https://google.serper.dev", "serpapi": "https://serpapi.com"}
DEFAULT_OPTIONS: dict[str, Any] = {
    "base_url": None,  # None: the tier's provider (BASE_URLS)
    "gl": "dk",
    "hl": "da",
    "google_domain": "google.dk",  # SerpAPI only
    "num": 10,
    "max_pages": 3,
    "min_interval_seconds": 0.0,
}
#: A 429 that names no wait rests the key this long (Serper's per-minute limit, SerpAPI's hourly one) [U].
RATE_LIMIT_REST = {"serper": 60.0, "serpapi": 3600.0}

# --- queries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoogleQuery:
    q: str
    terms: tuple[str, ...]  # the design terms it searches for


def _atom(atom: terms.Atom) -> str:
    # Google reads '#dkpol' as the word; phrases keep their quotes.
    return '"' + " ".join(atom.words) + '"' if isinstance(atom, terms.Phrase) else atom.text


def build_queries(raw_terms: tuple[str, ...] | list[str]) -> list[GoogleQuery]:
    """One query per all-of alternative of each term, exclusions with ``-``; duplicates merged."""
    found: dict[str, list[str]] = {}
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            words = [_atom(a) for a in clause.required]
            try:
                words += ["-" + _atom(atom) for node in clause.excluded for atom in terms.spell_exclusions(node)]
            except ValueError as group:
                raise ArenaError(ARENA, f"Google cannot exclude the group {group} of term '{term.text}'") from None
            owners = found.setdefault(" ".join(words), [])
            if term.text not in owners:
                owners.append(term.text)
    return [GoogleQuery(q, tuple(owners)) for q, owners in found.items()]


def date_filter(start: datetime, end: datetime) -> str:
    """Google's custom date range for ``[start, end)``: its first and last day, M/D/YYYY."""
    last = (end - timedelta(microseconds=1)).date()
    return f"cdr:1,cd_min:{start.month}/{start.day}/{start.year},cd_max:{last.month}/{last.day}/{last.year}"


# --- parsing ---------------------------------------------------------------------------------------

_MONTHS = {
    # Danish, full and abbreviated (Google writes "4. mar. 2025"), then English.
    "januar": 1, "jan": 1, "februar": 2, "feb": 2, "marts": 3, "mar": 3, "april": 4, "apr": 4,
    "maj": 5, "juni": 6, "jun": 6, "juli": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sep": 9, "sept": 9, "oktober": 10, "okt": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
    "january": 1, "february": 2, "march": 3, "may": 5, "june": 6, "july": 7, "october": 10, "oct": 10,
}  # fmt: skip
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})\.?\s+([a-zæøå]+)\.?,?\s+(\d{4})$")
_MONTH_DAY_YEAR = re.compile(r"^([a-zæøå]+)\.?\s+(\d{1,2}),?\s+(\d{4})$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_NUMERIC = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")  # Danish order: day first


def parse_date(value: Any) -> datetime | None:
    """Google's shown ``date`` as 00:00 UTC of that day when it is an absolute date; None for a
    relative one ("3 days ago", "for 3 dage siden"), a missing one or anything unreadable."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.strip().lower().split())
    day = month = year = None
    if match := _DAY_MONTH_YEAR.match(text):
        day, month, year = int(match[1]), _MONTHS.get(match[2]), int(match[3])
    elif match := _MONTH_DAY_YEAR.match(text):
        month, day, year = _MONTHS.get(match[1]), int(match[2]), int(match[3])
    elif match := _ISO.match(text):
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    elif match := _NUMERIC.match(text):
        day, month, year = int(match[1]), int(match[2]), int(match[3])
    if day is None or month is None or year is None:
        return None
    try:
        return datetime.combine(date(year, month, day), datetime.min.time(), tzinfo=timezone.utc)
    except ValueError:
        return None


def normalise_url(url: str) -> str:
    """The link as its identity: scheme and host in lower case, no default port, no fragment, no
    trailing slash on the path; the query string is kept as it is (it may name the page)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port and (scheme, parts.port) not in (("http", 80), ("https", 443)) else None
    netloc = host + (f":{port}" if port else "")
    path = parts.path.rstrip("/") or ""
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def link_id(url: str) -> str:
    return hashlib.sha256(normalise_url(url).encode("utf-8")).hexdigest()


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


@dataclass(frozen=True)
class Page:
    results: list[Mapping[str, Any]]
    #: The provider says more pages follow (SerpAPI's ``serpapi_pagination.next``); None: it does not say.
    more: bool | None
    #: False for an answer the provider does not bill (SerpAPI's "no results" is an error search).
    billed: bool = True


def parse_serper(document: Any) -> Page:
    if not isinstance(document, Mapping):
        raise MalformedResponse(ARENA, "Serper answered with JSON that is not an object; the API may have changed")
    organic = document.get("organic", [])
    if not isinstance(organic, list):
        raise MalformedResponse(ARENA, "Serper's 'organic' is not a list; the API may have changed")
    return Page([r for r in organic if isinstance(r, Mapping)], None)


def parse_serpapi(document: Any) -> Page:
    if not isinstance(document, Mapping):
        raise MalformedResponse(ARENA, "SerpAPI answered with JSON that is not an object; the API may have changed")
    organic = document.get("organic_results", [])
    if not isinstance(organic, list):
        raise MalformedResponse(ARENA, "SerpAPI's 'organic_results' is not a list; the API may have changed")
    pagination = document.get("serpapi_pagination")
    more = bool(pagination.get("next")) if isinstance(pagination, Mapping) else False
    # "Google hasn't returned any results for this query." is an error search: free [S].
    return Page([r for r in organic if isinstance(r, Mapping)], more, billed="error" not in document)


def result_item(
    result: Mapping[str, Any], *, rank: int, page: int, query: GoogleQuery, provider: str, day: str, source: str
) -> CollectedItem | Rejected:
    """One organic result as an item; a result without a usable link is a ``Rejected``."""
    link = _text(result.get("link"))
    try:
        identity = link_id(link) if link and urlsplit(link).scheme in ("http", "https") else None
        domain = (urlsplit(link).hostname or "").lower() or None if identity and link else None
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        identity = None
    if identity is None or link is None:
        return Rejected(f"Google result at rank {rank} has no readable http(s) link", source)
    shown = _text(result.get("date"))
    published = parse_date(shown)
    position = result.get("position")
    raw: dict[str, Any] = {
        "provider": provider,
        "query": query.q,
        "page": page,
        "rank": rank,
        "position": position if isinstance(position, int) and not isinstance(position, bool) else None,
        "date": shown,
        "displayed_link": _text(result.get("displayed_link")),
        "source_name": _text(result.get("source")),
        "domain": domain,
        "rank_history": [{"day": day, "rank": rank, "query": query.q}],
    }
    return CollectedItem(
        platform=ARENA,
        platform_id=identity,
        published_at=published,
        content_type="search_result",
        url=link,
        title=_text(result.get("title")),
        text_content=_text(result.get("snippet")),
        raw_metadata={k: v for k, v in raw.items() if v is not None},
        matched_terms=query.terms,
        source=source,
    )


# --- the arena -------------------------------------------------------------------------------------


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"option '{key}' must be a whole number from {low} to {high}, not {value!r}")
    return value


def _code(options: Mapping[str, Any], key: str) -> str:
    value = options[key]
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z.-]{1,40}", value):
        raise ValueError(f"option '{key}' must be a code such as {DEFAULT_OPTIONS[key]!r}, not {value!r}")
    return value.lower()


@register
class GoogleSearchArena(Arena):
    name = ARENA
    platform = ARENA
    description = (
        "Google organic results for the design's terms in the month, via Serper.dev (medium) or SerpAPI (premium)."
    )
    supported_tiers = frozenset({Tier.MEDIUM, Tier.PREMIUM})
    needs_credential = True
    metered = True
    enabled_by_default = False
    keep_unmatched = True  # Google searched the pages; the snippet is only a part of them

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        merged = {**DEFAULT_OPTIONS, **options}
        base = merged["base_url"]
        if base is not None and (not isinstance(base, str) or urlsplit(base).scheme not in ("http", "https")):
            raise ValueError(f"option 'base_url' must be an http(s) URL, or null for the provider's, not {base!r}")
        return {
            **merged,
            "base_url": base.rstrip("/") if base else None,
            "gl": _code(merged, "gl"),
            "hl": _code(merged, "hl"),
            "google_domain": _code(merged, "google_domain"),
            # Google serves at most 10 organic results a page (since 2025 it ignores num=100) [U].
            "num": _whole(merged, "num", 1, 10),
            "max_pages": _whole(merged, "max_pages", 1, 10),
            "min_interval_seconds": validate_min_interval(merged["min_interval_seconds"]),
        }

    def _queries(self, spec: QuerySpec) -> list[GoogleQuery]:
        return build_queries(spec.terms) if any(t.strip() for t in spec.terms) else []

    def estimate_credits(self, spec: QuerySpec) -> int:
        """queries × max_pages × the price of one page of ``num`` results: the most one run spends."""
        options = self.validate_options(spec.options)
        per_page = prices.price(self.name, spec.tier.value).of(options["num"])
        return len(self._queries(spec)) * options["max_pages"] * per_page

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected | Checkpoint]:
        options = self.validate_options(spec.options)
        provider = PROVIDERS.get(spec.tier)
        if provider is None:
            raise ArenaError(self.name, f"no Google provider at tier '{spec.tier.value}'; use medium or premium")
        if ctx.credentials is None:
            raise ArenaError(self.name, "no credential pool was given; Google search needs an API key")
        queries = self._queries(spec)
        if not queries:
            raise ArenaError(self.name, "the design has no search terms, and Google is searched by terms only")
        if spec.actors:
            ctx.log(f"{self.name}: Google has no actor search; the design's actor lists are not searched here")
        price = prices.price(self.name, spec.tier.value)
        budget = ctx.budget if ctx.budget is not None else Budget(reserved=self.estimate_credits(spec))
        collected = ctx.collected_at or datetime.now(timezone.utc)
        day = collected.astimezone(timezone.utc).date().isoformat()
        caller = _Caller(self.name, provider, options, ctx, date_filter(spec.window_start, spec.window_end))
        num = options["num"]
        # Terms a link was found for in this run: a link found again by a later query names all of them.
        found_for: dict[str, tuple[str, ...]] = {}
        for query in queries:
            source = f"google {query.q}"
            resumed = ctx.resume(source)
            first = 1
            if resumed is not None and resumed.today:
                if resumed.finished:
                    ctx.log(f"{self.name}: '{query.q}' was searched to the end today already; not searched again")
                    continue
                page_state = resumed.state.get("page")
                first = page_state if isinstance(page_state, int) and page_state >= 1 else 1
            if first > options["max_pages"]:
                continue
            ctx.searched(source)
            for page in range(first, options["max_pages"] + 1):
                with budget.call(most=price.of(num)) as charge:
                    answer = caller.search(query.q, page)
                    # SerpAPI's cache is not told apart, so every answer it bills is charged [U].
                    charge.credits = price.of(len(answer.results)) if answer.billed else 0
                seen_here: set[str] = set()
                for place, result in enumerate(answer.results, start=1):
                    item = result_item(
                        result,
                        rank=(page - 1) * num + place,
                        page=page,
                        query=query,
                        provider=provider,
                        day=day,
                        source=source,
                    )
                    if isinstance(item, CollectedItem):
                        if item.platform_id in seen_here:  # a link twice on one page: its best rank counts
                            continue
                        seen_here.add(item.platform_id)
                        earlier = found_for.get(item.platform_id, ())
                        item.matched_terms = tuple(dict.fromkeys(earlier + query.terms))
                        found_for[item.platform_id] = item.matched_terms
                        if item.published_at is None:
                            item.published_at = spec.window_start
                            item.raw_metadata["published_at_source"] = "window_start"
                    yield item
                last = len(answer.results) < num or answer.more is False or page == options["max_pages"]
                yield Checkpoint(source, {"page": page + 1}, finished=last)
                if last:
                    break


class _Caller:
    """One provider's request and error rules, through the credential pool."""

    def __init__(self, arena: str, provider: str, options: Mapping[str, Any], ctx: CollectionContext, tbs: str):
        self.arena, self.provider, self.options, self.ctx, self.tbs = arena, provider, options, ctx, tbs
        self.base = options["base_url"] or BASE_URLS[provider]

    def search(self, q: str, page: int) -> Page:
        assert self.ctx.credentials is not None
        return self.ctx.credentials.call(lambda lease: self._send(lease, q, page))

    def _send(self, lease: Any, q: str, page: int) -> Page:
        options, num = self.options, self.options["num"]
        key = lease.secret.reveal()
        if self.provider == "serper":
            url = f"{self.base}/search"
            body = {"q": q, "gl": options["gl"], "hl": options["hl"], "num": num, "page": page, "tbs": self.tbs}
            response = self.ctx.http.request(
                "POST",
                url,
                arena=self.arena,
                json=body,
                headers={"X-API-KEY": key, "Content-Type": "application/json"},
                min_interval_seconds=options["min_interval_seconds"],
            )
        else:
            url = f"{self.base}/search.json"
            params = {
                "engine": "google",
                "q": q,
                "gl": options["gl"],
                "hl": options["hl"],
                "google_domain": options["google_domain"],
                "start": (page - 1) * num,
                "num": num,
                "tbs": self.tbs,
                "api_key": key,
            }
            response = self.ctx.http.request(
                "GET", url, arena=self.arena, params=params, min_interval_seconds=options["min_interval_seconds"]
            )
        document = self._interpret(response, url, key)
        return parse_serper(document) if self.provider == "serper" else parse_serpapi(document)

    def _interpret(self, response: Any, url: str, key: str) -> Any:
        status, endpoint, name = response.status_code, where(url), "Serper" if self.provider == "serper" else "SerpAPI"
        try:
            document = response.json()
        except ValueError:
            document = None
        said = _message(document).replace(key, "***") if key else _message(document)
        if 200 <= status < 300:
            if document is None:
                content_type = response.headers.get("content-type") or "no content type"
                raise MalformedResponse(
                    self.arena, f"{endpoint} answered with {content_type} that is not JSON; the API may have changed"
                )
            if self.provider == "serpapi":
                meta = document.get("search_metadata") if isinstance(document, Mapping) else None
                failed = isinstance(meta, Mapping) and meta.get("status") == "Error"
                if "hasn't returned any results" in said:
                    return {"organic_results": [], "error": said}  # no results is an answer, not a failure
                if failed or said:
                    raise ArenaError(self.arena, f"{name} could not search ({said or 'status Error'}); check the query")
            return document
        quoted = f" ({said})" if said else ""
        low = said.lower()
        if status == 429 or (self.provider == "serpapi" and "run out" in low):
            wait = parse_retry_after(response.headers.get("retry-after"), 0.0)
            if wait is None and "run out" not in low:
                wait = RATE_LIMIT_REST[self.provider]
            # None (searches run out for the month) rests the key until the next 00:00 UTC.
            raise RateLimited(self.arena, f"HTTP {status} from {endpoint}{quoted}: rate-limited or spent", wait)
        if status in (401, 402, 403) or "credit" in low or "api key" in low:
            raise CredentialError(
                self.arena, f"HTTP {status} from {endpoint}{quoted}: check the {name} key and its credits"
            )
        raise ArenaError(self.arena, f"HTTP {status} from {endpoint}{quoted}; check the request and its options")


def _message(document: Any) -> str:
    """The error text of a Serper (``message``) or SerpAPI (``error``) body, one line, short."""
    if not isinstance(document, Mapping):
        return ""
    value = document.get("error") or document.get("message")
    return " ".join(str(value).split())[:200] if value else ""
