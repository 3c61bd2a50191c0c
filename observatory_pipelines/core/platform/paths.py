"""Where the project keeps its local state (embedded database, Dagster home, local object store)."""

from __future__ import annotations

import os
from pathlib import Path

#: The source checkout, when the package is installed from one (editable install or plain checkout).
_SOURCE_ROOT = Path(__file__).resolve().parents[3]


def project_root() -> Path:
    """The checkout holding ``pyproject.toml``; the working directory when installed elsewhere."""
    if (_SOURCE_ROOT / "pyproject.toml").is_file():
        return _SOURCE_ROOT
    return Path.cwd()


def state_dir() -> Path:
    """``$OBSERVATORY_HOME`` or ``<project>/.observatory``: git-ignored local state."""
    configured = os.environ.get("OBSERVATORY_HOME")
    path = Path(configured).expanduser() if configured else project_root() / ".observatory"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def import_dir() -> Path:
    """``$OBSERVATORY_IMPORT_DIR`` or ``<state dir>/imports``: file imports, one folder per design."""
    configured = os.environ.get("OBSERVATORY_IMPORT_DIR")
    path = Path(configured).expanduser() if configured else state_dir() / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
