"""What paid platforms charge, in credits, per request and per result: one table, overridable.

One credit is US$0.001 by default, so the defaults below are the platforms' list prices as the
research notes record them (docs/collection.md, "Paid arenas", marks which were verified). Prices
change often and differ by plan: an admin overrides any of them in a YAML file named by
``OBSERVATORY_PRICES_FILE``::

    google_search:
      premium: {per_request: 12}
    x_twitter:
      premium: {per_result: 4.5}

Prices belong to the deployment, not to a design: a design cannot lower what its runs reserve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.errors import ConfigError


@dataclass(frozen=True)
class Price:
    #: Credits every request costs, whatever it returns.
    per_request: float = 0.0
    #: Credits per result returned.
    per_result: float = 0.0
    #: The least one answered request costs (TwitterAPI.io bills 15 of its credits for an empty page).
    minimum: float = 0.0

    def of(self, results: int) -> int:
        """Credits one answered request returning ``results`` costs, rounded up to whole credits."""
        return math.ceil(max(self.minimum, self.per_request + self.per_result * max(0, results)) - 1e-9)

    @property
    def free(self) -> bool:
        return not (self.per_request or self.per_result or self.minimum)


#: (arena, tier) → list price; tiers an arena does not offer are absent.
DEFAULTS: dict[tuple[str, str], Price] = {
    # Serper.dev: about $0.30–1.00 per 1,000 queries by pack size; one query = one page of ≤10. [U]
    ("google_search", "medium"): Price(per_request=1),
    # SerpAPI: Developer plan $75 for 5,000 searches; each page is a search. [S]
    ("google_search", "premium"): Price(per_request=15),
    # TwitterAPI.io: $0.15 per 1,000 tweets, at least 15 of its credits ($0.00015) a request. [V]
    ("x_twitter", "medium"): Price(per_result=0.15, minimum=0.15),
    # X API v2 pay-per-use: $0.005 per post read. [V]
    ("x_twitter", "premium"): Price(per_result=5),
    # TikTok Research API: free for approved researchers; its limits are quotas, kept by the pool. [V]
    ("tiktok", "medium"): Price(),
    # Event Registry (NewsAPI.ai): an article search of the last 30 days uses 1 token, of the
    # archive 5 tokens per searched year [V newsapi.ai/tokens]; a token costs about $0.015 (the 5K
    # plan's overage) [S]. per_request is the price of ONE token: the arena multiplies it by the
    # tokens a search uses (1 recent, 5 archive; arenas/event_registry.py).
    ("event_registry", "medium"): Price(per_request=15),
}


def price(arena: str, tier: str) -> Price:
    """The price of one arena at one tier: the deployment's file over the defaults."""
    found = DEFAULTS.get((arena, tier))
    override = _overrides().get(arena, {}).get(tier)
    if found is None and override is None:
        raise ConfigError(f"no price for arena '{arena}' at tier '{tier}'; add it to OBSERVATORY_PRICES_FILE")
    return replace(found or Price(), **(override or {}))


def _overrides() -> dict[str, dict[str, dict[str, float]]]:
    path = settings.current().prices_file
    if path is None:
        return {}
    return _read(path)


def _read(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    import yaml

    where = f"OBSERVATORY_PRICES_FILE ({path})"
    try:
        loaded: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"{where} cannot be read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not YAML: {str(err).splitlines()[0]}") from None
    allowed = {f.name for f in fields(Price)}
    checked: dict[str, dict[str, dict[str, float]]] = {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{where} must map arenas to tiers to prices")
    for arena, tiers in loaded.items():
        if not isinstance(tiers, Mapping):
            raise ConfigError(f"{where}: {arena} must map tiers to prices")
        for tier, values in tiers.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"{where}: {arena}.{tier} must be an object such as {{per_request: 1}}")
            for key, value in values.items():
                if key not in allowed:
                    raise ConfigError(f"{where}: {arena}.{tier}.{key} is not one of {', '.join(sorted(allowed))}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ConfigError(f"{where}: {arena}.{tier}.{key} must be a number of credits, 0 or more")
            checked.setdefault(str(arena), {})[str(tier)] = {str(k): float(v) for k, v in values.items()}
    return checked
