"""The arena registry: every arena the pipeline can collect from, by name."""

from __future__ import annotations

from observatory_pipelines.core.collection.arenas.base import Arena

_REGISTRY: dict[str, type[Arena]] = {}


def register(cls: type[Arena]) -> type[Arena]:
    """Class decorator adding an arena to the registry (its ``name`` must be unique)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two arenas are named '{cls.name}'")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from observatory_pipelines.core.collection.arenas import (  # noqa: F401
        bluesky,
        event_registry,
        file_import,
        gdelt,
        google_search,
        mastodon,
        reddit,
        rss_feeds,
        telegram,
        tiktok,
        wikipedia,
        x_twitter,
        youtube,
    )


def registry() -> dict[str, type[Arena]]:
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def get_arena(name: str) -> Arena:
    arenas = registry()
    if name not in arenas:
        raise KeyError(f"no arena named '{name}'; known arenas: {', '.join(arenas)}")
    return arenas[name]()
