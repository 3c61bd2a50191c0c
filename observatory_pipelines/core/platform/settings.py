"""Every environment variable the project reads, in one typed object.

``current()`` snapshots the environment when called, never at import, so tests and long-lived
processes see what is set now. Each value is checked when it is used, not when it is read: a bad
``BACKUP_RETENTION_DAYS`` fails the backup with one line naming the variable, and leaves exports
and collection running.

Secrets (``Secret``) never show their value in ``repr``, ``str`` or an f-string; ``reveal()`` is
called only where the value is handed to the client that needs it.

``VARIABLES`` is the table the README's configuration section must match (a test checks it).
Dagster resources bind their fields to these variables with ``dg.EnvVar`` (see ``defs.resources``),
so the UI names the variable and never shows its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from observatory_pipelines.core.platform.errors import ConfigError


@dataclass(frozen=True)
class Variable:
    name: str
    secret: bool = False


DATABASE_URL = Variable("DATABASE_URL", secret=True)  # may hold a password
OBSERVATORY_HOME = Variable("OBSERVATORY_HOME")
PSEUDONYMIZATION_SALT = Variable("PSEUDONYMIZATION_SALT", secret=True)
OBSERVATORY_IMPORT_DIR = Variable("OBSERVATORY_IMPORT_DIR")
OBSERVATORY_ANALYSIS_DIR = Variable("OBSERVATORY_ANALYSIS_DIR")
OBSERVATORY_STORAGE_DIR = Variable("OBSERVATORY_STORAGE_DIR")
MINIO_ENDPOINT = Variable("MINIO_ENDPOINT")
MINIO_ACCESS_KEY = Variable("MINIO_ACCESS_KEY", secret=True)
MINIO_SECRET_KEY = Variable("MINIO_SECRET_KEY", secret=True)
MINIO_ROOT_USER = Variable("MINIO_ROOT_USER", secret=True)
MINIO_ROOT_PASSWORD = Variable("MINIO_ROOT_PASSWORD", secret=True)
MINIO_BUCKET = Variable("MINIO_BUCKET")
MINIO_SECURE = Variable("MINIO_SECURE")
MINIO_PUBLIC_ENDPOINT = Variable("MINIO_PUBLIC_ENDPOINT")
MINIO_REGION = Variable("MINIO_REGION")
SSL_CERT_FILE = Variable("SSL_CERT_FILE")
OBSERVATORY_USER = Variable("OBSERVATORY_USER")
OBSERVATORY_TOKEN = Variable("OBSERVATORY_TOKEN", secret=True)
BACKUP_RETENTION_DAYS = Variable("BACKUP_RETENTION_DAYS")
CONTENT_RETENTION_DAYS = Variable("CONTENT_RETENTION_DAYS")
OBSERVATORY_PG_BIN = Variable("OBSERVATORY_PG_BIN")
DAGSTER_POSTGRES_URL = Variable("DAGSTER_POSTGRES_URL", secret=True)
OBSERVATORY_DESIGNS_DIR = Variable("OBSERVATORY_DESIGNS_DIR")
OBSERVATORY_CREDENTIAL_KEY = Variable("OBSERVATORY_CREDENTIAL_KEY", secret=True)
OBSERVATORY_PRICES_FILE = Variable("OBSERVATORY_PRICES_FILE")
OBSERVATORY_PORTAL_SECRET = Variable("OBSERVATORY_PORTAL_SECRET", secret=True)
OBSERVATORY_PORTAL_URL = Variable("OBSERVATORY_PORTAL_URL")

DEFAULT_PORTAL_URL = "http://127.0.0.1:8080"

VARIABLES = (
    DATABASE_URL,
    OBSERVATORY_HOME,
    PSEUDONYMIZATION_SALT,
    OBSERVATORY_IMPORT_DIR,
    OBSERVATORY_ANALYSIS_DIR,
    OBSERVATORY_STORAGE_DIR,
    MINIO_ENDPOINT,
    MINIO_ACCESS_KEY,
    MINIO_SECRET_KEY,
    MINIO_ROOT_USER,
    MINIO_ROOT_PASSWORD,
    MINIO_BUCKET,
    MINIO_SECURE,
    MINIO_PUBLIC_ENDPOINT,
    MINIO_REGION,
    SSL_CERT_FILE,
    OBSERVATORY_USER,
    OBSERVATORY_TOKEN,
    BACKUP_RETENTION_DAYS,
    CONTENT_RETENTION_DAYS,
    OBSERVATORY_PG_BIN,
    DAGSTER_POSTGRES_URL,
    OBSERVATORY_DESIGNS_DIR,
    OBSERVATORY_CREDENTIAL_KEY,
    OBSERVATORY_PRICES_FILE,
    OBSERVATORY_PORTAL_SECRET,
    OBSERVATORY_PORTAL_URL,
)

DEFAULT_BACKUP_RETENTION_DAYS = 30
DEFAULT_CONTENT_RETENTION_DAYS = 730

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (or 1/0, yes/no); got {value!r}")


def parse_days(name: str, value: int | str) -> int:
    """A retention in whole days, 1 or more."""
    try:
        days = int(value)
    except (TypeError, ValueError):
        days = 0
    if days < 1:
        raise ConfigError(f"{name} must be a whole number of days, 1 or more; got {str(value)!r}")
    return days


class Settings:
    """The project's environment variables, typed; an unset or blank variable is ``None``."""

    def __init__(self, environ: Mapping[str, str]):
        self._values = {v.name: (environ.get(v.name) or "").strip() for v in VARIABLES}

    def __repr__(self) -> str:
        # Names only: values may be secrets, and the rest is one `env` away.
        return f"Settings(set={sorted(name for name, value in self._values.items() if value)})"

    def raw(self, variable: Variable) -> str | None:
        value = self._values[variable.name]
        return value or None

    def is_set(self, variable: Variable) -> bool:
        return bool(self._values[variable.name])

    def _path(self, variable: Variable) -> Path | None:
        value = self.raw(variable)
        return Path(value).expanduser() if value else None

    def _secret(self, *variables: Variable) -> Secret | None:
        """The first of ``variables`` that is set (later ones are accepted fallbacks)."""
        for variable in variables:
            value = self.raw(variable)
            if value:
                return Secret(value)
        return None

    @property
    def database_url(self) -> Secret | None:
        return self._secret(DATABASE_URL)

    @property
    def home(self) -> Path | None:
        return self._path(OBSERVATORY_HOME)

    @property
    def salt(self) -> Secret | None:
        return self._secret(PSEUDONYMIZATION_SALT)

    @property
    def import_dir(self) -> Path | None:
        return self._path(OBSERVATORY_IMPORT_DIR)

    @property
    def analysis_dir(self) -> Path | None:
        return self._path(OBSERVATORY_ANALYSIS_DIR)

    @property
    def storage_dir(self) -> Path | None:
        return self._path(OBSERVATORY_STORAGE_DIR)

    @property
    def s3_endpoint(self) -> str | None:
        return self.raw(MINIO_ENDPOINT)

    @property
    def s3_access_key(self) -> Secret | None:
        return self._secret(MINIO_ACCESS_KEY, MINIO_ROOT_USER)

    @property
    def s3_secret_key(self) -> Secret | None:
        return self._secret(MINIO_SECRET_KEY, MINIO_ROOT_PASSWORD)

    @property
    def s3_bucket(self) -> str | None:
        return self.raw(MINIO_BUCKET)

    @property
    def s3_secure(self) -> bool | None:
        value = self.raw(MINIO_SECURE)
        return parse_bool(MINIO_SECURE.name, value) if value else None

    @property
    def s3_public_endpoint(self) -> str | None:
        return self.raw(MINIO_PUBLIC_ENDPOINT)

    @property
    def s3_region(self) -> str | None:
        return self.raw(MINIO_REGION)

    @property
    def ca_file(self) -> str | None:
        return self.raw(SSL_CERT_FILE)

    @property
    def user(self) -> str | None:
        return self.raw(OBSERVATORY_USER)

    @property
    def token(self) -> Secret | None:
        return self._secret(OBSERVATORY_TOKEN)

    @property
    def backup_retention_days(self) -> int:
        value = self.raw(BACKUP_RETENTION_DAYS) or DEFAULT_BACKUP_RETENTION_DAYS
        return parse_days(BACKUP_RETENTION_DAYS.name, value)

    @property
    def content_retention_days(self) -> int:
        value = self.raw(CONTENT_RETENTION_DAYS) or DEFAULT_CONTENT_RETENTION_DAYS
        return parse_days(CONTENT_RETENTION_DAYS.name, value)

    @property
    def pg_bin(self) -> Path | None:
        return self._path(OBSERVATORY_PG_BIN)

    @property
    def dagster_storage_url(self) -> Secret | None:
        return self._secret(DAGSTER_POSTGRES_URL)

    @property
    def designs_dir(self) -> Path | None:
        return self._path(OBSERVATORY_DESIGNS_DIR)

    @property
    def credential_key(self) -> Secret | None:
        return self._secret(OBSERVATORY_CREDENTIAL_KEY)

    @property
    def prices_file(self) -> Path | None:
        return self._path(OBSERVATORY_PRICES_FILE)

    @property
    def portal_secret(self) -> Secret | None:
        return self._secret(OBSERVATORY_PORTAL_SECRET)

    @property
    def portal_url(self) -> str:
        """The portal's public address without a trailing slash; ``observatory portal``'s own
        default address when unset."""
        from urllib.parse import urlsplit

        value = (self.raw(OBSERVATORY_PORTAL_URL) or DEFAULT_PORTAL_URL).strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{OBSERVATORY_PORTAL_URL.name} must be an http:// or https:// address, such as {DEFAULT_PORTAL_URL}"
            )
        return value


def current() -> Settings:
    """The settings as the environment holds them now."""
    return Settings(os.environ)
