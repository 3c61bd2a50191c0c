"""File imports: Zeeschuimer and 4CAT exports that researchers place in a folder per query design.

Files live in ``<import_dir>/<design_slug>/`` (subfolders included). Each file's format is told
from its content, not its name:

- Zeeschuimer NDJSON: one captured item per line, ``{"item_id", "source_platform",
  "timestamp_collected" (ms), "nav_index", "data": <the platform's own object>, ...}``;
- 4CAT's stored NDJSON: the same platform object with Zeeschuimer's fields moved under
  ``__import_meta``;
- 4CAT mapped items (what 4CAT's ``map_item`` produces), as NDJSON or CSV: ``id``, ``body``,
  ``timestamp`` ("YYYY-MM-DD HH:MM:SS", UTC) or ``unix_timestamp``, and optional ``author``,
  ``author_fullname``, ``thread_id``, ``subject``, ``url``, counts and ``language`` columns.

Reading works over ``(name, binary stream)`` pairs (``read_import_files``), so an object-store
backend only has to list and open objects. Files are streamed line by line and never trusted: a
line that cannot be read becomes a ``Rejected`` naming ``file:line``, and the other lines still load.

The package is split by job: ``readers`` (finding files, reading lines, NDJSON and CSV),
``mappers`` (each platform's object to one common item) and ``arena`` (``FileImportArena``, its
options and folder). Importing the package imports ``arena``, whose ``@register`` puts the arena in
the registry; callers import from here and need not know the split.
"""

from observatory_pipelines.core.collection.arenas.file_import.arena import DEFAULT_PATTERNS, FileImportArena
from observatory_pipelines.core.collection.arenas.file_import.mappers import (
    MAX_RAW_CHARS,
    ZEESCHUIMER_MODULES,
    Output,
    platform_name,
)
from observatory_pipelines.core.collection.arenas.file_import.readers import (
    MAX_LINE_BYTES,
    ImportFile,
    local_import_files,
    read_import_file,
    read_import_files,
)

__all__ = [
    "DEFAULT_PATTERNS",
    "MAX_LINE_BYTES",
    "MAX_RAW_CHARS",
    "ZEESCHUIMER_MODULES",
    "FileImportArena",
    "ImportFile",
    "Output",
    "local_import_files",
    "platform_name",
    "read_import_file",
    "read_import_files",
]
