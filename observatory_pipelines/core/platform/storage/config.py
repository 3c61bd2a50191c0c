"""Which object store to use, from the environment: ``store_from_env`` and the parsing it needs.

This is the one place that reads the ``MINIO_*`` variables; it reads them when a store is made,
never at import, and puts no secret in a message. Arguments override the environment, except the
credentials, which only the environment provides.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage.base import DEFAULT_BUCKET, ObjectStore
from observatory_pipelines.core.platform.storage.local import LocalObjectStore, default_local_dir
from observatory_pipelines.core.platform.storage.s3 import S3ObjectStore

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (or 1/0, yes/no); got {value!r}")


def parse_endpoint(value: str, name: str = "MINIO_ENDPOINT") -> tuple[str, bool | None]:
    """``(host[:port], secure)`` from ``host:port`` or a URL; ``secure`` is ``None`` without a scheme."""
    value = value.strip()
    if "://" not in value:
        if "/" in value or "@" in value:
            raise ConfigError(f"{name} must be host:port or http(s)://host:port; got {value!r}")
        return value, None
    parts = urlsplit(value)
    if parts.username or parts.password:
        # Never echo the value: it holds a credential.
        raise ConfigError(f"{name} must not contain credentials; set MINIO_ACCESS_KEY / MINIO_SECRET_KEY")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be host:port or http(s)://host:port; got {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name} cannot have a path (S3 servers live at the root); got {value!r}")
    return parts.netloc, parts.scheme.lower() == "https"


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def store_from_env(
    *,
    local_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    bucket: str | None = None,
    secure: bool | None = None,
) -> ObjectStore:
    """The configured store: S3 when an endpoint is given or ``MINIO_ENDPOINT`` is set, else the
    local folder. Arguments override the environment, except credentials, which only the
    environment provides (so they never sit in configuration)."""
    if local_dir is not None:
        if endpoint or bucket or secure is not None:
            raise ConfigError("storage: set either a local folder or an S3 endpoint/bucket, not both")
        return LocalObjectStore(local_dir)
    raw_endpoint = endpoint or _env("MINIO_ENDPOINT")
    if not raw_endpoint:
        if bucket or secure is not None:
            raise ConfigError("storage: a bucket or secure setting needs an S3 endpoint (set MINIO_ENDPOINT)")
        return LocalObjectStore(default_local_dir())
    host, secure_from_scheme = parse_endpoint(raw_endpoint)
    if secure is None and _env("MINIO_SECURE"):
        secure = parse_bool("MINIO_SECURE", _env("MINIO_SECURE"))
    if secure is not None and secure_from_scheme is not None and secure != secure_from_scheme:
        raise ConfigError(
            f"MINIO_ENDPOINT says {'https' if secure_from_scheme else 'http'} but MINIO_SECURE says "
            f"{'true' if secure else 'false'}; make them agree"
        )
    access_key = _env("MINIO_ACCESS_KEY") or _env("MINIO_ROOT_USER")
    secret_key = _env("MINIO_SECRET_KEY") or _env("MINIO_ROOT_PASSWORD")
    if not access_key or not secret_key:
        raise ConfigError(
            "S3 storage needs credentials: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY "
            "(or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD)"
        )
    public_host, public_secure = (None, None)
    if _env("MINIO_PUBLIC_ENDPOINT"):
        public_host, public_secure = parse_endpoint(_env("MINIO_PUBLIC_ENDPOINT"), "MINIO_PUBLIC_ENDPOINT")
    return S3ObjectStore(
        public_endpoint=public_host,
        public_secure=public_secure,
        endpoint=host,
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket or _env("MINIO_BUCKET") or DEFAULT_BUCKET,
        region=_env("MINIO_REGION") or None,
        secure=bool(secure if secure is not None else secure_from_scheme),
    )
