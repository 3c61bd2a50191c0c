"""Mastodon statuses from public hashtag and account timelines (research notes §10;
docs/collection.md, "mastodon").

- Hashtags: every design term's words and hashtags that can be a Mastodon hashtag
  (``#klima`` and ``klima`` both read ``/api/v1/timelines/tag/klima``), on every instance in the
  option ``instances``. A tag timeline holds much that matches no term, so items are kept only
  when the term grammar matches their text (``keep_unmatched = False``).
- Actor lists: design actors on platform ``mastodon`` (``user@host``) through
  ``/api/v1/accounts/lookup`` and ``/api/v1/accounts/:id/statuses``.

Timelines have no date filter: paging starts at a ``max_id`` made from the window's end (ids are
time-based) and follows the ``Link`` header's ``rel="next"`` until a status is older than the
window. An item's ``platform_id`` is the status ``uri``, its ActivityPub id on its home instance,
so the same status read on two instances is one item; ``author_platform_id`` is the account as
``user@home-host`` for the same reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

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
from observatory_pipelines.core.collection.arenas.errors import ArenaError, MalformedResponse, RateLimited
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
from observatory_pipelines.core.collection.text import html_to_text

ARENA = "mastodon"

DEFAULT_OPTIONS: dict[str, Any] = {
    "instances": None,  # required: e.g. ["https://mastodon.social", "https://mastodon.dk"]
    "page_limit": 40,  # the documented maximum
    "max_pages": 500,  # per instance and tag or account
    "local_only": False,
    # Status ids are milliseconds << 16, so a window's end can be a max_id [U]; off pages from now.
    "max_id_from_window_end": True,
    # Pause when an instance says this many requests or fewer are left before its reset.
    "rate_limit_floor": 1,
    "max_rate_limit_wait_seconds": 300.0,
    # How long to wait after a 429 that names no reset time [U].
    "rate_limit_wait_seconds": 300.0,
    "min_interval_seconds": 1.0,  # 300 requests per 5 minutes per IP
}
_PUBLIC = ("public", "unlisted")
# Mastodon hashtags are letters, digits, underscores and middle dots (HASHTAG_RE in its source).
_HASHTAG = re.compile(r"^[\w·]+$")
# Tests replace this so a rate-limit pause is asserted, not waited.
_sleep = time.sleep


def hashtags_for(raw_terms: tuple[str, ...]) -> list[str]:
    """The tag timelines to read: each term's required words and hashtags that are valid Mastodon
    hashtags, lower-cased, once (phrases have no timeline of their own)."""
    tags: dict[str, None] = {}
    for term in design_terms(ARENA, raw_terms):
        for clause in term.disjuncts():
            for atom in clause.required:
                if isinstance(atom, terms.Word | terms.Hashtag) and _HASHTAG.match(atom.text):
                    tags.setdefault(atom.text.casefold())
    return list(tags)


def _host(url: Any) -> str | None:
    try:
        return urlsplit(url).hostname if isinstance(url, str) else None
    except ValueError:
        return None


def account_id(account: Mapping[str, Any], instance_host: str) -> str | None:
    """``user@home-host``: the same account whichever instance it was read on."""
    acct = text_or_none(account.get("acct"))
    if acct is None:
        return None
    if "@" in acct:
        user, _, host = acct.partition("@")
        return f"{user}@{host.lower()}"
    return f"{acct}@{(_host(account.get('url')) or instance_host).lower()}"


def status_item(status: Any, instance_host: str, source: str) -> CollectedItem | Rejected:
    """One status as a ``CollectedItem``; ``Rejected`` for one that is not public.

    Raises ``MalformedResponse`` naming the first missing required field (id, uri, created_at,
    account.acct), the only error it raises.
    """
    if not isinstance(status, Mapping):
        raise MalformedResponse(ARENA, "a status is not a JSON object; the API may have changed")
    require(status, "id", ARENA, "a status")
    uri = require(status, "uri", ARENA, "a status")
    created = require(status, "created_at", ARENA, "a status")
    require(status, "account.acct", ARENA, "a status")
    if not isinstance(uri, str):
        raise MalformedResponse(ARENA, "a status's 'uri' is not text; the API may have changed")
    visibility = text_or_none(status.get("visibility")) or "public"
    if visibility not in _PUBLIC:
        return Rejected(f"status {uri} is {visibility}, not public; skipped", source)
    account = status["account"]
    author = account_id(account, instance_host)
    interactions: list[Interaction] = []
    shown = status
    reblog = status.get("reblog") if isinstance(status.get("reblog"), Mapping) else None
    if reblog is not None:
        original = account_id(mapping(reblog.get("account")), instance_host)
        interactions.append(Interaction("repost", platform_id=text_or_none(reblog.get("uri")), author_id=original))
        shown = reblog  # a boost carries its text, media and counts only inside the boosted status
    mentions = array(status.get("mentions"))
    if status.get("in_reply_to_id"):
        # Mastodon names the parent only by ids local to this instance. The parent's author is
        # among the mentions (Mastodon adds them), or is the author replying in their own thread.
        parent_account = str(status.get("in_reply_to_account_id") or "")
        if parent_account and parent_account == str(account.get("id")):
            parent_author = author
        else:
            named = [m for m in mentions if isinstance(m, Mapping) and str(m.get("id")) == parent_account]
            parent_author = account_id(named[0], instance_host) if named else None
        interactions.append(
            Interaction("reply", platform_id=f"{instance_host}:{status['in_reply_to_id']}", author_id=parent_author)
        )
    for mention in mentions:
        if isinstance(mention, Mapping) and (who := account_id(mention, instance_host)):
            interactions.append(Interaction("mention", author_id=who))
    content = shown.get("content")
    text = html_to_text(content, keep_paragraphs=True) if isinstance(content, str) else ""
    warning = text_or_none(status.get("spoiler_text"))
    media = array(shown.get("media_attachments"))
    tags = array(shown.get("tags"))
    return CollectedItem(
        platform="mastodon",
        platform_id=uri,
        published_at=parse_time(created),
        url=text_or_none(status.get("url")) or uri,
        text_content=text or None,
        language=text_or_none(shown.get("language")),
        author_platform_id=author,
        author_display_name=text_or_none(account.get("display_name")) or text_or_none(account.get("acct")),
        likes_count=count_or_none(shown.get("favourites_count")),
        shares_count=count_or_none(shown.get("reblogs_count")),
        comments_count=count_or_none(shown.get("replies_count")),
        media_urls=[u for m in media if isinstance(m, Mapping) and (u := text_or_none(m.get("url")))],
        raw_metadata={
            key: value
            for key, value in {
                "instance": instance_host,
                "local_id": str(status["id"]),
                "visibility": visibility,
                "content_warning": warning,
                "sensitive": status.get("sensitive") is True or None,
                "tags": [t.get("name") for t in tags if isinstance(t, Mapping) and isinstance(t.get("name"), str)],
                "bot": account.get("bot") is True or None,
            }.items()
            if value not in (None, [], "")
        },
        interactions=interactions,
        source=source,
    )


def parse_statuses(document: Any, instance_host: str, source: str) -> list[CollectedItem | Rejected]:
    """A timeline answer (a JSON array of statuses). Raises only ``MalformedResponse``."""
    if not isinstance(document, list):
        raise MalformedResponse(
            ARENA, f"{instance_host} did not answer with a list of statuses; the API may have changed"
        )
    return [status_item(status, instance_host, source) for status in document]


def next_max_id(link_header: str | None) -> str | None:
    """``max_id`` of the ``rel="next"`` link in a ``Link`` header."""
    for part in (link_header or "").split(","):
        target, _, params = part.partition(";")
        if re.search(r'rel="?next"?', params):
            found = parse_qs(urlsplit(target.strip().strip("<>")).query).get("max_id")
            return found[0] if found else None
    return None


def max_id_at(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000) << 16)


@register
class MastodonArena(Arena):
    name = "mastodon"
    platform = "mastodon"
    description = "Public Mastodon statuses from the hashtag timelines of the design's terms and its actors' accounts."
    # Public timelines cost nothing.
    free = True
    keep_unmatched = False  # a tag timeline is the tag's whole traffic; the term grammar decides
    enabled_by_default = False
    expected_items_per_month = 2_000

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_unknown(options, DEFAULT_OPTIONS, self.name)
        instances = options.get("instances")
        if isinstance(instances, str) or not isinstance(instances, list) or not instances:
            raise ValueError(
                f"option 'instances' must be a non-empty list of instance URLs such as https://mastodon.social, not {instances!r}"
            )
        for flag in ("local_only", "max_id_from_window_end"):
            if not isinstance(options.get(flag, DEFAULT_OPTIONS[flag]), bool):
                raise ValueError(f"option '{flag}' must be true or false, not {options[flag]!r}")
        return {
            "instances": list(dict.fromkeys(check_base_url(url, "instances") for url in instances)),
            "page_limit": check_int(options, "page_limit", DEFAULT_OPTIONS["page_limit"], 1, 40),
            "max_pages": check_int(options, "max_pages", DEFAULT_OPTIONS["max_pages"], 1, 100_000),
            "local_only": options.get("local_only", DEFAULT_OPTIONS["local_only"]),
            "max_id_from_window_end": options.get("max_id_from_window_end", DEFAULT_OPTIONS["max_id_from_window_end"]),
            "rate_limit_floor": check_int(options, "rate_limit_floor", DEFAULT_OPTIONS["rate_limit_floor"], 0, 300),
            "max_rate_limit_wait_seconds": check_seconds(
                options, "max_rate_limit_wait_seconds", DEFAULT_OPTIONS["max_rate_limit_wait_seconds"]
            ),
            "rate_limit_wait_seconds": check_seconds(
                options, "rate_limit_wait_seconds", DEFAULT_OPTIONS["rate_limit_wait_seconds"]
            ),
            "min_interval_seconds": check_seconds(
                options, "min_interval_seconds", DEFAULT_OPTIONS["min_interval_seconds"]
            ),
        }

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        tags = hashtags_for(spec.terms)
        actors = [a for a in spec.actors if a.platform == self.platform and (a.username or a.user_id)]
        if not tags and not actors:
            raise ArenaError(ARENA, "the design has no term that can be a hashtag and no Mastodon actors; add either")
        reader = _Reader(ctx, options, spec)
        seen: set[str] = set()
        for instance in options["instances"]:
            host = _host(instance) or instance
            for tag in tags:
                source = f"{host}#{tag}"
                ctx.searched(source)
                params = {"local": "true"} if options["local_only"] else {}
                path = f"{instance}/api/v1/timelines/tag/{quote(tag, safe='')}"
                yield from reader.unseen(reader.timeline(path, params, host, source), seen)
        for actor in actors:
            yield from reader.unseen(self._account(reader, actor.username, actor.user_id), seen)

    def _account(self, reader: _Reader, name: str | None, known_id: str | None) -> Iterator[CollectedItem | Rejected]:
        instances = reader.options["instances"]
        if not name:
            # An account id alone is local to an instance: it can only mean the first one.
            instance = instances[0]
            host = _host(instance) or instance
            source = f"{host}@{known_id}"
            reader.ctx.searched(source)
            yield from self._statuses(reader, instance, host, str(known_id), str(known_id), source)
            return
        user, _, domain = name.lstrip("@").partition("@")
        # Ask the account's home instance when it is one of ours: it knows all of its statuses.
        instance = next((url for url in instances if _host(url) == domain.lower()), instances[0])
        host = _host(instance) or instance
        acct = user if domain and _host(instance) == domain.lower() else name.lstrip("@")
        source = f"{host}@{acct}"
        reader.ctx.searched(source)
        try:
            account = reader.get(f"{instance}/api/v1/accounts/lookup", {"acct": acct})
        except ArenaError as err:
            if http_status(err) in (404, 410):
                yield Rejected(
                    f"Mastodon account {acct} is not on {host} (deleted, suspended or moved); skipped", source
                )
                return
            raise
        account_key = require(account, "id", ARENA, "accounts/lookup's answer")
        yield from self._statuses(reader, instance, host, str(account_key), acct, source)

    def _statuses(
        self, reader: _Reader, instance: str, host: str, account_key: str, acct: str, source: str
    ) -> Iterator[CollectedItem | Rejected]:
        path = f"{instance}/api/v1/accounts/{quote(account_key, safe='')}/statuses"
        try:
            yield from reader.timeline(path, {}, host, source)
        except ArenaError as err:
            if http_status(err) in (404, 410):
                yield Rejected(f"Mastodon account {acct} on {host} was deleted while being read; skipped", source)
                return
            raise


class _Reader:
    """Requests to instances for one collection, paced by each instance's rate-limit headers."""

    def __init__(self, ctx: CollectionContext, options: Mapping[str, Any], spec: QuerySpec):
        self.ctx = ctx
        self.options = options
        self.spec = spec

    def _now(self) -> datetime:
        return self.ctx.now() if self.ctx.now else datetime.now(timezone.utc)

    def unseen(self, found: Iterator[CollectedItem | Rejected], seen: set[str]) -> Iterator[CollectedItem | Rejected]:
        for item in found:
            if isinstance(item, CollectedItem):
                if item.platform_id in seen:
                    continue
                seen.add(item.platform_id)
            yield item

    def timeline(
        self, path: str, params: Mapping[str, Any], host: str, source: str
    ) -> Iterator[CollectedItem | Rejected]:
        max_id = max_id_at(self.spec.window_end) if self.options["max_id_from_window_end"] else None
        for _ in range(self.options["max_pages"]):
            page_params = {**params, "limit": self.options["page_limit"], **({"max_id": max_id} if max_id else {})}
            document, link = self.get(path, page_params, with_link=True)
            results = parse_statuses(document, host, source)
            older = False
            for result in results:
                if isinstance(result, CollectedItem) and result.published_at is not None:
                    if result.published_at < self.spec.window_start:
                        older = True
                        continue
                    if result.published_at >= self.spec.window_end:
                        continue
                yield result
            max_id = next_max_id(link)
            if not results or older or max_id is None:
                return
        self.ctx.log(f"{ARENA}: stopped {source} after {self.options['max_pages']} pages (option max_pages)")

    def get(self, url: str, params: Mapping[str, Any], *, with_link: bool = False) -> Any:
        """The decoded JSON (and the Link header): a 429 waits for the instance's reset once."""
        for attempt in (1, 2):
            try:
                response = self.ctx.http.get(
                    url,
                    params=params,
                    arena=ARENA,
                    min_interval_seconds=self.options["min_interval_seconds"],
                    wait_on_rate_limit=False,
                )
            except RateLimited as err:
                wait = err.retry_after if err.retry_after is not None else self.options["rate_limit_wait_seconds"]
                if attempt == 2 or wait > self.options["max_rate_limit_wait_seconds"]:
                    raise RateLimited(
                        ARENA, f"{_host(url)} is rate-limiting us for {wait:.0f} s; the run will be retried later", wait
                    ) from None
                self.ctx.log(f"{ARENA}: {_host(url)} answered 429; waiting {wait:.0f} s")
                _sleep(wait)
                continue
            self._respect_limit(url, response.headers)
            try:
                document = response.json()
            except (ValueError, RecursionError):
                raise MalformedResponse(ARENA, f"{_host(url)} answered with something that is not JSON") from None
            return (document, response.headers.get("link")) if with_link else document
        raise AssertionError("unreachable")  # pragma: no cover

    def _respect_limit(self, url: str, headers: Mapping[str, str]) -> None:
        try:
            remaining = int(headers.get("x-ratelimit-remaining", ""))
        except ValueError:
            return
        reset = parse_time(headers.get("x-ratelimit-reset"))
        if remaining > self.options["rate_limit_floor"] or reset is None:
            return
        wait = (reset - self._now()).total_seconds()
        if wait <= 0:
            return
        if wait > self.options["max_rate_limit_wait_seconds"]:
            raise RateLimited(
                ARENA, f"{_host(url)} allows no more requests for {wait:.0f} s; the run will be retried later", wait
            )
        self.ctx.log(f"{ARENA}: {_host(url)} has {remaining} requests left; waiting {wait:.0f} s for its reset")
        _sleep(wait)
