"""Bluesky posts through the AT Protocol's AppView (research notes §1; docs/collection.md, "bluesky").

- Term search: ``app.bsky.feed.searchPosts`` per day slice of the month (``since`` inclusive,
  ``until`` exclusive), paged with ``cursor``. Search needs a session since 2025, so every request
  carries an access token made from an app password in the credential pool.
- Actor lists: ``app.bsky.feed.getAuthorFeed`` for each design actor on platform ``bluesky``
  (its DID, else its handle), paged back until the month's start.

An item's ``platform_id`` is the post's ``at://`` URI: it names the author's DID and the record
key, never changes, and is what 4CAT's Bluesky datasource calls ``id``. The URL uses the DID,
since handles can be renamed; ``author_platform_id`` is the DID for the same reason.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

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
    ServerError,
)
from observatory_pipelines.core.collection.arenas.social import (
    array,
    check_base_url,
    check_int,
    check_seconds,
    check_unknown,
    count_or_none,
    http_status,
    mapping,
    parse_time,
    require,
    text_or_none,
)
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import parse_retry_after, where

ARENA = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"
SEARCH = "app.bsky.feed.searchPosts"
AUTHOR_FEED = "app.bsky.feed.getAuthorFeed"
CREATE_SESSION = "com.atproto.server.createSession"

DEFAULT_OPTIONS: dict[str, Any] = {
    # The PDS proxies AppView reads; public.api.bsky.app refuses search (research notes §1.2).
    "base_url": "https://bsky.social/xrpc",
    "slice_hours": 24,  # search stops far short of hitsTotal, so a month is asked for a day at a time
    "page_limit": 100,
    "max_pages": 100,  # per slice or actor: a cursor that never ends must not hold a worker forever
    "sort": "latest",
    "lang": None,  # e.g. "da"; off by default because many posts carry no langs
    "author_feed_filter": "posts_with_replies",
    # How long a credential rests after a 429 that names no reset time [U].
    "rate_limit_rest_seconds": 300.0,
    # XRPC error names getAuthorFeed answers for an actor that is gone or hidden from us [U].
    "missing_actor_errors": [
        "InvalidRequest",
        "NotFound",
        "AccountDeactivated",
        "AccountTakedown",
        "BlockedActor",
        "BlockedByActor",
    ],
    "min_interval_seconds": 0.1,  # 3000 requests per 5 minutes per IP
}
_SORTS = ("latest", "top")
_FEED_FILTERS = ("posts_with_replies", "posts_no_replies", "posts_with_media", "posts_and_author_threads")

# Access tokens by (server, credential id), kept for the process so runs do not log in each time:
# createSession allows 30 logins per 5 minutes and 300 a day per account.
_SESSIONS: dict[tuple[str, uuid.UUID], str] = {}
_SESSIONS_LOCK = threading.Lock()


# --- mapping one postView ----------------------------------------------------------------------------


def did_of(at_uri: str) -> str | None:
    """The DID in ``at://<did>/<collection>/<rkey>``."""
    parts = at_uri.split("/")
    return parts[2] if at_uri.startswith("at://") and len(parts) >= 3 and parts[2].startswith("did:") else None


def post_url(at_uri: str) -> str | None:
    """``https://bsky.app/profile/<did>/post/<rkey>`` for a post URI; the handle is left out, as it can change."""
    parts = at_uri.split("/")
    if len(parts) != 5 or not at_uri.startswith("at://") or parts[3] != POST_COLLECTION or not parts[4]:
        return None
    return f"https://bsky.app/profile/{parts[2]}/post/{parts[4]}"


def _media(embed: Mapping[str, Any]) -> list[str]:
    kind = embed.get("$type")
    if kind == "app.bsky.embed.images#view":
        images = array(embed.get("images"))
        return [url for image in images if isinstance(image, Mapping) and (url := text_or_none(image.get("fullsize")))]
    if kind == "app.bsky.embed.video#view":
        return [url for url in (text_or_none(embed.get("playlist")),) if url]
    if kind == "app.bsky.embed.external#view":
        external = mapping(embed.get("external"))
        return [url for url in (text_or_none(external.get("uri")),) if url]
    if kind == "app.bsky.embed.recordWithMedia#view" and isinstance(embed.get("media"), Mapping):
        return _media(embed["media"])
    return []


def _quoted(embed: Mapping[str, Any]) -> Interaction | None:
    """The quoted post of a record embed; a deleted, blocked or detached one still names its URI."""
    kind = embed.get("$type")
    if kind == "app.bsky.embed.recordWithMedia#view":
        embed = mapping(embed.get("record"))
    elif kind != "app.bsky.embed.record#view":
        return None
    record = embed.get("record")
    if not isinstance(record, Mapping):
        return None
    uri = text_or_none(record.get("uri"))
    if uri is None or f"/{POST_COLLECTION}/" not in uri:
        return None  # a quoted list or feed generator is not a post
    author = mapping(record.get("author"))
    return Interaction("quote", platform_id=uri, author_id=text_or_none(author.get("did")) or did_of(uri), handle=None)


def _mentions(record: Mapping[str, Any]) -> list[Interaction]:
    found: list[Interaction] = []
    facets = array(record.get("facets"))
    for facet in facets:
        features = facet.get("features") if isinstance(facet, Mapping) else None
        for feature in features if isinstance(features, list) else []:
            if isinstance(feature, Mapping) and feature.get("$type") == "app.bsky.richtext.facet#mention":
                did = text_or_none(feature.get("did"))
                if did and all(m.author_id != did for m in found):
                    found.append(Interaction("mention", author_id=did))
    return found


def post_item(post: Any, source: str) -> CollectedItem:
    """One ``app.bsky.feed.defs#postView`` as a ``CollectedItem``.

    Raises ``MalformedResponse`` naming the first missing required field (uri, author.did,
    record.createdAt, indexedAt), the only error it raises.
    """
    if not isinstance(post, Mapping):
        raise MalformedResponse(ARENA, "a post is not a JSON object; the API may have changed")
    uri = require(post, "uri", ARENA, "a post")
    did = require(post, "author.did", ARENA, "a post")
    record = require(post, "record", ARENA, "a post")
    require(post, "indexedAt", ARENA, "a post")
    created = require(post, "record.createdAt", ARENA, "a post")
    if not isinstance(uri, str) or not isinstance(did, str) or not isinstance(record, Mapping):
        raise MalformedResponse(
            ARENA, "a post's 'uri', 'author.did' or 'record' has the wrong type; the API may have changed"
        )
    author = post["author"]
    langs = array(record.get("langs"))
    language = next((text_or_none(code) for code in langs if text_or_none(code)), None)
    embed = mapping(post.get("embed"))
    interactions: list[Interaction] = []
    reply = mapping(record.get("reply"))
    parent = mapping(reply.get("parent"))
    if parent_uri := text_or_none(parent.get("uri")):
        # The parent may be deleted since; its URI still names its author's DID.
        interactions.append(Interaction("reply", platform_id=parent_uri, author_id=did_of(parent_uri)))
    if quote := _quoted(embed):
        interactions.append(quote)
    interactions += _mentions(record)
    reposts, quotes = count_or_none(post.get("repostCount")), count_or_none(post.get("quoteCount"))
    handle = text_or_none(author.get("handle"))
    root = mapping(reply.get("root"))
    labels = array(post.get("labels"))
    return CollectedItem(
        platform="bluesky",
        platform_id=uri,
        published_at=parse_time(created),
        url=post_url(uri),
        text_content=text_or_none(record.get("text")),
        language=language,
        author_platform_id=did,
        # The handle stands in only for a missing display name: it is shown, never an identity.
        author_display_name=text_or_none(author.get("displayName")) or handle,
        likes_count=count_or_none(post.get("likeCount")),
        shares_count=None if reposts is None and quotes is None else (reposts or 0) + (quotes or 0),
        comments_count=count_or_none(post.get("replyCount")),
        media_urls=_media(embed),
        raw_metadata={
            key: value
            for key, value in {
                "cid": text_or_none(post.get("cid")),
                "handle": handle,
                "indexed_at": text_or_none(post.get("indexedAt")),
                "langs": [code for code in langs if isinstance(code, str)],
                "repost_count": reposts,
                "quote_count": quotes,
                "thread_root": text_or_none(root.get("uri")),
                "labels": [label.get("val") for label in labels if isinstance(label, Mapping) and label.get("val")],
            }.items()
            if value not in (None, [], "")
        },
        interactions=interactions,
        source=source,
    )


def parse_search_page(document: Any, source: str) -> tuple[list[CollectedItem], str | None]:
    """A searchPosts answer: its posts and the next cursor (None at the end).

    Raises only ``MalformedResponse``.
    """
    if not isinstance(document, Mapping):
        raise MalformedResponse(ARENA, "searchPosts did not answer with a JSON object; the API may have changed")
    posts = document.get("posts")
    if not isinstance(posts, list):
        raise MalformedResponse(ARENA, "searchPosts answer has no 'posts' list; the API may have changed")
    return [post_item(post, source) for post in posts], text_or_none(document.get("cursor"))


def parse_author_feed(document: Any, source: str) -> tuple[list[tuple[CollectedItem, str | None]], str | None]:
    """A getAuthorFeed answer: each post with its feed ``reason`` type (a repost or pin), and the next cursor.

    Raises only ``MalformedResponse``.
    """
    if not isinstance(document, Mapping):
        raise MalformedResponse(ARENA, "getAuthorFeed did not answer with a JSON object; the API may have changed")
    feed = document.get("feed")
    if not isinstance(feed, list):
        raise MalformedResponse(ARENA, "getAuthorFeed answer has no 'feed' list; the API may have changed")
    entries = []
    for entry in feed:
        post = require(entry, "post", ARENA, "a feed entry")
        reason = mapping(entry.get("reason"))
        entries.append((post_item(post, source), text_or_none(reason.get("$type"))))
    return entries, text_or_none(document.get("cursor"))


# --- the query ---------------------------------------------------------------------------------------


def _query_atom(atom: terms.Atom) -> str:
    if isinstance(atom, terms.Phrase):
        return '"' + " ".join(atom.words) + '"'
    return atom.render()  # words as they are, hashtags with their '#'


def build_queries(raw_terms: tuple[str, ...]) -> list[str]:
    """One ``q`` per all-of alternative of each term: its required words, phrases and hashtags.

    Exclusions are left to the local term match (search syntax for them is not documented), so a
    query finds a superset of what the term means.
    """
    queries: dict[str, None] = {}
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            queries.setdefault(" ".join(_query_atom(atom) for atom in clause.required))
    return list(queries)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --- the arena -----------------------------------------------------------------------------------------


@register
class BlueskyArena(Arena):
    name = "bluesky"
    platform = "bluesky"
    description = "Bluesky posts that match the design's terms (searchPosts) and the posts of its Bluesky actors."
    # Bluesky charges nothing for reading; the pool still counts each request against a credential's quota.
    free = True
    supported_tiers = frozenset({Tier.FREE})
    needs_credential = True
    # Bluesky's search already chose the posts, and an actor list means everything the actor posts;
    # search_terms_matched still records only what the term grammar finds in the text.
    keep_unmatched = True
    enabled_by_default = False
    expected_items_per_month = 3_000

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_unknown(options, DEFAULT_OPTIONS, self.name)
        sort = options.get("sort", DEFAULT_OPTIONS["sort"])
        if sort not in _SORTS:
            raise ValueError(f"option 'sort' must be one of {', '.join(_SORTS)}, not {sort!r}")
        feed_filter = options.get("author_feed_filter", DEFAULT_OPTIONS["author_feed_filter"])
        if feed_filter not in _FEED_FILTERS:
            raise ValueError(
                f"option 'author_feed_filter' must be one of {', '.join(_FEED_FILTERS)}, not {feed_filter!r}"
            )
        lang = options.get("lang", DEFAULT_OPTIONS["lang"])
        if lang is not None and (not isinstance(lang, str) or not lang.isalpha() or len(lang) > 8):
            raise ValueError(f"option 'lang' must be a language code such as 'da', or null, not {lang!r}")
        missing = options.get("missing_actor_errors", DEFAULT_OPTIONS["missing_actor_errors"])
        if not isinstance(missing, list) or not all(isinstance(name, str) and name for name in missing):
            raise ValueError(f"option 'missing_actor_errors' must be a list of XRPC error names, not {missing!r}")
        return {
            "base_url": check_base_url(options.get("base_url", DEFAULT_OPTIONS["base_url"]), "base_url"),
            "slice_hours": check_int(options, "slice_hours", DEFAULT_OPTIONS["slice_hours"], 1, 24 * 31),
            "page_limit": check_int(options, "page_limit", DEFAULT_OPTIONS["page_limit"], 1, 100),
            "max_pages": check_int(options, "max_pages", DEFAULT_OPTIONS["max_pages"], 1, 100_000),
            "sort": sort,
            "lang": lang,
            "author_feed_filter": feed_filter,
            "rate_limit_rest_seconds": check_seconds(
                options, "rate_limit_rest_seconds", DEFAULT_OPTIONS["rate_limit_rest_seconds"]
            ),
            "missing_actor_errors": list(missing),
            "min_interval_seconds": check_seconds(
                options, "min_interval_seconds", DEFAULT_OPTIONS["min_interval_seconds"]
            ),
        }

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        if ctx.credentials is None:
            raise CredentialError(
                ARENA, "bluesky needs a credential pool; add one with: observatory credentials add bluesky NAME"
            )
        queries = build_queries(spec.terms)
        actors = [a for a in spec.actors if a.platform == self.platform and (a.user_id or a.username)]
        if not queries and not actors:
            raise ArenaError(ARENA, "the design has neither terms nor Bluesky actors; add either")
        client = _Client(ctx, options)
        seen: set[str] = set()

        def fresh(item: CollectedItem) -> bool:
            inside = item.published_at is None or spec.window_start <= item.published_at < spec.window_end
            if not inside or item.platform_id in seen:
                return False
            seen.add(item.platform_id)
            return True

        for query in queries:
            source = f"search:{query}"
            ctx.searched(source)
            step = timedelta(hours=options["slice_hours"])
            start = spec.window_start
            while start < spec.window_end:
                end = min(start + step, spec.window_end)
                yield from (item for item in self._search(client, query, start, end, source) if fresh(item))
                start = end
        for actor in actors:
            name = actor.user_id or actor.username or ""
            source = f"actor:{name}"
            ctx.searched(source)
            for found in self._author_feed(client, name, spec.window_start, source):
                if isinstance(found, Rejected) or fresh(found):
                    yield found

    def _search(
        self, client: _Client, query: str, start: datetime, end: datetime, source: str
    ) -> Iterator[CollectedItem]:
        options = client.options
        params: dict[str, Any] = {
            "q": query,
            "sort": options["sort"],
            "since": _stamp(start),
            "until": _stamp(end),
            "limit": options["page_limit"],
        }
        if options["lang"]:
            params["lang"] = options["lang"]
        cursor: str | None = None
        for _ in range(options["max_pages"]):
            document = client.get(SEARCH, {**params, **({"cursor": cursor} if cursor else {})})
            items, cursor = parse_search_page(document, source)
            yield from items
            if not items or cursor is None:
                return
        client.ctx.log(f"{ARENA}: stopped '{query}' after {options['max_pages']} pages (option max_pages)")

    def _author_feed(
        self, client: _Client, actor: str, window_start: datetime, source: str
    ) -> Iterator[CollectedItem | Rejected]:
        options = client.options
        params: dict[str, Any] = {
            "actor": actor,
            "limit": options["page_limit"],
            "filter": options["author_feed_filter"],
        }
        cursor: str | None = None
        for _ in range(options["max_pages"]):
            try:
                document = client.get(AUTHOR_FEED, {**params, **({"cursor": cursor} if cursor else {})})
            except ArenaError as err:
                gone = next((name for name in options["missing_actor_errors"] if f'"{name}"' in str(err)), None)
                if http_status(err) == 404 or (http_status(err) == 400 and gone):
                    yield Rejected(
                        f"Bluesky actor {actor} is deleted, deactivated or hidden ({gone or 'HTTP 404'}); skipped",
                        source,
                    )
                    return
                raise
            entries, cursor = parse_author_feed(document, source)
            older = False
            for item, reason in entries:
                if reason is not None:
                    # A repost is someone else's post and a pin is out of date order: neither ends the paging.
                    continue
                if item.published_at is not None and item.published_at < window_start:
                    older = True
                yield item
            if not entries or cursor is None or older:
                return


class _Client:
    """Requests for one collection: a session token per credential, counted through the pool."""

    def __init__(self, ctx: CollectionContext, options: Mapping[str, Any]):
        self.ctx = ctx
        self.options = options
        self.base_url: str = options["base_url"]
        # Bluesky's own reset time from the last answer, so a 429 without Retry-After rests the
        # credential until then rather than until midnight.
        self.reset_at: float | None = None

    def get(self, method: str, params: Mapping[str, Any]) -> Any:
        assert self.ctx.credentials is not None
        return self.ctx.credentials.call(lambda lease: self._get_with(lease, method, params))

    def _get_with(self, lease: Any, method: str, params: Mapping[str, Any]) -> Any:
        for attempt in (1, 2):
            cached = self._cached(lease)
            token = cached or self._token(lease)
            try:
                response = self.ctx.http.get(
                    f"{self.base_url}/{method}",
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                    arena=ARENA,
                    min_interval_seconds=self.options["min_interval_seconds"],
                    wait_on_rate_limit=False,
                )
            except RateLimited as err:
                rest = err.retry_after if err.retry_after is not None else self._until_reset()
                raise RateLimited(ARENA, f"HTTP 429 from {where(self.base_url)}/{method}", retry_after=rest) from None
            except (CredentialError, ArenaError) as err:
                # An access token lives about two hours; the server says so with 400 ExpiredToken, or a
                # bare 401, so a cached token gets one fresh login before the credential is blamed.
                if attempt == 1 and cached and ("ExpiredToken" in str(err) or isinstance(err, CredentialError)):
                    self._forget(lease)
                    continue
                raise
            self._note_reset(response.headers)
            try:
                return json.loads(response.content)
            except (ValueError, RecursionError):
                raise MalformedResponse(
                    ARENA, f"{where(self.base_url)}/{method} answered with something that is not JSON"
                ) from None
        raise CredentialError(
            ARENA, "a fresh Bluesky session expired at once; check the server clock"
        )  # pragma: no cover

    def _note_reset(self, headers: Mapping[str, str]) -> None:
        try:
            remaining = int(headers.get("ratelimit-remaining", ""))
            self.reset_at = float(headers.get("ratelimit-reset", ""))
        except ValueError:
            return
        if remaining <= 0:
            self.ctx.log(f"{ARENA}: the rate limit is spent until epoch {self.reset_at:.0f}")

    def _until_reset(self) -> float:
        now = (self.ctx.now() if self.ctx.now else datetime.now(timezone.utc)).timestamp()
        if self.reset_at is not None and self.reset_at > now:
            return self.reset_at - now
        return float(self.options["rate_limit_rest_seconds"])

    def _forget(self, lease: Any) -> None:
        with _SESSIONS_LOCK:
            _SESSIONS.pop((self.base_url, lease.id), None)

    def _cached(self, lease: Any) -> str | None:
        with _SESSIONS_LOCK:
            return _SESSIONS.get((self.base_url, lease.id))

    def _token(self, lease: Any) -> str:
        token = self._create_session(lease)
        with _SESSIONS_LOCK:
            _SESSIONS[(self.base_url, lease.id)] = token
        return token

    def _create_session(self, lease: Any) -> str:
        """``createSession`` with the credential's app password: the one POST Bluesky needs.

        Its refusals are told apart by status here (a bad app password is 401, a taken-down
        account 400), so it goes through ``HttpClient.request``, which hands back 4xx answers.
        """
        url = f"{self.base_url}/{CREATE_SESSION}"
        body = {"identifier": lease.field("identifier").reveal(), "password": lease.field("password").reveal()}
        response = self.ctx.http.request("POST", url, arena=ARENA, json=body)
        status = response.status_code
        if status == 429:
            asked = parse_retry_after(response.headers.get("retry-after"), datetime.now(timezone.utc).timestamp())
            self._note_reset(response.headers)
            raise RateLimited(
                ARENA, f"HTTP 429 from {where(url)}; logins are rate-limited", retry_after=asked or self._until_reset()
            )
        if status in (400, 401, 403):
            # Bad app passwords answer 401 AuthenticationRequired; a taken-down account 400 AccountTakedown.
            raise CredentialError(
                ARENA, f"HTTP {status} from {where(url)}: the app password was refused; check or renew it"
            )
        if status >= 500:
            raise ServerError(ARENA, f"HTTP {status} from {where(url)}; the service is failing, retry later")
        if not 200 <= status < 300:
            raise ArenaError(ARENA, f"HTTP {status} from {where(url)}; check the option base_url")
        try:
            session = json.loads(response.content)
        except (ValueError, RecursionError):
            raise MalformedResponse(ARENA, f"{where(url)} answered with something that is not JSON") from None
        token = require(session, "accessJwt", ARENA, "createSession's answer")
        require(session, "did", ARENA, "createSession's answer")
        if not isinstance(token, str):
            raise MalformedResponse(ARENA, "createSession's 'accessJwt' is not text; the API may have changed")
        return token
