"""Where the project keeps its local state (embedded database, Dagster home, local object store)."""

from __future__ import annotations

from pathlib import Path

from observatory_pipelines.core.platform import settings

#: The source checkout, when the package is installed from one (editable install or plain checkout).
_SOURCE_ROOT = Path(__file__).resolve().parents[3]


def project_root() -> Path:
    """The checkout holding ``pyproject.toml``; the working directory when installed elsewhere."""
    if (_SOURCE_ROOT / "pyproject.toml").is_file():
        return _SOURCE_ROOT
    return Path.cwd()


def state_dir() -> Path:
    """``$OBSERVATORY_HOME`` or ``<project>/.observatory``: git-ignored local state."""
    path = settings.current().home or project_root() / ".observatory"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def import_dir() -> Path:
    """``$OBSERVATORY_IMPORT_DIR`` or ``<state dir>/imports``: file imports, one folder per design."""
    path = settings.current().import_dir or state_dir() / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def designs_dir() -> Path:
    """``$OBSERVATORY_DESIGNS_DIR`` or ``<project>/designs``: query design files, one YAML file per design.

    Not created when missing: a designs folder that is not there is a mistake to report, not an
    empty folder whose apply would deactivate every file-made design.
    """
    return (settings.current().designs_dir or project_root() / "designs").resolve()
