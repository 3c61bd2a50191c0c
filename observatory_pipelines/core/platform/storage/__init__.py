"""Object storage for files people download (exports): S3 / MinIO, or a local folder.

Two backends behind one interface, ``ObjectStore``:
- ``S3ObjectStore``: any S3 server through the ``minio`` client, selected when ``MINIO_ENDPOINT``
  is set. Credentials are ``MINIO_ACCESS_KEY`` / ``MINIO_SECRET_KEY`` (falling back to
  ``MINIO_ROOT_USER`` / ``MINIO_ROOT_PASSWORD``, as the backup scripts of the original system did);
  there is no default, because a well-known default password is a door left open. ``MINIO_BUCKET``
  (default ``observatory``) is shared with backups, which keep to their own prefix (``postgres/``)
  while exports keep to ``exports/``. ``MINIO_SECURE`` selects HTTPS; a URL endpoint
  (``https://host:port``) implies it.
- ``LocalObjectStore``: the zero-setup default, a folder (``OBSERVATORY_STORAGE_DIR`` or
  ``<state dir>/objects``) where each object is a plain file at its key, so people can open
  exports directly. Metadata lives in ``.meta/`` and writes go through ``.tmp/``; no key segment
  can start with a dot, so neither folder can be reached or listed as an object.

Uploads and downloads stream: a file or stream is never held whole in memory (S3 uploads are
multipart, in parts of ``PART_SIZE``). Every key passes one check, ``validate_key``, whichever
backend stores it, so both accept the same keys and the local store can never leave its folder.

Secrets are read from the environment when a store is made, never at import, and appear in no
message, ``repr`` or URI.

The code is split by job: ``base`` (the interface, errors, limits and checks), ``local`` and ``s3``
(the two backends), ``config`` (choosing a store from the environment). Callers import from this
package, which re-exports every public name, so they need not know the split.
"""

from observatory_pipelines.core.platform.storage.base import (
    DEFAULT_BUCKET,
    DEFAULT_REGION,
    MAX_KEY_BYTES,
    MAX_LINK_LIFETIME,
    MAX_METADATA_BYTES,
    MAX_SEGMENT_BYTES,
    PART_SIZE,
    CredentialsRefused,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    StoredObject,
    validate_key,
    validate_prefix,
)
from observatory_pipelines.core.platform.storage.config import parse_endpoint, store_from_env
from observatory_pipelines.core.platform.storage.local import LocalObjectStore, default_local_dir
from observatory_pipelines.core.platform.storage.s3 import S3ObjectStore

__all__ = [
    "DEFAULT_BUCKET",
    "DEFAULT_REGION",
    "MAX_KEY_BYTES",
    "MAX_LINK_LIFETIME",
    "MAX_METADATA_BYTES",
    "MAX_SEGMENT_BYTES",
    "PART_SIZE",
    "CredentialsRefused",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "default_local_dir",
    "parse_endpoint",
    "store_from_env",
    "validate_key",
    "validate_prefix",
]
