"""YouTube Data API v3 with API keys from the pool, research notes §3.

``search.list`` finds videos published in the month (``publishedAfter``/``publishedBefore``),
then ``videos.list`` adds statistics 50 at a time. Actor lists go through the channel's uploads
playlist (``channels.list`` → ``playlistItems.list``), which is far cheaper than a search.
``commentThreads.list`` runs per video when the design asks (option ``comments``).

Quota units are the arena's cost. Each request's units are passed to the pool (``cost=N``, so a
key's daily quota counts units), counted, and settled as credits; the estimate is the most the
options allow. Google says why it refuses in ``error.errors[].reason``: a spent quota (403
``quotaExceeded``/``dailyLimitExceeded``) rests the key until the next UTC midnight, a bad key
(``keyInvalid``, 400 or 403) switches it off, and a missing video or channel is a ``Rejected``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from observatory_pipelines.core.collection import terms
from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    CollectedItem,
    CollectionContext,
    Interaction,
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
from observatory_pipelines.core.platform.http import parse_retry_after, validate_min_interval, where

ARENA = "youtube"
DEFAULT_OPTIONS: dict[str, Any] = {
    "base_url": "https://www.googleapis.com/youtube/v3",
    "region_code": "DK",
    "relevance_language": "da",
    "comments": False,
    "max_search_pages": 10,  # [S] ~500 results per query, 50 a page
    "max_playlist_pages": 10,
    "max_comment_pages": 1,  # per video
    "search_cost_units": 100,  # [U] 100 in the older quota table, 1 in a separate bucket in the newest
    "list_cost_units": 1,  # [U]
    "min_interval_seconds": 0.0,
}
PAGE = 50
COMMENT_PAGE = 100
_SPENT = {"quotaExceeded", "dailyLimitExceeded", "rateLimitExceeded", "userRateLimitExceeded"}
_BAD_KEY = {"keyInvalid", "keyExpired", "forbidden", "accessNotConfigured", "ipRefererBlocked"}
_GONE = {"videoNotFound", "channelNotFound", "playlistNotFound", "commentsDisabled", "notFound"}


def _yt_atom(atom: terms.Atom) -> str:
    # YouTube's q has no documented hashtag operator; '#dkpol' is searched as the word.
    return '"' + " ".join(atom.words) + '"' if isinstance(atom, terms.Phrase) else atom.text


def build_queries(raw_terms: tuple[str, ...] | list[str]) -> list[tuple[str, str | None]]:
    """(q, term) pairs: one-atom clauses share one ``|``-ed query (search.list is dear), other
    clauses are a query each with ``-`` exclusions; the term is named when a query has one owner."""
    shared: dict[str, set[str]] = {}
    own: dict[str, str] = {}
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            if len(clause.required) == 1 and not clause.excluded:
                shared.setdefault(_yt_atom(clause.required[0]), set()).add(term.text)
                continue
            words = [_yt_atom(a) for a in clause.required]
            try:
                words += ["-" + _yt_atom(atom) for node in clause.excluded for atom in terms.spell_exclusions(node)]
            except ValueError as group:
                raise ArenaError(ARENA, f"YouTube cannot exclude the group {group} of term '{term.text}'") from None
            own.setdefault(" ".join(words), term.text)
    queries: list[tuple[str, str | None]] = []
    if shared:
        owners = set().union(*shared.values())
        queries.append(("|".join(shared), owners.pop() if len(owners) == 1 else None))
    queries += list(own.items())
    return queries


# --- parsing ---------------------------------------------------------------------------------------


def _need(node: Any, key: str, where_: str) -> Any:
    if not isinstance(node, Mapping) or key not in node or node[key] is None:
        raise MalformedResponse(ARENA, f"YouTube {where_} has no '{key}'; the API may have changed")
    return node[key]


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    # Counts are strings in the API; a hidden count is absent.
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, str | int) else None
    except ValueError:
        return None


def _time(value: Any, where_: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedResponse(ARENA, f"YouTube {where_} has no 'publishedAt'; the API may have changed")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedResponse(ARENA, f"YouTube {where_} has an unreadable 'publishedAt' {value[:40]!r}") from None


def video_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def _items(document: Any, where_: str) -> list[Any]:
    items = _need(document, "items", where_)
    if not isinstance(items, list):
        raise MalformedResponse(ARENA, f"YouTube {where_} 'items' is not a list; the API may have changed")
    return items


def parse_search(document: Any) -> tuple[list[str], str | None]:
    """Video ids of a search.list page and its ``nextPageToken``."""
    ids = []
    for item in _items(document, "search answer"):
        ident = _need(item, "id", "search result")
        if _need(ident, "kind", "search result id") == "youtube#video":
            ids.append(str(_need(ident, "videoId", "search result id")))
    token = document.get("nextPageToken")
    return ids, token if isinstance(token, str) and token else None


def parse_playlist(document: Any) -> tuple[list[tuple[str, datetime]], str | None]:
    """(video id, published) of a playlistItems.list page and its ``nextPageToken``."""
    found = []
    for item in _items(document, "playlistItems answer"):
        details = _need(item, "contentDetails", "playlist item")
        published = details.get("videoPublishedAt")
        if published is None:  # a private or deleted video in the uploads list has no date
            continue
        found.append((str(_need(details, "videoId", "playlist item")), _time(published, "playlist item")))
    token = document.get("nextPageToken")
    return found, token if isinstance(token, str) and token else None


def video_item(video: Any, source: str) -> CollectedItem:
    """A videos.list item as an item."""
    video_id = str(_need(video, "id", "video"))
    snippet = _need(video, "snippet", "video")
    stats = video.get("statistics") if isinstance(video.get("statistics"), Mapping) else {}
    channel = _text(_need(snippet, "channelId", "video snippet"))
    thumbnails = snippet.get("thumbnails")
    media = []
    if isinstance(thumbnails, Mapping):
        for size in ("maxres", "standard", "high", "medium", "default"):
            thumb = thumbnails.get(size)
            url = _text(thumb.get("url")) if isinstance(thumb, Mapping) else None
            if url:
                media.append(url)
                break
    details = video.get("contentDetails") if isinstance(video.get("contentDetails"), Mapping) else {}
    language = _text(snippet.get("defaultAudioLanguage")) or _text(snippet.get("defaultLanguage"))
    tags = snippet.get("tags")
    raw = {
        "channel_title": _text(snippet.get("channelTitle")),
        "category_id": _text(snippet.get("categoryId")),
        "tags": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else None,
        "duration": _text(details.get("duration")),
        "favorite_count": _count(stats.get("favoriteCount")),
        "live_broadcast_content": _text(snippet.get("liveBroadcastContent")),
    }
    return CollectedItem(
        platform="youtube",
        platform_id=video_id,
        published_at=_time(snippet.get("publishedAt"), "video snippet"),
        content_type="video",
        url=video_url(video_id),
        title=_text(snippet.get("title")),
        text_content=_text(snippet.get("description")),
        language=language.split("-")[0].lower() if language else None,
        author_platform_id=channel,
        author_display_name=_text(snippet.get("channelTitle")),
        views_count=_count(stats.get("viewCount")),
        likes_count=_count(stats.get("likeCount")),
        comments_count=_count(stats.get("commentCount")),
        media_urls=media,
        raw_metadata={k: v for k, v in raw.items() if v is not None},
        source=source,
    )


def _comment(comment: Any, parent_id: str, parent_author: str | None, video_id: str, source: str) -> CollectedItem:
    comment_id = str(_need(comment, "id", "comment"))
    snippet = _need(comment, "snippet", "comment")
    author_channel = snippet.get("authorChannelId")
    author = _text(author_channel.get("value")) if isinstance(author_channel, Mapping) else None
    return CollectedItem(
        platform="youtube",
        platform_id=comment_id,
        published_at=_time(snippet.get("publishedAt"), "comment snippet"),
        content_type="comment",
        url=f"{video_url(video_id)}&lc={comment_id}",
        text_content=_text(snippet.get("textOriginal")) or _text(snippet.get("textDisplay")),
        author_platform_id=author,
        author_display_name=_text(snippet.get("authorDisplayName")),
        likes_count=_count(snippet.get("likeCount")),
        interactions=[Interaction("reply", platform_id=parent_id, author_id=parent_author)],
        raw_metadata={"video_id": video_id},
        source=source,
    )


def parse_comment_threads(
    document: Any, video_id: str, video_author: str | None, source: str
) -> tuple[list[CollectedItem], str | None]:
    """Top-level comments (replying to the video) and their replies (to the top-level comment)."""
    found = []
    for thread in _items(document, "commentThreads answer"):
        snippet = _need(thread, "snippet", "comment thread")
        top = _comment(_need(snippet, "topLevelComment", "comment thread"), video_id, video_author, video_id, source)
        found.append(top)
        replies = thread.get("replies")
        for reply in replies.get("comments", []) if isinstance(replies, Mapping) else []:
            found.append(_comment(reply, top.platform_id, top.author_platform_id, video_id, source))
    token = document.get("nextPageToken")
    return found, token if isinstance(token, str) and token else None


def error_reasons(document: Any) -> list[str]:
    """``error.errors[].reason`` of Google's error envelope."""
    error = document.get("error") if isinstance(document, Mapping) else None
    errors = error.get("errors") if isinstance(error, Mapping) else None
    return [str(e["reason"]) for e in errors or [] if isinstance(e, Mapping) and e.get("reason")]


# --- the arena -------------------------------------------------------------------------------------


class _Gone(Exception):
    """A deleted video or channel, or disabled comments: a ``Rejected`` for that source."""


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"option '{key}' must be a whole number from {low} to {high}, not {value!r}")
    return value


@register
class YouTubeArena(Arena):
    name = "youtube"
    platform = "youtube"
    description = "YouTube videos (and optionally comments) for the design's terms and channels, via the Data API v3."
    needs_credential = True
    enabled_by_default = False
    keep_unmatched = True  # YouTube searched titles, descriptions and tags server-side

    def __init__(self) -> None:
        self.units_spent = 0

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        merged = {**DEFAULT_OPTIONS, **options}
        if not isinstance(merged["base_url"], str) or urlsplit(merged["base_url"]).scheme not in ("http", "https"):
            raise ValueError(f"option 'base_url' must be an http(s) URL, not {merged['base_url']!r}")
        for key in ("region_code", "relevance_language"):
            if merged[key] is not None and not (isinstance(merged[key], str) and merged[key].isalpha()):
                raise ValueError(f"option '{key}' must be a code of letters, or null to drop it, not {merged[key]!r}")
        if not isinstance(merged["comments"], bool):
            raise ValueError(f"option 'comments' must be true or false, not {merged['comments']!r}")
        return {
            **merged,
            "base_url": merged["base_url"].rstrip("/"),
            "max_search_pages": _whole(merged, "max_search_pages", 1, 100),
            "max_playlist_pages": _whole(merged, "max_playlist_pages", 1, 1000),
            "max_comment_pages": _whole(merged, "max_comment_pages", 1, 100),
            "search_cost_units": _whole(merged, "search_cost_units", 1, 10_000),
            "list_cost_units": _whole(merged, "list_cost_units", 1, 10_000),
            "min_interval_seconds": validate_min_interval(merged["min_interval_seconds"]),
        }

    def _channels(self, spec: QuerySpec) -> list[str]:
        return [
            a.user_id or a.username or "" for a in spec.actors if a.platform == "youtube" and (a.user_id or a.username)
        ]

    def estimate_credits(self, spec: QuerySpec) -> int:
        """The most the options let one collection spend, in quota units (the surplus is refunded)."""
        options = self.validate_options(spec.options)
        search, lists = options["search_cost_units"], options["list_cost_units"]
        queries = len(build_queries(spec.terms)) if any(t.strip() for t in spec.terms) else 0
        pages = queries * options["max_search_pages"]
        # Each search page of 50 ids is one videos.list call.
        units = pages * (search + lists)
        playlist_pages = len(self._channels(spec)) * options["max_playlist_pages"]
        units += len(self._channels(spec)) * lists + playlist_pages * 2 * lists
        if options["comments"]:
            units += (pages + playlist_pages) * PAGE * options["max_comment_pages"] * lists
        return units

    def credits_used(self, spec: QuerySpec, items: int, api_calls: int) -> int:
        return self.units_spent

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        if ctx.credentials is None:
            raise ArenaError(self.name, "no credential pool was given; YouTube needs an API key")
        self._ctx, self._options = ctx, options
        queries = build_queries(spec.terms) if any(t.strip() for t in spec.terms) else []
        channels = self._channels(spec)
        if not queries and not channels:
            raise ArenaError(self.name, "the design has no terms and no youtube channels; add either")
        seen: set[str] = set()
        for q, term in queries:
            source = f"youtube search: {q}"
            ctx.searched(source)
            token: str | None = None
            for _ in range(options["max_search_pages"]):
                params = {
                    "part": "snippet",
                    "type": "video",
                    "q": q,
                    "order": "date",
                    "maxResults": PAGE,
                    "publishedAfter": f"{spec.window_start:%Y-%m-%dT%H:%M:%SZ}",
                    "publishedBefore": f"{spec.window_end:%Y-%m-%dT%H:%M:%SZ}",
                    "regionCode": options["region_code"],
                    "relevanceLanguage": options["relevance_language"],
                    "pageToken": token,
                }
                try:
                    ids, token = parse_search(self._get("search", params, options["search_cost_units"]))
                except _Gone as gone:
                    yield Rejected(str(gone), source)
                    break
                for item in self._videos([i for i in ids if i not in seen], source):
                    if isinstance(item, CollectedItem):
                        seen.add(item.platform_id)
                        if term is not None:
                            item.matched_terms = (term,)
                    yield item
                if token is None:
                    break
        for channel in channels:
            source = f"youtube channel {channel}"
            ctx.searched(source)
            try:
                yield from self._channel(spec, channel, source, seen)
            except _Gone as gone:
                yield Rejected(str(gone), source)

    def _channel(
        self, spec: QuerySpec, channel: str, source: str, seen: set[str]
    ) -> Iterator[CollectedItem | Rejected]:
        options = self._options
        key = "id" if channel.startswith("UC") else "forHandle"
        document = self._get("channels", {"part": "contentDetails", key: channel}, options["list_cost_units"])
        # An unknown channel is an answer without "items", not an error.
        found = _items(document, "channels answer") if isinstance(document, Mapping) and "items" in document else []
        if not found:
            raise _Gone(f"YouTube has no channel {channel} (deleted, or a wrong id or handle)")
        related = _need(_need(found[0], "contentDetails", "channel"), "relatedPlaylists", "channel contentDetails")
        uploads = str(_need(related, "uploads", "channel relatedPlaylists"))
        token: str | None = None
        for _ in range(options["max_playlist_pages"]):
            params = {"part": "contentDetails", "playlistId": uploads, "maxResults": PAGE, "pageToken": token}
            entries, token = parse_playlist(self._get("playlistItems", params, options["list_cost_units"]))
            wanted = [v for v, when in entries if spec.window_start <= when < spec.window_end and v not in seen]
            for item in self._videos(wanted, source):
                if isinstance(item, CollectedItem):
                    seen.add(item.platform_id)
                yield item
            # Uploads come newest first: a page reaching before the month ends the channel.
            if token is None or any(when < spec.window_start for _, when in entries):
                break

    def _videos(self, ids: list[str], source: str) -> Iterator[CollectedItem | Rejected]:
        for start in range(0, len(ids), PAGE):
            batch = ids[start : start + PAGE]
            params = {"part": "snippet,statistics,contentDetails", "id": ",".join(batch), "maxResults": PAGE}
            videos = _items(self._get("videos", params, self._options["list_cost_units"]), "videos answer")
            returned = set()
            for video in videos:
                item = video_item(video, source)
                returned.add(item.platform_id)
                yield item
                if self._options["comments"]:
                    yield from self._comment_pages(item, source)
            for missing in [i for i in batch if i not in returned]:
                # Found by search, gone or made private before videos.list: nothing to map.
                yield Rejected(
                    f"YouTube video {missing} is private or deleted; videos.list no longer returns it", source
                )

    def _comment_pages(self, video: CollectedItem, source: str) -> Iterator[CollectedItem | Rejected]:
        token: str | None = None
        for _ in range(self._options["max_comment_pages"]):
            params = {
                "part": "snippet,replies",
                "videoId": video.platform_id,
                "maxResults": COMMENT_PAGE,
                "order": "time",
                "textFormat": "plainText",
                "pageToken": token,
            }
            try:
                document = self._get("commentThreads", params, self._options["list_cost_units"])
            except _Gone as gone:
                yield Rejected(str(gone), source)
                return
            comments, token = parse_comment_threads(document, video.platform_id, video.author_platform_id, source)
            yield from comments
            if token is None:
                return

    def _get(self, endpoint: str, params: Mapping[str, Any], units: int) -> Any:
        ctx, options = self._ctx, self._options
        assert ctx.credentials is not None
        url = f"{options['base_url']}/{endpoint}"
        sent = {k: v for k, v in params.items() if v is not None}

        def request(lease: Any) -> Any:
            response = ctx.http.request(
                "GET",
                url,
                arena=self.name,
                params={**sent, "key": lease.secret.reveal()},
                min_interval_seconds=options["min_interval_seconds"],
            )
            # Google charges every request it answers, errors included; a refused or spent key
            # is charged nothing, and the pool rotates.
            charged = True
            try:
                return self._interpret(response, url)
            except (CredentialError, RateLimited):
                charged = False
                raise
            finally:
                if charged:
                    self.units_spent += units

        return ctx.credentials.call(request, cost=units)

    def _interpret(self, response: Any, url: str) -> Any:
        status, endpoint = response.status_code, where(url)
        try:
            document = response.json()
        except ValueError:
            document = None
        if 200 <= status < 300:
            if document is None:
                content_type = response.headers.get("content-type") or "no content type"
                raise MalformedResponse(
                    self.name, f"{endpoint} answered with {content_type} that is not JSON; the API may have changed"
                )
            return document
        reasons = error_reasons(document)
        said = ", ".join(reasons) or "no reason given"
        if status == 429 or (status == 403 and _SPENT & set(reasons)):
            wait = parse_retry_after(response.headers.get("retry-after"), 0.0) if status == 429 else None
            # None rests the key until the next UTC midnight, the nearest reset the pool knows.
            raise RateLimited(self.name, f"HTTP {status} from {endpoint} ({said}): quota spent", retry_after=wait)
        if _GONE & set(reasons) or status == 404:
            raise _Gone(f"HTTP {status} from {endpoint} ({said}): the item is deleted, private or closed")
        if status in (401, 403) or _BAD_KEY & set(reasons):
            raise CredentialError(self.name, f"HTTP {status} from {endpoint} ({said}): check or renew the API key")
        raise ArenaError(self.name, f"HTTP {status} from {endpoint} ({said}); check the request and its options")
