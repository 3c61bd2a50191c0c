"""The analysis store: Parquet tables and chart images, one folder per corpus.

Layout: ``<base>/<design-slug>/<YYYY-MM>/<name>.parquet`` (and ``.png`` for charts), where the base
is ``$OBSERVATORY_ANALYSIS_DIR`` or ``<state dir>/analysis``, read at every call so tests and
deployments can point it elsewhere without a restart.

Every file access of the analysis steps goes through this module (erasure removes a corpus's folder
through it too, ``remove_corpus``), so moving the store to object storage changes this file only.
Writes are atomic (a temporary file in the same folder, then a rename): a reader never sees half a
table, and a failed write leaves the previous version.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import polars as pl

from observatory_pipelines.core.collection.designs import check_slug
from observatory_pipelines.core.platform import months, paths, settings

# Slugs follow query_designs' CHECK; names are our own table names. Both become path parts, so
# anything else (a "/", "..") is refused rather than escaped.
_NAME = re.compile(r"^[a-z0-9_]+$")


def base_dir() -> Path:
    configured = settings.current().analysis_dir
    return configured.resolve() if configured else paths.state_dir() / "analysis"


def _corpus_path(slug: str, month: str) -> Path:
    check_slug(slug)
    months.parse_month(month)
    return base_dir() / slug / month


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"'{name}' is not an analysis table name (lowercase letters, digits, underscores)")
    return name


def corpus_dir(slug: str, month: str) -> Path:
    """The corpus's folder, created if missing."""
    path = _corpus_path(slug, month)
    path.mkdir(parents=True, exist_ok=True)
    return path


def table_path(slug: str, month: str, name: str) -> Path:
    return _corpus_path(slug, month) / f"{_checked_name(name)}.parquet"


def _atomic_write(target: Path, write) -> Path:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def write_table(slug: str, month: str, name: str, frame: pl.DataFrame) -> Path:
    corpus_dir(slug, month)
    return _atomic_write(table_path(slug, month, name), lambda path: frame.write_parquet(path))


def read_table(slug: str, month: str, name: str) -> pl.DataFrame:
    path = table_path(slug, month, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"analysis table '{name}' of {slug} {month} does not exist ({path}); materialize the analysis assets first"
        )
    return pl.read_parquet(path)


def find_table(slug: str, month: str, name: str) -> pl.DataFrame | None:
    """The table, or ``None`` when it has not been computed: a reader showing what exists (the
    portal) treats a missing table as "not yet", where ``read_table``'s callers need it."""
    path = table_path(slug, month, name)
    return pl.read_parquet(path) if path.is_file() else None


def image_path(slug: str, month: str, name: str) -> Path:
    return _corpus_path(slug, month) / f"{_checked_name(name)}.png"


def write_image(slug: str, month: str, name: str, png: bytes) -> Path:
    corpus_dir(slug, month)
    return _atomic_write(image_path(slug, month, name), lambda path: path.write_bytes(png))


def remove_corpus(slug: str, month: str) -> bool:
    """Delete the corpus's tables and charts (after an erasure, until analysis runs again);
    whether there were any."""
    path = _corpus_path(slug, month)
    if not path.is_dir():
        return False
    shutil.rmtree(path)
    return True
