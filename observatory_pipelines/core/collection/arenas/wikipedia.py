"""Wikipedia revisions in the window, with their pages' pageviews (research notes §7).

Which pages: the titles the design names (option ``pages``) and the articles MediaWiki's search
(``list=search``) finds for the design's terms on ``wiki``. Each revision made in the window is one
item (``content_type = "revision"``): the edit comment is its text, the page title its title and the
editor (a user name, or an IP address for logged-out edits) its author, pseudonymised like every
author. A search hit whose last edit (``timestamp``) is older than the window cannot have revisions
in it and costs no further request.

Pageviews are page-level, not revision-level: the page's daily views in the window (Wikimedia's
pageviews REST API) are put on each of its revisions, in ``raw_metadata["page_views"]`` as
``{"total": n, "daily": {"YYYY-MM-DD": n}}``, so a revision can be read against its page's
attention without a second record type. A page with no revision in the window yields no item and
so no pageviews either (documented in docs/collection.md).

Every request sends a descriptive User-Agent (with the ``contact`` option when given) and
``maxlag``; a ``maxlag`` answer raises ``RateLimited`` with the server's ``Retry-After`` so the run
is retried later. A missing or invalid page is a ``Rejected`` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlsplit

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
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from observatory_pipelines.core.platform.http import parse_retry_after, user_agent, validate_min_interval, where

ARENA = "wikipedia"
DEFAULT_WIKI = "da.wikipedia.org"
DEFAULT_OPTIONS: dict[str, Any] = {
    "wiki": DEFAULT_WIKI,
    # Titles on ``wiki``, or {"<wiki host>": [titles]} for several language wikis.
    "pages": [],
    "search": True,
    "api_url": "https://{wiki}/w/api.php",
    "pageviews": True,
    "pageviews_url": "https://wikimedia.org/api/rest_v1/metrics/pageviews/per-article",
    "pageviews_access": "all-access",
    "pageviews_agent": "user",
    "search_namespace": 0,
    "search_limit": 50,
    # Pages taken from the search per query; MediaWiki stops offsets at 10,000 [U].
    "max_search_results": 500,
    "revisions_limit": 500,
    "maxlag": 5,
    "contact": None,
    # Wikimedia asks for serial requests and has no fixed figure [V]; the 2025/26 limits are [U].
    "min_interval_seconds": 0.5,
}
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
_INFO_CHARS = 200


def _wiki_host(value: Any, key: str) -> str:
    if isinstance(value, str):
        host = value.strip().lower()
        if host and "/" not in host and "." in host and urlsplit(f"https://{host}").hostname == host:
            return host
    raise ValueError(f"option '{key}' must be a wiki host such as da.wikipedia.org, not {value!r}")


def _titles(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"option 'pages' must list page titles, not {value!r}")
    titles = []
    for title in value:
        if not isinstance(title, str) or not title.strip() or "|" in title:
            raise ValueError(f"option 'pages' holds {title!r}, which is not a page title")
        titles.append(" ".join(title.replace("_", " ").split()))
    return list(dict.fromkeys(titles))


def _positive(options: Mapping[str, Any], key: str, maximum: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"option '{key}' must be a whole number from 0 to {maximum}, not {value!r}")
    return value


def _search_atom(atom: terms.Atom) -> str:
    # CirrusSearch has no hashtag search; a hashtag is searched as its word (a superset).
    words = atom.words if isinstance(atom, terms.Phrase) else (atom.text.lstrip("#"),)
    return words[0] if len(words) == 1 else '"' + " ".join(words) + '"'


def search_queries(raw_terms: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(srsearch, design term) for every all-of alternative of every term: quotes and ``-`` as CirrusSearch reads them."""
    queries: dict[str, str] = {}
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            words = [_search_atom(atom) for atom in clause.required]
            try:
                words += [f"-{_search_atom(atom)}" for node in clause.excluded for atom in terms.spell_exclusions(node)]
            except ValueError as group:
                raise ArenaError(
                    ARENA, f"MediaWiki search cannot exclude the group {group} of term '{term.text}'; exclude words"
                ) from None
            queries.setdefault(" ".join(words), term.text)
    return list(queries.items())


def _api_error(document: Mapping[str, Any], endpoint: str, retry_after: float | None) -> None:
    error = document.get("error")
    if not isinstance(error, Mapping):
        return
    code = str(error.get("code") or "unknown")
    info = " ".join(str(error.get("info") or "").split())[:_INFO_CHARS]
    if code == "maxlag":
        raise RateLimited(ARENA, f"{endpoint} is lagging ({info}); the run will be retried later", retry_after)
    raise ArenaError(ARENA, f"{endpoint} refused the request ({code}: {info}); check the arena's options")


def _decode(content: bytes, endpoint: str) -> Mapping[str, Any]:
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        raise MalformedResponse(ARENA, f"{endpoint} answered with something that is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedResponse(ARENA, f"{endpoint} answered with a JSON {type(document).__name__}, not an object")
    return document


def _field(mapping: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedResponse(ARENA, f"{what} has no '{key}'")
    return value


def parse_search(document: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """(hits as {title, timestamp}, next ``sroffset``) of one ``list=search`` answer. Raises only ``MalformedResponse``."""
    query = _field(document, "query", dict, "the search answer")
    hits = _field(query, "search", list, "the search answer's query")
    found = []
    for hit in hits:
        title = _field(hit, "title", str, "a search hit")
        stamp = hit.get("timestamp")
        found.append({"title": title, "timestamp": _parse_time(stamp) if isinstance(stamp, str) else None})
    follow = document.get("continue")
    offset = follow.get("sroffset") if isinstance(follow, Mapping) else None
    return found, offset if isinstance(offset, int) and not isinstance(offset, bool) else None


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, _TIMESTAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def revision_item(revision: Any, page: Mapping[str, Any], wiki: str, source: str) -> CollectedItem:
    """One revision as an item; a revision without ``revid`` or ``timestamp`` raises ``MalformedResponse``."""
    revid = _field(revision, "revid", int, "a revision")
    stamp = _field(revision, "timestamp", str, f"revision {revid}")
    published = _parse_time(stamp)
    if published is None:
        raise MalformedResponse(ARENA, f"revision {revid} has an unreadable 'timestamp' {stamp[:40]!r}")
    user = revision.get("user") if isinstance(revision.get("user"), str) else None
    comment = revision.get("comment") if isinstance(revision.get("comment"), str) else None
    size = revision.get("size") if isinstance(revision.get("size"), int) else None
    listed = revision.get("tags")
    tags = [t for t in listed if isinstance(t, str)] if isinstance(listed, list) else []
    title = page.get("title") if isinstance(page.get("title"), str) else None
    return CollectedItem(
        platform="wikipedia",
        platform_id=f"{wiki}:{revid}",
        published_at=published,
        content_type="revision",
        url=f"https://{wiki}/w/index.php?oldid={revid}",
        text_content=comment or None,
        title=title,
        language=wiki.split(".", 1)[0] if wiki.count(".") >= 2 else None,
        author_platform_id=user or None,
        author_display_name=user or None,
        raw_metadata={
            "wiki": wiki,
            "page_id": page.get("pageid"),
            "page_title": title,
            "namespace": page.get("ns"),
            "revid": revid,
            "parentid": revision.get("parentid"),
            "size": size,
            "size_delta": None,
            "minor": bool(revision.get("minor")),
            "anonymous": bool(revision.get("anon")),
            "temporary_account": bool(revision.get("temp")),
            "user_id": revision.get("userid") or None,
            "user_hidden": bool(revision.get("userhidden")),
            "comment_hidden": bool(revision.get("commenthidden")),
            "tags": tags,
        },
        source=source,
    )


def parse_revisions(document: Mapping[str, Any], wiki: str, source: str) -> tuple[list[CollectedItem | Rejected], dict]:
    """(revision items or a ``Rejected`` for a missing/invalid page, the ``continue`` parameters)."""
    query = _field(document, "query", dict, "the revisions answer")
    pages = _field(query, "pages", list, "the revisions answer's query")
    results: list[CollectedItem | Rejected] = []
    for page in pages:
        if not isinstance(page, Mapping):
            raise MalformedResponse(ARENA, "a page of the revisions answer is not an object")
        title = page.get("title") if isinstance(page.get("title"), str) else "?"
        if page.get("invalid"):
            reason = " ".join(str(page.get("invalidreason") or "invalid title").split())[:_INFO_CHARS]
            results.append(Rejected(f"page '{title}' on {wiki} is not a valid title: {reason}", source))
            continue
        if page.get("missing"):
            results.append(Rejected(f"page '{title}' does not exist on {wiki} (deleted or never created)", source))
            continue
        revisions = page.get("revisions", [])
        if not isinstance(revisions, list):
            raise MalformedResponse(ARENA, f"page '{title}' has 'revisions' that is not a list")
        results += [revision_item(revision, page, wiki, source) for revision in revisions]
    follow = document.get("continue")
    return results, {k: v for k, v in follow.items() if isinstance(v, str | int)} if isinstance(follow, Mapping) else {}


def parent_size(document: Mapping[str, Any]) -> int | None:
    """The size of the one revision a ``revids=`` answer holds; None when it is hidden or gone."""
    query = document.get("query")
    pages = query.get("pages") if isinstance(query, Mapping) else None
    for page in pages if isinstance(pages, list) else []:
        revisions = page.get("revisions") if isinstance(page, Mapping) else None
        for revision in revisions if isinstance(revisions, list) else []:
            size = revision.get("size") if isinstance(revision, Mapping) else None
            if isinstance(size, int) and not isinstance(size, bool):
                return size
    return None


def parse_pageviews(document: Mapping[str, Any]) -> dict[str, Any]:
    """{"total", "daily"} of one per-article answer. Raises only ``MalformedResponse``."""
    items = _field(document, "items", list, "the pageviews answer")
    daily: dict[str, int] = {}
    for entry in items:
        stamp = _field(entry, "timestamp", str, "a pageviews item")
        views = _field(entry, "views", int, f"pageviews item {stamp[:12]}")
        day = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}" if len(stamp) >= 8 and stamp[:8].isdigit() else stamp[:20]
        daily[day] = daily.get(day, 0) + views
    return {"total": sum(daily.values()), "daily": daily}


@register
class WikipediaArena(Arena):
    name = "wikipedia"
    platform = "wikipedia"
    description = "Wikipedia revisions in the month of the pages a design names or its terms find, with pageviews."
    free = True
    keep_unmatched = True
    enabled_by_default = False
    expected_items_per_month = 1_000

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        wiki = _wiki_host(options.get("wiki", DEFAULT_WIKI), "wiki")
        raw_pages = options.get("pages", [])
        if isinstance(raw_pages, Mapping):
            pages = {_wiki_host(host, "pages"): _titles(titles) for host, titles in raw_pages.items()}
        else:
            pages = {wiki: _titles(raw_pages)} if raw_pages else {}
        for key in ("search", "pageviews"):
            if not isinstance(options.get(key, DEFAULT_OPTIONS[key]), bool):
                raise ValueError(f"option '{key}' must be true or false, not {options[key]!r}")
        for key in ("api_url", "pageviews_url"):
            url = options.get(key, DEFAULT_OPTIONS[key])
            if not isinstance(url, str) or urlsplit(url.replace("{wiki}", "x")).scheme not in ("http", "https"):
                raise ValueError(f"option '{key}' must be an http(s) URL, not {url!r}")
        if "{wiki}" not in options.get("api_url", DEFAULT_OPTIONS["api_url"]):
            raise ValueError("option 'api_url' must contain {wiki}, where the wiki's host goes")
        for key in ("pageviews_access", "pageviews_agent"):
            value = options.get(key, DEFAULT_OPTIONS[key])
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"option '{key}' must be one path segment such as 'all-access' or 'user'")
        contact = options.get("contact")
        if contact is not None and (not isinstance(contact, str) or not contact.strip()):
            raise ValueError(f"option 'contact' must be an e-mail address or URL, not {contact!r}")
        return {
            "wiki": wiki,
            "pages": pages,
            "search": options.get("search", True),
            "api_url": options.get("api_url", DEFAULT_OPTIONS["api_url"]),
            "pageviews": options.get("pageviews", True),
            "pageviews_url": options.get("pageviews_url", DEFAULT_OPTIONS["pageviews_url"]).rstrip("/"),
            "pageviews_access": options.get("pageviews_access", DEFAULT_OPTIONS["pageviews_access"]),
            "pageviews_agent": options.get("pageviews_agent", DEFAULT_OPTIONS["pageviews_agent"]),
            "search_namespace": _positive(options, "search_namespace", 10_000),
            "search_limit": max(1, _positive(options, "search_limit", 500)),
            "max_search_results": _positive(options, "max_search_results", 10_000),
            "revisions_limit": max(1, _positive(options, "revisions_limit", 500)),
            "maxlag": _positive(options, "maxlag", 3600),
            "contact": contact.strip() if contact else None,
            "min_interval_seconds": validate_min_interval(
                options.get("min_interval_seconds", DEFAULT_OPTIONS["min_interval_seconds"])
            ),
        }

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        queries = search_queries(spec.terms) if options["search"] else []
        if not options["pages"] and not queries:
            raise ArenaError(ARENA, "nothing to collect: name pages in the option 'pages' or give the design terms")
        if options["contact"] is None:
            ctx.log(f"{self.name}: no 'contact' option; Wikimedia asks for contact details in the User-Agent")
        headers = {"User-Agent": f"{user_agent(options['contact'])} wikipedia-arena"}
        done: set[tuple[str, str]] = set()
        for wiki, titles in options["pages"].items():
            for title in titles:
                source = f"{wiki}/wiki/{title.replace(' ', '_')}"
                ctx.searched(source)
                done.add((wiki, title))
                yield from self._page(spec, ctx, wiki, title, source, headers, options, ())
        wiki = options["wiki"]
        for query, term in queries:
            source = f"{wiki} search: {query}"
            ctx.searched(source)
            # The whole result list first: MediaWiki's offsets shift if pages are edited while we read.
            for hit in list(self._search(spec, ctx, wiki, query, headers, options)):
                if (wiki, hit) in done:
                    continue
                done.add((wiki, hit))
                yield from self._page(spec, ctx, wiki, hit, source, headers, options, (term,))

    def _get(self, ctx: CollectionContext, url: str, params: Mapping[str, Any] | None, headers, options) -> Any:
        response = ctx.http.get(
            url, params=params, headers=headers, arena=self.name, min_interval_seconds=options["min_interval_seconds"]
        )
        document = _decode(response.content, where(url))
        retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(timezone.utc).timestamp())
        _api_error(document, where(url), retry_after)
        return document

    def _api_params(self, options: Mapping[str, Any], **params: Any) -> dict[str, Any]:
        return {"action": "query", "format": "json", "formatversion": 2, "maxlag": options["maxlag"], **params}

    def _search(
        self, spec: QuerySpec, ctx: CollectionContext, wiki: str, query: str, headers, options
    ) -> Iterator[str]:
        """Titles the search finds, skipping those last edited before the window."""
        url = options["api_url"].replace("{wiki}", wiki)
        offset: int | None = 0
        taken = 0
        while offset is not None and taken < options["max_search_results"]:
            params = self._api_params(
                options,
                list="search",
                srsearch=query,
                srnamespace=options["search_namespace"],
                srlimit=min(options["search_limit"], options["max_search_results"] - taken),
                srprop="timestamp",
                sroffset=offset,
            )
            hits, next_offset = parse_search(self._get(ctx, url, params, headers, options))
            for hit in hits:
                taken += 1
                if hit["timestamp"] is not None and hit["timestamp"] < spec.window_start:
                    continue
                yield hit["title"]
            offset = next_offset if hits and (next_offset or 0) > offset else None
        if offset is not None:
            ctx.log(f"{self.name}: stopped '{query}' on {wiki} at {taken} results (max_search_results)")

    def _page(
        self,
        spec: QuerySpec,
        ctx: CollectionContext,
        wiki: str,
        title: str,
        source: str,
        headers,
        options,
        found_for: tuple[str, ...],
    ) -> Iterator[CollectedItem | Rejected]:
        url = options["api_url"].replace("{wiki}", wiki)
        params = self._api_params(
            options,
            prop="revisions",
            titles=title,
            redirects=1,
            rvprop="ids|timestamp|user|userid|comment|size|tags|flags",
            rvlimit=options["revisions_limit"],
            rvdir="newer",
            rvstart=spec.window_start.astimezone(timezone.utc).strftime(_TIMESTAMP),
            # rvend is inclusive; the window's end is not.
            rvend=(spec.window_end - timedelta(seconds=1)).astimezone(timezone.utc).strftime(_TIMESTAMP),
        )
        revisions: list[CollectedItem] = []
        follow: dict[str, Any] = {}
        while True:
            results, follow = parse_revisions(self._get(ctx, url, {**params, **follow}, headers, options), wiki, source)
            for result in results:
                if isinstance(result, Rejected):
                    yield result
                elif result.published_at is not None and spec.window_start <= result.published_at < spec.window_end:
                    revisions.append(result)
            if not follow:
                break
        if not revisions:
            return
        self._size_deltas(ctx, url, revisions, headers, options)
        views = self._pageviews(spec, ctx, wiki, revisions[0].title or title, headers, options)
        for item in revisions:
            item.raw_metadata["page_views"] = views
            item.matched_terms = found_for
            yield item

    def _size_deltas(self, ctx: CollectionContext, url: str, revisions: list[CollectedItem], headers, options) -> None:
        """``size_delta`` of each revision; the first needs its parent's size, one request away."""
        revisions.sort(key=lambda item: item.raw_metadata["revid"])
        first = revisions[0].raw_metadata
        previous: int | None = 0 if not first.get("parentid") else None
        if previous is None:
            params = self._api_params(options, prop="revisions", revids=first["parentid"], rvprop="ids|size")
            previous = parent_size(self._get(ctx, url, params, headers, options))
        for item in revisions:
            size = item.raw_metadata.get("size")
            if isinstance(size, int) and previous is not None:
                item.raw_metadata["size_delta"] = size - previous
            previous = size if isinstance(size, int) else None

    def _pageviews(
        self, spec: QuerySpec, ctx: CollectionContext, wiki: str, title: str, headers, options
    ) -> dict[str, Any] | None:
        if not options["pageviews"]:
            return None
        project = wiki.removesuffix(".org")
        article = quote(title.replace(" ", "_"), safe="")
        first = spec.window_start.astimezone(timezone.utc)
        last = (spec.window_end - timedelta(seconds=1)).astimezone(timezone.utc)
        url = (
            f"{options['pageviews_url']}/{project}/{options['pageviews_access']}/{options['pageviews_agent']}/"
            f"{article}/daily/{first:%Y%m%d}00/{last:%Y%m%d}00"
        )
        try:
            response = ctx.http.get(
                url, headers=headers, arena=self.name, min_interval_seconds=options["min_interval_seconds"]
            )
        except (CredentialError, RateLimited, ServerError, TransportError):
            raise
        except ArenaError as err:
            # The API answers 404 for a page without views in the window; the revisions still stand.
            why = "no data in the window (HTTP 404)" if "HTTP 404" in str(err) else str(err)
            ctx.log(f"{self.name}: no pageviews for '{title}' on {wiki}: {why}; its revisions get page_views null")
            return None
        return parse_pageviews(_decode(response.content, where(url)))
