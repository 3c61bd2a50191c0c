"""Collection tiers and their defaults (the original system's table)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Tier(str, Enum):  # noqa: UP042 (StrEnum would change str(Tier.FREE))
    FREE = "free"
    MEDIUM = "medium"
    PREMIUM = "premium"

    @classmethod
    def parse(cls, value: str) -> Tier:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise ValueError(f"'{value}' is not a tier; use one of {names}") from None


@dataclass(frozen=True)
class TierDefaults:
    max_results_per_run: int
    requests_per_minute: int
    credits_per_1k_items: int


TIER_DEFAULTS: dict[Tier, TierDefaults] = {
    Tier.FREE: TierDefaults(max_results_per_run=10_000, requests_per_minute=60, credits_per_1k_items=0),
    Tier.MEDIUM: TierDefaults(max_results_per_run=100_000, requests_per_minute=300, credits_per_1k_items=1),
    Tier.PREMIUM: TierDefaults(max_results_per_run=1_000_000, requests_per_minute=1000, credits_per_1k_items=5),
}
