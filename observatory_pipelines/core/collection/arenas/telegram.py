"""Public Telegram channels through the web preview ``t.me/s/<channel>`` (research notes §4.1).

The preview needs no account. It shows a channel's newest ~20 messages and pages back with
``?before=<message id>``; there is no time filter, so each channel is paged back until a page
reaches past the start of the window. This is therefore *not* a "latest items only" source: a
past month can be collected later, as long as the channel still exists and is public.

Telegram does not search channel text for us here (its ``?q=`` search is per channel and its
matching rules are undocumented), so every message of the named channels in the window is read
and the design's terms are applied locally (``keep_unmatched = False``), as for RSS feeds.

A channel that does not exist or has no public preview (Telegram then redirects to
``t.me/<channel>``, without ``/s/``) is a ``Rejected`` naming the channel; a page that lacks the
preview's markup raises ``MalformedResponse`` naming what is missing, so a changed page fails the
task loudly instead of writing nothing. The HTML parsing follows the selectors in the notes, which
come from widely used scrapers, not from a Telegram specification: hence the loud failure.

With the option ``client: telethon`` the channels are read instead through Telegram's own API
(MTProto) with Telethon, as a logged-in user whose ``api_id``, ``api_hash`` and StringSession come
from the credential pool (platform ``telegram``). Telethon is an optional extra
(``observatory-pipelines[telegram]``) and is imported only on that path. Its messages map to the
same fields as the preview's, so one message read either way is one record with one pseudonym.
See docs/collection.md, "telegram".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lxml import etree
from lxml import html as lxml_html

from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    CollectedItem,
    CollectionContext,
    Interaction,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from observatory_pipelines.core.collection.text import html_to_text
from observatory_pipelines.core.platform.http import validate_min_interval

if TYPE_CHECKING:
    from observatory_pipelines.core.accounts.pool import Lease

ARENA = "telegram"
DEFAULT_BASE_URL = "https://t.me"

CLIENTS = ("web", "telethon")

DEFAULT_OPTIONS: dict[str, Any] = {
    "channels": [],
    # "web": the t.me/s preview, no account. "telethon": MTProto with a pooled user session.
    "client": "web",
    "base_url": DEFAULT_BASE_URL,
    # Telegram publishes no rate limit for the preview [U]; one request a second is polite.
    "min_interval_seconds": 1.0,
    # A guard against a preview that keeps offering older pages (~20 messages each) [U].
    "max_pages_per_channel": 500,
}

# Telegram usernames: 5-32 letters, digits and underscores [S]; shorter legacy names exist, so 1+.
_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_DATA_POST = re.compile(r"^([A-Za-z0-9_]+)/(\d+)$")
_TME_POST = re.compile(r"^/(?:s/)?([A-Za-z0-9_]+)/(\d+)/?$")
_TME_USER = re.compile(r"^/(?:s/)?([A-Za-z0-9_]+)/?$")
_BACKGROUND_URL = re.compile(r"background-image\s*:\s*url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", re.IGNORECASE)
_COUNT = re.compile(r"^(\d+(?:[.,]\d+)?)\s*([KMB]?)$", re.IGNORECASE)
_MULTIPLIER = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_MAX_COUNT = 2**63 - 1


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


_MESSAGES = etree.XPath(f"//div[{_has_class('tgme_widget_message')}][@data-post]")
_ANY_MESSAGE = etree.XPath(f"//div[{_has_class('tgme_widget_message')}]")
_CHANNEL_INFO = etree.XPath(f"//*[{_has_class('tgme_channel_info')}]")
_MORE = etree.XPath(f"//a[{_has_class('tme_messages_more')}][@data-before]")


@functools.cache
def _descendants(cls: str, tag: str = "*") -> etree.XPath:
    # Compiled once per selector: compiling per message was most of the parse time.
    return etree.XPath(f".//{tag}[{_has_class(cls)}]")


def _first(element: Any, cls: str, tag: str = "*") -> Any:
    found = _descendants(cls, tag)(element)
    return found[0] if found else None


def parse_count(text: str | None) -> int | None:
    """Telegram's abbreviated counts: ``987``, ``1.2K`` → 1200, ``3M`` → 3000000; None if unreadable."""
    if not text:
        return None
    match = _COUNT.match(text.strip())
    if match is None:
        return None
    number, suffix = match.groups()
    value = int(round(float(number.replace(",", ".")) * _MULTIPLIER[suffix.lower()]))
    return value if value <= _MAX_COUNT else None


def normalise_channel(value: Any) -> str | None:
    """A channel username from ``name``, ``@name`` or a ``t.me/(s/)name`` URL, lower-cased.

    Telegram usernames are case-insensitive; one spelling keeps ids and pseudonyms stable.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith(("http://", "https://", "t.me/")):
        try:
            parts = urlsplit(text if "://" in text else f"https://{text}")
            host = parts.hostname
        except ValueError:
            return None
        match = _TME_USER.match(parts.path or "") if host in ("t.me", "telegram.me") else None
        text = match.group(1) if match else ""
    text = text.lstrip("@")
    return text.lower() if _USERNAME.match(text) else None


def _post_ref(href: str | None) -> tuple[str, str] | None:
    """(channel, message id) of a ``https://t.me/<channel>/<id>`` link."""
    if not href:
        return None
    try:
        parts = urlsplit(href)
    except ValueError:
        return None
    if parts.hostname not in (None, "t.me", "telegram.me"):
        return None
    match = _TME_POST.match(parts.path or "")
    return (match.group(1).lower(), match.group(2)) if match else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _text_of(element: Any) -> str | None:
    if element is None:
        return None
    return " ".join(element.text_content().split()) or None


class _Classes:
    """A message's descendants by class, gathered in one walk: a dozen XPath searches per message
    were most of the parse time."""

    def __init__(self, message: Any) -> None:
        self._found: dict[str, list[Any]] = {}
        for element in message.iterdescendants():
            classes = element.get("class") if isinstance(element.tag, str) else None
            for name in classes.split() if classes else ():
                self._found.setdefault(name, []).append(element)

    def all(self, cls: str, tag: str = "*") -> list[Any]:
        return [e for e in self._found.get(cls, ()) if tag == "*" or e.tag == tag]

    def first(self, cls: str, tag: str = "*") -> Any:
        found = self.all(cls, tag)
        return found[0] if found else None


def _media(classes: _Classes) -> list[str]:
    urls: list[str] = []
    for wrap in classes.all("tgme_widget_message_photo_wrap", "a"):
        match = _BACKGROUND_URL.search(wrap.get("style") or "")
        if match:
            urls.append(match.group(1).strip())
    for video in classes.all("tgme_widget_message_video", "video"):
        urls.append((video.get("src") or "").strip())
    return list(dict.fromkeys(u for u in urls if u.startswith(("http://", "https://"))))


def _mentions(text_element: Any) -> list[Interaction]:
    found: dict[str, Interaction] = {}
    for anchor in text_element.xpath(".//a[@href]") if text_element is not None else []:
        label = (anchor.text_content() or "").strip()
        if not label.startswith("@"):
            continue
        handle = normalise_channel(label)
        if handle:
            found.setdefault(handle, Interaction("mention", handle=handle))
    return list(found.values())


@dataclass
class PreviewPage:
    """One ``t.me/s`` page: its messages (newest last, as Telegram orders them) and the next ``before``."""

    messages: list[CollectedItem] = field(default_factory=list)
    before: int | None = None
    channel_title: str | None = None


def _message_item(message: Any, source: str) -> CollectedItem:
    data_post = (message.get("data-post") or "").strip()
    match = _DATA_POST.match(data_post)
    if match is None:
        raise MalformedResponse(ARENA, f"a message's data-post is {data_post[:60]!r}, not '<channel>/<id>'")
    channel, message_id = match.group(1).lower(), match.group(2)
    classes = _Classes(message)
    date_link = classes.first("tgme_widget_message_date", "a")
    time_element = date_link.find(".//time") if date_link is not None else None
    if time_element is None:
        time_element = classes.first("time", "time")
    if time_element is None or not time_element.get("datetime"):
        raise MalformedResponse(ARENA, f"message {data_post} has no time[datetime]")
    published = _parse_time(time_element.get("datetime"))
    if published is None:
        raise MalformedResponse(ARENA, f"message {data_post} has an unreadable time[datetime]")

    text_element = classes.first("tgme_widget_message_text", "div")
    text = None
    if text_element is not None:
        markup = etree.tostring(text_element, encoding="unicode", method="html")
        text = html_to_text(markup, keep_paragraphs=True) or None

    interactions: list[Interaction] = []
    raw: dict[str, Any] = {"channel": channel, "message_id": int(message_id)}
    forwarded = classes.first("tgme_widget_message_forwarded_from_name")
    if forwarded is not None:
        raw["forwarded_from_name"] = _text_of(forwarded)
        ref = _post_ref(forwarded.get("href"))
        if ref is not None:
            interactions.append(Interaction("repost", platform_id=f"{ref[0]}/{ref[1]}", handle=ref[0]))
        elif forwarded.get("href"):
            handle = normalise_channel(forwarded.get("href"))
            if handle:
                interactions.append(Interaction("repost", handle=handle))
    reply = classes.first("tgme_widget_message_reply", "a")
    if reply is not None:
        ref = _post_ref(reply.get("href"))
        if ref is not None:
            interactions.append(Interaction("reply", platform_id=f"{ref[0]}/{ref[1]}", handle=ref[0]))
    interactions += _mentions(text_element)

    preview = classes.first("tgme_widget_message_link_preview", "a")
    if preview is not None:
        raw["link_preview"] = {
            "url": (preview.get("href") or "").strip() or None,
            "site_name": _text_of(_first(preview, "link_preview_site_name")),
            "title": _text_of(_first(preview, "link_preview_title")),
        }
    signature = _text_of(classes.first("tgme_widget_message_from_author"))
    if signature:
        raw["signature"] = signature
    meta = classes.first("tgme_widget_message_meta")
    if meta is not None and "edited" in (meta.text_content() or "").lower():
        raw["edited"] = True

    return CollectedItem(
        platform="telegram",
        platform_id=f"{channel}/{message_id}",
        published_at=published,
        content_type="post",
        url=f"https://t.me/{channel}/{message_id}",
        text_content=text,
        author_platform_id=channel,
        author_display_name=_text_of(classes.first("tgme_widget_message_owner_name")),
        views_count=parse_count(_text_of(classes.first("tgme_widget_message_views"))),
        media_urls=_media(classes),
        raw_metadata=raw,
        interactions=interactions,
        source=source,
    )


def parse_preview(body: bytes, source: str = "") -> PreviewPage:
    """The messages of one ``t.me/s/<channel>`` page. Pure; raises only ``MalformedResponse``.

    A page is recognised by its channel header or its messages; a page with neither is not the
    preview (or the preview changed). A message without ``data-post`` or ``time[datetime]`` fails
    the page: those are what the item is keyed and windowed on.
    """
    if not body.strip():
        raise MalformedResponse(ARENA, f"{source or 'the preview'} answered with an empty page")
    try:
        document = lxml_html.document_fromstring(body)
    except (etree.ParserError, ValueError) as exc:
        raise MalformedResponse(
            ARENA, f"{source or 'the preview'} is not readable HTML ({type(exc).__name__})"
        ) from None
    messages = _MESSAGES(document)
    if len(_ANY_MESSAGE(document)) != len(messages):
        # Dropping them would lose messages without a word; the markup has changed.
        raise MalformedResponse(ARENA, f"{source or 'the preview'} has a message without data-post")
    if not messages:
        if not _CHANNEL_INFO(document):
            raise MalformedResponse(
                ARENA,
                f"{source or 'the preview'} has neither tgme_widget_message nor tgme_channel_info markup; "
                "the web preview may have changed",
            )
    page = PreviewPage(channel_title=_text_of(_first(document, "tgme_channel_info_header_title")))
    page.messages = [_message_item(message, source) for message in messages]
    more = _MORE(document)
    if more:
        before = (more[0].get("data-before") or "").strip()
        page.before = int(before) if before.isdigit() and len(before) < 19 else None
    return page


def _channels(spec: QuerySpec, options: Mapping[str, Any]) -> list[str]:
    names = list(options["channels"])
    for actor in spec.actors:
        if actor.platform.lower() == "telegram":
            name = normalise_channel(actor.username)
            if name:
                names.append(name)
    return list(dict.fromkeys(names))


@register
class TelegramArena(Arena):
    name = "telegram"
    platform = "telegram"
    description = "Messages of public Telegram channels (the design's actors and listed channels), from t.me/s."
    # The preview is free at every tier, and Telegram's API charges nothing either.
    free = True
    keep_unmatched = False
    enabled_by_default = False
    expected_items_per_month = 2_000

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key in options:
            if key not in DEFAULT_OPTIONS:
                raise ValueError(f"arena '{self.name}' has no option '{key}'; use one of {', '.join(DEFAULT_OPTIONS)}")
        raw_channels = options.get("channels", [])
        if isinstance(raw_channels, str) or not isinstance(raw_channels, (list, tuple)):
            raise ValueError(f"option 'channels' must be a list of channel usernames, not {raw_channels!r}")
        channels = []
        for value in raw_channels:
            name = normalise_channel(value)
            if name is None:
                raise ValueError(f"option 'channels' holds {value!r}, which is not a channel username or t.me link")
            channels.append(name)
        base_url = options.get("base_url", DEFAULT_BASE_URL)
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"option 'base_url' must be an http(s) URL, not {base_url!r}")
        client = options.get("client", DEFAULT_OPTIONS["client"])
        if client not in CLIENTS:
            raise ValueError(f"option 'client' must be one of {', '.join(CLIENTS)}, not {client!r}")
        max_pages = options.get("max_pages_per_channel", DEFAULT_OPTIONS["max_pages_per_channel"])
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
            raise ValueError(f"option 'max_pages_per_channel' must be a whole number >= 1, not {max_pages!r}")
        return {
            "channels": channels,
            "client": client,
            "base_url": base_url.rstrip("/"),
            "min_interval_seconds": validate_min_interval(
                options.get("min_interval_seconds", DEFAULT_OPTIONS["min_interval_seconds"])
            ),
            "max_pages_per_channel": max_pages,
        }

    def needs_credential_for(self, options: Mapping[str, Any]) -> bool:
        return options.get("client", DEFAULT_OPTIONS["client"]) == "telethon"

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        channels = _channels(spec, options)
        if not channels:
            raise ArenaError(
                ARENA,
                "no channels to collect: add Telegram accounts to the design's actor lists or the option 'channels'",
            )
        if options["client"] == "telethon":
            yield from self._telethon(spec, ctx, channels)
            return
        for channel in channels:
            source = f"t.me/s/{channel}"
            ctx.searched(source)
            yield from self._channel(spec, ctx, channel, source, options)

    def _telethon(
        self, spec: QuerySpec, ctx: CollectionContext, channels: list[str]
    ) -> Iterator[CollectedItem | Rejected]:
        if ctx.credentials is None:
            raise CredentialError(
                ARENA, "option client: telethon needs the credential pool (OBSERVATORY_CREDENTIAL_KEY)"
            )
        for channel in channels:
            source = f"telethon:{channel}"
            ctx.searched(source)
            # A whole channel per lease: a FloodWait half-way rests the credential and the next one
            # reads the channel again from the start, so nothing is yielded twice.
            result = ctx.credentials.call(functools.partial(read_channel, channel=channel, spec=spec, source=source))
            if isinstance(result, Rejected):
                yield result
                continue
            ctx.log(f"{self.name}: {len(result)} messages in the window from {source}")
            yield from result

    def _channel(
        self, spec: QuerySpec, ctx: CollectionContext, channel: str, source: str, options: Mapping[str, Any]
    ) -> Iterator[CollectedItem | Rejected]:
        url = f"{options['base_url']}/s/{channel}"
        before: int | None = None
        kept = 0
        for page_number in range(1, options["max_pages_per_channel"] + 1):
            params = {"before": before} if before is not None else None
            try:
                response = ctx.http.get(
                    url, params=params, arena=self.name, min_interval_seconds=options["min_interval_seconds"]
                )
            except (CredentialError, RateLimited, ServerError, TransportError):
                raise
            except ArenaError as err:
                # A 404 or other refusal of one channel says nothing about the others.
                yield Rejected(f"channel '{channel}' could not be read: {err}", source)
                return
            if urlsplit(str(response.url)).path.rstrip("/") != urlsplit(url).path.rstrip("/"):
                # Telegram answers a channel without a public preview with a redirect to t.me/<channel>.
                yield Rejected(
                    f"channel '{channel}' has no public web preview (it does not exist, is private, or is a user)",
                    source,
                )
                return
            page = parse_preview(response.content, source)
            if page_number == 1 and not page.messages:
                yield Rejected(f"channel '{channel}' shows no messages in its web preview", source)
                return
            oldest: datetime | None = None
            for item in page.messages:
                published = item.published_at
                if published is None:  # parse_preview refuses undated messages; this keeps mypy sure
                    continue
                oldest = published if oldest is None else min(oldest, published)
                if spec.window_start <= published < spec.window_end:
                    kept += 1
                    yield item
            message_ids = [int(item.platform_id.rsplit("/", 1)[1]) for item in page.messages]
            next_before = page.before if page.before is not None else (min(message_ids) if message_ids else None)
            finished = (
                oldest is None
                or oldest < spec.window_start
                or next_before is None
                or next_before <= 1
                or (before is not None and next_before >= before)
            )
            if finished:
                ctx.log(f"{self.name}: {kept} messages in the window from {source} ({page_number} pages)")
                return
            before = next_before
        ctx.log(f"{self.name}: stopped {source} after {options['max_pages_per_channel']} pages (max_pages_per_channel)")
        yield Rejected(
            f"channel '{channel}' still had older pages in the window after {options['max_pages_per_channel']} "
            "pages; raise the option 'max_pages_per_channel'",
            source,
        )


# --- Telethon (option client: telethon) ------------------------------------------------------------


def _telethon_client(session: str, api_id: int, api_hash: str) -> Any:
    # telethon.sync runs the client's coroutines on an event loop of this thread, so the arena stays
    # synchronous like the others; imported here so the preview path never needs the extra.
    from telethon.sessions import StringSession
    from telethon.sync import TelegramClient

    return TelegramClient(StringSession(session), api_id, api_hash)


#: Builds a Telethon client from (session, api_id, api_hash). A seam for tests: MTProto is not HTTP,
#: so the fixture server cannot answer it. The client needs ``connect``, ``is_user_authorized``,
#: ``get_entity``, ``iter_messages`` and ``disconnect``.
telethon_client_factory: Callable[[str, int, str], Any] = _telethon_client


def _utf16_slice(text: str, offset: int, length: int) -> str:
    # Telegram counts entity offsets in UTF-16 code units: an emoji before a mention shifts it.
    units = text.encode("utf-16-le")
    return units[2 * offset : 2 * (offset + length)].decode("utf-16-le", errors="ignore")


def _telethon_text(text: str | None) -> str | None:
    # The preview renders line breaks as <br>, which html_to_text keeps as single breaks with blank
    # lines dropped; doing the same here gives one message the same text either way.
    lines = [" ".join(line.split()) for line in (text or "").split("\n")]
    return "\n".join(line for line in lines if line) or None


def _peer_channel_id(peer: Any) -> int | None:
    return getattr(peer, "channel_id", None) if type(peer).__name__ == "PeerChannel" else None


def telethon_item(
    message: Any,
    channel: str,
    source: str,
    *,
    title: str | None = None,
    handle_of: Callable[[Any], str | None] = lambda peer: None,
) -> CollectedItem:
    """A Telethon ``Message`` of ``channel`` as the preview path maps it; ``handle_of`` names
    another channel's peer (forwards, replies elsewhere), or None when it cannot."""
    published = message.date
    if published.tzinfo is None:
        published = published.replace(tzinfo=timezone.utc)
    published = published.astimezone(timezone.utc)
    text = message.message or ""
    raw: dict[str, Any] = {"channel": channel, "message_id": int(message.id)}
    interactions: list[Interaction] = []

    forward = message.fwd_from
    if forward is not None:
        if forward.from_name:
            raw["forwarded_from_name"] = forward.from_name
        handle = handle_of(forward.from_id) if _peer_channel_id(forward.from_id) is not None else None
        if handle and forward.channel_post:
            interactions.append(Interaction("repost", platform_id=f"{handle}/{forward.channel_post}", handle=handle))
        elif handle:
            interactions.append(Interaction("repost", handle=handle))
    reply = message.reply_to
    reply_id = getattr(reply, "reply_to_msg_id", None)
    if reply_id:
        peer = getattr(reply, "reply_to_peer_id", None)
        reply_channel = channel if peer is None or peer == message.peer_id else handle_of(peer)
        if reply_channel:
            interactions.append(Interaction("reply", platform_id=f"{reply_channel}/{reply_id}", handle=reply_channel))
    mentions: dict[str, Interaction] = {}
    for entity in message.entities or ():
        if type(entity).__name__ == "MessageEntityMention":
            handle = normalise_channel(_utf16_slice(text, entity.offset, entity.length))
            if handle:
                mentions.setdefault(handle, Interaction("mention", handle=handle))
    interactions += mentions.values()

    media = message.media
    if media is not None:
        kind = type(media).__name__.removeprefix("MessageMedia").lower()
        raw["media"] = kind
        page: Any = getattr(media, "webpage", None)
        if kind == "webpage" and getattr(page, "url", None):
            raw["link_preview"] = {
                "url": page.url,
                "site_name": getattr(page, "site_name", None),
                "title": getattr(page, "title", None),
            }
    if message.post_author:
        raw["signature"] = message.post_author
    if message.edit_date is not None and not message.edit_hide:
        raw["edited"] = True
    reactions = getattr(message.reactions, "results", None) or []
    if reactions:
        raw["reactions"] = sum(int(r.count) for r in reactions)

    replies = message.replies
    return CollectedItem(
        platform="telegram",
        platform_id=f"{channel}/{message.id}",
        published_at=published,
        content_type="post",
        url=f"https://t.me/{channel}/{message.id}",
        text_content=_telethon_text(text),
        author_platform_id=channel,
        author_display_name=title,
        views_count=message.views,
        shares_count=message.forwards,
        comments_count=replies.replies if replies is not None else None,
        raw_metadata=raw,
        interactions=interactions,
        source=source,
    )


def _secret_fields(lease: Lease) -> tuple[str, int, str]:
    api_id_text = lease.field("api_id").reveal()
    try:
        api_id = int(api_id_text)
    except ValueError:
        raise CredentialError(ARENA, f"credential {lease.name}: api_id is not a whole number") from None
    return lease.field("session").reveal(), api_id, lease.field("api_hash").reveal()


def read_channel(lease: Lease, channel: str, spec: QuerySpec, source: str) -> list[CollectedItem] | Rejected:
    """The messages of ``channel`` in the spec's window, read with Telethon under ``lease``.

    A refused session or api_id raises ``CredentialError`` and a FloodWait ``RateLimited``, which
    the pool turns into switching the credential off or resting it; a channel that cannot be
    read is a ``Rejected``. Telethon's exceptions are never chained: their text is not ours to vouch for.
    """
    from telethon import errors

    session, api_id, api_hash = _secret_fields(lease)
    try:
        client = telethon_client_factory(session, api_id, api_hash)
    except ValueError:
        raise CredentialError(ARENA, f"credential {lease.name}: session is not a Telethon StringSession") from None
    refused = (errors.UnauthorizedError, errors.AuthKeyError, errors.ApiIdInvalidError)
    unreadable = (errors.UsernameNotOccupiedError, errors.UsernameInvalidError, errors.ChannelPrivateError)
    handles: dict[int, str | None] = {}

    def handle_of(peer: Any) -> str | None:
        # Forwards repeat a few sources; one lookup each, and an unknown peer is simply unnamed.
        key = _peer_channel_id(peer)
        if key is None:
            return None
        if key not in handles:
            try:
                handles[key] = normalise_channel(getattr(client.get_entity(peer), "username", None))
            except (ValueError, *unreadable):
                handles[key] = None
        return handles[key]

    try:
        # connect(), not ``with client``: that calls start(), which asks for a phone number on stdin.
        client.connect()
        try:
            if not client.is_user_authorized():
                raise CredentialError(
                    ARENA, f"credential {lease.name}: the session is not logged in; make a new StringSession"
                )
            try:
                entity = client.get_entity(channel)
            except (ValueError, *unreadable) as err:
                return Rejected(f"channel '{channel}' could not be read with Telethon ({type(err).__name__})", source)
            title = getattr(entity, "title", None)
            found = []
            for message in client.iter_messages(entity, offset_date=spec.window_end):
                if message.date is None:
                    continue
                published = message.date if message.date.tzinfo else message.date.replace(tzinfo=timezone.utc)
                if published < spec.window_start:
                    break
                if published >= spec.window_end or type(message).__name__ != "Message":
                    continue  # service messages (MessageService) carry no post
                found.append(telethon_item(message, channel, source, title=title, handle_of=handle_of))
            return found
        finally:
            client.disconnect()
    except refused as err:
        raise CredentialError(ARENA, f"Telegram refused credential {lease.name} ({type(err).__name__})") from None
    except errors.FloodWaitError as err:
        raise RateLimited(
            ARENA, f"Telegram asks credential {lease.name} to wait {err.seconds} s", retry_after=err.seconds
        ) from None
    except unreadable as err:
        return Rejected(f"channel '{channel}' could not be read with Telethon ({type(err).__name__})", source)
    except (errors.ServerError, errors.TimedOutError) as err:
        raise ServerError(ARENA, f"Telegram failed reading {channel} ({type(err).__name__})") from None
    except errors.RPCError as err:
        raise ArenaError(ARENA, f"Telegram refused reading {channel} ({type(err).__name__})") from None
    except (ConnectionError, OSError) as err:
        raise TransportError(ARENA, f"could not reach Telegram ({type(err).__name__})") from None
