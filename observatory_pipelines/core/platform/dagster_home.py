"""Dagster's instance, without anyone setting ``DAGSTER_HOME`` or a storage URL by hand.

Dagster reads its instance configuration from ``$DAGSTER_HOME/dagster.yaml``, or, when
``DAGSTER_HOME`` is unset (``dg dev``, ``dg check defs`` at the repository root), from the working
directory's ``dagster.yaml``. The repository's ``dagster.yaml`` is the source of truth: its storage
(``defs.instance_storage``) asks ``storage_url`` where to keep runs and events, so every way of
starting Dagster lands in the same place: ``DAGSTER_POSTGRES_URL`` when set, else the ``dagster``
database on the content database's server (the embedded one by default), never the content
database itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from observatory_pipelines.core.platform import database, settings
from observatory_pipelines.core.platform.paths import project_root, state_dir


def prepare(content_url: str) -> dict[str, str]:
    """Create the Dagster home and its database; return the environment Dagster processes need.

    Dagster's storage is ``storage_url``'s: ``DAGSTER_POSTGRES_URL`` when set, else the ``dagster``
    database beside ``content_url`` (created here when missing)."""
    home = state_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    source = project_root() / "dagster.yaml"
    if source.is_file():
        shutil.copyfile(source, home / "dagster.yaml")
    configured = settings.current().dagster_storage_url
    if configured:
        storage = configured.reveal()
    else:
        _ensure_storage_database(content_url)
        storage = database.dagster_storage_url(content_url)
    return {
        "DAGSTER_HOME": str(home),
        # A configured DAGSTER_POSTGRES_URL stands (README): never replaced by the default beside the content database.
        "DAGSTER_POSTGRES_URL": storage,
        "DATABASE_URL": content_url,
    }


def _ensure_storage_database(content_url: str) -> None:
    database.ensure_database(database.with_database(content_url, database.DAGSTER_DATABASE))


def storage_url() -> str:
    """Where Dagster keeps runs, events and schedules: ``DAGSTER_POSTGRES_URL``, else the ``dagster``
    database beside the content database (``DATABASE_URL``, else the embedded server, started if needed)."""
    configured = settings.current().dagster_storage_url
    if configured:
        return configured.reveal()
    content_url = database.resolve_url()
    _ensure_storage_database(content_url)
    return database.dagster_storage_url(content_url)


def workspace_file() -> Path:
    return project_root() / "workspace.yaml"
