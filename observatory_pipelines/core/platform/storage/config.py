"""Which object store to use, from the environment: ``store_from_env`` and the parsing it needs.

The ``MINIO_*`` variables come from ``core.platform.settings`` when a store is made, never at
import; no message holds a secret. Arguments override the environment.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage.base import DEFAULT_BUCKET, ObjectStore
from observatory_pipelines.core.platform.storage.local import LocalObjectStore, default_local_dir
from observatory_pipelines.core.platform.storage.s3 import S3ObjectStore


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


def store_from_env(
    *,
    local_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    bucket: str | None = None,
    secure: bool | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> ObjectStore:
    """The configured store: S3 when an endpoint is given or ``MINIO_ENDPOINT`` is set, else the
    local folder. Arguments override the environment (``core.platform.settings``); the credential
    arguments exist so a Dagster resource can pass what its ``EnvVar`` fields resolved to."""
    current = settings.current()
    if local_dir is not None:
        if endpoint or bucket or secure is not None:
            raise ConfigError("storage: set either a local folder or an S3 endpoint/bucket, not both")
        return LocalObjectStore(local_dir)
    raw_endpoint = endpoint or current.s3_endpoint
    if not raw_endpoint:
        if bucket or secure is not None:
            raise ConfigError("storage: a bucket or secure setting needs an S3 endpoint (set MINIO_ENDPOINT)")
        return LocalObjectStore(default_local_dir())
    host, secure_from_scheme = parse_endpoint(raw_endpoint)
    if secure is None:
        secure = current.s3_secure
    if secure is not None and secure_from_scheme is not None and secure != secure_from_scheme:
        raise ConfigError(
            f"MINIO_ENDPOINT says {'https' if secure_from_scheme else 'http'} but MINIO_SECURE says "
            f"{'true' if secure else 'false'}; make them agree"
        )
    configured_access, configured_secret = current.s3_access_key, current.s3_secret_key
    access_key = access_key or (configured_access.reveal() if configured_access else None)
    secret_key = secret_key or (configured_secret.reveal() if configured_secret else None)
    if not access_key or not secret_key:
        raise ConfigError(
            "S3 storage needs credentials: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY "
            "(or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD)"
        )
    public_host, public_secure = (None, None)
    if current.s3_public_endpoint:
        public_host, public_secure = parse_endpoint(current.s3_public_endpoint, "MINIO_PUBLIC_ENDPOINT")
    return S3ObjectStore(
        public_endpoint=public_host,
        public_secure=public_secure,
        endpoint=host,
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket or current.s3_bucket or DEFAULT_BUCKET,
        region=current.s3_region,
        secure=bool(secure if secure is not None else secure_from_scheme),
        ca_file=current.ca_file,
    )
