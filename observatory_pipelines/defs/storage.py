"""The object store as a Dagster resource: where exports go and where researchers fetch them."""

from typing import Optional

import dagster as dg
from pydantic import Field

from ..core import storage


class StorageResource(dg.ConfigurableResource):
    """S3 / MinIO when ``MINIO_ENDPOINT`` (or ``endpoint``) is set, else a local folder.

    The fields only override non-secret settings. Credentials have no field on purpose: they are
    read from ``MINIO_ACCESS_KEY`` / ``MINIO_SECRET_KEY`` (or ``MINIO_ROOT_USER`` /
    ``MINIO_ROOT_PASSWORD``) when a run opens the store, so they never appear in run config,
    the UI, or asset metadata.
    """

    local_dir: Optional[str] = Field(
        default=None,
        description="Keep objects in this folder (default: OBSERVATORY_STORAGE_DIR, else .observatory/objects).",
    )
    endpoint: Optional[str] = Field(
        default=None, description="S3 endpoint, host:port or http(s)://host:port (default: MINIO_ENDPOINT)."
    )
    bucket: Optional[str] = Field(default=None, description="S3 bucket (default: MINIO_BUCKET, else 'observatory').")
    secure: Optional[bool] = Field(
        default=None, description="Use HTTPS for S3 (default: MINIO_SECURE, else the endpoint's scheme)."
    )

    def store(self) -> storage.ObjectStore:
        return storage.store_from_env(
            local_dir=self.local_dir, endpoint=self.endpoint, bucket=self.bucket, secure=self.secure
        )
