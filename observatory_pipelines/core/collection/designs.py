"""Query designs as collection reads them, their per-arena settings, and the corpus: one design's
data for one month, the unit every per-corpus step (dedup, statistics, networks, exports) works on.

``query_designs.arenas_config`` maps arena names to settings::

    {"rss_feeds": {"enabled": true, "options": {"feeds": ["https://..."]}},
     "gdelt": {"enabled": false},
     "file_import": {"enabled": true, "tier": "free"}}

Allowed keys per arena: ``enabled`` (bool), ``tier`` (free / medium / premium; default the
design's ``default_tier``) and ``options`` (validated by the arena). An arena missing from the
config uses its own default (``Arena.enabled_by_default``). Any unknown arena or key is an error
that names it: a typo must not silently disable collection.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import ActorHandle, Arena
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ConfigError

SETTING_KEYS = frozenset({"enabled", "tier", "options"})
#: A query design's slug, as the database's ck_query_designs_slug_format checks it. Slugs become
#: partition keys, object keys and folder names, so anything else is refused, never escaped.
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


class InvalidSlug(ConfigError, ValueError):
    """A value that cannot be a query design's slug."""


def check_slug(value: object) -> str:
    """``value`` if it is a slug; ``InvalidSlug`` (one line) otherwise."""
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise InvalidSlug(f"{value!r} is not a query design slug (lowercase letters, digits and single hyphens)")
    return value


@dataclass(frozen=True)
class ArenaSettings:
    enabled: bool
    tier: Tier
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Design:
    id: uuid.UUID
    slug: str
    name: str
    owner_id: uuid.UUID
    default_tier: Tier
    language: str
    country: str
    is_active: bool
    arenas_config: Mapping[str, Any]
    terms: tuple[str, ...]
    actors: tuple[ActorHandle, ...]

    def settings_for(self, arena: Arena) -> ArenaSettings:
        return arena_settings(self.slug, self.arenas_config, arena, self.default_tier)


def arena_settings(slug: str, config: Mapping[str, Any], arena: Arena, default_tier: Tier) -> ArenaSettings:
    where = f"query design '{slug}', arenas_config"
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} must be a JSON object keyed by arena name")
    unknown = sorted(set(config) - set(registry()))
    if unknown:
        raise ConfigError(f"{where} names unknown arena '{unknown[0]}'; known arenas: {', '.join(registry())}")
    raw = config.get(arena.name)
    if raw is None:
        return ArenaSettings(enabled=arena.enabled_by_default, tier=default_tier)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.{arena.name} must be an object with enabled / tier / options")
    bad = sorted(set(raw) - SETTING_KEYS)
    if bad:
        raise ConfigError(f"{where}.{arena.name} has unknown key '{bad[0]}'; allowed: enabled, tier, options")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.{arena.name}.enabled must be true or false, not {enabled!r}")
    try:
        tier = Tier.parse(raw["tier"]) if "tier" in raw else default_tier
    except ValueError as err:
        raise ConfigError(f"{where}.{arena.name}.tier: {err}") from None
    if enabled and tier not in arena.supported_tiers:
        supported = ", ".join(sorted(t.value for t in arena.supported_tiers))
        raise ConfigError(f"{where}.{arena.name}: arena does not offer tier '{tier.value}' (it offers {supported})")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}.{arena.name}.options must be an object")
    try:
        validated = arena.validate_options(options)
    except ValueError as err:
        raise ConfigError(f"{where}.{arena.name}.options: {err}") from None
    return ArenaSettings(enabled=enabled, tier=tier, options=validated)


class UnknownDesign(ConfigError):
    """No query design has the slug asked for."""

    def __init__(self, slug: str):
        super().__init__(f"there is no query design with slug '{slug}'; check the design partition key")
        self.slug = slug


@dataclass(frozen=True)
class Corpus:
    """One query design's data for one month, and whose it is."""

    design_id: uuid.UUID
    slug: str
    month: str
    owner_id: uuid.UUID
    owner_email: str


def find_corpus(conn: sa.Connection, slug: str, month: str) -> Corpus:
    """The corpus of design ``slug`` in ``month`` (``YYYY-MM``); ``UnknownDesign`` when there is no such design."""
    month = months.month_key(months.parse_month(month))
    row = conn.execute(
        sa.text(
            "SELECT d.id, u.id AS owner_id, u.email AS owner_email FROM query_designs d "
            "JOIN users u ON u.id = d.owner_id WHERE d.slug = :slug"
        ),
        {"slug": slug},
    ).first()
    if row is None:
        raise UnknownDesign(slug)
    return Corpus(design_id=row.id, slug=slug, month=month, owner_id=row.owner_id, owner_email=row.owner_email)


def load_design(conn: sa.Connection, slug: str) -> Design:
    row = (
        conn.execute(
            sa.text(
                """
            SELECT id, slug, name, owner_id, default_tier, language, locale_country, is_active, arenas_config
            FROM query_designs WHERE slug = :slug
            """
            ),
            {"slug": slug},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise UnknownDesign(slug)
    terms = (
        conn.execute(
            sa.text(
                "SELECT term FROM search_terms WHERE query_design_id = :id AND is_active ORDER BY created_at, term"
            ),
            {"id": row["id"]},
        )
        .scalars()
        .all()
    )
    actor_rows = conn.execute(
        sa.text(
            """
            SELECT DISTINCT p.platform, p.platform_username, p.platform_user_id
            FROM actor_lists l
            JOIN actor_list_members m ON m.actor_list_id = l.id
            JOIN actor_platform_presences p ON p.actor_id = m.actor_id
            WHERE l.query_design_id = :id
            ORDER BY 1, 2, 3
            """
        ),
        {"id": row["id"]},
    ).all()
    return Design(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        owner_id=row["owner_id"],
        default_tier=Tier.parse(row["default_tier"]),
        language=row["language"],
        country=row["locale_country"],
        is_active=row["is_active"],
        arenas_config=row["arenas_config"] or {},
        terms=tuple(terms),
        actors=tuple(ActorHandle(platform=r[0], username=r[1], user_id=r[2]) for r in actor_rows),
    )


def active_design_slugs(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT slug FROM query_designs WHERE is_active ORDER BY slug")).scalars())


def all_design_slugs(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT slug FROM query_designs ORDER BY slug")).scalars())
