"""TikTok Research API video query, for approved researchers (docs/collection.md, "tiktok").

Auth is the client-credentials flow: ``POST /v2/oauth/token/`` with the pooled credential's
``client_key`` and ``client_secret`` (a JSON secret) gives a ``clt.`` bearer token for two hours,
kept per credential. Videos come from ``POST /v2/research/video/query/`` with a JSON query of
``and``/``or``/``not`` conditions, a ``start_date``/``end_date`` (``YYYYMMDD``) at most 30 days
apart, so a month is split into windows of at most 30 days (a 31-day month is two), and pages of
``max_count`` ≤ 100 videos followed with ``cursor`` + ``search_id``.

Queries: one-atom terms share one query (``keyword IN [...]`` and ``hashtag_name IN [...]`` in
``or``); other clauses are a query each (an ``EQ`` condition per required word or phrase in
``and``, exclusions in ``not``); both keep ``region_code IN [DK]`` (option ``region_code``, null
drops it). The design's tiktok actors are one more query, ``username IN [...]`` (no region).

Cost: the Research API is free (0 credits; the arena is ``metered`` with a zero price, so every
request still passes ``ctx.budget.call(most=0)``). Its limits are a daily quota per client, reset
00:00 UTC: 1,000 requests and 100,000 records. The credential pool counts one quantity per
credential (``daily_quota``), so records are the unit: add the credential with
``daily_quota = 100000`` and each request leases ``quota_units_per_request`` (100, the most records
one request returns at ``max_count`` ≤ 100). That keeps both limits: at most 1,000 requests and
at most 100,000 records a day. When the quota is spent the pool stops the run in one line saying
when it resets.

Requests one run may make (what the pool quota must cover):
``(queries + [1 if tiktok actors]) × windows × max_pages`` (+ one token request per credential
per two hours). The API cannot leave out videos already stored: the checkpoint (window, cursor,
search_id, page) lets a killed run resume the same day without asking for pages it stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from datetime import date, datetime, timedelta, timezone
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

ARENA = "tiktok"
FIELDS = (
    "id,video_description,create_time,region_code,share_count,view_count,like_count,comment_count,"
    "hashtag_names,username,voice_to_text,video_duration"
)
DEFAULT_OPTIONS: dict[str, Any] = {
    "base_url": "https://open.tiktokapis.com",
    "region_code": "DK",
    "max_pages": 10,  # per query and window
    "max_count": 100,  # [V] at most 100 videos a request
    # Records are the pool's quota unit (daily_quota 100,000): a request counts the most it returns,
    # which also keeps requests at 1,000 a day. Set 1 for a credential whose daily_quota is requests.
    "quota_units_per_request": 100,
    "min_interval_seconds": 0.0,
}
WINDOW_DAYS = 30  # [V] end_date at most 30 days after start_date
_BAD_CREDENTIAL = {"access_token_invalid", "scope_not_authorized", "invalid_client", "unauthorized_client"}


def windows(start: datetime, end: datetime) -> list[tuple[date, date]]:
    """The month as (first, last) day windows of at most 30 days, both inclusive."""
    first, last = (
        start.astimezone(timezone.utc).date(),
        (end - timedelta(microseconds=1)).astimezone(timezone.utc).date(),
    )
    found = []
    while first <= last:
        stop = min(first + timedelta(days=WINDOW_DAYS - 1), last)
        found.append((first, stop))
        first = stop + timedelta(days=1)
    return found


def _words(atom: terms.Atom) -> str:
    return " ".join(atom.words) if isinstance(atom, terms.Phrase) else atom.text


def _condition(atom: terms.Atom, operation: str = "EQ") -> dict[str, Any]:
    if isinstance(atom, terms.Hashtag):
        return {"operation": operation, "field_name": "hashtag_name", "field_values": [atom.text.lstrip("#")]}
    return {"operation": operation, "field_name": "keyword", "field_values": [_words(atom)]}


def build_queries(
    raw_terms: tuple[str, ...] | list[str], region: str | None
) -> list[tuple[str, dict[str, Any], str | None]]:
    """(label, query, term) triples; the term is named when the query has one owner."""
    region_part = [{"operation": "IN", "field_name": "region_code", "field_values": [region]}] if region else []
    keywords: dict[str, set[str]] = {}
    hashtags: dict[str, set[str]] = {}
    own: list[tuple[str, dict[str, Any], str | None]] = []
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            if len(clause.required) == 1 and not clause.excluded:
                atom = clause.required[0]
                if isinstance(atom, terms.Hashtag):
                    hashtags.setdefault(atom.text.lstrip("#"), set()).add(term.text)
                else:
                    keywords.setdefault(_words(atom), set()).add(term.text)
                continue
            excluded = [atom for node in clause.excluded for atom in terms.spell_exclusions(node)]
            query: dict[str, Any] = {"and": region_part + [_condition(a) for a in clause.required]}
            if excluded:
                query["not"] = [_condition(a) for a in excluded]
            own.append((clause_label(clause.required, excluded), query, term.text))
    queries: list[tuple[str, dict[str, Any], str | None]] = []
    if keywords or hashtags:
        either = []
        if keywords:
            either.append({"operation": "IN", "field_name": "keyword", "field_values": list(keywords)})
        if hashtags:
            either.append({"operation": "IN", "field_name": "hashtag_name", "field_values": list(hashtags)})
        owners = set().union(*keywords.values(), *hashtags.values())
        label = " | ".join([*keywords, *("#" + h for h in hashtags)])
        queries.append((label, {"and": region_part, "or": either}, owners.pop() if len(owners) == 1 else None))
    return queries + own


def clause_label(required: tuple[terms.Atom, ...], excluded: list[terms.Atom]) -> str:
    return " ".join(
        [_words(a) if not isinstance(a, terms.Hashtag) else a.text for a in required]
        + ["-" + _words(a) for a in excluded]
    )


def actor_query(spec: QuerySpec) -> tuple[str, dict[str, Any]] | None:
    names = [a.username.lstrip("@") for a in spec.actors if a.platform == ARENA and a.username]
    if not names:
        return None
    return "accounts " + ",".join(names), {
        "and": [{"operation": "IN", "field_name": "username", "field_values": names}]
    }


# --- parsing ---------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**63 - 1:
        return None
    return value


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    text = _text(value)
    return text if text and text.isascii() and text.isdigit() else None


def video_item(video: Any, source: str) -> CollectedItem:
    """One video of the query answer, mapped exactly as the file import maps TikTok (``_map_tiktok``):
    the id, the URL ``tiktok.com/@handle/video/id``, the handle as author id."""
    if not isinstance(video, Mapping):
        raise MalformedResponse(ARENA, "TikTok video is not an object; the API may have changed")
    video_id = _id(video.get("id")) or _id(video.get("video_id"))
    if video_id is None:
        raise MalformedResponse(ARENA, "TikTok video has no 'id'; the API may have changed")
    created = video.get("create_time")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise MalformedResponse(ARENA, f"TikTok video {video_id} has no 'create_time'; the API may have changed")
    try:
        published = datetime.fromtimestamp(created, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise MalformedResponse(ARENA, f"TikTok video {video_id} has an unreadable 'create_time'") from None
    handle = _text(video.get("username"))
    tags = video.get("hashtag_names")
    hashtags = [t for t in tags if isinstance(t, str) and t.strip()] if isinstance(tags, list) else []
    duration = video.get("video_duration")
    raw = {
        "hashtags": hashtags,
        "region_code": _text(video.get("region_code")),
        "voice_to_text": _text(video.get("voice_to_text")),
        "video_duration": duration if isinstance(duration, int | float) and not isinstance(duration, bool) else None,
    }
    return CollectedItem(
        platform="tiktok",
        platform_id=video_id,
        published_at=published,
        content_type="video",
        url=f"https://www.tiktok.com/@{handle}/video/{video_id}" if handle else None,
        text_content=_text(video.get("video_description")),
        author_platform_id=handle,
        author_display_name=handle,
        views_count=_count(video.get("view_count")),
        likes_count=_count(video.get("like_count")),
        shares_count=_count(video.get("share_count")),
        comments_count=_count(video.get("comment_count")),
        raw_metadata={k: v for k, v in raw.items() if v not in (None, [], "")},
        source=source,
    )


def error_of(document: Any) -> tuple[str, str]:
    """(code, message) of TikTok's ``error`` envelope; ("", "") without one."""
    error = document.get("error") if isinstance(document, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("code") or ""), " ".join(str(error.get("message") or "").split())[:200]
    if isinstance(error, str):  # the OAuth endpoint's {"error": "invalid_client", ...}
        return error, " ".join(str(document.get("error_description") or "").split())[:200]
    return "", ""


def parse_page(document: Any) -> tuple[list[Any], int | None, bool, str | None]:
    """Videos, next cursor, has_more and search_id of one query answer."""
    data = document.get("data") if isinstance(document, Mapping) else None
    if not isinstance(data, Mapping):
        raise MalformedResponse(ARENA, "TikTok query answer has no 'data'; the API may have changed")
    videos = data.get("videos", [])
    if videos is None:
        videos = []
    if not isinstance(videos, list):
        raise MalformedResponse(ARENA, "TikTok query answer 'videos' is not a list; the API may have changed")
    cursor = data.get("cursor")
    cursor = cursor if isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0 else None
    search_id = data.get("search_id")
    search_id = str(search_id) if isinstance(search_id, str | int) and not isinstance(search_id, bool) else None
    return videos, cursor, data.get("has_more") is True, search_id or None


# --- the arena -------------------------------------------------------------------------------------


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"option '{key}' must be a whole number from {low} to {high}, not {value!r}")
    return value


class _Tokens:
    def __init__(self) -> None:
        self._tokens: dict[Any, tuple[str, float]] = {}

    def get(self, lease: Any) -> str | None:
        token = self._tokens.get(lease.id)
        return token[0] if token and token[1] > time.monotonic() else None

    def put(self, lease: Any, token: str, expires_in: float) -> None:
        self._tokens[lease.id] = (token, time.monotonic() + max(0.0, expires_in - 60))

    def drop(self, lease: Any) -> None:
        self._tokens.pop(lease.id, None)


@register
class TikTokArena(Arena):
    name = "tiktok"
    platform = "tiktok"
    description = "TikTok videos for the design's terms and accounts, via the Research API (approved researchers)."
    supported_tiers = frozenset({Tier.MEDIUM})
    needs_credential = True
    enabled_by_default = False
    metered = True
    keep_unmatched = True  # TikTok searched descriptions server-side

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        merged = {**DEFAULT_OPTIONS, **options}
        if not isinstance(merged["base_url"], str) or urlsplit(merged["base_url"]).scheme not in ("http", "https"):
            raise ValueError(f"option 'base_url' must be an http(s) URL, not {merged['base_url']!r}")
        region = merged["region_code"]
        if region is not None and not (isinstance(region, str) and region.isalpha() and len(region) == 2):
            raise ValueError(f"option 'region_code' must be a two-letter country code, or null, not {region!r}")
        return {
            **merged,
            "base_url": merged["base_url"].rstrip("/"),
            "region_code": region.upper() if region else None,
            "max_pages": _whole(merged, "max_pages", 1, 1000),
            "max_count": _whole(merged, "max_count", 1, 100),
            "quota_units_per_request": _whole(merged, "quota_units_per_request", 1, 100_000),
            "min_interval_seconds": validate_min_interval(merged["min_interval_seconds"]),
        }

    def _queries(self, spec: QuerySpec, options: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], str | None]]:
        queries = build_queries(spec.terms, options["region_code"]) if any(t.strip() for t in spec.terms) else []
        accounts = actor_query(spec)
        if accounts:
            queries.append((accounts[0], accounts[1], None))
        return queries

    def requests_needed(self, spec: QuerySpec) -> int:
        """The most requests one run makes: queries × windows × max_pages (tokens aside)."""
        options = self.validate_options(spec.options)
        return (
            len(self._queries(spec, options)) * len(windows(spec.window_start, spec.window_end)) * options["max_pages"]
        )

    def estimate_credits(self, spec: QuerySpec) -> int:
        """requests × price (0: free for approved researchers); the quota is the pool's business."""
        options = self.validate_options(spec.options)
        return self.requests_needed(spec) * price(ARENA, spec.tier.value).of(options["max_count"])

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected | Checkpoint]:
        options = self.validate_options(spec.options)
        if ctx.credentials is None:
            raise ArenaError(self.name, "no credential pool was given; the TikTok Research API needs a client key")
        self._ctx, self._options, self._tokens = ctx, options, _Tokens()
        self._price = price(ARENA, spec.tier.value)
        queries = self._queries(spec, options)
        if not queries:
            raise ArenaError(self.name, "the design has no terms and no tiktok accounts; add either")
        spans = windows(spec.window_start, spec.window_end)
        for label, query, term in queries:
            source = f"tiktok query: {label}"[:200]
            resumed = ctx.resume(source)
            window, cursor, search_id, page = 0, 0, None, 0
            if resumed and resumed.today:
                if resumed.finished:
                    ctx.log(f"{self.name}: {source} was finished today; not asked again")
                    continue
                state = resumed.state
                window, cursor = int(state.get("window", 0)), int(state.get("cursor", 0))
                search_id, page = state.get("search_id"), int(state.get("page", 0))
            ctx.searched(source)
            while window < len(spans):
                first, last = spans[window]
                videos, next_cursor, more, next_id = self._page(query, first, last, cursor, search_id)
                for video in videos:
                    try:
                        item = video_item(video, source)
                    except MalformedResponse as err:
                        yield Rejected(str(err), source)
                        continue
                    if term is not None:
                        item.matched_terms = (term,)
                    yield item
                page += 1
                if more and next_cursor is not None and page < options["max_pages"]:
                    cursor, search_id = next_cursor, next_id or search_id
                else:
                    if more:
                        ctx.log(f"{self.name}: {source} {first:%Y-%m-%d}–{last:%Y-%m-%d} has more than {page} pages")
                    window, cursor, search_id, page = window + 1, 0, None, 0
                state = {"window": window, "cursor": cursor, "search_id": search_id, "page": page}
                yield Checkpoint(source, state, finished=window >= len(spans))

    def _page(
        self, query: Mapping[str, Any], first: date, last: date, cursor: int, search_id: str | None
    ) -> tuple[list[Any], int | None, bool, str | None]:
        ctx, options = self._ctx, self._options
        assert ctx.credentials is not None
        url = f"{options['base_url']}/v2/research/video/query/"
        body: dict[str, Any] = {
            "query": query,
            "start_date": f"{first:%Y%m%d}",
            "end_date": f"{last:%Y%m%d}",
            "max_count": options["max_count"],
            "cursor": cursor,
        }
        if search_id:
            body["search_id"] = search_id

        def request(lease: Any) -> Any:
            for attempt in (1, 2):
                token = self._tokens.get(lease) or self._token(lease)
                response = ctx.http.request(
                    "POST",
                    url,
                    arena=self.name,
                    params={"fields": FIELDS},
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                    min_interval_seconds=options["min_interval_seconds"],
                )
                try:
                    return self._interpret(response, url)
                except CredentialError:
                    self._tokens.drop(lease)  # tokens expire early: one fresh one, then it is the key's
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        budget = ctx.budget
        with budget.call(most=self._price.of(options["max_count"])) if budget is not None else nullcontext() as charge:
            document = ctx.credentials.call(request, cost=options["quota_units_per_request"])
            videos, next_cursor, more, next_id = parse_page(document)
            if charge is not None:
                charge.credits = self._price.of(len(videos))
        return videos, next_cursor, more, next_id

    def _token(self, lease: Any) -> str:
        options = self._options
        url = f"{options['base_url']}/v2/oauth/token/"
        response = self._ctx.http.request(
            "POST",
            url,
            arena=self.name,
            data={
                "client_key": lease.field("client_key").reveal(),
                "client_secret": lease.field("client_secret").reveal(),
                "grant_type": "client_credentials",
            },
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-cache"},
        )
        try:
            document = response.json()
        except ValueError:
            document = None
        code, message = error_of(document)
        if response.status_code in (400, 401, 403) or (code and code != "ok"):
            raise CredentialError(
                self.name,
                f"HTTP {response.status_code} from {where(url)} ({code or 'refused'}{': ' + message if message else ''}): "
                "the client key or secret was refused; check or renew the credential",
            )
        if response.status_code == 429:
            raise RateLimited(self.name, f"HTTP 429 from {where(url)}; rate-limited", retry_after=None)
        token = document.get("access_token") if isinstance(document, Mapping) else None
        if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable():
            raise MalformedResponse(
                self.name, f"{where(url)} answered without 'access_token'; the API may have changed"
            )
        expires = document.get("expires_in") if isinstance(document, Mapping) else None
        self._tokens.put(lease, token, float(expires) if isinstance(expires, int | float) else 7200.0)
        return token

    def _interpret(self, response: Any, url: str) -> Any:
        status, endpoint = response.status_code, where(url)
        try:
            document = response.json()
        except ValueError:
            document = None
        code, message = error_of(document)
        said = f"{code or 'no code'}{': ' + message if message else ''}"
        if status == 429 or code in ("rate_limit_exceeded", "daily_quota_limit_exceeded"):
            wait = parse_retry_after(response.headers.get("retry-after"), time.time())
            # None rests the credential until 00:00 UTC, when TikTok's daily quota resets.
            raise RateLimited(self.name, f"HTTP {status} from {endpoint} ({said}): rate-limited", retry_after=wait)
        if status in (401, 403) or code in _BAD_CREDENTIAL:
            raise CredentialError(self.name, f"HTTP {status} from {endpoint} ({said}): check or renew the credential")
        if not 200 <= status < 300 or (code and code != "ok"):
            raise ArenaError(self.name, f"HTTP {status} from {endpoint} ({said}); check the query and its options")
        if document is None:
            content_type = response.headers.get("content-type") or "no content type"
            raise MalformedResponse(
                self.name, f"{endpoint} answered with {content_type} that is not JSON; the API may have changed"
            )
        return document
