"""Reddit through its OAuth API (app-only client credentials), research notes §2.

Search has no date parameter: each term is searched with ``sort=new`` and paged with ``after``
until an item is older than the month. Every Reddit listing ends after about 1,000 items
(``listing_cap``, [S]); a listing that ends there while still inside the month is reported as a
``Rejected``, so the loss is never silent. Actor lists read ``/user/<name>/submitted``.
Comments (option ``comments``) come from ``/comments/<id>`` for each submission found.

A 403 on a listing when the token endpoint accepted the credential means the subreddit is private
or the account suspended, not that the key is bad: it is a ``Rejected`` for that source. A 401 is
retried once with a fresh token (tokens expire), then flags the credential.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

from observatory_pipelines import __version__
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

ARENA = "reddit"
DEFAULT_OPTIONS: dict[str, Any] = {
    "base_url": "https://oauth.reddit.com",
    "token_url": "https://www.reddit.com/api/v1/access_token",
    "subreddits": [],  # empty: site-wide search
    "comments": False,
    "page_size": 100,  # Reddit's maximum
    "listing_cap": 1000,  # [S] where every listing ends
    "comment_limit": 500,  # [U] comments per /comments/<id> call
    # 100 requests per minute per client id ([V], averaged over 10 minutes).
    "min_interval_seconds": 0.6,
    "user_agent": f"server:observatory-pipelines:{__version__} (research observatory)",
}
_GONE = ("[deleted]", "[removed]")
_QUERY_CHARS = 512


def _reddit_atom(atom: terms.Atom) -> str:
    # Reddit's search has no hashtag operator; it reads '#dkpol' as the word, a superset.
    if isinstance(atom, terms.Phrase):
        return '"' + " ".join(atom.words) + '"'
    return atom.text


def render_query(node: terms.Node) -> str:
    """A term in Reddit's search syntax: AND, OR, NOT, quotes and parentheses."""
    if isinstance(node, terms.AllOf):
        parts = [_group(n) for n in node.required] + [f"NOT {_group(n)}" for n in node.excluded]
        return " AND ".join(parts)
    if isinstance(node, terms.AnyOf):
        return " OR ".join(_group(n) for n in node.options)
    return _reddit_atom(node)


def _group(node: terms.Node) -> str:
    return f"({render_query(node)})" if isinstance(node, terms.AllOf | terms.AnyOf) else render_query(node)


def build_queries(raw_terms: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(query, term) per term: one query each, so the listing cap applies per term."""
    queries = []
    for term in design_terms(ARENA, raw_terms):
        query = render_query(term.root)
        if len(query) > _QUERY_CHARS:
            raise ArenaError(
                ARENA, f"term {term.text!r} is over Reddit's {_QUERY_CHARS}-character query limit; shorten it"
            )
        queries.append((query, term.text))
    return queries


# --- parsing ---------------------------------------------------------------------------------------


def _need(node: Any, key: str, where_: str) -> Any:
    if not isinstance(node, Mapping) or key not in node or node[key] is None:
        raise MalformedResponse(ARENA, f"Reddit {where_} has no '{key}'; the API may have changed")
    return node[key]


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _created(data: Mapping[str, Any], where_: str) -> datetime:
    value = _need(data, "created_utc", where_)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedResponse(ARENA, f"Reddit {where_} has a non-numeric 'created_utc'; the API may have changed")
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise MalformedResponse(ARENA, f"Reddit {where_} has an impossible 'created_utc' {value!r}") from None


def _author(data: Mapping[str, Any]) -> str | None:
    author = _text(data.get("author"))
    return None if author is None or author in _GONE else author


def _base36(fullname: str) -> str:
    return fullname.split("_", 1)[1] if "_" in fullname else fullname


def post_url(post_id: str) -> str:
    """The canonical URL: no subreddit, slug or username, so every route to a post agrees."""
    return f"https://www.reddit.com/comments/{post_id}/"


def comment_url(post_id: str, comment_id: str) -> str:
    return f"https://www.reddit.com/comments/{post_id}/_/{comment_id}/"


def _media(data: Mapping[str, Any]) -> list[str]:
    urls: list[str] = []
    link = _text(data.get("url"))
    if link and data.get("post_hint") == "image":
        urls.append(link)
    preview = data.get("preview")
    for image in preview.get("images", []) if isinstance(preview, Mapping) else []:
        source = image.get("source") if isinstance(image, Mapping) else None
        url = _text(source.get("url")) if isinstance(source, Mapping) else None
        if url and url not in urls:
            urls.append(url)
    video = data.get("media")
    video = video.get("reddit_video") if isinstance(video, Mapping) else None
    fallback = _text(video.get("fallback_url")) if isinstance(video, Mapping) else None
    if fallback:
        urls.append(fallback)
    return urls


def submission_item(data: Mapping[str, Any], source: str) -> CollectedItem:
    """A ``t3`` as an item. A deleted or removed submission keeps its title, without author or body."""
    name = _need(data, "name", "submission")
    if not isinstance(name, str) or not name.startswith("t3_"):
        raise MalformedResponse(ARENA, "Reddit submission has a 'name' that is not a t3_ fullname")
    post_id = _base36(name)
    created = _created(data, "submission")
    body = _text(data.get("selftext"))
    removed = body if body in _GONE else None
    author = _author(data)
    is_self = data.get("is_self") is True
    link = _text(data.get("url"))
    raw = {
        "subreddit": _text(data.get("subreddit")),
        "subreddit_id": _text(data.get("subreddit_id")),
        "permalink": _text(data.get("permalink")),
        "link_url": None if is_self else link,
        "domain": _text(data.get("domain")),
        "over_18": data.get("over_18"),
        "is_self": is_self,
        "upvote_ratio": data.get("upvote_ratio"),
        "link_flair_text": _text(data.get("link_flair_text")),
        "stickied": data.get("stickied"),
        "locked": data.get("locked"),
        "author_user_id": _text(data.get("author_fullname")) if author else None,
        "removed": removed or ("author" if author is None else None),
    }
    return CollectedItem(
        platform="reddit",
        platform_id=name,
        published_at=created,
        content_type="post",
        url=post_url(post_id),
        text_content=None if removed else body,
        title=_text(data.get("title")),
        author_platform_id=author,
        author_display_name=author,
        likes_count=_count(data.get("score")),
        shares_count=_count(data.get("num_crossposts")),
        comments_count=_count(data.get("num_comments")),
        media_urls=_media(data),
        raw_metadata={k: v for k, v in raw.items() if v is not None},
        source=source,
    )


def comment_item(
    data: Mapping[str, Any], source: str, authors: Mapping[str, str | None] | None = None
) -> CollectedItem | Rejected:
    """A ``t1`` as an item replying to its parent; a deleted or removed comment is ``Rejected``."""
    name = _need(data, "name", "comment")
    parent = _need(data, "parent_id", "comment")
    link_id = _need(data, "link_id", "comment")
    created = _created(data, "comment")
    body = _text(data.get("body"))
    if body in _GONE or body is None:
        return Rejected(f"Reddit comment {name} is {(body or '[empty]').strip('[]')}; only a tombstone is left", source)
    author = _author(data)
    parent_author = (authors or {}).get(str(parent))
    return CollectedItem(
        platform="reddit",
        platform_id=str(name),
        published_at=created,
        content_type="comment",
        url=comment_url(_base36(str(link_id)), _base36(str(name))),
        text_content=body,
        author_platform_id=author,
        author_display_name=author,
        likes_count=_count(data.get("score")),
        interactions=[Interaction("reply", platform_id=str(parent), handle=parent_author)],
        raw_metadata={
            k: v
            for k, v in {
                "subreddit": _text(data.get("subreddit")),
                "link_id": str(link_id),
                "parent_id": str(parent),
                "permalink": _text(data.get("permalink")),
                "author_user_id": _text(data.get("author_fullname")) if author else None,
            }.items()
            if v is not None
        },
        source=source,
    )


def parse_listing(document: Any, where_: str = "listing") -> tuple[list[tuple[str, Mapping[str, Any]]], str | None]:
    """The (kind, data) children of a Listing and its ``after`` cursor; raises on a changed shape."""
    if isinstance(document, Mapping) and document.get("error") == 429:
        # Reddit sometimes says 429 in a 200 body.
        raise RateLimited(ARENA, "Reddit answered 'Too Many Requests' in a 200 body; rate-limited")
    data = _need(document, "data", where_)
    children = _need(data, "children", where_)
    if not isinstance(children, list):
        raise MalformedResponse(ARENA, f"Reddit {where_} 'children' is not a list; the API may have changed")
    after = data.get("after")
    found = []
    for child in children:
        kind = _need(child, "kind", f"{where_} child")
        found.append((str(kind), _need(child, "data", f"{where_} child")))
    return found, after if isinstance(after, str) and after else None


def parse_comments(document: Any, source: str) -> list[CollectedItem | Rejected]:
    """Every comment of a ``/comments/<id>`` answer (``[post listing, comment listing]``), depth first."""
    if not isinstance(document, list) or len(document) != 2:
        raise MalformedResponse(
            ARENA, "Reddit comments answer is not a [post, comments] pair; the API may have changed"
        )
    posts, _ = parse_listing(document[0], "comments post listing")
    authors: dict[str, str | None] = {}
    for kind, data in posts:
        if kind == "t3":
            authors[str(_need(data, "name", "submission"))] = _author(data)
    found: list[CollectedItem | Rejected] = []
    pending = list(reversed(parse_listing(document[1], "comment listing")[0]))
    while pending:
        kind, data = pending.pop()
        if kind != "t1":  # "more" stubs are not expanded (a documented limit)
            continue
        found.append(comment_item(data, source, authors))
        authors[str(data["name"])] = _author(data)
        replies = data.get("replies")
        if isinstance(replies, Mapping):
            pending += list(reversed(parse_listing(replies, "comment replies")[0]))
    return found


# --- the arena -------------------------------------------------------------------------------------


def _positive_int(options: Mapping[str, Any], key: str, top: int) -> int:
    value = options.get(key, DEFAULT_OPTIONS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ValueError(f"option '{key}' must be a whole number from 1 to {top}, not {value!r}")
    return value


class _Token:
    """Bearer tokens per credential, fetched when missing or expired."""

    def __init__(self) -> None:
        self._tokens: dict[Any, tuple[str, float]] = {}

    def get(self, lease: Any) -> str | None:
        token = self._tokens.get(lease.id)
        return token[0] if token and token[1] > time.monotonic() else None

    def put(self, lease: Any, token: str, expires_in: float) -> None:
        # A minute's margin, so a token never expires between our check and Reddit's.
        self._tokens[lease.id] = (token, time.monotonic() + max(0.0, expires_in - 60))

    def drop(self, lease: Any) -> None:
        self._tokens.pop(lease.id, None)


class _Closed(Exception):
    """A source Reddit will not show (private, banned, suspended or deleted): a ``Rejected``."""


@register
class RedditArena(Arena):
    name = "reddit"
    platform = "reddit"
    description = "Reddit submissions (and optionally comments) for the design's terms and accounts, via the OAuth API."
    # Reddit's free tier costs nothing but requests; the pool's quota counts those.
    free = True
    needs_credential = True
    enabled_by_default = False
    keep_unmatched = True  # Reddit searched server-side; actor lists are chosen accounts
    expected_items_per_month = 2_000

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        merged = {**DEFAULT_OPTIONS, **options}
        for key in ("base_url", "token_url"):
            if not isinstance(merged[key], str) or urlsplit(merged[key]).scheme not in ("http", "https"):
                raise ValueError(f"option '{key}' must be an http(s) URL, not {merged[key]!r}")
        subs = merged["subreddits"]
        if isinstance(subs, str):
            subs = [subs]
        if not isinstance(subs, list) or not all(isinstance(s, str) and s.strip() for s in subs):
            raise ValueError(f"option 'subreddits' must be a list of subreddit names, not {subs!r}")
        if not isinstance(merged["comments"], bool):
            raise ValueError(f"option 'comments' must be true or false, not {merged['comments']!r}")
        if not isinstance(merged["user_agent"], str) or not merged["user_agent"].strip():
            raise ValueError("option 'user_agent' must be a descriptive text (Reddit throttles generic ones)")
        return {
            **merged,
            "base_url": merged["base_url"].rstrip("/"),
            "subreddits": [s.strip().removeprefix("r/") for s in subs],
            "page_size": _positive_int(merged, "page_size", 100),
            "listing_cap": _positive_int(merged, "listing_cap", 100_000),
            "comment_limit": _positive_int(merged, "comment_limit", 500),
            "min_interval_seconds": validate_min_interval(merged["min_interval_seconds"]),
        }

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        if ctx.credentials is None:
            raise ArenaError(self.name, "no credential pool was given; Reddit needs OAuth client credentials")
        self._ctx, self._options, self._tokens = ctx, options, _Token()
        sources: list[tuple[str, str, dict[str, Any], str | None]] = []
        for query, searched_term in build_queries(spec.terms):
            if options["subreddits"]:
                subs = "+".join(options["subreddits"])
                params = {"q": query, "restrict_sr": "1"}
                sources.append(
                    (f"reddit search r/{subs}: {query}", f"/r/{quote(subs, safe='+')}/search", params, searched_term)
                )
            else:
                sources.append((f"reddit search: {query}", "/search", {"q": query}, searched_term))
        for actor in spec.actors:
            if actor.platform == "reddit" and actor.username:
                user = actor.username.strip().removeprefix("u/")
                sources.append((f"reddit user {user}", f"/user/{quote(user)}/submitted", {}, None))
        if not sources:
            raise ArenaError(self.name, "the design has no terms and no reddit accounts; add either")
        seen: set[str] = set()
        for source, path, params, term in sources:
            ctx.searched(source)
            for item in self._listing(spec, source, path, params):
                if isinstance(item, Rejected):
                    yield item
                    continue
                if term is not None:
                    item.matched_terms = (term,)
                if item.platform_id in seen:
                    continue
                seen.add(item.platform_id)
                yield item
                if options["comments"]:
                    yield from self._comments(item, source, seen)

    def _listing(
        self, spec: QuerySpec, source: str, path: str, params: dict[str, Any]
    ) -> Iterator[CollectedItem | Rejected]:
        options = self._options
        after: str | None = None
        fetched = 0
        oldest: datetime | None = None
        while True:
            page = {**params, "sort": "new", "limit": options["page_size"], "raw_json": 1, "type": "link"}
            if after:
                page["after"] = after
            try:
                document = self._get(path, page)
            except _Closed as closed:
                yield Rejected(str(closed), source)
                return
            children, after = parse_listing(document)
            past_start = False
            for kind, data in children:
                if kind != "t3":
                    continue
                fetched += 1
                item = submission_item(data, source)
                assert item.published_at is not None
                if item.published_at < spec.window_start:
                    # Pinned posts sit on top of user listings, out of order: they do not end it.
                    past_start = past_start or data.get("stickied") is not True
                    continue
                oldest = item.published_at
                if item.published_at < spec.window_end:
                    yield item
            if past_start:
                return
            if after is None:
                if fetched >= options["listing_cap"] and oldest is not None and oldest >= spec.window_start:
                    yield Rejected(
                        f"Reddit's listing ended at its ~{options['listing_cap']}-item cap at {oldest:%Y-%m-%d %H:%M} "
                        "UTC, inside the month, so older items are missing; narrow the term or name subreddits",
                        source,
                    )
                return

    def _comments(self, post: CollectedItem, source: str, seen: set[str]) -> Iterator[CollectedItem | Rejected]:
        post_id = _base36(post.platform_id)
        try:
            document = self._get(
                f"/comments/{post_id}", {"sort": "new", "limit": self._options["comment_limit"], "raw_json": 1}
            )
        except _Closed as closed:
            yield Rejected(str(closed), source)
            return
        for found in parse_comments(document, source):
            if isinstance(found, CollectedItem):
                if found.platform_id in seen:
                    continue
                seen.add(found.platform_id)
            yield found

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        ctx, options = self._ctx, self._options
        assert ctx.credentials is not None
        url = options["base_url"] + path

        def request(lease: Any) -> Any:
            for attempt in (1, 2):
                fresh = self._tokens.get(lease) is None
                token = self._tokens.get(lease) or self._token(lease)
                response = ctx.http.request(
                    "GET",
                    url,
                    arena=self.name,
                    params=params,
                    headers={"Authorization": f"bearer {token}", "User-Agent": options["user_agent"]},
                    min_interval_seconds=options["min_interval_seconds"],
                )
                status = response.status_code
                if status == 401 and not fresh and attempt == 1:
                    self._tokens.drop(lease)  # expired early: one fresh token, then it is the key's fault
                    continue
                return self._interpret(response, url)
            raise AssertionError("unreachable")

        return ctx.credentials.call(request)

    def _token(self, lease: Any) -> str:
        options = self._options
        response = self._ctx.http.request(
            "POST",
            options["token_url"],
            arena=self.name,
            data={"grant_type": "client_credentials"},
            auth=(lease.field("client_id").reveal(), lease.field("client_secret").reveal()),
            headers={"User-Agent": options["user_agent"]},
        )
        if response.status_code in (400, 401, 403):
            raise CredentialError(
                self.name,
                f"HTTP {response.status_code} from {where(options['token_url'])}: the client id or secret "
                "was refused; check or renew the credential",
            )
        document = self._interpret(response, options["token_url"])
        token = _need(document, "access_token", "token answer")
        expires = document.get("expires_in")
        self._tokens.put(lease, str(token), float(expires) if isinstance(expires, int | float) else 3600.0)
        return str(token)

    def _interpret(self, response: Any, url: str) -> Any:
        status, endpoint = response.status_code, where(url)
        if status == 429:
            headers = response.headers
            wait = parse_retry_after(headers.get("retry-after"), time.time())
            if wait is None:
                wait = parse_retry_after(headers.get("x-ratelimit-reset"), time.time())
            raise RateLimited(self.name, f"HTTP 429 from {endpoint}; rate-limited", retry_after=wait)
        if status == 401:
            raise CredentialError(self.name, f"HTTP 401 from {endpoint}: access refused; check or renew the credential")
        if status in (403, 404):
            what = "private, banned or suspended" if status == 403 else "deleted or unknown"
            raise _Closed(f"HTTP {status} from {endpoint}: {what}, so nothing could be collected from it")
        if not 200 <= status < 300:
            raise ArenaError(self.name, f"HTTP {status} from {endpoint}; check the request and its options")
        try:
            return response.json()
        except ValueError:
            content_type = response.headers.get("content-type") or "no content type"
            raise MalformedResponse(
                self.name, f"{endpoint} answered with {content_type} that is not JSON; the API may have changed"
            ) from None
