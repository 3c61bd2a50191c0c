"""Alembic environment for the content database.

The URL comes from ``config.attributes["url"]`` when ``observatory_pipelines.core.platform.migrate`` runs
us, and otherwise (the ``alembic`` CLI) from ``DATABASE_URL`` or the embedded server.
"""

from __future__ import annotations

import logging.config

import sqlalchemy as sa
from alembic import context

from observatory_pipelines.core.models import Base
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.migrate import include_object

config = context.config

if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

# Serialises concurrent upgrades (CLI, Dagster code server, tests) on one database.
MIGRATION_LOCK_KEY = 0x6F62_7376_6D69_67  # "obsvmig"

# Alembic creates version_num as varchar(32); our revision ids are descriptive and longer.
VERSION_NUM_LENGTH = 64


def _prepare_version_table(connection: sa.Connection) -> None:
    connection.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS alembic_version ("
            f" version_num varchar({VERSION_NUM_LENGTH}) NOT NULL,"
            f" CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
    )
    width = connection.execute(
        sa.text(
            "SELECT character_maximum_length FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'alembic_version'"
            " AND column_name = 'version_num'"
        )
    ).scalar()
    if width is not None and width < VERSION_NUM_LENGTH:
        connection.execute(
            sa.text(f"ALTER TABLE alembic_version ALTER COLUMN version_num TYPE varchar({VERSION_NUM_LENGTH})")
        )


def run_migrations_online() -> None:
    url = config.attributes.get("url") or database.resolve_url()
    engine = sa.create_engine(database.sqlalchemy_url(url), poolclass=sa.NullPool)
    try:
        try:
            connection = engine.connect()
        except sa.exc.OperationalError as err:
            raise database.unavailable(url, err) from None
        with connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                include_object=include_object,
                compare_type=True,
                compare_server_default=True,
            )
            # One transaction for the whole upgrade: PostgreSQL DDL is transactional, so a failed
            # migration leaves the schema as it was.
            with context.begin_transaction():
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                _prepare_version_table(connection)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    # Offline scripts would create alembic_version with Alembic's varchar(32), too short for our
    # revision ids, so only online migrations are supported.
    raise ConfigError("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
