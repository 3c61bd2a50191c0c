"""The zero-setup backend: objects as plain files in a local folder.

Each object is a file at its key, so people can open exports directly; metadata lives in ``.meta/``
and writes go through ``.tmp/``, neither of which any key can reach (see ``base.validate_key``).
``default_local_dir`` is ``OBSERVATORY_STORAGE_DIR``, else ``<state dir>/objects``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, BinaryIO

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.paths import state_dir
from observatory_pipelines.core.platform.storage.base import (
    COPY_CHUNK,
    ObjectNotFound,
    ObjectStore,
    Readable,
    StorageError,
    StoredObject,
    validate_key,
    validate_lifetime,
    validate_metadata,
    validate_prefix,
    write_atomically,
)

_META_DIR = ".meta"
_TMP_DIR = ".tmp"


def default_local_dir() -> Path:
    return settings.current().storage_dir or state_dir() / "objects"


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
    def _replacing(self, key: str, content_type: str, metadata: Mapping[str, str] | None) -> Iterator[IO[bytes]]:
        """A temporary file that becomes object ``key`` when the block ends without error."""
        target = self._path(key)
        checked = validate_metadata(metadata)
        tmp_dir = self.root / _TMP_DIR
        tmp_dir.mkdir(exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=tmp_dir, delete=False)
        try:
            with handle:
                yield handle
            sidecar = {"key": key, "content_type": content_type, "metadata": checked}
            write_atomically(self._meta_path(key), json.dumps(sidecar).encode())
            _move_into_place(Path(handle.name), target, key)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise

    def put_file(self, key, path, content_type="application/octet-stream", metadata=None) -> StoredObject:
        with open(path, "rb") as source, self._replacing(key, content_type, metadata) as target:
            shutil.copyfileobj(source, target, COPY_CHUNK)
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
        validate_lifetime(expires)
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


def _copy_stream(source: Readable, target: IO[bytes], length: int) -> int:
    copied = 0
    while length < 0 or copied < length:
        want = COPY_CHUNK if length < 0 else min(COPY_CHUNK, length - copied)
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
