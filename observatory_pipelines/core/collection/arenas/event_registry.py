"""Event Registry (NewsAPI.ai) article search, paid in tokens (docs/collection.md, "event_registry").

``POST {base_url}/api/v1/article/getArticles`` with a JSON body holding the API key (``apiKey``),
the keywords, ``lang`` (``dan`` by default), optionally ``sourceLocationUri`` (option
``source_location_uri``, e.g. Denmark's Wikipedia URI), the month as ``dateStart``/``dateEnd``
(``YYYY-MM-DD``, both inclusive) and ``articlesPage``/``articlesCount`` (≤ 100) paging, sorted by
date. The answer is ``{"articles": {"results": [...], "totalResults", "page", "pages"}}``; a
refusal is ``{"error": "..."}``.

Queries: one-atom terms share one search (``keyword`` list, ``keywordOper: or``; phrases are
searched as phrases, Event Registry's default ``keywordSearchMode``); other clauses are a search
each (``keywordOper: and``, exclusions in ``ignoreKeyword``).

Cost [V newsapi.ai/tokens]: an article search of recent content (the last 30 days) uses 1 token,
a search of the archive 5 tokens per searched year (a month is within one year: 5 tokens). Each
page is one search [U]. ``prices.py``'s ``per_request`` is the price of one token in credits, so
one page costs ``tokens × per_request``, and the estimate is::

    queries × max_pages × tokens × per_request

Re-runs: each page's articles are stored, then a checkpoint ``{"page": next}``; a run killed and
run again the same day continues at that page, and a finished query is not searched again that
day (no token spent). Event Registry cannot leave out articles we already stored, so a later
day's run searches the month again from page 1 (sorted by date, new articles come first).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from observatory_pipelines.core.collection import terms
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
from observatory_pipelines.core.collection.prices import price
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import parse_retry_after, validate_min_interval, where

ARENA = "event_registry"
DEFAULT_OPTIONS: dict[str, Any] = {
    "base_url": "https://eventregistry.org",
    "lang": "dan",
    "source_location_uri": None,  # e.g. "http://en.wikipedia.org/wiki/Denmark"
    "data_types": ["news", "blog"],
    "max_pages": 5,  # per query
    "articles_count": 100,  # [S] at most 100 articles a page
    "min_interval_seconds": 0.5,  # [S] the official client waits 0.5 s between requests
}
RECENT_DAYS = 30  # [V] "recent content (last 30 days)": 1 token
ARCHIVE_TOKENS_PER_YEAR = 5  # [V] "5 tokens / searched year"
LANGUAGES = {"dan": "da", "eng": "en", "swe": "sv", "nor": "no", "deu": "de", "fra": "fr", "spa": "es"}
_SPENT_WORDS = ("token", "quota", "limit", "exceeded", "subscription")
_KEY_WORDS = ("api key", "apikey", "not valid", "invalid key", "unknown user", "not authorized")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def tokens_per_search(window_start: datetime, window_end: datetime, now: datetime) -> int:
    """1 for a month within the last 30 days, else 5 per calendar year the month touches."""
    if window_start >= now - timedelta(days=RECENT_DAYS):
        return 1
    last = window_end - timedelta(microseconds=1)
    return ARCHIVE_TOKENS_PER_YEAR * (last.year - window_start.year + 1)


def _words(atom: terms.Atom) -> str:
    if isinstance(atom, terms.Phrase):
        return " ".join(atom.words)
    return atom.text.lstrip("#") if isinstance(atom, terms.Hashtag) else atom.text


def build_queries(raw_terms: tuple[str, ...] | list[str]) -> list[tuple[str, dict[str, Any], str | None]]:
    """(label, keyword fields, term) triples; the term is named when the query has one owner."""
    shared: dict[str, set[str]] = {}
    own: list[tuple[str, dict[str, Any], str | None]] = []
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            if len(clause.required) == 1 and not clause.excluded:
                shared.setdefault(_words(clause.required[0]), set()).add(term.text)
                continue
            required = [_words(a) for a in clause.required]
            excluded = [_words(a) for node in clause.excluded for a in terms.spell_exclusions(node)]
            fields: dict[str, Any] = {"keyword": required, "keywordOper": "and"}
            if excluded:
                fields["ignoreKeyword"] = excluded
            own.append((" ".join(required + ["-" + e for e in excluded]), fields, term.text))
    queries: list[tuple[str, dict[str, Any], str | None]] = []
    if shared:
        owners = set().union(*shared.values())
        queries.append(
            (
                " | ".join(shared),
                {"keyword": list(shared), "keywordOper": "or"},
                owners.pop() if len(owners) == 1 else None,
            )
        )
    return queries + own


# --- parsing ---------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _time(article: Mapping[str, Any]) -> datetime | None:
    value = _text(article.get("dateTime"))
    if value is None and _text(article.get("date")):
        value = f"{article['date'].strip()}T{_text(article.get('time')) or '00:00:00'}Z"
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def article_item(article: Any, source: str) -> CollectedItem | Rejected:
    """One article of the answer, or ``Rejected`` for one without a uri or url."""
    if not isinstance(article, Mapping):
        return Rejected("Event Registry article is not an object; skipped", source)
    uri, url = article.get("uri"), _text(article.get("url"))
    uri = str(uri).strip() if isinstance(uri, str | int) and not isinstance(uri, bool) else None
    if not uri or url is None:
        return Rejected("Event Registry article has no uri or url; skipped", source)
    found_outlet, found_authors = article.get("source"), article.get("authors")
    outlet: Mapping[str, Any] = found_outlet if isinstance(found_outlet, Mapping) else {}
    authors: list[Any] = found_authors if isinstance(found_authors, list) else []
    names = [n for a in authors if isinstance(a, Mapping) and (n := _text(a.get("name")))]
    domain = _text(outlet.get("uri"))
    lang = _text(article.get("lang"))
    sentiment = article.get("sentiment")
    image = _text(article.get("image"))
    raw = {
        "source_uri": domain,
        "source_title": _text(outlet.get("title")),
        "authors": names,
        "lang": lang,
        "sentiment": sentiment if isinstance(sentiment, int | float) and not isinstance(sentiment, bool) else None,
        "data_type": _text(article.get("dataType")),
        "is_duplicate": article.get("isDuplicate") if isinstance(article.get("isDuplicate"), bool) else None,
    }
    return CollectedItem(
        platform="event_registry",
        platform_id=uri,
        published_at=_time(article),
        content_type="article",
        url=url,
        title=_text(article.get("title")),
        text_content=_text(article.get("body")),
        language=LANGUAGES.get(lang.lower()) if lang else None,
        # Like gdelt: the outlet is the author account; the bylines are names, never handles.
        author_platform_id=domain,
        author_display_name=", ".join(names) or _text(outlet.get("title")) or domain,
        media_urls=[image] if image else [],
        raw_metadata={k: v for k, v in raw.items() if v not in (None, [], "")},
        source=source,
    )


def parse_page(document: Any) -> tuple[list[Any], int, int]:
    """Articles, total results and pages of one answer."""
    block = document.get("articles") if isinstance(document, Mapping) else None
    if not isinstance(block, Mapping):
        raise MalformedResponse(ARENA, "Event Registry answer has no 'articles'; the API may have changed")
    results = block.get("results")
    if not isinstance(results, list):
        raise MalformedResponse(ARENA, "Event Registry answer has no 'articles.results' list; the API may have changed")
    total, pages = block.get("totalResults"), block.get("pages")
    total = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else len(results)
    pages = pages if isinstance(pages, int) and not isinstance(pages, bool) and pages >= 0 else 1
    return results, total, pages


def error_text(document: Any) -> str | None:
    if isinstance(document, Mapping) and document.get("error") not in (None, ""):
        return " ".join(str(document["error"]).split())[:200]
    return None


# --- the arena -------------------------------------------------------------------------------------


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"option '{key}' must be a whole number from {low} to {high}, not {value!r}")
    return value


@register
class EventRegistryArena(Arena):
    name = "event_registry"
    platform = "event_registry"
    description = "News and blog articles for the design's terms from Event Registry (NewsAPI.ai), paid per search."
    supported_tiers = frozenset({Tier.MEDIUM})
    needs_credential = True
    enabled_by_default = False
    metered = True
    keep_unmatched = True  # Event Registry searched the articles server-side

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        merged = {**DEFAULT_OPTIONS, **options}
        if not isinstance(merged["base_url"], str) or urlsplit(merged["base_url"]).scheme not in ("http", "https"):
            raise ValueError(f"option 'base_url' must be an http(s) URL, not {merged['base_url']!r}")
        lang = merged["lang"]
        if lang is not None and not (isinstance(lang, str) and lang.isalpha() and len(lang) == 3):
            raise ValueError(f"option 'lang' must be a three-letter language code such as 'dan', or null, not {lang!r}")
        location = merged["source_location_uri"]
        if location is not None and not (isinstance(location, str) and location.startswith(("http://", "https://"))):
            raise ValueError(f"option 'source_location_uri' must be a location URI, or null, not {location!r}")
        kinds = merged["data_types"]
        if not (isinstance(kinds, list) and kinds and all(k in ("news", "blog", "pr") for k in kinds)):
            raise ValueError(f"option 'data_types' must be a list of news, blog and pr, not {kinds!r}")
        return {
            **merged,
            "base_url": merged["base_url"].rstrip("/"),
            "max_pages": _whole(merged, "max_pages", 1, 1000),
            "articles_count": _whole(merged, "articles_count", 1, 100),
            "min_interval_seconds": validate_min_interval(merged["min_interval_seconds"]),
        }

    def _queries(self, spec: QuerySpec) -> list[tuple[str, dict[str, Any], str | None]]:
        return build_queries(spec.terms) if any(t.strip() for t in spec.terms) else []

    def per_search(self, spec: QuerySpec, now: datetime | None = None) -> int:
        """Credits one page costs: its tokens × the price of a token."""
        tokens = tokens_per_search(spec.window_start, spec.window_end, now or _now())
        return math.ceil(tokens * price(ARENA, spec.tier.value).of(0))

    def estimate_credits(self, spec: QuerySpec) -> int:
        """queries × max_pages × tokens per search × per_request."""
        options = self.validate_options(spec.options)
        return len(self._queries(spec)) * options["max_pages"] * self.per_search(spec)

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected | Checkpoint]:
        options = self.validate_options(spec.options)
        if ctx.credentials is None:
            raise ArenaError(self.name, "no credential pool was given; Event Registry needs an API key")
        queries = self._queries(spec)
        if not queries:
            raise ArenaError(self.name, "the design has no terms; Event Registry searches by keyword")
        cost = self.per_search(spec)
        last_day = spec.window_end - timedelta(microseconds=1)
        for label, fields, term in queries:
            source = f"event_registry search: {label}"[:200]
            resumed = ctx.resume(source)
            page = 1
            if resumed and resumed.today:
                if resumed.finished:
                    ctx.log(f"{self.name}: {source} was finished today; not searched again")
                    continue
                page = int(resumed.state.get("page", 1))
            ctx.searched(source)
            unfetched: int | None = None
            while page <= options["max_pages"]:
                body = {
                    **fields,
                    "lang": options["lang"],
                    "sourceLocationUri": options["source_location_uri"],
                    "dateStart": f"{spec.window_start:%Y-%m-%d}",
                    "dateEnd": f"{last_day:%Y-%m-%d}",
                    "articlesPage": page,
                    "articlesCount": options["articles_count"],
                    "articlesSortBy": "date",
                    "resultType": "articles",
                    "dataType": options["data_types"],
                    "isDuplicateFilter": "skipDuplicates",
                }
                body = {k: v for k, v in body.items() if v is not None}
                budget = ctx.budget
                with budget.call(most=cost, unfetched=unfetched) if budget is not None else nullcontext() as charge:
                    document = self._post(ctx, options, body)
                    if charge is not None:
                        charge.credits = cost  # a search answered is billed, whatever it found
                results, total, pages = parse_page(document)
                for article in results:
                    item = article_item(article, source)
                    if isinstance(item, CollectedItem) and term is not None:
                        item.matched_terms = (term,)
                    yield item
                unfetched = max(0, total - page * options["articles_count"])
                finished = page >= pages or not results or page >= options["max_pages"]
                if finished and page < pages and results:
                    ctx.log(f"{self.name}: {source} stopped at max_pages={page}; {unfetched:,} articles not fetched")
                page += 1
                yield Checkpoint(source, {"page": page}, finished=finished)
                if finished:
                    break

    def _post(self, ctx: CollectionContext, options: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
        assert ctx.credentials is not None
        url = f"{options['base_url']}/api/v1/article/getArticles"

        def request(lease: Any) -> Any:
            response = ctx.http.request(
                "POST",
                url,
                arena=self.name,
                json={**body, "apiKey": lease.secret.reveal()},
                min_interval_seconds=options["min_interval_seconds"],
            )
            return self._interpret(response, url)

        return ctx.credentials.call(request)

    def _interpret(self, response: Any, url: str) -> Any:
        status, endpoint = response.status_code, where(url)
        try:
            document = response.json()
        except ValueError:
            document = None
        said = error_text(document)
        detail = f" ({said})" if said else ""
        lowered = (said or "").lower()
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"), 0.0)
            raise RateLimited(self.name, f"HTTP 429 from {endpoint}{detail}: too many requests", retry_after=wait)
        if status in (401, 403) or any(w in lowered for w in _KEY_WORDS):
            raise CredentialError(self.name, f"HTTP {status} from {endpoint}{detail}: check or renew the API key")
        if status == 402 or any(w in lowered for w in _SPENT_WORDS):
            # No tokens left on the plan: rest the key (until 00:00 UTC) and try the next one.
            raise RateLimited(self.name, f"HTTP {status} from {endpoint}{detail}: no tokens left on the plan")
        if not 200 <= status < 300 or said:
            raise ArenaError(self.name, f"HTTP {status} from {endpoint}{detail}; check the query and its options")
        if document is None:
            content_type = response.headers.get("content-type") or "no content type"
            raise MalformedResponse(
                self.name, f"{endpoint} answered with {content_type} that is not JSON; the API may have changed"
            )
        return document
