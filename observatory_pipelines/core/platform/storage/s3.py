"""The S3 backend: objects in one bucket of an S3 server (MinIO, SeaweedFS, AWS, ...), through the
``minio`` client.

Uploads are multipart and stream, downloads come back as a buffered stream over the HTTP response,
and every client error becomes a one-line ``StorageError`` naming the endpoint but never a secret.
``minio`` is imported only when a store is made, so the local backend works without it loaded.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import BinaryIO, cast

from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage.base import (
    COPY_CHUNK,
    DEFAULT_BUCKET,
    DEFAULT_REGION,
    PART_SIZE,
    CredentialsRefused,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    StoredObject,
    validate_key,
    validate_lifetime,
    validate_metadata,
    validate_prefix,
)

# S3's bucket naming rules; checked here because servers differ in how strictly they apply them.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REFUSED_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class S3ObjectStore(ObjectStore):
    """Objects in one bucket of an S3 server (MinIO, SeaweedFS, AWS, ...), through ``minio``.

    Making the store checks the credentials and creates the bucket when it is missing, so a
    misconfiguration fails at once, in one line, rather than halfway through an export.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str = DEFAULT_BUCKET,
        secure: bool = False,
        region: str | None = None,
        part_size: int = PART_SIZE,
        parallel_uploads: int = 3,
        public_endpoint: str | None = None,
        public_secure: bool | None = None,
        ca_file: str | None = None,
    ):
        import certifi
        import urllib3
        from minio import Minio

        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(
                f"MINIO_BUCKET {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)"
            )
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.part_size = part_size
        self.parallel_uploads = parallel_uploads
        # minio's own pool waits 5 minutes to connect and retries 5 times: an unreachable endpoint
        # would take that long to report. Connecting gets 10 s and two retries; reads keep 5 minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or certifi.where(),
            retries=urllib3.Retry(total=3, connect=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        try:
            self._client = Minio(
                endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http
            )
        except ValueError as exc:
            raise ConfigError(f"MINIO_ENDPOINT {endpoint!r} is not usable: {exc}") from None
        self._ensure_bucket()
        # Links are signed for the host they name. Behind Docker the pipeline reaches S3 as
        # minio:9000 while browsers reach it as, say, localhost:9000: sign those for the public name.
        # Signing is offline when the region is known (MinIO's default unless told otherwise).
        self._link_client = self._client
        if public_endpoint and public_endpoint != endpoint:
            self._link_client = Minio(
                public_endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure if public_secure is None else public_secure,
                region=region or DEFAULT_REGION,
            )

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, secure={self.secure})"

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3 bucket {self.bucket} at {scheme}://{self.endpoint}"

    @contextmanager
    def _translated(self, key: str | None = None) -> Iterator[None]:
        """Turn the client's errors into one-line ``StorageError``s naming the endpoint."""
        from minio.error import InvalidResponseError, S3Error, ServerError
        from urllib3.exceptions import HTTPError as TransportError

        where = f"S3 at {self.endpoint}"
        try:
            yield
        except S3Error as exc:
            if exc.code in _REFUSED_CREDENTIALS:
                raise CredentialsRefused(
                    f"{where} refused the credentials (check MINIO_ACCESS_KEY / MINIO_SECRET_KEY)"
                ) from exc
            if exc.code in ("NoSuchKey", "NoSuchObject") and key is not None:
                raise ObjectNotFound(f"no object {key!r} in {self.describe()}") from exc
            if exc.code == "AccessDenied":
                raise StorageError(
                    f"{where} denied these credentials access to bucket {self.bucket} "
                    "(grant them read/write on it, or set MINIO_BUCKET)"
                ) from exc
            about = f"bucket {self.bucket}" + (f", key {key!r}" if key else "")
            raise StorageError(f"{where} answered {exc.code} for {about}") from exc
        except ServerError as exc:
            raise StorageUnavailable(f"{where} failed with HTTP {exc.status_code}; try again later") from exc
        except InvalidResponseError as exc:
            raise StorageError(f"{where} did not answer as an S3 server does (check MINIO_ENDPOINT)") from exc
        except TransportError as exc:
            raise StorageUnavailable(
                f"cannot reach S3 at {self.endpoint} (is it running? check MINIO_ENDPOINT and MINIO_SECURE)"
            ) from exc

    def _ensure_bucket(self) -> None:
        from minio.error import S3Error

        with self._translated():
            if self._client.bucket_exists(self.bucket):
                return
        with self._translated():
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code == "BucketAlreadyOwnedByYou":
                    return  # Another process created it between our check and our request.
                if exc.code == "AccessDenied":
                    raise StorageError(
                        f"S3 at {self.endpoint} has no bucket {self.bucket} and these credentials may not "
                        "create it (create it, or set MINIO_BUCKET to one that exists)"
                    ) from exc
                raise

    def put_file(self, key, path, content_type="application/octet-stream", metadata=None) -> StoredObject:
        with open(path, "rb") as source:
            return self.put_stream(key, source, os.fstat(source.fileno()).st_size, content_type, metadata)

    def put_stream(self, key, readable, length=-1, content_type="application/octet-stream", metadata=None):
        validate_key(key)
        checked = validate_metadata(metadata)
        try:
            with self._translated(key):
                self._client.put_object(
                    self.bucket,
                    key,
                    readable,
                    length,
                    content_type=content_type,
                    # minio annotates this read-only mapping as an invariant dict of str | list | tuple.
                    metadata=cast(dict[str, str | list[str] | tuple[str]], checked),
                    part_size=self.part_size,
                    num_parallel_uploads=self.parallel_uploads,
                )
        except OSError as exc:
            # minio reports a short stream as an IOError of its own, after aborting the upload.
            if "not enough data" in str(exc):
                raise StorageError(f"the stream for {key!r} ended before {length} bytes") from exc
            raise
        return self.stat(key)

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        with self._translated(key):
            response = self._client.get_object(self.bucket, key)
        return io.BufferedReader(_ResponseBody(response), buffer_size=COPY_CHUNK)

    def stat(self, key: str) -> StoredObject:
        validate_key(key)
        with self._translated(key):
            found = self._client.stat_object(self.bucket, key)
        if found.last_modified is None:
            raise StorageError(f"S3 at {self.endpoint} gave no modification time for {key!r}")
        headers = found.metadata or {}
        user = {
            name.lower().removeprefix("x-amz-meta-"): value
            for name, value in headers.items()
            if name.lower().startswith("x-amz-meta-")
        }
        return StoredObject(
            key=key,
            size=found.size or 0,
            last_modified=found.last_modified,
            etag=(found.etag or "").strip('"') or None,
            content_type=found.content_type,
            metadata=user,
        )

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        validate_prefix(prefix)
        with self._translated():
            for found in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True):
                if found.is_dir:
                    continue
                yield StoredObject(
                    key=found.object_name,
                    size=found.size or 0,
                    last_modified=found.last_modified,
                    etag=(found.etag or "").strip('"') or None,
                )

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._translated(key):
            self._client.remove_object(self.bucket, key)

    def url(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str:
        """A presigned GET link: anyone holding it can download this one object until it expires
        (at most ``MAX_LINK_LIFETIME``). Signed for this store's endpoint, so the endpoint must be
        one the downloader can reach."""
        validate_lifetime(expires)
        self.stat(key)  # A link to nothing would fail only in the researcher's browser.
        with self._translated(key):
            return self._link_client.presigned_get_object(self.bucket, key, expires=expires)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{validate_key(key)}"


class _ResponseBody(io.RawIOBase):
    """An HTTP response body as a raw stream that returns its connection when closed."""

    def __init__(self, response):
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._response.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()
