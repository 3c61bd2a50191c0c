"""Every asset's key, defined once.

The assets declare themselves with these keys, and everything that refers to an asset (dependencies,
checks, jobs, local runs, the CLI's report) uses them, so renaming an asset is a change here alone.
``core`` knows no asset names: what it tells a user to do names formats and partitions, not assets.
"""

import dagster as dg

from observatory_pipelines.core.analysis import networks
from observatory_pipelines.core.collection.arenas import registry

_COLLECT = "collect_"


def collection(arena: str) -> dg.AssetKey:
    """The collection asset of one registered arena."""
    return dg.AssetKey(f"{_COLLECT}{arena}")


def collections() -> list[dg.AssetKey]:
    """Every arena's collection asset, in registry order."""
    return [collection(name) for name in registry()]


def arena_of(key: dg.AssetKey | str) -> str | None:
    """The arena a collection asset collects, or ``None`` for any other asset."""
    name = key.to_user_string() if isinstance(key, dg.AssetKey) else key
    return name.removeprefix(_COLLECT) if name.startswith(_COLLECT) else None


DEDUP = dg.AssetKey("dedup_pass")
ACTOR_MATCH_SUGGESTIONS = dg.AssetKey("actor_match_suggestions")
CORPUS_STATISTICS = dg.AssetKey("corpus_statistics")
NETWORKS = {
    networks.ACTOR_COOCCURRENCE: dg.AssetKey("actor_cooccurrence_network"),
    networks.TERM_COOCCURRENCE: dg.AssetKey("term_cooccurrence_network"),
    networks.ACTOR_TERM: dg.AssetKey("actor_term_network"),
    networks.CROSS_PLATFORM_ACTORS: dg.AssetKey("cross_platform_actor_network"),
}


def export(fmt: str) -> dg.AssetKey:
    """The export asset of one format: a content format, ``gexf`` (all four networks) or ``manifest``."""
    return dg.AssetKey(f"export_{fmt}")


CONTENT_PARTITIONS = dg.AssetKey("content_partitions")
DATABASE_BACKUP = dg.AssetKey("database_backup")
CONTENT_RETENTION = dg.AssetKey("content_retention")
