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
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from observatory_pipelines.core.platform.errors import ConfigError, ObservatoryError
from observatory_pipelines.core.platform.paths import state_dir

DEFAULT_BUCKET = "observatory"
DEFAULT_REGION = "us-east-1"
#: S3 multipart part size: 10,000 parts of 16 MiB allow objects up to about 156 GiB. An upload holds
#: about (parallel uploads + 2) parts in memory, whatever the object's size.
PART_SIZE = 16 * 1024 * 1024
#: A presigned link is a bearer credential: keep its life short.
MAX_LINK_LIFETIME = timedelta(hours=1)
MAX_KEY_BYTES = 1024
#: Most filesystems refuse longer names; refusing them for S3 too keeps the backends interchangeable.
MAX_SEGMENT_BYTES = 255
#: S3's limit on all user metadata of one object.
MAX_METADATA_BYTES = 2048
_COPY_CHUNK = 1024 * 1024

# A key segment starts with a letter, digit or underscore (so never "." or "..", nor a dot folder)
# and continues with those or . = + @ - (the "@" lets an owner's email name their exports' folder).
# \w admits Danish and other letters; NFC is required below so that "ø" typed on two machines is
# one key, not two.
_SEGMENT = re.compile(r"\w[\w.=+@-]*")
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# S3's bucket naming rules; checked here because servers differ in how strictly they apply them.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StorageError(ObservatoryError):
    """The object store failed or refused an operation."""


class ObjectNotFound(StorageError):
    """No object has this key."""


class StorageUnavailable(StorageError):
    """The object store cannot be reached."""

    retryable = True  # an outage passes; a retry of the run may well succeed


class CredentialsRefused(StorageError):
    """The S3 server refused the access key or secret."""


@dataclass(frozen=True)
class StoredObject:
    """One stored object.

    ``etag`` is S3's ETag (an MD5 only for single-part uploads, so not a content hash) and ``None``
    on the local store. ``content_type`` and ``metadata`` come from ``stat`` and ``put_*``;
    listings leave them ``None`` because S3 listings do not carry them.
    """

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] | None = None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key; raise ``ValueError`` saying why it is not."""
    if not isinstance(key, str) or not key:
        raise ValueError("an object key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:60]!r}...")
    if not unicodedata.is_normalized("NFC", key):
        raise ValueError(f"object key {key!r} is not in Unicode NFC form")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} must be relative (no leading '/')")
    for segment in key.split("/"):
        if not segment:
            raise ValueError(f"object key {key!r} has an empty segment ('//' or a trailing '/')")
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"object key {key!r} has segment {segment!r}: use letters, digits and _ . = + @ - "
                "(not starting with . or -)"
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError(f"object key {key!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or the start of a valid key (it may end inside a segment or at '/')."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata that survives S3's HTTP headers unchanged on both backends."""
    checked = dict(metadata or {})
    for name, value in checked.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            raise ValueError(f"metadata name {name!r}: use lowercase letters, digits and '-'")
        if not isinstance(value, str) or not _PRINTABLE_ASCII.fullmatch(value):
            raise ValueError(f"metadata {name!r}: the value must be printable ASCII text")
    if sum(len(name) + len(value) for name, value in checked.items()) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata exceeds {MAX_METADATA_BYTES} bytes")
    return checked


def _validate_lifetime(expires: timedelta) -> timedelta:
    if not timedelta(seconds=1) <= expires <= MAX_LINK_LIFETIME:
        raise ValueError(f"a download link lasts from 1 second to {MAX_LINK_LIFETIME} (asked for {expires})")
    return expires


class ObjectStore(ABC):
    """Files by key. Keys look like relative paths (``exports/<owner>/<design>/<month>/x.csv``)."""

    @abstractmethod
    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store the file at ``path`` under ``key`` (replacing any object there), streaming from disk."""

    @abstractmethod
    def put_stream(
        self,
        key: str,
        readable: BinaryIO,
        length: int = -1,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store what ``readable`` yields (exactly ``length`` bytes, or until EOF when -1)."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A binary stream of the object's bytes; close it when done."""

    @abstractmethod
    def get_to_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Write the object to ``path`` (atomically: the file appears complete or not at all)."""

    @abstractmethod
    def stat(self, key: str) -> StoredObject:
        """Size, date, content type and metadata; ``ObjectNotFound`` when absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix`` (at any depth), in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    @abstractmethod
    def url(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str:
        """A link a person can download the object with (see each backend for what it grants)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where the object lives (``s3://bucket/key`` or ``file:///...``); grants nothing."""

    @abstractmethod
    def describe(self) -> str:
        """Where this store keeps objects, for logs and metadata (never a secret)."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True


# --- local folder ------------------------------------------------------------------------------

_META_DIR = ".meta"
_TMP_DIR = ".tmp"


def default_local_dir() -> Path:
    configured = os.environ.get("OBSERVATORY_STORAGE_DIR", "").strip()
    return Path(configured).expanduser() if configured else state_dir() / "objects"


class LocalObjectStore(ObjectStore):
    """Objects as plain files under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root).expanduser() if root is not None else default_local_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # Keys cannot climb out, but a symlink placed inside the folder could: resolve and check.
        if not path.resolve().is_relative_to(self.root):
            raise StorageError(f"object key {key!r} leads outside {self.root} (through a symlink); refused")
        return path

    def _meta_path(self, key: str) -> Path:
        # Flat and hashed: a nested ".meta/<key>.json" would clash for keys "a" and "a.json/b".
        return self.root / _META_DIR / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    @contextmanager
    def _replacing(self, key: str, content_type: str, metadata: Mapping[str, str] | None) -> Iterator[BinaryIO]:
        """A temporary file that becomes object ``key`` when the block ends without error."""
        target = self._path(key)
        checked = _validate_metadata(metadata)
        tmp_dir = self.root / _TMP_DIR
        tmp_dir.mkdir(exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=tmp_dir, delete=False)
        try:
            with handle:
                yield handle
            sidecar = {"key": key, "content_type": content_type, "metadata": checked}
            _write_atomically(self._meta_path(key), json.dumps(sidecar).encode())
            _move_into_place(Path(handle.name), target, key)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise

    def put_file(self, key, path, content_type="application/octet-stream", metadata=None) -> StoredObject:
        with open(path, "rb") as source, self._replacing(key, content_type, metadata) as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)
        return self.stat(key)

    def put_stream(self, key, readable, length=-1, content_type="application/octet-stream", metadata=None):
        with self._replacing(key, content_type, metadata) as target:
            copied = _copy_stream(readable, target, length)
            if length >= 0 and copied != length:
                raise StorageError(f"the stream for {key!r} ended after {copied} of {length} bytes")
        return self.stat(key)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._file(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.describe()}") from None

    def get_to_file(self, key: str, path) -> Path:
        destination = Path(path)
        with self.open(key) as source:
            _write_atomically(destination, source)
        return destination

    def _file(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.describe()}")
        return path

    def stat(self, key: str) -> StoredObject:
        info = self._file(key).stat()
        try:
            sidecar = json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            # A file copied into the folder by hand: an object without metadata.
            sidecar = {"content_type": None, "metadata": {}}
        return StoredObject(
            key=key,
            size=info.st_size,
            last_modified=datetime.fromtimestamp(info.st_mtime, timezone.utc),
            content_type=sidecar["content_type"],
            metadata=sidecar["metadata"],
        )

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        validate_prefix(prefix)
        folder = self.root / prefix.rpartition("/")[0]
        if not folder.resolve().is_relative_to(self.root):
            return  # A symlinked folder leading out holds no objects of ours.
        found = [entry for entry in _walk(folder, self.root) if entry.key.startswith(prefix)]
        # S3 lists in UTF-8 byte order; so does this, so both backends page alike.
        yield from sorted(found, key=lambda stored: stored.key.encode("utf-8"))

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            return  # A "folder" of other objects is not an object; S3 would ignore it too.
        path.unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)
        _remove_empty_folders(path.parent, stop_at=self.root)

    def url(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str:
        """A ``file://`` URI of the object. It is not a secret link and never expires: it works only
        for someone who can already read this folder. ``expires`` is checked as on S3."""
        _validate_lifetime(expires)
        return self._file(key).as_uri()

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


def _make_parent(path: Path, key: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StorageError(f"cannot store {key!r}: a part of its path is itself an object") from None


def _move_into_place(source: Path, target: Path, key: str) -> None:
    # A second try: a concurrent delete may remove the emptied parent between mkdir and rename.
    for attempt in range(2):
        _make_parent(target, key)
        try:
            os.replace(source, target)
            return
        except IsADirectoryError:
            raise StorageError(f"cannot store {key!r}: other objects are stored below it") from None
        except FileNotFoundError:
            if attempt:
                raise


def _write_atomically(destination: Path, content: bytes | BinaryIO) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=destination.parent, prefix=f".{destination.name}.", delete=False)
    try:
        with handle:
            if isinstance(content, bytes):
                handle.write(content)
            else:
                shutil.copyfileobj(content, handle, _COPY_CHUNK)
        os.replace(handle.name, destination)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _copy_stream(source: BinaryIO, target: BinaryIO, length: int) -> int:
    copied = 0
    while length < 0 or copied < length:
        want = _COPY_CHUNK if length < 0 else min(_COPY_CHUNK, length - copied)
        chunk = source.read(want)
        if not chunk:
            break
        target.write(chunk)
        copied += len(chunk)
    return copied


def _walk(folder: Path, root: Path) -> Iterator[StoredObject]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        # Dot entries are the store's own (.meta, .tmp) or not ours; symlinks are never followed.
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.is_dir():
            yield from _walk(Path(entry.path), root)
        elif entry.is_file():
            key = Path(entry.path).relative_to(root).as_posix()
            try:
                validate_key(key)
            except ValueError:
                continue  # Put there by hand under a name no store could write: not an object.
            info = entry.stat()
            modified = datetime.fromtimestamp(info.st_mtime, timezone.utc)
            yield StoredObject(key=key, size=info.st_size, last_modified=modified)


def _remove_empty_folders(folder: Path, stop_at: Path) -> None:
    while folder != stop_at and folder.is_relative_to(stop_at):
        try:
            folder.rmdir()
        except OSError:
            return  # Not empty, or just removed by a concurrent delete: either way, stop here.
        folder = folder.parent


# --- S3 ----------------------------------------------------------------------------------------

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
    ):
        import certifi
        import urllib3
        from minio import Minio

        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(
                f"MINIO_BUCKET {bucket!r} is not a valid bucket name "
                "(3-63 lowercase letters, digits, dots and hyphens)"
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
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
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
                public_endpoint, access_key=access_key, secret_key=secret_key,
                secure=secure if public_secure is None else public_secure, region=region or DEFAULT_REGION,
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
        checked = _validate_metadata(metadata)
        try:
            with self._translated(key):
                self._client.put_object(
                    self.bucket,
                    key,
                    readable,
                    length,
                    content_type=content_type,
                    metadata=checked,
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
        return io.BufferedReader(_ResponseBody(response), buffer_size=_COPY_CHUNK)

    def get_to_file(self, key: str, path) -> Path:
        destination = Path(path)
        with self.open(key) as source:
            _write_atomically(destination, source)
        return destination

    def stat(self, key: str) -> StoredObject:
        validate_key(key)
        with self._translated(key):
            found = self._client.stat_object(self.bucket, key)
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
        _validate_lifetime(expires)
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


# --- configuration -----------------------------------------------------------------------------

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
