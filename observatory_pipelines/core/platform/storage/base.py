"""What every object store shares: the ``ObjectStore`` interface, ``StoredObject``, the errors,
the limits, and the checks of keys, prefixes, metadata and link lifetimes.

Both backends (``local.py`` and ``s3.py``) apply these same checks, so a key one accepts the other
accepts too and a caller can move between them without its keys changing meaning. The limits live
here, beside the checks that enforce them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from observatory_pipelines.core.platform.errors import ObservatoryError

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
#: How much one read or write moves when a stream is copied (uploads, downloads, local files).
COPY_CHUNK = 1024 * 1024

# A key segment starts with a letter, digit or underscore (so never "." or "..", nor a dot folder)
# and continues with those or . = + @ - (the "@" lets an owner's email name their exports' folder).
# \w admits Danish and other letters; NFC is required below so that "ø" typed on two machines is
# one key, not two.
_SEGMENT = re.compile(r"\w[\w.=+@-]*")
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


class StorageError(ObservatoryError):
    """The object store failed or refused an operation."""


class ObjectNotFound(StorageError):
    """No object has this key."""


class StorageUnavailable(StorageError):
    """The object store cannot be reached."""

    retryable = True  # an outage passes; a retry of the run may well succeed


class CredentialsRefused(StorageError):
    """The S3 server refused the access key or secret."""


class Readable(Protocol):
    """What ``put_stream`` reads from: any object with ``read(size) -> bytes``, a file or not."""

    def read(self, size: int = -1, /) -> bytes: ...


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


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
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


def validate_lifetime(expires: timedelta) -> timedelta:
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
        readable: Readable,
        length: int = -1,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store what ``readable`` yields (exactly ``length`` bytes, or until EOF when -1)."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A binary stream of the object's bytes; close it when done."""

    def get_to_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Write the object to ``path`` (atomically: the file appears complete or not at all)."""
        # The same for every backend: only ``open`` differs.
        destination = Path(path)
        with self.open(key) as source:
            write_atomically(destination, source)
        return destination

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


# Downloads to a local file go this way (``get_to_file``), and the local store writes its metadata
# sidecars with it too.
def write_atomically(destination: Path, content: bytes | BinaryIO) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=destination.parent, prefix=f".{destination.name}.", delete=False)
    try:
        with handle:
            if isinstance(content, bytes):
                handle.write(content)
            else:
                shutil.copyfileobj(content, handle, COPY_CHUNK)
        os.replace(handle.name, destination)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
