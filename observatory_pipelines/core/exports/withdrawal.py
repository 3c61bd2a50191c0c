"""Withdrawing a corpus's exports: every stored file of it deleted, the manifest first.

After an erasure (``core.maintenance.erasure``) the exports of the corpora that held the erased
actor's records still name them, so they are withdrawn until the export assets make them again:
downloads and links then say the export has not been made, and the manifest, deleted first, never
lists a file that is gone. Every owner folder is searched, so files left behind by a design's
former owner go too.
"""

from __future__ import annotations

from collections.abc import Iterable

from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.platform.storage import ObjectStore


def withdraw(store: ObjectStore, corpora: Iterable[tuple[str, str]]) -> list[str]:
    """Delete every export object of the corpora ``(slug, month)``; the keys deleted."""
    wanted = set(corpora)
    if not wanted:
        return []
    found = []
    for stored in store.list(f"{export_layout.PREFIX}/"):
        parsed = export_layout.parse_key(stored.key)
        if parsed is not None and (parsed.slug, parsed.month) in wanted:
            found.append((parsed.file != export_layout.MANIFEST, stored.key))
    keys = [key for _, key in sorted(found)]  # manifests (False) first
    for key in keys:
        store.delete(key)
    return keys
