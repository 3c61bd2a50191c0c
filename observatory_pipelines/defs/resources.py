"""Resources shared by every domain."""

from contextlib import contextmanager
from typing import Iterator, Optional

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from ..core import database, paths
from ..core.errors import ObservatoryError
from ..core.http import HttpClient

#: Concurrency pool for assets that write to the content database.
CONTENT_DB_POOL = "content_db"


class PostgresResource(dg.ConfigurableResource):
    """The content database.

    ``database_url`` is normally left empty: the URL is then resolved when a run starts, from
    ``DATABASE_URL`` or the embedded server, so no secret is stored in run config or shown in the UI.
    """

    database_url: Optional[str] = Field(
        default=None,
        description="Override the content database URL (default: DATABASE_URL, else the embedded server).",
    )

    def url(self) -> str:
        return self.database_url or database.resolve_url()

    def engine(self) -> sa.Engine:
        return database.make_engine(self.url())


@contextmanager
def one_line_failures(url: str | None = None) -> Iterator[None]:
    """Failures as one-line ``dg.Failure``s.

    Our own errors fail with their message, retried only when they say retrying can help
    (``retryable``: a rate-limited arena, an unreachable database or store); configuration,
    credits, a concurrent run cannot change by retrying. An unreachable database names the host
    (``url``'s, never its password) and is retried.
    """
    try:
        yield
    except ObservatoryError as err:
        raise dg.Failure(description=str(err), allow_retries=getattr(err, "retryable", False)) from None
    except sa.exc.OperationalError as err:
        raise dg.Failure(description=str(database.unavailable(url, err)), allow_retries=True) from None


@contextmanager
def content_engine(postgres: PostgresResource) -> Iterator[sa.Engine]:
    """The content database for one asset run, failing as ``one_line_failures`` says."""
    try:
        url = postgres.url()
    except ObservatoryError as err:
        raise dg.Failure(description=str(err)) from None
    engine = database.make_engine(url)
    try:
        with one_line_failures(url):
            yield engine
    finally:
        engine.dispose()


class CollectionResource(dg.ConfigurableResource):
    """Settings for collection runs.

    The pseudonymisation salt is read from ``PSEUDONYMIZATION_SALT`` when a collection starts,
    never stored in run config or shown in the UI; ``salt`` exists only for tests.
    """

    import_dir: Optional[str] = Field(
        default=None,
        description="Folder holding file imports, one subfolder per design slug "
        "(default: OBSERVATORY_IMPORT_DIR, else .observatory/imports).",
    )
    salt: Optional[str] = Field(default=None, description="Test override for PSEUDONYMIZATION_SALT.")
    http_max_attempts: int = Field(default=4, description="Tries per HTTP request before the arena fails.")
    http_backoff_seconds: float = Field(default=1.0, description="Base of the exponential backoff between tries.")

    def http_client(self, log) -> HttpClient:
        return HttpClient(
            max_attempts=self.http_max_attempts, backoff_base_seconds=self.http_backoff_seconds, log=log
        )

    def resolved_import_dir(self) -> str:
        return self.import_dir or str(paths.import_dir())
