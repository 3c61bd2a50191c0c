"""Database URLs, engines and the one-line errors people see when a database is unreachable.

``DATABASE_URL`` selects an external PostgreSQL (15 or newer). Unset, the embedded server is
started and used. Dagster's own instance storage lives on the same server in a separate
database (``dagster``), never in the content database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.errors import ConfigError, DatabaseUnavailable, ObservatoryError

DAGSTER_DATABASE = "dagster"
MIN_SERVER_VERSION = 15


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("DATABASE_URL is not a URL; expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME") from None
    if not parsed.drivername.startswith("postgresql"):
        raise ConfigError(
            f"DATABASE_URL uses '{parsed.drivername}', but only PostgreSQL is supported; "
            "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    return parsed


def sqlalchemy_url(url: str, driver: str = "psycopg") -> URL:
    """The same database with an explicit driver (psycopg 3 for us, psycopg2 for Dagster)."""
    return _parse(url).set(drivername=f"postgresql+{driver}")


def with_database(url: str, database: str) -> str:
    """The URL of another database on the same server."""
    return _parse(url).set(database=database).render_as_string(hide_password=False)


def describe(url: str) -> str:
    """Where a URL points, for messages: host (or socket dir), port and database, never the password."""
    parsed = _parse(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    if str(host).startswith("/"):
        where = f"unix:{host}"
    else:
        where = f"{host}:{parsed.port}" if parsed.port else str(host)
    return f"{where}/{parsed.database or ''}"


def configured_url() -> str | None:
    """``DATABASE_URL`` when set (read at call time, never at import time)."""
    url = settings.current().database_url
    return url.reveal() if url else None


def resolve_url(start_embedded: bool = True) -> str:
    """The content database's URL: ``DATABASE_URL``, or the embedded server's ``observatory`` database."""
    url = configured_url()
    if url:
        _parse(url)
        return url
    from observatory_pipelines.core.platform.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres()
    server_url: str | None
    if start_embedded:
        server_url = embedded.up()
    else:
        server_url = embedded.status().url
        if server_url is None:
            raise DatabaseUnavailable("the embedded PostgreSQL is not running; start it with `observatory db up`")
    url = with_database(server_url, "observatory")
    ensure_database(url)
    return url


def make_engine(url: str, **kwargs) -> Engine:
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(sqlalchemy_url(url), **kwargs)


def unavailable(url: str | None, err: BaseException) -> DatabaseUnavailable:
    """Turn a driver error into one line naming the host and what to check."""
    reason = str(getattr(err, "orig", err) or err).strip().splitlines()
    first = reason[0] if reason else type(err).__name__
    where = describe(url) if url else "the configured server"
    return DatabaseUnavailable(
        f"cannot use PostgreSQL at {where}: {first} "
        "(check DATABASE_URL, that the server is running and reachable, and the credentials)"
    )


def ping(engine: Engine) -> None:
    """One round trip to the server; ``DatabaseUnavailable`` in one line when it does not answer."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as err:
        raise unavailable(engine.url.render_as_string(hide_password=True), err) from None


@contextmanager
def connect(url: str) -> Iterator[sa.Connection]:
    """A connection in a transaction, with connection failures turned into ``DatabaseUnavailable``."""
    engine = make_engine(url, poolclass=sa.NullPool)
    try:
        try:
            conn = engine.connect()
        except sa.exc.OperationalError as err:
            raise unavailable(url, err) from None
        with conn, conn.begin():
            yield conn
    finally:
        engine.dispose()


@contextmanager
def migrated_engine() -> Iterator[Engine]:
    """An engine on the configured database, disposed afterwards; one line when it has no schema yet."""
    from observatory_pipelines.core.platform import migrate  # alembic: only for commands that need it

    url = resolve_url()
    if migrate.current(url) is None:
        raise ObservatoryError(f"the database at {describe(url)} has no schema yet; run: observatory db migrate")
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def server_version(url: str) -> int:
    """The server's major version; refuses servers older than PostgreSQL 15."""
    with connect(url) as conn:
        version_num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    major = version_num // 10000
    if major < MIN_SERVER_VERSION:
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(url)} is version {major}; version {MIN_SERVER_VERSION} or newer is needed"
        )
    return major


def ensure_database(url: str) -> bool:
    """Create the URL's database on its server if it does not exist; return whether it was created."""
    name = _parse(url).database
    if not name:
        raise ConfigError("DATABASE_URL names no database; add /DBNAME to it")
    admin_url = with_database(url, "postgres")
    engine = make_engine(admin_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        try:
            conn = engine.connect()
        except sa.exc.OperationalError as err:
            raise unavailable(url, err) from None
        with conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
            if exists:
                return False
            # CREATE DATABASE takes no bind parameters; quote the identifier properly instead.
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(sa.text(f"CREATE DATABASE {quoted} ENCODING 'UTF8' TEMPLATE template0"))
            return True
    finally:
        engine.dispose()


def psycopg2_url(url: str) -> str:
    """The URL with the ``postgresql+psycopg2://`` scheme that dagster-postgres needs.

    dagster-postgres 0.29 breaks when SQLAlchemy 2.1 picks psycopg 3 for a bare ``postgresql://``.
    """
    return sqlalchemy_url(url, driver="psycopg2").render_as_string(hide_password=False)


def dagster_storage_url(content_url: str) -> str:
    """Dagster's instance storage: database ``dagster`` on the content database's server."""
    return psycopg2_url(with_database(content_url, DAGSTER_DATABASE))


@contextmanager
def driver_connection(engine: sa.Engine, *, commit: bool) -> Iterator[psycopg.Connection]:
    """The psycopg 3 connection under one pooled connection, for what SQLAlchemy has no API for
    (``COPY``). One transaction: committed at the end when ``commit``, else rolled back (reads),
    and rolled back on any error; the connection then returns to the pool."""
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert isinstance(connection, psycopg.Connection), "the content database is reached through psycopg 3"
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        if commit:
            connection.commit()
        else:
            connection.rollback()
    finally:
        raw.close()


def copy_row_blocks(copy: psycopg.Copy, size: int) -> Iterator[bytes]:
    """A ``COPY ... TO STDOUT``'s output in blocks of about ``size`` bytes (one row more when a row
    is longer). PostgreSQL sends one whole row per message, so every block ends at a row's end and
    parses on its own: a reader holds one block at a time, never the whole output."""
    parts: list = []
    held = 0
    for chunk in copy:
        parts.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(parts)
            parts, held = [], 0
    if parts:
        yield b"".join(parts)
