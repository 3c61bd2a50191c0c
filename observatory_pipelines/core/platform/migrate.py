"""Alembic, driven from code: upgrade, downgrade, and which revision a database is at.

The configuration is built here rather than read from ``alembic.ini``, so the CLI, Dagster and the
tests migrate the same way from any working directory. The URL reaches ``migrations/env.py``
through ``Config.attributes``, never through the ini file, so passwords are not interpolated or
logged.
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"

# Monthly and default partitions of content_records: created by DDL and maintenance jobs, not
# described by the models.
_CONTENT_PARTITION = re.compile(r"^content_records_(\d{4}_\d{2}|default)$")


# Alembic compares expression indexes as text, and PostgreSQL stores this one rewritten (casts,
# parentheses), so it always looks changed; tests/test_schema.py checks it on the server instead.
_EXPRESSION_INDEXES = frozenset({"idx_content_fulltext"})


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's comparison filter: leave out content_records' partitions and expression index."""
    if type_ == "table" and name and _CONTENT_PARTITION.match(name):
        return False
    if type_ == "index" and name in _EXPRESSION_INDEXES:
        return False
    return True


def _config(url: str | None = None) -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise ConfigError(f"no Alembic migrations at {MIGRATIONS_DIR}; run from a checkout of the project")
    config = Config()
    # ConfigParser interpolates '%' in option values.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    # Fails early, in one line, when the server is unreachable or older than PostgreSQL 15.
    database.server_version(url)
    command.upgrade(_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` removes every table)."""
    database.server_version(url)
    command.downgrade(_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at; None when it has never been migrated."""
    with database.connect(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    """The newest revision in ``migrations/versions``."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    if revision is None:
        raise ConfigError(f"no migration scripts in {MIGRATIONS_DIR / 'versions'}")
    return revision
