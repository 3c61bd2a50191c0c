"""``FileImportArena``: the arena that collects a query design's exports from its import folder.

It checks the arena options, finds the design's folder under the configured import folder, and
hands each matching file to ``readers.py``, logging how many items each file gave and how many
lines it rejected. ``@register`` adds it to the arena registry when this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from observatory_pipelines.core.collection.arenas import register
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    CollectedItem,
    CollectionContext,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.arenas.file_import.mappers import platform_name
from observatory_pipelines.core.collection.arenas.file_import.readers import (
    ARENA_NAME,
    local_import_files,
    matching_import_files,
    read_import_file,
)
from observatory_pipelines.core.collection.tiers import Tier

DEFAULT_PATTERNS = ("**/*.ndjson", "**/*.jsonl", "**/*.csv")


@register
class FileImportArena(Arena):
    """Options: ``files``, glob patterns under the design's folder (default: every NDJSON, JSONL and
    CSV file); ``platform``, the platform of 4CAT files that neither say it nor are named
    ``4cat-<platform>-...``."""

    name = ARENA_NAME
    platform = "import"
    description = "Zeeschuimer and 4CAT exports (NDJSON or CSV) placed in the query design's import folder."
    supported_tiers = frozenset(Tier)
    keep_unmatched = True
    # Only designs that import files should collect from here; others would report a missing folder.
    enabled_by_default = False
    fixed_record_tier = "manual"

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - {"files", "platform"})
        if unknown:
            raise ValueError(f"arena '{self.name}' has no option '{unknown[0]}'; it takes 'files' and 'platform'")
        files = options.get("files", list(DEFAULT_PATTERNS))
        if (
            isinstance(files, str)
            or not isinstance(files, (list, tuple))
            or not files
            or not all(isinstance(p, str) and p.strip() for p in files)
        ):
            raise ValueError("option 'files' must be a non-empty list of glob patterns, e.g. [\"**/*.ndjson\"]")
        for pattern in files:
            if pattern.startswith("/") or ".." in PurePosixPath(pattern).parts:
                raise ValueError(f"option 'files': pattern '{pattern}' must stay inside the design's folder")
        platform = options.get("platform")
        if platform is not None:
            platform = platform_name(platform) if isinstance(platform, str) else None
            if not platform:
                raise ValueError("option 'platform' must be a platform name such as 'instagram' or 'x_twitter'")
        return {"files": [p.strip() for p in files], "platform": platform}

    def estimate_credits(self, spec: QuerySpec) -> int:
        return 0

    def _folder(self, spec: QuerySpec, import_dir: str) -> Path:
        if "://" in import_dir:
            raise ArenaError(self.name, "object-store import folders are not supported yet; use a local folder")
        slug = spec.design_slug
        if slug in ("", ".", "..") or PurePosixPath(slug).name != slug or "\\" in slug:
            raise ArenaError(self.name, f"design slug '{slug}' cannot name a folder; use letters, digits and dashes")
        return Path(import_dir) / slug

    def input_bytes(self, spec: QuerySpec, ctx: CollectionContext) -> int | None:
        if not ctx.import_dir:
            return None
        folder = self._folder(spec, ctx.import_dir)
        if not folder.is_dir():
            return None
        files = matching_import_files(folder, self.validate_options(spec.options)["files"])
        try:
            return sum((folder / name).stat().st_size for name in files)
        except OSError:
            return None  # collect() says what is wrong with the file

    def collect(self, spec: QuerySpec, ctx: CollectionContext) -> Iterator[CollectedItem | Rejected]:
        options = self.validate_options(spec.options)
        if not ctx.import_dir:
            yield Rejected("no import folder is configured; set one and put files in <import_dir>/<design_slug>/")
            return
        folder = self._folder(spec, ctx.import_dir)
        if not folder.exists():
            yield Rejected(
                f"no import folder for this design: put Zeeschuimer or 4CAT exports in {folder}", str(folder)
            )
            return
        if not folder.is_dir():
            raise ArenaError(self.name, f"{folder} is a file, not a folder; make it a folder of export files")
        found = False
        for name, stream in local_import_files(folder, options["files"]):
            found = True
            items = rejected = 0
            ctx.searched(name)
            # Every item goes on, whatever its date: the orchestrator counts those outside the month
            # as filtered and rejects implausible dates (1970, 9999) with a reason.
            for output in read_import_file(name, stream, options["platform"]):
                if isinstance(output, Rejected):
                    rejected += 1
                else:
                    items += 1
                    output.source = name
                yield output
            ctx.log(f"{name}: {items} items read, {rejected} rejected")
        if not found:
            ctx.log(f"no files matching {', '.join(options['files'])} in {folder}")
