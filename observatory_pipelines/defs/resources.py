"""Resources shared by every domain."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from observatory_pipelines.core.platform import database, paths, storage
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.http import HttpClient

#: Concurrency pool for assets that write to the content database.
CONTENT_DB_POOL = "content_db"


class PostgresResource(dg.ConfigurableResource):
    """The content database.

    ``database_url`` is normally left empty: the URL is then resolved when a run starts, from
    ``DATABASE_URL`` or the embedded server, so no secret is stored in run config or shown in the UI.
    """

    database_url: str | None = Field(
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

    import_dir: str | None = Field(
        default=None,
        description="Folder holding file imports, one subfolder per design slug "
        "(default: OBSERVATORY_IMPORT_DIR, else .observatory/imports).",
    )
    salt: str | None = Field(default=None, description="Test override for PSEUDONYMIZATION_SALT.")
    http_max_attempts: int = Field(default=4, description="Tries per HTTP request before the arena fails.")
    http_backoff_seconds: float = Field(default=1.0, description="Base of the exponential backoff between tries.")

    def http_client(self, log) -> HttpClient:
        return HttpClient(
            max_attempts=self.http_max_attempts, backoff_base_seconds=self.http_backoff_seconds, log=log
        )

    def resolved_import_dir(self) -> str:
        return self.import_dir or str(paths.import_dir())


class StorageResource(dg.ConfigurableResource):
    """S3 / MinIO when ``MINIO_ENDPOINT`` (or ``endpoint``) is set, else a local folder.

    The fields only override non-secret settings. Credentials have no field on purpose: they are
    read from ``MINIO_ACCESS_KEY`` / ``MINIO_SECRET_KEY`` (or ``MINIO_ROOT_USER`` /
    ``MINIO_ROOT_PASSWORD``) when a run opens the store, so they never appear in run config,
    the UI, or asset metadata.
    """

    local_dir: str | None = Field(
        default=None,
        description="Keep objects in this folder (default: OBSERVATORY_STORAGE_DIR, else .observatory/objects).",
    )
    endpoint: str | None = Field(
        default=None, description="S3 endpoint, host:port or http(s)://host:port (default: MINIO_ENDPOINT)."
    )
    bucket: str | None = Field(default=None, description="S3 bucket (default: MINIO_BUCKET, else 'observatory').")
    secure: bool | None = Field(
        default=None, description="Use HTTPS for S3 (default: MINIO_SECURE, else the endpoint's scheme)."
    )

    def store(self) -> storage.ObjectStore:
        return storage.store_from_env(
            local_dir=self.local_dir, endpoint=self.endpoint, bucket=self.bucket, secure=self.secure
        )
