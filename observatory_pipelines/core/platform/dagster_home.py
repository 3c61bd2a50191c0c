"""Prepare ``DAGSTER_HOME`` so users never set it by hand.

Dagster reads its instance configuration from ``$DAGSTER_HOME/dagster.yaml``. The repository's
``dagster.yaml`` is the source of truth; it is copied into ``<state dir>/dagster_home`` and its
storage URL comes from ``DAGSTER_POSTGRES_URL``, which points at the ``dagster`` database on the
same server as the content database (never the content database itself).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.paths import project_root, state_dir


def prepare(content_url: str) -> dict[str, str]:
    """Create the Dagster home and its database; return the environment Dagster processes need."""
    home = state_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    source = project_root() / "dagster.yaml"
    if source.is_file():
        shutil.copyfile(source, home / "dagster.yaml")
    storage_url = database.with_database(content_url, database.DAGSTER_DATABASE)
    database.ensure_database(storage_url)
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": database.dagster_storage_url(content_url),
        "DATABASE_URL": content_url,
    }


def workspace_file() -> Path:
    return project_root() / "workspace.yaml"
