"""RSS 1.0/2.0 and Atom news feeds, read with feedparser (research notes §11).

Feeds only hold their latest few dozen items and have no server-side search, so this arena
returns everything inside the window and leaves term matching to the orchestrator
(``keep_unmatched = False``). Each feed stands alone: a dead, blocked or malformed feed becomes a
``Rejected`` and the others are still read; only when every feed fails does the arena raise.
"""

from __future__ import annotations

import io
import ipaddress
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import feedparser
from feedparser.exceptions import ThingsNobodyCaresAboutButMe

from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    CollectedItem,
    CollectionContext,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.text import html_to_text
from observatory_pipelines.core.platform.http import HttpClient, validate_min_interval

#: Major Danish outlets. Found documented in public code and notes, not checked live (research §11).
DEFAULT_DANISH_FEEDS: tuple[str, ...] = (
    "https://www.dr.dk/nyheder/service/feeds/allenyheder",
    "https://www.dr.dk/nyheder/service/feeds/indland",
    "https://www.dr.dk/nyheder/service/feeds/politik",
    "https://feeds.services.tv2.dk/api/feeds/nyheder/rss",
    "https://politiken.dk/rss/senestenyt.rss",
    "https://www.berlingske.dk/content/rss",
    "https://www.information.dk/feed",
    "https://www.altinget.dk/rss",
    "https://ekstrabladet.dk/rssfeed/all/",
    "https://www.bt.dk/bt/seneste/rss",
)

# Several default feeds share a host (DR), so stay polite even though each feed is one request.
DEFAULT_MIN_INTERVAL_SECONDS = 1.0

_OPTIONS = ("feeds", "min_interval_seconds")
# Second-level labels under which a country TLD sells domains (bbc.co.uk), for outlet slugs.
_GENERIC_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "gov", "ac", "edu"})
_REASON_CHARS = 160


def outlet_slug(host: str) -> str:
    """The outlet's registrable domain, so all of one outlet's feeds share one author id."""
    host = host.strip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    keep = 3 if len(labels) >= 3 and labels[-2] in _GENERIC_SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def _language(code: Any) -> str | None:
    if not isinstance(code, str):
        return None
    primary = code.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _html_or_text(value: Any, detail: Any) -> str | None:
    """``value`` as plain text; ``detail`` is feedparser's ``*_detail`` (or content) mapping with its type."""
    text = _text(value)
    if text is None:
        return None
    # feedparser already decodes text/plain, where a literal "<" must survive.
    if isinstance(detail, Mapping) and detail.get("type") == "text/plain":
        return " ".join(text.split()) or None
    return html_to_text(text) or None


def _utc(parsed: Any) -> datetime | None:
    if not isinstance(parsed, time.struct_time):
        return None
    try:
        return datetime(*parsed[:6], tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "…"


def _body_text(entry: Mapping[str, Any]) -> str | None:
    for content in entry.get("content") or []:
        if isinstance(content, Mapping):
            text = _html_or_text(content.get("value"), content)
            if text:
                return text
    return _html_or_text(entry.get("summary"), entry.get("summary_detail"))


def _media_urls(entry: Mapping[str, Any]) -> list[str]:
    found: list[Any] = [e.get("href") for e in entry.get("enclosures") or [] if isinstance(e, Mapping)]
    for key in ("media_content", "media_thumbnail"):
        found += [m.get("url") for m in entry.get(key) or [] if isinstance(m, Mapping)]
    return list(dict.fromkeys(url.strip() for url in found if isinstance(url, str) and url.strip()))


def _outlet(feed_url: str, feed_link: Any) -> str:
    for candidate in (feed_url, feed_link if isinstance(feed_link, str) else ""):
        try:
            host = urlsplit(candidate).hostname
        except ValueError:
            host = None
        if host:
            return outlet_slug(host)
    # A bundled file with no <link>: its name is the best we have.
    return Path(urlsplit(feed_url).path).stem or "unknown-feed"


def _entry_item(
    entry: Mapping[str, Any], feed: Mapping[str, Any], feed_url: str, spec: QuerySpec
) -> CollectedItem | Rejected:
    guid = _text(entry.get("id"))
    link = _text(entry.get("link"))
    platform_id = guid or link
    if platform_id is None:
        title = " ".join((_text(entry.get("title")) or "untitled").split())[:60]
        return Rejected(f"entry '{title}' has neither id nor link, so it cannot be identified; skipped", feed_url)
    tags = [t.get("term") for t in entry.get("tags") or [] if isinstance(t, Mapping)]
    return CollectedItem(
        platform="rss",
        platform_id=platform_id,
        published_at=_utc(entry.get("published_parsed")) or _utc(entry.get("updated_parsed")),
        content_type="article",
        url=link,
        text_content=_body_text(entry),
        title=_html_or_text(entry.get("title"), entry.get("title_detail")),
        language=_language(feed.get("language")) or spec.language,
        author_platform_id=_outlet(feed_url, feed.get("link")),
        author_display_name=_text(entry.get("author")),
        media_urls=_media_urls(entry),
        raw_metadata={
            "feed_url": feed_url,
            "feed_title": _text(feed.get("title")),
            "categories": [t.strip() for t in tags if isinstance(t, str) and t.strip()],
            "guid": guid,
        },
        source=feed_url,
    )


def _in_window(item: CollectedItem, spec: QuerySpec) -> bool:
    # Undated items are kept: the orchestrator dates them with the collection time.
    return item.published_at is None or spec.window_start <= item.published_at < spec.window_end


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith(b"<!doctype html") or b"<html" in head


def parse_feed(
    data: bytes, feed_url: str, spec: QuerySpec, content_type: str | None = None
) -> Iterator[CollectedItem | Rejected]:
    """Items of one feed document that fall in the window; problems come out as ``Rejected``.

    Pure over its inputs (no I/O), so any bytes at all can be fed to it: it never raises.
    """
    headers = {"content-type": content_type} if content_type else {}
    if feed_url.startswith(("http://", "https://")):
        headers["content-location"] = feed_url  # lets feedparser resolve relative links
    try:
        # Wrapped in BytesIO because feedparser treats bare bytes that name a file as a path.
        parsed = feedparser.parse(io.BytesIO(data), response_headers=headers)
    except Exception as exc:  # feedparser promises not to raise; if it does, only this feed is lost
        yield Rejected(f"feed could not be parsed ({type(exc).__name__}: {_one_line(exc)}); check the feed", feed_url)
        return
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if isinstance(problem, ThingsNobodyCaresAboutButMe):
        problem = None  # a declared-vs-detected encoding or MIME mismatch; the entries are fine
    entries = parsed.get("entries") or []
    if not entries:
        if _looks_like_html(data) and not parsed.get("version"):
            yield Rejected("the URL returned an HTML page, not an RSS or Atom feed; check the feed URL", feed_url)
        elif problem is not None:
            yield Rejected(
                f"feed is malformed and no entries could be read ({_one_line(problem)}); check the feed", feed_url
            )
        elif not parsed.get("version"):
            yield Rejected("the URL did not return an RSS or Atom feed; check the feed URL", feed_url)
        return
    if problem is not None:
        yield Rejected(
            f"feed is malformed ({_one_line(problem)}); read {len(entries)} entries anyway, later ones may be missing",
            feed_url,
        )
    feed = parsed.get("feed") or {}
    for entry in entries:
        result = _entry_item(entry, feed, feed_url, spec)
        if isinstance(result, Rejected) or _in_window(result, spec):
            yield result


def _validate_feed_url(value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if (parts.scheme in ("http", "https") and parts.netloc) or (parts.scheme == "file" and parts.path):
            return value.strip()
    raise ValueError(f"option 'feeds' holds {value!r}, which is not an http(s):// or file:// feed URL")


@register
class RssFeedsArena(Arena):
    name = "rss_feeds"
    platform = "rss"
    description = "News articles from RSS and Atom feeds (major Danish outlets by default) that match the terms."
    keep_unmatched = False
    latest_only = True

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in _OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use {' or '.join(_OPTIONS)}")
        feeds = options.get("feeds", DEFAULT_DANISH_FEEDS)
        if isinstance(feeds, str) or not isinstance(feeds, (list, tuple)) or not feeds:
            raise ValueError(f"option 'feeds' must be a non-empty list of feed URLs, not {feeds!r}")
        return {
            "feeds": [_validate_feed_url(url) for url in feeds],
            "min_interval_seconds": validate_min_interval(
                options.get("min_interval_seconds", DEFAULT_MIN_INTERVAL_SECONDS)
            ),
        }

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        seen: set[str] = set()
        last_error: ArenaError | None = None
        failed = 0
        for feed_url in options["feeds"]:
            ctx.searched(feed_url)
            try:
                data, content_type = self._fetch(feed_url, ctx.http, options["min_interval_seconds"])
            except ArenaError as err:
                # Every feed is its own server, so no feed's failure says anything about the others.
                failed += 1
                last_error = err
                ctx.log(f"{self.name}: skipped a feed: {err}")
                yield Rejected(str(err), feed_url)
                continue
            kept = 0
            for result in parse_feed(data, feed_url, spec, content_type):
                if isinstance(result, CollectedItem):
                    if result.platform_id in seen:
                        continue
                    seen.add(result.platform_id)
                    kept += 1
                yield result
            ctx.log(f"{self.name}: {kept} items in the window from {feed_url}")
        if last_error is not None and failed == len(options["feeds"]):
            raise last_error

    def _fetch(self, feed_url: str, http: HttpClient, min_interval_seconds: float) -> tuple[bytes, str | None]:
        parts = urlsplit(feed_url)
        if parts.scheme == "file":
            path = Path(url2pathname(unquote(parts.path)))
            try:
                return path.read_bytes(), None
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ArenaError(self.name, f"cannot read feed file {path} ({reason}); check the path") from None
        response = http.get(feed_url, arena=self.name, min_interval_seconds=min_interval_seconds)
        return response.content, response.headers.get("content-type")
