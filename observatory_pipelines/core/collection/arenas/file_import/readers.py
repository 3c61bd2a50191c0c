"""Reading export files: finding them in a folder, telling NDJSON from CSV, and turning each line
into an item or a ``Rejected``.

Files are streamed line by line and never trusted: a line too long, not UTF-8, not JSON or of
the wrong shape costs that line (a ``Rejected`` naming ``file:line``), never the file. Reading
works over ``(name, binary stream)`` pairs, so another storage only has to list and open files.
What a parsed line means for its platform is ``mappers.py``'s job.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from observatory_pipelines.core.collection.arenas.base import Rejected
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.arenas.file_import.mappers import (
    Output,
    _one_line,
    _text,
    from_4cat,
    from_zeeschuimer,
    platform_name,
)

#: The arena's registry name. A folder that cannot be listed is the arena's error and names it;
#: ``FileImportArena`` takes its name from here, so this module need not import the arena.
ARENA_NAME = "file_import"

#: Longer lines are skipped unread: a Zeeschuimer item is rarely above 100 KB, so 5 MB is junk.
MAX_LINE_BYTES = 5 * 1024 * 1024
_SKIP_CHUNK = 1024 * 1024


class LineStream(Protocol):
    """What reading needs of a binary stream: ``readline(limit) -> bytes``."""

    def readline(self, size: int = -1, /) -> bytes: ...


#: A file to import: its name relative to the design folder and a binary stream with ``readline(limit)``.
ImportFile = tuple[str, LineStream]


@dataclass
class _Line:
    number: int
    text: str | None  # None: longer than MAX_LINE_BYTES, skipped unread
    repaired: bool = False  # invalid UTF-8 was replaced with U+FFFD


class _Unsupported(Exception):
    """A whole file we cannot read; the message is the one-line reason."""


def _read_lines(stream: LineStream) -> Iterator[_Line]:
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # Skip to the end of the line in bounded chunks instead of holding it in memory.
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(_SKIP_CHUNK)
            yield _Line(number, None)
            continue
        if number == 1:
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise _Unsupported("file is UTF-16; save it as UTF-8")
            if raw.startswith(codecs.BOM_UTF8):  # Excel writes one
                raw = raw[len(codecs.BOM_UTF8) :]
        raw = raw.replace(b"\x00", b"")  # as 4CAT does; PostgreSQL text cannot hold NUL
        try:
            line = _Line(number, raw.decode("utf-8"))
        except UnicodeDecodeError:
            line = _Line(number, raw.decode("utf-8", "replace"), repaired=True)
        yield line


#: What ``_clean`` removes can enter a decoded line only through a JSON escape: the line's NUL bytes
#: are gone and its bytes were decoded as UTF-8, so a NUL or a lone surrogate needs ``\u0000`` or
#: ``\ud800``–``\udfff`` in the text. Lines without one (nearly all) skip the walk over every value.
_NEEDS_CLEANING = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _clean(value: Any) -> Any:
    """Drop what PostgreSQL refuses: NUL characters (JSON may escape them) and lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _platform_from_filename(name: str) -> str | None:
    match = re.match(r"4cat-([a-z0-9_.]+)-", PurePosixPath(name).name.lower())
    return platform_name(match.group(1)) if match else None


def _read_ndjson(name: str, lines: Iterable[_Line], platform_option: str | None) -> Iterator[Output]:
    fallback_platform = _platform_from_filename(name) or platform_option
    reported_missing_platform = False
    for line in lines:
        source = f"{name}:{line.number}"
        if line.text is None:
            yield Rejected(f"line is longer than {MAX_LINE_BYTES // 2**20} MB; skipped", source)
            continue
        if not line.text.strip():
            continue
        try:
            obj = json.loads(line.text, parse_constant=lambda constant: None)  # NaN/Infinity: not JSON
        except (ValueError, RecursionError) as exc:
            yield Rejected(f"invalid JSON: {_one_line(exc)}", source)
            continue
        if not isinstance(obj, dict):
            yield Rejected(f"line is a JSON {type(obj).__name__}, not an object", source)
            continue
        base: dict[str, Any] = {"import_file": name, "line": line.number}
        if line.repaired:
            base["encoding_repaired"] = True
        try:
            if _NEEDS_CLEANING.search(line.text):
                obj = _clean(obj)
            if "source_platform" in obj:
                base["import_format"] = "zeeschuimer"
                yield from_zeeschuimer(obj, obj.get("data"), base, source, len(line.text))
            elif isinstance(obj.get("__import_meta"), dict):
                base["import_format"] = "4cat_ndjson"
                data = {k: v for k, v in obj.items() if k != "__import_meta"}
                yield from_zeeschuimer(obj["__import_meta"], data, base, source, len(line.text))
            elif "id" in obj and "body" in obj:
                explicit = _text(obj.get("platform")) or _text(obj.get("datasource"))
                platform = (platform_name(explicit) if explicit else None) or fallback_platform
                if platform is None:
                    if not reported_missing_platform:
                        reported_missing_platform = True
                        yield Rejected(
                            "cannot tell the platform of this file's 4CAT items: set the arena option "
                            "'platform' or rename the file 4cat-<platform>-....ndjson; its 4CAT items are "
                            "skipped",
                            name,
                        )
                    continue
                base["import_format"] = "4cat_ndjson"
                yield from_4cat(obj, platform, base, source)
            else:
                yield Rejected(
                    "line is neither a Zeeschuimer item (source_platform, data) nor a 4CAT item (id, body)",
                    source,
                )
        # Platform objects are arbitrary JSON: one odd shape must cost one line, not the file.
        except Exception as exc:  # noqa: BLE001
            yield Rejected(f"could not map item: {type(exc).__name__}: {_one_line(exc)}", source)


_CSV_REQUIRED = ("id", "body")
_CSV_TIME = ("timestamp", "unix_timestamp")


def _read_csv(name: str, header: _Line, lines: Iterator[_Line], platform_option: str | None) -> Iterator[Output]:
    last_line = header.number
    oversized: list[int] = []
    repaired = False

    def csv_lines() -> Iterator[str]:
        # csv pulls physical lines lazily, so these side notes always belong to the record being read.
        nonlocal last_line, repaired
        yield header.text or ""
        for line in lines:
            last_line = line.number
            if line.text is None:
                oversized.append(line.number)
                yield "\n"
            else:
                repaired = repaired or line.repaired
                yield line.text

    first = header.text or ""
    delimiter = max((",", ";", "\t"), key=first.count)  # Danish Excel saves with semicolons
    reader = csv.reader(csv_lines(), delimiter=delimiter)
    try:
        columns = [c.strip().lower() for c in next(reader)]
    except csv.Error as exc:
        yield Rejected(f"unreadable CSV header: {_one_line(exc)}", name)
        return
    missing = [c for c in _CSV_REQUIRED if c not in columns]
    if not any(c in columns for c in _CSV_TIME):
        missing.append("timestamp (or unix_timestamp)")
    if missing:
        yield Rejected(f"CSV lacks the column(s) {', '.join(missing)} of a 4CAT export; file skipped", name)
        return
    platform = _platform_from_filename(name) or platform_option
    if platform is None:
        yield Rejected(
            "cannot tell this CSV's platform: set the arena option 'platform' or rename the file "
            "4cat-<platform>-....csv",
            name,
        )
        return
    while True:
        start = last_line + 1
        source = f"{name}:{start}"
        try:
            row: list[str] | None = next(reader)
            error = None
        except StopIteration:
            row, error = None, None
        except csv.Error as exc:
            row, error = None, exc
        for number in oversized:
            yield Rejected(f"line is longer than {MAX_LINE_BYTES // 2**20} MB; skipped", f"{name}:{number}")
        oversized.clear()
        was_repaired, repaired = repaired, False
        if error is not None:
            yield Rejected(f"malformed CSV record: {_one_line(error)}", source)
            continue
        if row is None:
            return
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield Rejected(f"row has {len(row)} fields but the header has {len(columns)}", source)
            continue
        base: dict[str, Any] = {"import_file": name, "line": start, "import_format": "4cat_csv"}
        if was_repaired:
            base["encoding_repaired"] = True
        yield from_4cat(dict(zip(columns, row)), platform, base, source)


def read_import_file(name: str, stream: LineStream, platform: str | None = None) -> Iterator[Output]:
    """Items and rejections of one export file; ``platform`` is used where a file does not say."""
    lines = _read_lines(stream)
    try:
        first = next((line for line in lines if line.text is None or line.text.strip()), None)
        if first is None:
            yield Rejected("file is empty", name)
            return
        head = (first.text or "").lstrip()
        if first.text is None or head.startswith("{") or name.lower().endswith((".ndjson", ".jsonl")):
            yield from _read_ndjson(name, itertools.chain([first], lines), platform)
        elif head.startswith("["):
            yield Rejected("file is one JSON array, not NDJSON; export one JSON object per line", name)
        else:
            yield from _read_csv(name, first, lines, platform)
    except _Unsupported as exc:
        yield Rejected(str(exc), name)
    except OSError as exc:
        yield Rejected(f"cannot read file: {exc.strerror or _one_line(exc)}", name)


def read_import_files(files: Iterable[ImportFile], platform: str | None = None) -> Iterator[Output]:
    """Items and rejections of many files, whatever storage they come from."""
    for name, stream in files:
        yield from read_import_file(name, stream, platform)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*``, ``?`` and ``**/`` globs, matched case-insensitively (``EXPORT.CSV`` is a CSV too)."""
    parts = []
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        parts.append({"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or re.escape(token))
    return re.compile("".join(parts), re.IGNORECASE)


class _UnopenedFile(io.RawIOBase):
    """Stands in for a file that would not open, so the failure surfaces as that file's Rejected."""

    def __init__(self, error: OSError):
        super().__init__()
        self.error = error

    def readline(self, size: int | None = -1) -> bytes:
        raise self.error


def matching_import_files(folder: Path, patterns: Iterable[str]) -> list[str]:
    """The names, relative to ``folder``, of the files under it that match any pattern, sorted;
    hidden files and folders are left out."""

    def unreadable(exc: OSError) -> None:
        raise ArenaError(
            ARENA_NAME,
            f"cannot list {exc.filename}: {exc.strerror}; check the folder's permissions",
        )

    matchers = [_glob_regex(p) for p in patterns]
    names = []
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for file_name in files:
            relative = (Path(root) / file_name).relative_to(folder).as_posix()
            if not file_name.startswith(".") and any(m.fullmatch(relative) for m in matchers):
                names.append(relative)
    return sorted(names)


def local_import_files(folder: Path, patterns: Iterable[str]) -> Iterator[ImportFile]:
    """Files under ``folder`` matching any pattern, by relative name; hidden files are left out."""
    for relative in matching_import_files(folder, patterns):
        try:
            stream = open(folder / relative, "rb")
        except OSError as exc:
            yield relative, _UnopenedFile(exc)
            continue
        with stream:
            yield relative, stream
