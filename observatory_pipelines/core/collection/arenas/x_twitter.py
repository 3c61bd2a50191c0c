"""X (Twitter) posts for the design's terms and accounts, paid per post read.

Two providers, one per tier:

- **medium**: TwitterAPI.io's advanced search (``GET /twitter/tweet/advanced_search``, header
  ``X-API-Key``, ``queryType=Latest``, about 20 tweets a page, ``cursor`` paging). The month is cut
  with the ``since_time:``/``until_time:`` operators (Unix seconds) inside the query.
- **premium**: the X API v2 full-archive search (``GET /2/tweets/search/all``, a bearer token,
  ``start_time``/``end_time`` in RFC 3339, ``max_results`` 10–500, ``next_token`` paging).

Queries. Each design term is one query: its alternatives (``terms.Term.disjuncts``) joined with
``OR``, exclusions as ``-word``, ``-"phrase"`` or ``-(group)``, so the query belongs to that term
and its items carry it in ``matched_terms``. The design's X accounts (``spec.actors`` of platform
``x_twitter``) are ``from:handle`` clauses joined with ``OR`` into as few queries as the provider's
query length allows (option ``max_query_length``: 512 characters at medium, 1024 at premium).
Term queries get ``lang:da`` when the design's language is Danish (option ``language_filter``);
account queries do not, since an account's posts in other languages are still its posts.

Cost. Every page is one paid request asked of ``ctx.budget`` before it is sent, for the most it
can cost, and counted at what the provider bills for what it returned: TwitterAPI.io
``price.of(tweets)`` (at least 15 of its credits a request, even an empty one), X
``price.of(posts)`` (an answer without data is free). The estimate, and so the reservation, is::

    medium:  queries × max_pages × price.of(20)
    premium: queries × max_pages × price.of(max_results)

where queries = terms + ceil-batched account queries. It is an upper bound: a run spends less when
a query runs out of pages (the rest is refunded).

Not paying twice. After each page the arena yields a ``Checkpoint`` for its query (the source):
the cursor or ``next_token``, pages read, and the newest post seen. A killed run re-run the same
UTC day continues from the stored cursor (pages already stored are not asked for again), and a
query that finished today is not asked again at all. On a later day the query runs again for what
is new only: X v2 with ``since_id`` = the newest post id of the last complete sweep, TwitterAPI.io
with ``since_time`` = the newest ``createdAt`` of the last complete sweep (seconds, inclusive, so
posts of that one second may be fetched again). A sweep that stopped early (budget, ``max_pages``)
does not move that mark, so nothing older than it is skipped.

Mapping equals the Zeeschuimer X import's (``file_import.mappers._map_x``): platform ``x_twitter``,
the post id, ``https://x.com/<handle>/status/<id>``, the handle as author id (the numeric id in
``raw_metadata.author_user_id``), the same counts, the same ``raw_metadata`` keys and the same
interactions (``mappers.x_interactions``), so a post collected here and imported from a
Zeeschuimer capture is one record with one pseudonym.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
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
from observatory_pipelines.core.collection.arenas.file_import.mappers import (
    _compact,
    _count,
    _http,
    _id,
    _language,
    _parse_time,
    _text,
    x_interactions,
)
from observatory_pipelines.core.collection.prices import Price, price
from observatory_pipelines.core.collection.spending import Budget
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.http import parse_retry_after, validate_min_interval, where

ARENA = "x_twitter"
PLATFORM = "x_twitter"
DEFAULT_OPTIONS: dict[str, Any] = {
    "base_url": None,  # the tier's provider: BASE_URLS
    "max_pages": 10,  # per query and run
    "max_results": 100,  # premium only: posts a page, 10–500
    "language_filter": True,  # lang:da on term queries of a Danish design
    "exclude_replies": False,
    "max_query_length": None,  # the tier's: QUERY_LENGTH
    "min_interval_seconds": 0.0,
}
BASE_URLS = {Tier.MEDIUM: "https://api.twitterapi.io", Tier.PREMIUM: "https://api.x.com"}
QUERY_LENGTH = {Tier.MEDIUM: 512, Tier.PREMIUM: 1024}
MEDIUM_PAGE = 20  # [S] TwitterAPI.io returns about 20 tweets a page
# since_time:/until_time: take room in a medium query: " since_time:1772323200 until_time:1775001600".
_TIME_OPERATORS = 45
TWEET_FIELDS = "created_at,lang,public_metrics,author_id,conversation_id,entities,referenced_tweets,note_tweet"
EXPANSIONS = "author_id,referenced_tweets.id,referenced_tweets.id.author_id"


# --- queries -----------------------------------------------------------------------------------------


def _clause(clause: terms.Clause) -> str:
    parts = [atom.render() for atom in clause.required]
    for node in clause.excluded:
        parts.append("-" + (f"({node.render()})" if isinstance(node, terms.AllOf | terms.AnyOf) else node.render()))
    return " ".join(parts)


def term_query(term: terms.Term) -> str:
    """A term in X's syntax: its alternatives joined with OR (AND binds tighter; grouped anyway)."""
    clauses = [_clause(c) for c in term.disjuncts()]
    if len(clauses) == 1:
        return clauses[0]
    return " OR ".join(f"({c})" if " " in c else c for c in clauses)


def _handles(spec: QuerySpec) -> list[str]:
    found: dict[str, None] = {}
    for actor in spec.actors:
        if actor.platform == PLATFORM and (actor.username or actor.user_id):
            found.setdefault((actor.username or actor.user_id or "").lstrip("@"))
    return [h for h in found if h]


def build_queries(spec: QuerySpec, options: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(query, term) pairs: one per design term (named), then the accounts in ``from:`` batches."""
    limit = options["max_query_length"] or QUERY_LENGTH.get(spec.tier, 512)
    room = limit - (_TIME_OPERATORS if spec.tier == Tier.MEDIUM else 0)
    replies = (" -filter:replies" if spec.tier == Tier.MEDIUM else " -is:reply") if options["exclude_replies"] else ""
    language = f" lang:{spec.language}" if options["language_filter"] and spec.language == "da" else ""
    queries: list[tuple[str, str | None]] = []
    for term in design_terms(ARENA, spec.terms):
        spelled = term_query(term)
        query = (f"({spelled})" if " OR " in spelled else spelled) + language + replies
        if len(query) > room:
            raise ArenaError(
                ARENA, f"term '{term.text}' makes a query of {len(query)} characters; X takes {room}: shorten it"
            )
        queries.append((query, term.text))
    batch: list[str] = []
    for handle in _handles(spec):
        clause = f"from:{handle}"
        candidate = batch + [clause]
        if batch and len(_accounts(candidate, replies)) > room:
            queries.append((_accounts(batch, replies), None))
            candidate = [clause]
        batch = candidate
    if batch:
        queries.append((_accounts(batch, replies), None))
    return queries


def _accounts(clauses: list[str], replies: str) -> str:
    joined = " OR ".join(clauses)
    return (f"({joined})" if len(clauses) > 1 else joined) + replies


# --- parsing: TwitterAPI.io (medium) -------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _item(
    *,
    post_id: str,
    published: datetime,
    text: str | None,
    language: Any,
    handle: str | None,
    user_id: str | None,
    name: str | None,
    views: Any,
    likes: Any,
    shares: Any,
    comments: Any,
    media: list[str],
    extra: Mapping[str, Any],
    interactions: list[Any],
    source: str,
) -> CollectedItem:
    # As file_import.mappers._finish writes an X post: the handle is the author.
    raw: dict[str, Any] = {}
    if handle and user_id and user_id != handle:
        raw["author_user_id"] = user_id
    raw.update(_compact(extra))
    return CollectedItem(
        platform=PLATFORM,
        platform_id=post_id,
        published_at=published,
        url=f"https://x.com/{handle or 'i'}/status/{post_id}",
        text_content=text,
        language=_language(language),
        author_platform_id=handle or user_id,
        author_display_name=name or handle,
        views_count=_count(views),
        likes_count=_count(likes),
        shares_count=_count(shares),
        comments_count=_count(comments),
        media_urls=media,
        raw_metadata=raw,
        interactions=interactions,
        source=source,
    )


def _when(value: Any, provider: str) -> datetime:
    found = _parse_time(value) if isinstance(value, str) else None
    if found is None:
        shown = repr(value)[:40]
        raise MalformedResponse(ARENA, f"{provider} post has an unreadable time {shown}; the API may have changed")
    return found


def medium_item(tweet: Any, source: str) -> CollectedItem:
    """One TwitterAPI.io tweet object as an item."""
    if not isinstance(tweet, dict) or _id(tweet.get("id")) is None:
        raise MalformedResponse(ARENA, "TwitterAPI.io tweet has no 'id'; the API may have changed")
    post_id = _id(tweet.get("id")) or ""
    author = _dict(tweet.get("author"))
    handle = _text(author.get("userName"))
    text = _text(tweet.get("text"))
    retweeted = _dict(tweet.get("retweeted_tweet"))
    retweet_of = _id(retweeted.get("id"))
    original_author = _dict(retweeted.get("author"))
    original_handle = _text(original_author.get("userName"))
    if retweeted and (original := _text(retweeted.get("text"))):
        text = f"RT @{original_handle}: {original}" if original_handle else original
    quoted = _dict(tweet.get("quoted_tweet"))
    quoted_author = _dict(quoted.get("author"))
    entities = _dict(tweet.get("entities"))
    media = _list(_dict(tweet.get("extendedEntities")).get("media")) or _list(entities.get("media"))
    return _item(
        post_id=post_id,
        published=_when(tweet.get("createdAt"), "TwitterAPI.io"),
        text=text,
        language=tweet.get("lang"),
        handle=handle,
        user_id=_id(author.get("id")),
        name=_text(author.get("name")),
        views=tweet.get("viewCount"),
        likes=tweet.get("likeCount"),
        shares=tweet.get("retweetCount"),
        comments=tweet.get("replyCount"),
        media=[u for m in media if (u := _http(_dict(m).get("media_url_https")))],
        extra={
            "retweet_of": retweet_of,
            "conversation_id": _id(tweet.get("conversationId")),
            "in_reply_to": _id(tweet.get("inReplyToId")),
            "quoted": _id(quoted.get("id")),
            "quote_count": _count(tweet.get("quoteCount")),
            "hashtags": [t for tag in _list(entities.get("hashtags")) if (t := _text(_dict(tag).get("text")))],
            "links": [u for link in _list(entities.get("urls")) if (u := _http(_dict(link).get("expanded_url")))],
        },
        interactions=x_interactions(
            reply=(
                _id(tweet.get("inReplyToId")),
                _text(tweet.get("inReplyToUsername")),
                _id(tweet.get("inReplyToUserId")),
            ),
            quote=(_id(quoted.get("id")), _text(quoted_author.get("userName")), _id(quoted_author.get("id"))),
            repost=(retweet_of, original_handle, _id(original_author.get("id"))),
            mentions=[
                (_text(_dict(m).get("screen_name")), _id(_dict(m).get("id_str")))
                for m in _list(entities.get("user_mentions"))
            ],
        ),
        source=source,
    )


def parse_medium(document: Any) -> tuple[list[Any], str | None]:
    """The tweets of a TwitterAPI.io search page and the next cursor (None at the end)."""
    if not isinstance(document, dict) or not isinstance(document.get("tweets"), list):
        raise MalformedResponse(ARENA, "TwitterAPI.io search answer has no 'tweets' list; the API may have changed")
    cursor = _text(document.get("next_cursor"))
    more = document.get("has_next_page") is True and cursor is not None
    return document["tweets"], cursor if more else None


# --- parsing: X API v2 (premium) ---------------------------------------------------------------------


def premium_items(document: Any, source: str) -> tuple[list[CollectedItem], str | None, str | None]:
    """The posts of an X v2 search page, its ``meta.next_token`` and ``meta.newest_id``."""
    if not isinstance(document, dict) or not isinstance(document.get("meta"), dict):
        raise MalformedResponse(ARENA, "X search answer has no 'meta'; the API may have changed")
    data = document.get("data", [])
    if not isinstance(data, list):
        raise MalformedResponse(ARENA, "X search answer 'data' is not a list; the API may have changed")
    includes = _dict(document.get("includes"))
    users = {_id(u.get("id")): u for u in _list(includes.get("users")) if isinstance(u, dict)}
    included = {_id(t.get("id")): t for t in _list(includes.get("tweets")) if isinstance(t, dict)}
    meta = document["meta"]
    return (
        [_premium_item(post, users, included, source) for post in data],
        _text(meta.get("next_token")),
        _id(meta.get("newest_id")),
    )


def _v2_text(post: dict[str, Any]) -> str | None:
    # Posts over 280 characters keep their whole text in note_tweet, as in the GraphQL export.
    return _text(_dict(post.get("note_tweet")).get("text")) or _text(post.get("text"))


def _premium_item(
    post: Any, users: Mapping[str | None, Any], included: Mapping[str | None, Any], source: str
) -> CollectedItem:
    if not isinstance(post, dict) or _id(post.get("id")) is None:
        raise MalformedResponse(ARENA, "X post has no 'id'; the API may have changed")
    post_id = _id(post.get("id")) or ""
    user_id = _id(post.get("author_id"))
    user = _dict(users.get(user_id))
    handle = _text(user.get("username"))
    metrics = _dict(post.get("public_metrics"))
    entities = _dict(post.get("entities"))
    referenced: dict[str, str] = {}
    for ref in _list(post.get("referenced_tweets")):
        kind, ref_id = _text(_dict(ref).get("type")), _id(_dict(ref).get("id"))
        if kind and ref_id:
            referenced.setdefault(kind, ref_id)

    def other(kind: str) -> tuple[str | None, str | None, str | None]:
        ref_id = referenced.get(kind)
        author_id = _id(_dict(included.get(ref_id)).get("author_id")) if ref_id else None
        if kind == "replied_to":
            author_id = author_id or _id(post.get("in_reply_to_user_id"))
        return ref_id, _text(_dict(users.get(author_id)).get("username")) if author_id else None, author_id

    text = _v2_text(post)
    retweet = other("retweeted")
    original = _dict(included.get(retweet[0])) if retweet[0] else {}
    if original and (original_text := _v2_text(original)):
        text = f"RT @{retweet[1]}: {original_text}" if retweet[1] else original_text
    return _item(
        post_id=post_id,
        published=_when(post.get("created_at"), "X"),
        text=text,
        language=post.get("lang"),
        handle=handle,
        user_id=user_id,
        name=_text(user.get("name")),
        views=metrics.get("impression_count"),
        likes=metrics.get("like_count"),
        shares=metrics.get("retweet_count"),
        comments=metrics.get("reply_count"),
        media=[],
        extra={
            "retweet_of": retweet[0],
            "conversation_id": _id(post.get("conversation_id")),
            "in_reply_to": referenced.get("replied_to"),
            "quoted": referenced.get("quoted"),
            "quote_count": _count(metrics.get("quote_count")),
            "hashtags": [t for tag in _list(entities.get("hashtags")) if (t := _text(_dict(tag).get("tag")))],
            "links": [u for link in _list(entities.get("urls")) if (u := _http(_dict(link).get("expanded_url")))],
        },
        interactions=x_interactions(
            reply=other("replied_to"),
            quote=other("quoted"),
            repost=retweet,
            mentions=[
                (_text(_dict(m).get("username")), _id(_dict(m).get("id"))) for m in _list(entities.get("mentions"))
            ],
        ),
        source=source,
    )


# --- errors ------------------------------------------------------------------------------------------------


def error_text(document: Any) -> str:
    """What a provider's error body says, in one short line (never the request's key)."""
    if not isinstance(document, dict):
        return "no reason given"
    parts = []
    for key in ("title", "error", "message", "msg", "detail"):
        value = document.get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in parts:
            parts.append(value.strip())
    for error in _list(document.get("errors")):
        message = _text(_dict(error).get("message"))
        if message and message not in parts:
            parts.append(message)
    return (": ".join(parts) or "no reason given")[:200]


# --- the arena ---------------------------------------------------------------------------------------------


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"option '{key}' must be a whole number from {low} to {high}, not {value!r}")
    return value


class _Sweep:
    """Where one query stands: what a checkpoint stores."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        state = state or {}
        self.position = state.get("position")  # cursor or next_token
        self.pages = int(state.get("pages") or 0)
        self.since = state.get("since")  # the since_time / since_id this sweep asks with
        self.newest = state.get("newest")  # newest createdAt (s) or post id seen in this sweep
        self.mark = state.get("mark")  # newest of the last complete sweep: where the next day starts

    def state(self) -> dict[str, Any]:
        return {"position": self.position, "pages": self.pages, "since": self.since, "newest": self.newest,
                "mark": self.mark}  # fmt: skip

    def saw(self, value: int | None) -> None:
        if value is not None and (self.newest is None or int(value) > int(self.newest)):
            self.newest = value if isinstance(value, int) else str(value)


@register
class XTwitterArena(Arena):
    name = "x_twitter"
    platform = "x_twitter"
    description = (
        "X (Twitter) posts for the design's terms and accounts: TwitterAPI.io at medium, the X API v2 "
        "full-archive search at premium; paid per post."
    )
    supported_tiers = frozenset({Tier.MEDIUM, Tier.PREMIUM})
    needs_credential = True
    enabled_by_default = False
    metered = True
    keep_unmatched = True  # X searched the text server-side

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        merged = {**DEFAULT_OPTIONS, **options}
        base = merged["base_url"]
        if base is not None and (not isinstance(base, str) or urlsplit(base).scheme not in ("http", "https")):
            raise ValueError(f"option 'base_url' must be an http(s) URL, or null for the tier's, not {base!r}")
        for key in ("language_filter", "exclude_replies"):
            if not isinstance(merged[key], bool):
                raise ValueError(f"option '{key}' must be true or false, not {merged[key]!r}")
        return {
            **merged,
            "base_url": base.rstrip("/") if base else None,
            "max_pages": _whole(merged, "max_pages", 1, 1000),
            "max_results": _whole(merged, "max_results", 10, 500),
            "max_query_length": None
            if merged["max_query_length"] is None
            else _whole(merged, "max_query_length", 64, 4096),
            "min_interval_seconds": validate_min_interval(merged["min_interval_seconds"]),
        }

    def _page_price(self, spec: QuerySpec, options: Mapping[str, Any]) -> tuple[Price, int]:
        if spec.tier not in self.supported_tiers:
            raise ArenaError(self.name, f"tier '{spec.tier.value}' has no X provider; use medium or premium")
        per_page = MEDIUM_PAGE if spec.tier == Tier.MEDIUM else options["max_results"]
        return price(self.name, spec.tier.value), per_page

    def estimate_credits(self, spec: QuerySpec) -> int:
        """queries × max_pages × price.of(results a page): 20 at medium, ``max_results`` at premium."""
        options = self.validate_options(spec.options)
        cost, per_page = self._page_price(spec, options)
        return len(build_queries(spec, options)) * options["max_pages"] * cost.of(per_page)

    def credits_used(self, spec: QuerySpec, items: int, api_calls: int) -> int:
        return 0  # metered: the runner settles what ctx.budget counted

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected | Checkpoint]:
        options = self.validate_options(spec.options)
        if ctx.credentials is None:
            raise ArenaError(self.name, "no credential pool was given; X needs an API key or bearer token")
        cost, per_page = self._page_price(spec, options)
        queries = build_queries(spec, options)
        if not queries:
            raise ArenaError(self.name, "the design has no terms and no x_twitter accounts; add either")
        budget = ctx.budget or Budget(reserved=self.estimate_credits(spec))
        base = options["base_url"] or BASE_URLS[spec.tier]
        seen: set[str] = set()
        for query, term in queries:
            source = f"x search: {query}"
            resumed = ctx.resume(source)
            if resumed and resumed.today and resumed.finished:
                continue  # stored today already: no call, no charge
            if resumed and resumed.today:
                sweep = _Sweep(resumed.state)
            else:
                # A new day: search again, from the newest post of the last complete sweep on.
                sweep = _Sweep({"mark": resumed.state.get("mark")} if resumed else None)
                sweep.since = sweep.mark
            ctx.searched(source)
            while sweep.pages < options["max_pages"]:
                with budget.call(most=cost.of(per_page)) as charge:
                    if spec.tier == Tier.MEDIUM:
                        found, position, newest = self._medium_page(spec, ctx, options, base, query, sweep, source)
                    else:
                        found, position, newest = self._premium_page(spec, ctx, options, base, query, sweep, source)
                    charge.credits = cost.of(len(found)) if (found or spec.tier == Tier.MEDIUM) else 0
                for item in found:
                    if item.platform_id in seen:
                        continue
                    seen.add(item.platform_id)
                    if term is not None:
                        item.matched_terms = (term,)
                    yield item
                sweep.saw(newest)
                sweep.pages += 1
                sweep.position = position
                done = position is None
                if done and sweep.newest is not None:
                    sweep.mark = sweep.newest if sweep.mark is None else max(sweep.newest, sweep.mark, key=int)
                yield Checkpoint(source, sweep.state(), finished=done or sweep.pages >= options["max_pages"])
                if done:
                    break

    # --- medium: TwitterAPI.io ---

    def _medium_page(
        self,
        spec: QuerySpec,
        ctx: CollectionContext,
        options: Mapping[str, Any],
        base: str,
        query: str,
        sweep: _Sweep,
        source: str,
    ) -> tuple[list[CollectedItem], str | None, int | None]:
        start = int(spec.window_start.timestamp())
        since = max(start, int(sweep.since)) if sweep.since is not None else start
        full = f"{query} since_time:{since} until_time:{int(spec.window_end.timestamp())}"
        params = {"query": full, "queryType": "Latest", "cursor": sweep.position or ""}
        url = f"{base}/twitter/tweet/advanced_search"
        document = self._send(ctx, options, url, params, lambda lease: {"X-API-Key": lease.secret.reveal()})
        tweets, cursor = parse_medium(document)
        items = [medium_item(t, source) for t in tweets]
        newest = max((int(i.published_at.timestamp()) for i in items if i.published_at), default=None)
        return items, cursor, newest

    # --- premium: X API v2 ---

    def _premium_page(
        self,
        spec: QuerySpec,
        ctx: CollectionContext,
        options: Mapping[str, Any],
        base: str,
        query: str,
        sweep: _Sweep,
        source: str,
    ) -> tuple[list[CollectedItem], str | None, int | None]:
        params: dict[str, Any] = {
            "query": query,
            "end_time": f"{spec.window_end:%Y-%m-%dT%H:%M:%SZ}",
            "max_results": options["max_results"],
            "tweet.fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user.fields": "username,name",
        }
        # With since_id X ignores start_time [U]; the id is newer than the month's start anyway.
        if sweep.since is not None:
            params["since_id"] = str(sweep.since)
        else:
            params["start_time"] = f"{spec.window_start:%Y-%m-%dT%H:%M:%SZ}"
        if sweep.position:
            params["next_token"] = sweep.position
        url = f"{base}/2/tweets/search/all"
        document = self._send(
            ctx, options, url, params, lambda lease: {"Authorization": f"Bearer {lease.secret.reveal()}"}
        )
        items, token, newest_id = premium_items(document, source)
        newest = max((int(i.platform_id) for i in items if i.platform_id.isdecimal()), default=None)
        if newest_id and newest_id.isdecimal():
            newest = max(newest or 0, int(newest_id))
        return items, token, newest

    # --- one request through the pool ---

    def _send(
        self,
        ctx: CollectionContext,
        options: Mapping[str, Any],
        url: str,
        params: Mapping[str, Any],
        headers: Any,
    ) -> Any:
        assert ctx.credentials is not None

        def request(lease: Any) -> Any:
            response = ctx.http.request(
                "GET",
                url,
                arena=self.name,
                params=params,
                headers=headers(lease),
                min_interval_seconds=options["min_interval_seconds"],
            )
            return self._interpret(response, url, lease)

        return ctx.credentials.call(request)

    def _interpret(self, response: Any, url: str, lease: Any) -> Any:
        status, endpoint = response.status_code, where(url)
        try:
            document = response.json()
        except ValueError:
            document = None
        said = error_text(document)
        if 200 <= status < 300:
            if document is None:
                content_type = response.headers.get("content-type") or "no content type"
                raise MalformedResponse(
                    self.name, f"{endpoint} answered with {content_type} that is not JSON; the API may have changed"
                )
            if isinstance(document, dict) and document.get("status") == "error":
                raise ArenaError(self.name, f"{endpoint} refused the search ({said}); check the query")
            return document
        if status == 402:
            # The key's account is out of money: retrying or rotating will not pay for it.
            reason = f"HTTP 402 from {endpoint} ({said}): the account is out of credits"
            lease.refused(reason)
            raise ArenaError(
                self.name,
                f"{reason}; credential {lease.name} was switched off: recharge the account and switch it on again",
            )
        if status == 429 or "UsageCapExceeded" in said:
            raise RateLimited(
                self.name, f"HTTP {status} from {endpoint} ({said}): rate-limited", retry_after=_wait(response)
            )
        if status in (401, 403):
            raise CredentialError(self.name, f"HTTP {status} from {endpoint} ({said}): check or renew the key")
        raise ArenaError(self.name, f"HTTP {status} from {endpoint} ({said}); check the query and its options")


def _wait(response: Any) -> float | None:
    """Seconds to rest the key: X's ``x-rate-limit-reset`` (epoch s), else ``Retry-After``, else a
    second (TwitterAPI.io limits requests per second)."""
    reset = response.headers.get("x-rate-limit-reset")
    if reset and reset.strip().isdecimal():
        return max(1.0, float(reset) - time.time())
    waited = parse_retry_after(response.headers.get("retry-after"), 0.0)
    return waited if waited is not None else 1.0
