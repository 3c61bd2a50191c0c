"""Resources shared by every domain, and how they meet the environment.

Every field left unset falls back to ``core.platform.settings`` when a run opens the resource, so
a field only needs setting to override the environment. Secrets are bound with ``dg.EnvVar``
(``from_environment``): the UI then names the variable a resource reads and never shows its value.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from observatory_pipelines.core.platform import database, months, paths, settings, storage
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.http import HttpClient

#: Concurrency pool for assets that write to the content database.
CONTENT_DB_POOL = "content_db"


#: An error that names when retrying helps (``retry_at``: a spent credential pool) is retried then
#: if that is this soon; a later time fails the run now, its one line saying when to run it again.
MAX_RETRY_WAIT = timedelta(minutes=15)
RETRIES_AT_A_TIME = 3


@contextmanager
def one_line_failures(url: str | None = None) -> Iterator[None]:
    """Failures as one-line ``dg.Failure``s.

    Our own errors fail with their message, retried only when they say retrying can help
    (``retryable``: a rate-limited arena, an unreachable database or store); configuration,
    credits, a concurrent run cannot change by retrying. An error with a ``retry_at`` is retried at
    that time when it is within ``MAX_RETRY_WAIT``, and otherwise not retried at all: the policy's
    quick retries would only fail again. An unreachable database names the host (``url``'s, never
    its password) and is retried.
    """
    try:
        yield
    except ObservatoryError as err:
        retry_at = getattr(err, "retry_at", None)
        if retry_at is not None:
            wait = (retry_at - months.utc()).total_seconds()
            if wait > MAX_RETRY_WAIT.total_seconds():
                raise dg.Failure(description=str(err), allow_retries=False) from None
            raise dg.RetryRequested(max_retries=RETRIES_AT_A_TIME, seconds_to_wait=max(wait, 1.0)) from err
        raise dg.Failure(description=str(err), allow_retries=getattr(err, "retryable", False)) from None
    except sa.exc.OperationalError as err:
        raise dg.Failure(description=str(database.unavailable(url, err)), allow_retries=True) from None


class PostgresResource(dg.ConfigurableResource):
    """The content database: ``DATABASE_URL``, else the embedded server."""

    database_url: str | None = Field(
        default=None,
        description="The content database URL; bound to DATABASE_URL when it is set, else the embedded server.",
    )

    def url(self) -> str:
        return self.database_url or database.resolve_url()

    @contextmanager
    def engine(self) -> Iterator[sa.Engine]:
        """The content database for one run; every failure inside is one line (``one_line_failures``)."""
        with one_line_failures():
            url = self.url()
        engine = database.make_engine(url)
        try:
            with one_line_failures(url):
                yield engine
        finally:
            engine.dispose()


class CollectionResource(dg.ConfigurableResource):
    """Settings for collection runs."""

    import_dir: str | None = Field(
        default=None,
        description="Folder holding file imports, one subfolder per design slug "
        "(default: OBSERVATORY_IMPORT_DIR, else .observatory/imports).",
    )
    salt: str | None = Field(
        default=None, description="The pseudonymisation key; bound to PSEUDONYMIZATION_SALT when it is set."
    )
    credential_key: str | None = Field(
        default=None,
        description="The key the arenas' API credentials are encrypted with; bound to OBSERVATORY_CREDENTIAL_KEY "
        "when it is set.",
    )
    http_max_attempts: int = Field(default=4, description="Tries per HTTP request before the arena fails.")
    http_backoff_seconds: float = Field(default=1.0, description="Base of the exponential backoff between tries.")

    def http_client(self, log) -> HttpClient:
        return HttpClient(max_attempts=self.http_max_attempts, backoff_base_seconds=self.http_backoff_seconds, log=log)

    def resolved_import_dir(self) -> str:
        return self.import_dir or str(paths.import_dir())


class StorageResource(dg.ConfigurableResource):
    """S3 / MinIO when ``MINIO_ENDPOINT`` (or ``endpoint``) is set, else a local folder."""

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
    access_key: str | None = Field(
        default=None, description="S3 access key; bound to MINIO_ACCESS_KEY (or MINIO_ROOT_USER) when set."
    )
    secret_key: str | None = Field(
        default=None, description="S3 secret key; bound to MINIO_SECRET_KEY (or MINIO_ROOT_PASSWORD) when set."
    )

    def store(self) -> storage.ObjectStore:
        return storage.store_from_env(
            local_dir=self.local_dir,
            endpoint=self.endpoint,
            bucket=self.bucket,
            secure=self.secure,
            access_key=self.access_key,
            secret_key=self.secret_key,
        )


def _bound(*variables: settings.Variable) -> dg.EnvVar | None:
    """The first set variable as a ``dg.EnvVar``. An unset one is left out: Dagster fails a run
    whose ``EnvVar`` is unset, and an unset secret here means "use the fallback" (the embedded
    database, the local store), or a one-line error from the code that needs it."""
    present = settings.current()
    return next((dg.EnvVar(v.name) for v in variables if present.is_set(v)), None)


def from_environment() -> dict[str, dg.ConfigurableResource]:
    """The project's resources, with their secrets bound to the environment variables that are set."""
    return {
        "postgres": PostgresResource(database_url=_bound(settings.DATABASE_URL)),
        "collector": CollectionResource(
            salt=_bound(settings.PSEUDONYMIZATION_SALT), credential_key=_bound(settings.OBSERVATORY_CREDENTIAL_KEY)
        ),
        "storage": StorageResource(
            access_key=_bound(settings.MINIO_ACCESS_KEY, settings.MINIO_ROOT_USER),
            secret_key=_bound(settings.MINIO_SECRET_KEY, settings.MINIO_ROOT_PASSWORD),
        ),
    }


def for_this_process(database_url: str, salt: str | None) -> dict[str, dg.ConfigurableResource]:
    """The resources of a run in this process (``observatory run``, scripts): the database it was
    given, the salt the CLI settled on, and the object store from the environment."""
    return {
        "postgres": PostgresResource(database_url=database_url),
        "collector": CollectionResource(salt=salt),
        "storage": StorageResource(),
    }
