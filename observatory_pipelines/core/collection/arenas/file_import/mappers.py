"""From one platform object to one ``CollectedItem``: the per-platform mappers and what they share.

Zeeschuimer captures each platform's own JSON, which changes without notice, and 4CAT writes its
mapped columns; every mapper reads its source through small forgiving accessors, so a missing or
odd field becomes ``None`` rather than an exception. Each mapper fills a ``_Post``; ``_finish``
then parses the time and adds provenance, the same way for every platform. ``readers.py`` calls
``from_zeeschuimer`` and ``from_4cat`` for each line it has parsed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from observatory_pipelines.core.collection.arenas import bluesky
from observatory_pipelines.core.collection.arenas.base import CollectedItem, Interaction, Rejected
from observatory_pipelines.core.collection.arenas.telegram import normalise_channel
from observatory_pipelines.core.collection.text import html_to_text

#: The platform object is kept in ``raw_metadata["raw"]`` only up to this size (JSON characters);
#: Instagram objects can run to hundreds of KB and would bloat every row.
MAX_RAW_CHARS = 16 * 1024
_MAX_BIGINT = 2**63 - 1  # content_records counts are BIGINT

#: What one line of a file gives: an item, or the reason it gives none.
Output = CollectedItem | Rejected


# ---------------------------------------------------------------------------------------------
# Small, forgiving accessors: every value comes from a file someone edited or a platform changed.


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return _text(value)


def _http(value: Any) -> str | None:
    text = _text(value)
    return text if text and text.lower().startswith(("http://", "https://")) else None


def _count(value: Any) -> int | None:
    """A non-negative count that fits BIGINT; 4CAT writes -1 for 'unknown', X sends strings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = int(value) if math.isfinite(value) else None
    elif isinstance(value, str):
        digits = value.strip()
        if re.fullmatch(r"\d{1,3}(,\d{3})+", digits):
            digits = digits.replace(",", "")
        value = int(digits) if re.fullmatch(r"\d{1,19}", digits) else None
    if isinstance(value, int) and 0 <= value <= _MAX_BIGINT:
        return value
    return None


_UNDETERMINED_LANGUAGES = {"und", "zxx", "qme", "qht", "qam", "qct", "qst"}


def _language(value: Any) -> str | None:
    code = (_text(value) or "").lower()
    if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", code) and code not in _UNDETERMINED_LANGUAGES:
        return code
    return None


def _one_line(value: Any, limit: int = 300) -> str:
    return " ".join(str(value).split())[:limit]


def _html_text(value: Any) -> str | None:
    markup = _text(value)
    if markup is None or "<" not in markup:
        return markup
    return _text(html_to_text(markup, keep_paragraphs=True))


# ---------------------------------------------------------------------------------------------
# Time


_TWITTER_TIME = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) (\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})")
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def _from_epoch(seconds: float) -> datetime | None:
    if not math.isfinite(seconds):
        return None
    if abs(seconds) >= 1e12:  # milliseconds (Zeeschuimer, JavaScript); seconds reach 1e12 only in year 33658
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _parse_time(value: Any) -> datetime | None:
    """Any time a platform or 4CAT writes: epoch s/ms, Twitter's format, ISO 8601, RFC 2822.

    Times without an offset are UTC, as 4CAT writes them. Plausibility (1970, 9999) is the
    orchestrator's call, not ours.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    text = _text(value)
    if text is None:
        return None
    if _NUMBER.fullmatch(text):
        return _from_epoch(float(text))
    parsed: datetime | None = None
    if match := _TWITTER_TIME.fullmatch(text):
        month, day, hh, mm, ss, sign, oh, om, year = match.groups()
        try:
            offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
            parsed = datetime(
                int(year),
                _MONTHS.get(month.lower(), 0),
                int(day),
                int(hh),
                int(mm),
                int(ss),
                tzinfo=timezone(offset),
            )
        except (ValueError, OverflowError):
            return None
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # an offset that pushes year 9999 past the calendar's end
        return None


# ---------------------------------------------------------------------------------------------
# Platform objects -> one common shape


@dataclass
class _Post:
    """What a mapper read from one platform object, before time parsing and provenance."""

    platform_id: str | None
    time: Any = None  # the source's own time value
    url: str | None = None
    text: str | None = None
    title: str | None = None
    language: str | None = None
    author_id: str | None = None
    author_handle: str | None = None
    author_name: str | None = None
    views: int | None = None
    likes: int | None = None
    shares: int | None = None
    comments: int | None = None
    media: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    interactions: list[Interaction] = field(default_factory=list)


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}


def x_interaction(kind: str, post_id: str | None, handle: str | None, user_id: str | None) -> Interaction | None:
    """An X post's link to another post or account, spelled the one way both the Zeeschuimer import
    and the x_twitter arena write it: X authors are keyed by handle (``_finish``), so the handle
    names the other author and the numeric id only stands in when no handle is known."""
    if post_id is None and handle is None and user_id is None:
        return None
    return Interaction(kind, platform_id=post_id, author_id=None if handle else user_id, handle=handle)


def x_interactions(
    reply: tuple[str | None, str | None, str | None],
    quote: tuple[str | None, str | None, str | None],
    repost: tuple[str | None, str | None, str | None],
    mentions: Iterable[tuple[str | None, str | None]],
) -> list[Interaction]:
    """Reply, quote, repost (each (post id, handle, user id); a post id is needed), then mentions."""
    found = [
        x_interaction(kind, *link) for kind, link in (("reply", reply), ("quote", quote), ("repost", repost)) if link[0]
    ]
    found += [x_interaction("mention", None, handle, user_id) for handle, user_id in mentions]
    return [link for link in found if link is not None]


def _x_user_handle(user: dict[str, Any]) -> str | None:
    return _text(_dig(user, "core", "screen_name")) or _text(_dig(user, "legacy", "screen_name"))


def _map_x(data: dict[str, Any]) -> _Post:
    # GraphQL results are sometimes wrapped once more (TweetWithVisibilityResults).
    tweet = _dict(data.get("tweet")) or data
    legacy = _dict(tweet.get("legacy"))
    user = _dict(_dig(tweet, "core", "user_results", "result"))
    adaptive_user = _dict(tweet.get("user"))  # the older "adaptive" format Zeeschuimer still emits

    def user_field(key: str) -> str | None:
        # X moved screen_name and name from user.legacy to user.core in 2025; exports hold both.
        return _text(_dig(user, "core", key)) or _text(_dig(user, "legacy", key)) or _text(adaptive_user.get(key))

    def full_text(node: dict[str, Any]) -> str | None:
        # Posts over 280 characters keep their whole text in note_tweet; full_text is cut.
        return _text(_dig(node, "note_tweet", "note_tweet_results", "result", "text")) or _text(
            _dig(node, "legacy", "full_text")
        )

    platform_id = _id(tweet.get("rest_id")) or _id(legacy.get("id_str")) or _id(tweet.get("id"))
    handle = user_field("screen_name")
    text = full_text(tweet)
    extra: dict[str, Any] = {}
    retweeted = _dict(_dig(legacy, "retweeted_status_result", "result"))
    if retweeted:
        retweeted = _dict(retweeted.get("tweet")) or retweeted
        original = full_text(retweeted)
        original_user = _dict(_dig(retweeted, "core", "user_results", "result"))
        original_handle = _text(_dig(original_user, "core", "screen_name")) or _text(
            _dig(original_user, "legacy", "screen_name")
        )
        if original:
            text = f"RT @{original_handle}: {original}" if original_handle else original
        extra["retweet_of"] = _id(retweeted.get("rest_id"))
    entities = _dict(legacy.get("entities"))
    media = _list(_dig(legacy, "extended_entities", "media")) or _list(entities.get("media"))
    url = f"https://x.com/{handle or 'i'}/status/{platform_id}" if platform_id else None
    quoted = _dict(_dig(tweet, "quoted_status_result", "result"))
    quoted = _dict(quoted.get("tweet")) or quoted
    quoted_user = _dict(_dig(quoted, "core", "user_results", "result"))
    interactions = x_interactions(
        reply=(
            _id(legacy.get("in_reply_to_status_id_str")),
            _text(legacy.get("in_reply_to_screen_name")),
            _id(legacy.get("in_reply_to_user_id_str")),
        ),
        quote=(_id(quoted.get("rest_id")), _x_user_handle(quoted_user), _id(quoted_user.get("rest_id"))),
        repost=(
            extra.get("retweet_of"),
            _x_user_handle(_dict(_dig(retweeted, "core", "user_results", "result"))),
            _id(_dig(retweeted, "core", "user_results", "result", "rest_id")),
        ),
        mentions=[
            (_text(_dict(m).get("screen_name")), _id(_dict(m).get("id_str")))
            for m in _list(entities.get("user_mentions"))
        ],
    )
    return _Post(
        platform_id=platform_id,
        time=legacy.get("created_at"),
        url=url,
        text=text,
        language=_language(legacy.get("lang")),
        author_id=(_id(user.get("rest_id")) or _id(legacy.get("user_id_str")) or _id(adaptive_user.get("id_str"))),
        author_handle=handle,
        author_name=user_field("name"),
        views=_count(_dig(tweet, "views", "count")) or _count(_dig(tweet, "ext_views", "count")),
        likes=_count(legacy.get("favorite_count")),
        shares=_count(legacy.get("retweet_count")),
        comments=_count(legacy.get("reply_count")),
        media=[u for m in media if (u := _http(_dict(m).get("media_url_https")))],
        interactions=interactions,
        extra=_compact(
            {
                **extra,
                "conversation_id": _id(legacy.get("conversation_id_str")),
                "in_reply_to": _id(legacy.get("in_reply_to_status_id_str")),
                "quoted": _id(quoted.get("rest_id")),
                "quote_count": _count(legacy.get("quote_count")),
                "hashtags": [t for tag in _list(entities.get("hashtags")) if (t := _text(_dict(tag).get("text")))],
                "links": [u for link in _list(entities.get("urls")) if (u := _http(_dict(link).get("expanded_url")))],
            }
        ),
    )


def _map_tiktok(data: dict[str, Any]) -> _Post:
    author = data.get("author")
    if isinstance(author, dict):
        handle, name = _text(author.get("uniqueId")), _text(author.get("nickname"))
        author_id = _id(author.get("id"))
    else:  # some captures flatten the author to its handle
        handle, name, author_id = _text(author), _text(data.get("nickname")), _id(data.get("authorId"))
    stats = _dict(data.get("stats")) or _dict(data.get("statsV2"))
    video = _dict(data.get("video"))
    platform_id = _id(data.get("id"))
    hashtags = [t for c in _list(data.get("challenges")) if (t := _text(_dict(c).get("title")))]
    return _Post(
        platform_id=platform_id,
        time=data.get("createTime"),
        url=f"https://www.tiktok.com/@{handle}/video/{platform_id}" if handle and platform_id else None,
        text=_text(data.get("desc")),
        language=_language(data.get("textLanguage")),
        author_id=author_id,
        author_handle=handle,
        author_name=name,
        views=_count(stats.get("playCount")),
        likes=_count(stats.get("diggCount")),
        shares=_count(stats.get("shareCount")),
        comments=_count(stats.get("commentCount")),
        media=[u for key in ("cover", "downloadAddr") if (u := _http(video.get(key)))],
        extra=_compact(
            {
                "hashtags": hashtags,
                "music": _text(_dig(data, "music", "title")),
                "location_created": _text(data.get("locationCreated")),
                "is_ad": data.get("isAd") is True or None,
            }
        ),
    )


def _map_tiktok_comment(data: dict[str, Any]) -> _Post:
    user = _dict(data.get("user"))
    return _Post(
        platform_id=_id(data.get("cid")) or _id(data.get("id")),
        time=data.get("create_time"),
        url=_http(_dig(data, "share_info", "url")),
        text=_text(data.get("text")),
        language=_language(data.get("comment_language")),
        author_id=_id(user.get("uid")),
        author_handle=_text(user.get("unique_id")),
        author_name=_text(user.get("nickname")),
        likes=_count(data.get("digg_count")),
        comments=_count(data.get("reply_comment_total")),
        extra=_compact({"video_id": _id(data.get("aweme_id")), "reply_to": _id(data.get("reply_id"))}),
    )


def _meta_media(node: dict[str, Any]) -> list[str]:
    """Image and video URLs of an Instagram/Threads item, carousel children included."""
    urls: list[str] = []
    for part in [node, *(_dict(c) for c in _list(node.get("carousel_media")))]:
        candidates = _list(_dig(part, "image_versions2", "candidates"))
        videos = _list(part.get("video_versions"))
        for url in (
            _dict(candidates[0]).get("url") if candidates else None,
            _dict(videos[0]).get("url") if videos else None,
            part.get("display_url"),
        ):
            if (url := _http(url)) and url not in urls:
                urls.append(url)
    return urls


def _meta_caption(data: dict[str, Any]) -> str | None:
    caption = data.get("caption")
    if isinstance(caption, dict):
        return _text(caption.get("text"))
    if isinstance(caption, str):
        return _text(caption)
    edges = _list(_dig(data, "edge_media_to_caption", "edges"))  # Instagram's older "graph" format
    return _text(_dig(edges[0], "node", "text")) if edges else None


def _map_instagram(data: dict[str, Any]) -> _Post:
    # The shortcode is the id, as in 4CAT's CSV, so both import routes give one platform_id.
    code = _text(data.get("code")) or _text(data.get("shortcode"))
    user = _dict(data.get("user")) or _dict(data.get("owner"))
    time = data.get("taken_at") if data.get("taken_at") is not None else data.get("taken_at_timestamp")
    return _Post(
        platform_id=code or _id(data.get("pk")) or _id(data.get("id")),
        time=time,
        url=f"https://www.instagram.com/p/{code}/" if code else None,
        text=_meta_caption(data),
        author_id=_id(user.get("pk")) or _id(user.get("id")),
        author_handle=_text(user.get("username")),
        author_name=_text(user.get("full_name")),
        views=_count(data.get("play_count")) or _count(data.get("view_count")),
        likes=_count(data.get("like_count")) or _count(_dig(data, "edge_media_preview_like", "count")),
        comments=_count(data.get("comment_count")) or _count(_dig(data, "edge_media_to_comment", "count")),
        media=_meta_media(data),
        extra=_compact(
            {
                "media_id": _id(data.get("pk")) or _id(data.get("id")),
                "product_type": _text(data.get("product_type")),
                "location": _text(_dig(data, "location", "name")),
            }
        ),
    )


def _map_threads(data: dict[str, Any]) -> _Post:
    code = _text(data.get("code"))
    user = _dict(data.get("user"))
    handle = _text(user.get("username"))
    app = _dict(data.get("text_post_app_info"))
    return _Post(
        platform_id=code or _id(data.get("pk")) or _id(data.get("id")),
        time=data.get("taken_at"),
        url=f"https://www.threads.com/@{handle}/post/{code}" if handle and code else None,
        text=_meta_caption(data),
        author_id=_id(user.get("pk")) or _id(user.get("id")),
        author_handle=handle,
        author_name=_text(user.get("full_name")),
        likes=_count(data.get("like_count")),
        shares=_count(app.get("repost_count")),
        comments=_count(app.get("direct_reply_count")),
        media=_meta_media(data),
        extra=_compact({"media_id": _id(data.get("pk")), "quote_count": _count(app.get("quote_count"))}),
    )


def _map_mastodon(data: dict[str, Any]) -> _Post:
    """Gab and Truth Social run Mastodon-style APIs: statuses with HTML content and an account."""
    account = _dict(data.get("account"))
    text = _html_text(data.get("content"))
    reblog = _dict(data.get("reblog"))
    if reblog and not text:  # a boost carries its text only inside the boosted status
        text = _html_text(reblog.get("content"))
    return _Post(
        platform_id=_id(data.get("id")),
        time=data.get("created_at"),
        url=_http(data.get("url")) or _http(data.get("uri")),
        text=text,
        language=_language(data.get("language")),
        author_id=_id(account.get("id")),
        author_handle=_text(account.get("acct")) or _text(account.get("username")),
        author_name=_text(account.get("display_name")),
        likes=_count(data.get("favourites_count")),
        shares=_count(data.get("reblogs_count")),
        comments=_count(data.get("replies_count")),
        media=[u for m in _list(data.get("media_attachments")) if (u := _http(_dict(m).get("url")))],
        extra=_compact(
            {
                "reblog_of": _id(reblog.get("id")),
                "in_reply_to": _id(data.get("in_reply_to_id")),
                "content_warning": _text(data.get("spoiler_text")),
            }
        ),
    )


def _map_douyin(data: dict[str, Any]) -> _Post:
    author = _dict(data.get("author"))
    stats = _dict(data.get("statistics"))
    platform_id = _id(data.get("aweme_id")) or _id(data.get("id"))
    covers = _list(_dig(data, "video", "cover", "url_list"))
    return _Post(
        platform_id=platform_id,
        time=data.get("create_time"),
        url=f"https://www.douyin.com/video/{platform_id}" if platform_id else None,
        text=_text(data.get("desc")),
        author_id=_id(author.get("uid")),
        author_handle=_text(author.get("unique_id")) or _text(author.get("short_id")),
        author_name=_text(author.get("nickname")),
        views=_count(stats.get("play_count")),
        likes=_count(stats.get("digg_count")),
        shares=_count(stats.get("share_count")),
        comments=_count(stats.get("comment_count")),
        media=[url for cover in covers[:1] if (url := _http(cover))],
    )


def _first(data: Mapping[str, Any], keys: Iterable[str], read: Callable[[Any], Any]) -> Any:
    for key in keys:
        if (value := read(data.get(key))) is not None:
            return value
    return None


def _map_generic(data: dict[str, Any]) -> _Post:
    """Best effort for modules we have no mapping for (9gag, Imgur, Pinterest, RedNote, new ones)."""

    def text_of(value: Any) -> str | None:
        return _html_text(value.get("text") if isinstance(value, dict) else value)

    author = next((a for key in ("author", "user", "account", "owner", "creator") if (a := _dict(data.get(key)))), {})
    handle_keys = ("username", "uniqueId", "unique_id", "acct", "screen_name", "handle")
    time_keys = ("created_at", "createTime", "create_time", "creationTs", "taken_at", "timestamp", "date")
    time = next((data[key] for key in time_keys if data.get(key) not in (None, "")), None)
    return _Post(
        platform_id=_first(data, ("id", "pk", "code", "uuid"), _id),
        time=time,
        url=_first(data, ("url", "link", "permalink", "share_url"), _http),
        text=_first(data, ("text", "desc", "description", "content", "body", "caption"), text_of)
        or _text(data.get("title")),
        title=_text(data.get("title")),
        author_id=_first(author, ("id", "pk", "uid", "user_id"), _id),
        author_handle=_first(author, handle_keys, _text),
        author_name=_first(author, ("full_name", "nickname", "display_name", "name", "fullName"), _text),
    )


#: Zeeschuimer module id (``source_platform``) -> our platform name, content type and mapper.
#: Module ids not listed here get ``platform_name(module)`` and the generic mapper.
ZEESCHUIMER_MODULES: dict[str, tuple[str, str, Callable[[dict[str, Any]], _Post]]] = {
    "twitter.com": ("x_twitter", "post", _map_x),
    "tiktok.com": ("tiktok", "video", _map_tiktok),
    "tiktok-comments": ("tiktok", "comment", _map_tiktok_comment),
    "instagram.com": ("instagram", "post", _map_instagram),
    "threads.net": ("threads", "post", _map_threads),
    "gab.com": ("gab", "post", _map_mastodon),
    "truthsocial.com": ("truth_social", "post", _map_mastodon),
    # Zeeschuimer dropped its LinkedIn module in 2026, so old exports are all there will be.
    "linkedin.com": ("linkedin", "post", _map_generic),
    "9gag.com": ("9gag", "post", _map_generic),
    "imgur.com": ("imgur", "post", _map_generic),
    "douyin.com": ("douyin", "video", _map_douyin),
    "pinterest.com": ("pinterest", "post", _map_generic),
    "xiaohongshu.com": ("xiaohongshu", "post", _map_generic),
    "xiaohongshu-comments": ("xiaohongshu", "comment", _map_generic),
}

_PLATFORM_ALIASES = {
    "twitter": "x_twitter",
    "x": "x_twitter",
    "truthsocial": "truth_social",
    "truth": "truth_social",
    "rednote": "xiaohongshu",
}
_DEFAULT_CONTENT_TYPE = {"tiktok": "video", "douyin": "video"}


def platform_name(value: str) -> str | None:
    """Our platform name for a Zeeschuimer module id, 4CAT datasource id, file-name part or option."""
    key = value.strip().lower()
    if key in ZEESCHUIMER_MODULES:
        return ZEESCHUIMER_MODULES[key][0]
    key = re.sub(r"^www\.", "", key)
    key = re.sub(r"\.(com|net|org)$", "", key)
    key = re.sub(r"-(search|import|comments)$", "", key)
    key = re.sub(r"[^a-z0-9]+", "_", key).strip("_")
    return _PLATFORM_ALIASES.get(key, key) or None


def _split_urls(value: Any) -> list[str]:
    # 4CAT joins several URLs with commas; CDN URLs may hold commas themselves, so split before "http".
    text = _text(value) if isinstance(value, str) else None
    return [u for part in re.split(r"[,\s]+(?=https?://)", text) if (u := _http(part))] if text else []


def _map_4cat(row: Mapping[str, Any]) -> _Post:
    """One 4CAT mapped item (CSV row or NDJSON object); column names follow 4CAT's datasources."""

    def get(*keys: str) -> Any:
        return next((row[k] for k in keys if row.get(k) not in (None, "")), None)

    times = [row.get("unix_timestamp"), row.get("timestamp")]
    time = next((t for t in times if _parse_time(t) is not None), None)
    if time is None:  # keep an unreadable value so the flag can show it
        time = next((t for t in times if t not in (None, "")), None)
    handle = _text(get("author", "author_username"))
    media: list[str] = []
    for key in ("image_url", "media_url", "video_url", "images", "videos"):
        media += [u for u in _split_urls(row.get(key)) if u not in media]
    return _Post(
        platform_id=_id(row.get("id")),
        time=time,
        url=_http(get("url", "link", "tiktok_url", "permalink")),
        text=_text(row.get("body")),
        title=_text(get("subject", "title")),
        language=_language(get("language", "language_guess", "lang")),
        author_id=_id(get("author_id", "author_user_id")),
        author_handle=handle,
        author_name=_text(get("author_fullname", "author_full", "author_name")),
        views=_count(get("views", "num_views", "plays", "impression_count")),
        likes=_count(get("likes", "num_likes", "like_count", "favorite_count")),
        shares=_count(get("shares", "num_shares", "retweet_count", "reposts")),
        comments=_count(get("comments", "num_comments", "reply_count", "replies")),
        media=media,
        extra=_compact(
            {
                "thread_id": _id(row.get("thread_id")),
                "hashtags": [h for h in re.split(r"\s*,\s*", _text(get("hashtags")) or "") if h],
                "links": _split_urls(get("urls", "link_url")),
                "item_type": _text(row.get("type")),  # 4CAT's photo/video/comment
            }
        ),
    )


# --- Bluesky, as 4CAT's bsky datasource writes it (kept in step with arenas/bluesky.py) -------------


def _bluesky_from_4cat(post: _Post, row: Mapping[str, Any]) -> None:
    """Give a 4CAT Bluesky row the identity the bluesky arena gives the same post.

    4CAT names the author by handle and links with it; handles can be renamed, so the arena uses
    the DID (4CAT's ``author_id``) for the author and the link, and so does the import: the same
    post then has one platform id (its at:// URI), one URL and one author pseudonym.
    """
    did = _id(row.get("author_id"))
    if did and did.startswith("did:"):
        handle = post.author_handle
        post.author_name = _text(row.get("author_display_name")) or post.author_name or handle
        post.author_handle, post.author_id = did, did
        if handle:
            post.extra["handle"] = handle
    if post.platform_id and (url := bluesky.post_url(post.platform_id)):
        post.url = url
    reposts, quotes = _count(row.get("repost_count")), _count(row.get("quote_count"))
    if reposts is not None or quotes is not None:
        post.shares = (reposts or 0) + (quotes or 0)
    languages = _text(row.get("languages"))
    if post.language is None and languages and languages != "N/A":
        post.language = _language(languages.split(",")[0])


# --- end of Bluesky ------------------------------------------------------------------------------------


#: How much longer a parsed object can get when written again: ``1e15`` reads in 4 characters and
#: writes in 18. A line this many times under ``MAX_RAW_CHARS`` needs no measuring.
_REWRITTEN_GROWTH = 5


def _raw_for_storage(data: Any, line_chars: int | None = None) -> dict[str, Any]:
    if line_chars is not None and line_chars * _REWRITTEN_GROWTH <= MAX_RAW_CHARS:
        return {"raw": data}
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str))
    return {"raw": data} if size <= MAX_RAW_CHARS else {"raw_omitted_chars": size}


def _finish(
    post: _Post,
    platform: str,
    content_type: str,
    raw_metadata: dict[str, Any],
    source: str,
    fallback_time: datetime | None = None,
) -> Output:
    if post.platform_id is None:
        return Rejected("item has no id", source)
    published = _parse_time(post.time)
    if published is None and post.time not in (None, ""):
        raw_metadata["published_at_unparsed"] = _one_line(post.time, 100)
    if published is None and fallback_time is not None:
        published = fallback_time
        raw_metadata["published_at_source"] = "timestamp_collected"
    # The handle is the author id: actor lists name accounts by handle, and most 4CAT exports hold
    # nothing else, so both import routes agree. The platform's numeric id is kept alongside.
    if post.author_handle and post.author_id and post.author_id != post.author_handle:
        raw_metadata["author_user_id"] = post.author_id
    raw_metadata.update(post.extra)
    return CollectedItem(
        platform=platform,
        platform_id=post.platform_id,
        published_at=published,
        content_type=content_type,
        url=post.url,
        text_content=post.text,
        title=post.title,
        language=post.language,
        author_platform_id=post.author_handle or post.author_id,
        author_display_name=post.author_name or post.author_handle,
        views_count=post.views,
        likes_count=post.likes,
        shares_count=post.shares,
        comments_count=post.comments,
        media_urls=post.media,
        raw_metadata=raw_metadata,
        interactions=post.interactions,
    )


def from_zeeschuimer(
    meta: Mapping[str, Any], data: Any, base: dict[str, Any], source: str, line_chars: int | None = None
) -> Output:
    """``line_chars``: the length of the line ``data`` was read from, when known (spares measuring it)."""
    module = _text(meta.get("source_platform"))
    if module is None:
        return Rejected("Zeeschuimer item has no source_platform", source)
    if not isinstance(data, dict):
        return Rejected(f"Zeeschuimer item from '{_one_line(module, 60)}' has no data object", source)
    module = module.lower()
    platform, content_type, mapper = ZEESCHUIMER_MODULES.get(module) or (
        platform_name(module) or "unknown",
        "post",
        _map_generic,
    )
    post = mapper(data)
    post.platform_id = post.platform_id or _id(meta.get("item_id"))
    collected = meta.get("timestamp_collected")  # milliseconds
    if isinstance(collected, bool) or not isinstance(collected, (int, float)):
        collected = None
    raw_metadata = base | _compact(
        {
            "source_platform": module,
            "nav_index": _text(meta.get("nav_index")),
            "timestamp_collected": collected,
            "source_platform_url": _http(meta.get("source_platform_url")),
        }
    )
    raw_metadata.update(_raw_for_storage(data, line_chars))
    fallback = _from_epoch(float(collected)) if collected is not None else None
    return _finish(post, platform, content_type, raw_metadata, source, fallback)


# --- reddit (4CAT's reddit datasource) -------------------------------------------------------------
# The reddit arena names items by fullname (t3_/t1_) with a URL free of subreddit and slug; 4CAT
# writes the bare base-36 id and the link. Spelled the arena's way, the same post is one record.


def _reddit_4cat(post: _Post, row: Mapping[str, Any]) -> bool:
    """Rewrite ``post``'s id and URL as the reddit arena writes them; True for a comment."""
    post_id = _id(row.get("id"))
    if post_id is None:
        return False
    bare = post_id.split("_", 1)[1] if post_id[:3] in ("t1_", "t3_") else post_id
    thread = _id(row.get("thread_id"))
    thread = thread.split("_", 1)[1] if thread and thread[:3] == "t3_" else thread
    comment = post_id.startswith("t1_") or (thread is not None and thread != bare)
    link = post.url
    if comment and thread:
        post.platform_id, post.url = f"t1_{bare}", f"https://www.reddit.com/comments/{thread}/_/{bare}/"
    else:
        post.platform_id, post.url = f"t3_{bare}", f"https://www.reddit.com/comments/{bare}/"
    if link and link != post.url and "reddit.com/" not in link:
        post.extra["link_url"] = link
    if post.author_handle in ("[deleted]", "[removed]"):  # the arena keeps such items without author
        post.author_handle = post.author_name = None
    if post.likes is None:
        post.likes = _count(row.get("score"))
    return comment


# --- end reddit ------------------------------------------------------------------------------------


# --- telegram: 4CAT's telegram datasource, keyed like the telegram arena ------------------------------


def _telegram_4cat(post: _Post, row: Mapping[str, Any]) -> tuple[_Post, list[Interaction]]:
    """4CAT keys a Telegram message by its id within ``chat`` (the channel's username), or as
    ``<chat>-<id>``, and writes no URL; its ``author`` is the sender's numeric id. The telegram arena
    (``arenas.telegram``) keys the same message ``<channel>/<id>`` with the URL ``t.me/<channel>/<id>``
    and the channel's username as author, lower-cased, so both routes give one record and one
    pseudonym. A group member's own username stays the author of their messages."""
    channel = normalise_channel(_text(row.get("chat")) or _text(row.get("thread_id")))
    message_id = post.platform_id or ""
    if channel is not None and message_id.lower().startswith(f"{channel}-"):
        message_id = message_id[len(channel) + 1 :]
    if channel is None or not message_id.isdigit():
        return post, []
    sender = normalise_channel(_text(row.get("author_username")))
    sender_id = _id(row.get("author"))
    post.platform_id = f"{channel}/{message_id}"
    post.url = f"https://t.me/{channel}/{message_id}"
    post.author_handle = sender or sender_id or channel
    post.author_id = sender_id if sender_id != post.author_handle else None
    interactions = []
    reply_to = _id(row.get("reply_to"))
    if reply_to and reply_to.isdigit():
        interactions.append(Interaction("reply", platform_id=f"{channel}/{reply_to}", handle=channel))
    forwarded = normalise_channel(_text(row.get("author_forwarded_from_username")))
    if forwarded:
        interactions.append(Interaction("repost", handle=forwarded))
    return post, interactions


# --- end of telegram ---------------------------------------------------------------------------------


def from_4cat(row: Mapping[str, Any], platform: str, base: dict[str, Any], source: str) -> Output:
    post = _map_4cat(row)
    interactions: list[Interaction] = []
    if platform == "bluesky":
        _bluesky_from_4cat(post, row)
    if platform == "telegram":
        post, interactions = _telegram_4cat(post, row)
    reddit_comment = _reddit_4cat(post, row) if platform == "reddit" else False
    if reddit_comment or (post.extra.get("item_type") or "").lower() == "comment":
        content_type = "comment"
    else:
        content_type = _DEFAULT_CONTENT_TYPE.get(platform, "post")
    output = _finish(post, platform, content_type, base | _raw_for_storage(dict(row)), source)
    if isinstance(output, CollectedItem) and interactions:
        output.interactions = interactions
    return output
