"""From an arena's ``CollectedItem`` to a ``content_records`` row: validate, date, fingerprint,
match terms, pseudonymise. One place, the same for every arena.

Each item becomes exactly one of:
- a row (a tuple in ``COLUMNS`` order, ready for COPY);
- ``Rejected``: the item is unusable (no id, an implausible date); counted, with a reason;
- ``Filtered``: a good item this collection does not keep (outside the month, or, for arenas
  that do not search server-side, matching none of the design's terms); counted.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from observatory_pipelines.core.collection import privacy, terms, text
from observatory_pipelines.core.collection.arenas.base import INTERACTION_KINDS, CollectedItem, Rejected

COLUMNS: tuple[str, ...] = (
    "published_at",
    "platform",
    "arena",
    "platform_id",
    "content_type",
    "url",
    "text_content",
    "title",
    "language",
    "collected_at",
    "author_platform_id",
    "author_display_name",
    "author_id",
    "pseudonymized_author_id",
    "views_count",
    "likes_count",
    "shares_count",
    "comments_count",
    "engagement_score",
    "collection_run_id",
    "query_design_id",
    "search_terms_matched",
    "collection_tier",
    "raw_metadata",
    "media_urls",
    "content_hash",
    "simhash",
)

#: Dates before this are taken as broken input (epoch zero, "0001-01-01"), not history.
EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=timezone.utc)
#: Clocks differ and feeds announce embargoed items; more than this ahead is broken input.
FUTURE_TOLERANCE = timedelta(days=1)

MAX_ID_LENGTH = 1_024
MAX_TEXT_LENGTH = 1_000_000
MAX_TITLE_LENGTH = 10_000
MAX_SHORT_FIELD = 2_048
MAX_URL_LENGTH = 8_192
MAX_MEDIA_URLS = 100
MAX_METADATA_BYTES = 64 * 1024


@dataclass(frozen=True)
class Filtered:
    reason: str  # "outside_window" or "no_term_matched"


@dataclass(frozen=True)
class AuthorDirectory:
    """Known platform accounts → actor id, from ``actor_platform_presences``."""

    by_account: Mapping[tuple[str, str], uuid.UUID] = field(default_factory=dict)

    def actor_for(self, platform: str, author_platform_id: str | None) -> uuid.UUID | None:
        if not author_platform_id:
            return None
        return self.by_account.get((platform, author_platform_id.lower()))


@dataclass(frozen=True)
class RecordContext:
    """Everything the conversion needs that is the same for a whole collection."""

    arena: str
    query_design_id: uuid.UUID
    collection_run_id: uuid.UUID
    tier: str
    window_start: datetime
    window_end: datetime
    collected_at: datetime
    salt: bytes
    matcher: terms.TermMatcher
    keep_unmatched: bool
    authors: AuthorDirectory = AuthorDirectory()


def _clean(value: str | None, limit: int, name: str, notes: dict[str, Any]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; 4CAT strips them too.
        value = value.replace("\x00", "")
        notes.setdefault("nul_bytes_removed", []).append(name)
    if len(value) > limit:
        value = value[:limit]
        notes.setdefault("truncated_fields", []).append(name)
    value = value.strip()
    return value or None


def _count(value: Any, name: str, notes: dict[str, Any]) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(float(value)) if not isinstance(value, int) else value
    except (TypeError, ValueError, OverflowError):
        notes.setdefault("unreadable_counts", []).append(name)
        return None
    if number < 0 or number > 2**62:
        notes.setdefault("unreadable_counts", []).append(name)
        return None
    return number


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", ""): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


_PLAIN_JSON_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _metadata_json(metadata: dict[str, Any]) -> str:
    try:
        # Most metadata is plain JSON already: encode it as it is, and walk it with _json_safe
        # only when that fails (a value JSON has no type for: a set, a datetime, an integer past 64
        # bits, a key that is not a string) or leaves a NUL jsonb refuses. orjson writes NaN as
        # null, as _json_safe does.
        encoded = orjson.dumps(metadata, option=_PLAIN_JSON_ONLY).decode()
        if "\\u0000" in encoded:
            raise ValueError("NUL")
    except (TypeError, ValueError):
        encoded = json.dumps(_json_safe(metadata), ensure_ascii=False, separators=(",", ":"))
    if len(encoded.encode("utf-8")) > MAX_METADATA_BYTES:
        keys = sorted(metadata)[:50]
        encoded = json.dumps({"metadata_dropped": "larger than 64 KB", "keys": keys}, ensure_ascii=False)
    return encoded


def _interactions(item: CollectedItem, platform: str, salt: bytes) -> dict[str, list[dict[str, Any]]]:
    """The item's interactions in the shape every arena shares (``arenas.base.Interaction``)."""
    shared, accounts = [], []
    for link in item.interactions:
        if link.kind not in INTERACTION_KINDS:
            raise ValueError(f"unknown interaction kind {link.kind!r}; use one of {', '.join(INTERACTION_KINDS)}")
        author = privacy.pseudonymise(platform, link.author_id or link.handle, salt)
        shared.append({"kind": link.kind, "platform_id": link.platform_id, "author": author})
        accounts.append({"author_id": link.author_id, "handle": link.handle})
    return {"interactions": shared, "interaction_accounts": accounts}


def prepare(item: CollectedItem, ctx: RecordContext) -> tuple | Rejected | Filtered:
    source = f"{item.platform}:{str(item.platform_id)[:80]}"
    notes: dict[str, Any] = {}

    platform_id = _clean(item.platform_id, MAX_ID_LENGTH + 1, "platform_id", notes)
    if not platform_id:
        return Rejected("item has no platform id", source)
    if len(platform_id) > MAX_ID_LENGTH:
        return Rejected(f"platform id longer than {MAX_ID_LENGTH} characters", source)

    published_at = item.published_at
    if published_at is None:
        published_at = ctx.collected_at
        notes["published_at_missing"] = True
        notes["published_at_source"] = "collected_at"
    elif published_at.tzinfo is None:
        published_at = published_at.replace(tzinfo=timezone.utc)
        notes["published_at_assumed_utc"] = True
    published_at = published_at.astimezone(timezone.utc)
    if published_at < EARLIEST_PLAUSIBLE or published_at > ctx.collected_at + FUTURE_TOLERANCE:
        return Rejected(f"implausible publication date {published_at.isoformat()}", source)
    if not (ctx.window_start <= published_at < ctx.window_end):
        return Filtered("outside_window")

    title = _clean(item.title, MAX_TITLE_LENGTH, "title", notes)
    body = _clean(item.text_content, MAX_TEXT_LENGTH, "text_content", notes)
    matched = ctx.matcher.match(title, body)
    if item.matched_terms:
        found = {*matched, *item.matched_terms}
        matched = [term for term in ctx.matcher.terms if term in found]
    if not matched and not ctx.keep_unmatched:
        return Filtered("no_term_matched")

    author_platform_id = _clean(item.author_platform_id, MAX_SHORT_FIELD, "author_platform_id", notes)
    counts = {
        name: _count(getattr(item, name), name, notes)
        for name in ("views_count", "likes_count", "shares_count", "comments_count")
    }
    engagement = [c for c in (counts[n] for n in ("likes_count", "shares_count", "comments_count")) if c is not None]
    url = _clean(item.url, MAX_URL_LENGTH + 1, "url", notes)
    if url and len(url) > MAX_URL_LENGTH:
        notes["url_dropped"] = "longer than 8192 characters"
        url = None
    media = [u for u in (_clean(m, MAX_URL_LENGTH, "media_urls", notes) for m in item.media_urls[:MAX_MEDIA_URLS]) if u]
    if len(item.media_urls) > MAX_MEDIA_URLS:
        notes["media_urls_dropped"] = len(item.media_urls) - MAX_MEDIA_URLS

    platform = _clean(item.platform, MAX_SHORT_FIELD, "platform", notes) or ctx.arena
    content_type = _clean(item.content_type, MAX_SHORT_FIELD, "content_type", notes) or "post"
    language = _clean(item.language, 16, "language", notes)
    display_name = _clean(item.author_display_name, MAX_SHORT_FIELD, "author_display_name", notes)
    metadata = dict(item.raw_metadata or {})
    if item.interactions:
        metadata.update(_interactions(item, platform, ctx.salt))
    if notes:
        metadata["ingest_notes"] = notes
    content_hash, simhash = text.fingerprints(body or title)
    return (
        published_at,
        platform,
        ctx.arena,
        platform_id,
        content_type,
        url,
        body,
        title,
        language.lower() if language else None,
        ctx.collected_at,
        author_platform_id,
        display_name,
        ctx.authors.actor_for(platform, author_platform_id),
        privacy.pseudonymise(platform, author_platform_id, ctx.salt),
        counts["views_count"],
        counts["likes_count"],
        counts["shares_count"],
        counts["comments_count"],
        float(sum(engagement)) if engagement else None,
        ctx.collection_run_id,
        ctx.query_design_id,
        matched,
        ctx.tier,
        _metadata_json(metadata),
        media,
        content_hash,
        simhash,
    )
