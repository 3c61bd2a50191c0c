"""The arena contract.

An arena turns a query (a design's terms and actors, a time window, a tier and per-design options)
into normalised items. It knows its platform's protocol and format and nothing about the
database: pseudonymisation, hashing, term matching, validation and storage happen afterwards, in
one place (``core.records`` and ``core.ingest``), the same for every arena.

Arenas yield ``CollectedItem`` for every item they could read and ``Rejected`` for every item
(or whole source, such as one broken feed) they could not, so one bad record never sinks a run.
Unrecoverable failures of the arena as a whole (quota, persistent 429/5xx, bad credential)
raise an ``ArenaError``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from observatory_pipelines.core.collection import terms
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.tiers import TIER_DEFAULTS, Tier

if TYPE_CHECKING:
    from observatory_pipelines.core.accounts.pool import ArenaCredentials
    from observatory_pipelines.core.collection.spending import Budget


INTERACTION_KINDS = ("reply", "quote", "repost", "mention")


@dataclass(frozen=True)
class Interaction:
    """What an item replies to, quotes, reposts or mentions: the other post and/or its author.

    ``records.prepare`` stores it in ``raw_metadata`` in one shape for every arena (docs/collection.md,
    "Interactions"): ``interactions`` holds the kind, the other post's id and its author's
    pseudonym (the same HMAC as ``pseudonymized_author_id``, so networks join on it), and
    ``interaction_accounts`` the author's platform id and handle, which pseudonymised exports leave out.
    """

    kind: str  # one of INTERACTION_KINDS
    platform_id: str | None = None  # the other post (None for a mention)
    author_id: str | None = None  # its author's platform user id, else the handle is used
    handle: str | None = None


@dataclass
class CollectedItem:
    """One post or article as the arena read it, mapped to the common record fields."""

    platform: str
    platform_id: str
    published_at: datetime | None  # timezone-aware; None when the source gives no time
    content_type: str = "post"
    url: str | None = None
    text_content: str | None = None
    title: str | None = None
    language: str | None = None
    author_platform_id: str | None = None
    author_display_name: str | None = None
    views_count: int | None = None
    likes_count: int | None = None
    shares_count: int | None = None
    comments_count: int | None = None
    media_urls: list[str] = field(default_factory=list)
    raw_metadata: dict[str, Any] = field(default_factory=dict)
    #: Design terms the platform's own search found this item for (as the design writes them);
    #: added to what the text matches locally, for platforms that search text we never see.
    matched_terms: tuple[str, ...] = ()
    interactions: list[Interaction] = field(default_factory=list)
    #: Where the arena found it (a feed URL, channel, instance and tag, query): the unit whose
    #: yield is tracked across runs. Report every source queried with ``ctx.searched`` too, so a
    #: source that returns nothing is seen.
    source: str = ""


@dataclass(frozen=True)
class Rejected:
    """An item or source the arena could not read. ``reason`` is one line; ``source`` says where."""

    reason: str
    source: str = ""


@dataclass(frozen=True)
class ActorHandle:
    """An account from the design's actor lists, on one platform."""

    platform: str
    username: str | None = None
    user_id: str | None = None


def design_terms(arena: str, raw_terms: Iterable[str]) -> list[terms.Term]:
    """The design's terms parsed for an arena to spell in its platform's query; blank ones are
    skipped, and one that does not parse is a one-line ``ArenaError`` naming it."""
    parsed = []
    for raw in raw_terms:
        if not raw.strip():
            continue
        try:
            parsed.append(terms.parse_term(raw))
        except terms.TermSyntaxError as err:
            raise ArenaError(arena, f"term {raw!r}: {err}") from None
    return parsed


@dataclass(frozen=True)
class Checkpoint:
    """Yielded by a paging arena after a page's items: where ``source`` (a query) stands. The runner
    stores the items yielded before it first, then the checkpoint, so a killed run that is run
    again resumes after the last page it stored instead of paying for it twice."""

    source: str
    #: JSON-serialisable: the platform's cursor, page number, search id, newest id seen...
    state: Mapping[str, Any]
    finished: bool = False


@dataclass(frozen=True)
class Resume:
    """The last checkpoint of a source in this corpus (``ctx.resume(source)``)."""

    state: Mapping[str, Any]
    finished: bool
    #: Saved on this UTC day: the same collection run again (continue it, or skip a finished
    #: source), rather than a later day's (search again, for what is new).
    today: bool


@dataclass(frozen=True)
class QuerySpec:
    """What an arena is asked for: one query design, one arena, one time window."""

    design_slug: str
    terms: tuple[str, ...]
    actors: tuple[ActorHandle, ...]
    window_start: datetime  # inclusive, UTC
    window_end: datetime  # exclusive, UTC
    tier: Tier
    options: Mapping[str, Any]
    language: str = "da"
    country: str = "dk"


@dataclass
class CollectionContext:
    """What the orchestrator lends an arena for one collection."""

    http: Any  # core.http.HttpClient
    import_dir: str | None = None  # folder (or object-store prefix) for file imports
    log: Callable[[str], None] = lambda message: None
    now: Callable[[], datetime] | None = None
    #: The collection's own time (``collected_at`` of its records; its UTC day is the checkpoints'
    #: day): an arena that notes when it saw something uses it. None outside the runner.
    collected_at: datetime | None = None
    #: The credential pool, for arenas that call keyed APIs (``needs_credential``): leases of the
    #: arena's platform and the design's tier (see ``core.accounts.pool`` and docs/credentials.md).
    #: None for arenas that need no credential.
    credentials: ArenaCredentials | None = None
    #: Called with each source the arena queries (see ``CollectedItem.source``), before its items.
    searched: Callable[[str], None] = lambda source: None
    #: What a metered arena (``metered``) may spend: ask it before every paid request. None for
    #: arenas that pay nothing per call.
    budget: Budget | None = None
    #: The last ``Checkpoint`` the arena yielded for a source in this corpus, or None.
    resume: Callable[[str], Resume | None] = lambda source: None


class Arena(ABC):
    #: Registry name, also the Dagster asset name suffix (``collect_<name>``).
    name: ClassVar[str]
    #: Platform written to ``content_records.platform`` (file imports set it per item).
    platform: ClassVar[str]
    #: One sentence for the asset description and ``--help``.
    description: ClassVar[str]
    supported_tiers: ClassVar[frozenset[Tier]] = frozenset({Tier.FREE})
    #: Whether the arena calls a keyed API through ``ctx.credentials``: it then refuses to start
    #: without ``OBSERVATORY_CREDENTIAL_KEY``. Per design, ``needs_credential_for(options)`` decides.
    needs_credential: ClassVar[bool] = False
    #: Whether items that match none of the design's terms are kept. Sources that already
    #: searched server-side, or deliberate imports, keep them; plain feeds do not.
    keep_unmatched: ClassVar[bool] = True
    #: Typical items per query per month, for credit estimates when the arena has no better idea.
    expected_items_per_month: ClassVar[int] = 1_000
    #: Whether a design without a setting for this arena collects from it.
    enabled_by_default: ClassVar[bool] = True
    #: The platform charges nothing at any tier (it may still limit requests, which the
    #: credential pool counts), whatever the tier table prices other arenas at.
    free: ClassVar[bool] = False
    #: The arena pays per call or per result and counts it through ``ctx.budget``: what it counted
    #: is what the run is charged (``credits_used`` is not asked).
    metered: ClassVar[bool] = False
    #: Tier written on records regardless of the design's tier (e.g. "manual" for imports).
    fixed_record_tier: ClassVar[str | None] = None
    #: Whether the source only ever shows its latest items (an RSS feed's last few dozen): such
    #: arenas are also collected hourly for the current month, so nothing scrolls out between runs.
    latest_only: ClassVar[bool] = False

    def input_bytes(self, spec: QuerySpec, ctx: CollectionContext) -> int | None:
        """How much a collection will read, when the arena knows before it starts (files); None
        otherwise. A large first load of an empty month is loaded in bulk (``ingest.FirstLoad``),
        which shows the month only when it is whole: arenas that checkpoint their paging must
        answer None, since a checkpoint may not run ahead of what is stored."""
        return None

    def needs_credential_for(self, options: Mapping[str, Any]) -> bool:
        """``needs_credential`` for a design's (validated) options: an arena with an optional keyed
        path overrides this, so its keyless path still runs without ``OBSERVATORY_CREDENTIAL_KEY``."""
        return self.needs_credential

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check per-design options; raise ``ValueError`` naming the bad key. Default: none allowed."""
        if options:
            bad = sorted(options)[0]
            raise ValueError(f"arena '{self.name}' has no option '{bad}'")
        return {}

    def estimate_credits(self, spec: QuerySpec) -> int:
        """Credits one collection is expected to cost; partial credits round up."""
        if self.free:
            return 0
        per_1k = TIER_DEFAULTS[spec.tier].credits_per_1k_items
        return math.ceil(self.expected_items_per_month * per_1k / 1000)

    def credits_used(self, spec: QuerySpec, items: int, api_calls: int) -> int:
        """Credits a finished collection actually cost; the default prices items like the estimate."""
        if self.free:
            return 0
        per_1k = TIER_DEFAULTS[spec.tier].credits_per_1k_items
        return math.ceil(items * per_1k / 1000)

    @abstractmethod
    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected | Checkpoint]:
        """Yield the items for ``spec`` (and, for a paging arena, a ``Checkpoint`` after each page);
        raise ``ArenaError`` when the arena as a whole fails."""
