"""Database backups to object storage and verified restores, on real servers (PostgreSQL 15 and 18)
and real stores (a local folder and an S3 server)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.maintenance import backup, partitions
from observatory_pipelines.core.maintenance.backup import BackupCorrupted, BackupError, PgToolMissing
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.embedded import bin_dir
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage import LocalObjectStore, StorageError
from tests.factories import (
    PASSWORD,
    cli_environment,
    create_database,
    drop_database,
    make_design,
    observatory,
    one_line_error,
    read_object,
    record,
    with_password,
)

UTC = timezone.utc
NIGHT = datetime(2026, 5, 15, 2, 0, 7, tzinfo=UTC)
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/observatory"
COLLECTED = datetime(2026, 5, 14, 6, tzinfo=UTC)


# No backup, storage or database setting from the machine leaks into a test.
pytestmark = pytest.mark.usefixtures("isolated_settings")


def post(design, platform_id: str, published: datetime, text: str, author: str, terms=()) -> tuple:
    """A record with Danish letters in its text, its author's name and its metadata."""
    return record(
        design,
        platform_id,
        published,
        text=text,
        author=author,
        display_name=author.title(),
        terms=terms,
        url=f"https://x.example.dk/{platform_id}",
        likes=3,
        shares=1,
        comments=0,
        metadata={"kilde": "Ærø Avis", "note": "blå"},
        collected=COLLECTED,
    )


@pytest.fixture
def corpus(engine):
    """Content in four monthly partitions and in the default partition, with Danish text."""
    partitions.ensure_partitions(engine, first_month="2026-05", months_ahead=0, now=NIGHT)
    design = make_design(engine, terms=("klima", "grøn omstilling", "vindmøller"))

    def at(month: int, day: int) -> datetime:
        return datetime(2026, month, day, 12, 30, tzinfo=UTC)

    ingest.write_batch(
        engine,
        [
            post(design, "f1", at(2, 3), "Vindmøller ved Ærø giver strøm til øen", "søren", ["vindmøller"]),
            post(design, "m1", at(3, 1), "Grøn omstilling på Fyn: æbler, øl og åer", "åse", ["grøn omstilling"]),
            post(design, "m2", at(3, 31), "Klima-debat i Aarhus 'med citat' og \\ backslash", "bo", ["klima"]),
            post(design, "a1", at(4, 15), "Tab\tog\nlinjeskift i klimateksten", "søren", ["klima"]),
            post(design, "y1", at(5, 2), "Maj: havvind ud for Thyborøn", "åse", ["klima", "vindmøller"]),
            # No partition for December 2025: it waits in the default partition.
            post(design, "d1", datetime(2025, 12, 24, 18, tzinfo=UTC), "Glædelig jul fra Læsø", "bo", []),
        ],
    )
    return design


def snapshot(url: str) -> dict:
    """Every table's row count and a checksum of its rows, each partition on its own, plus the
    partition bounds and index definitions. Rows are ordered by their text, which is total for
    any table, so tables without a primary key compare too."""
    with database.connect(url) as conn:
        tables = (
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"
                )
            )
            .scalars()
            .all()
        )
        quote = conn.dialect.identifier_preparer.quote
        rows = {
            table: tuple(
                conn.execute(
                    sa.text(
                        "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                        f"FROM {quote(table)} t"
                    )
                ).one()
            )
            for table in tables
        }
        bounds = conn.execute(
            sa.text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relispartition ORDER BY 1"
            )
        ).all()
        indexes = (
            conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"))
            .scalars()
            .all()
        )
    return {"rows": rows, "partitions": bounds, "indexes": indexes}


def replace(store, key: str, content: bytes) -> None:
    """Overwrite an object, keeping its metadata (as a damaged copy would)."""
    old = store.stat(key)
    store.put_stream(key, io.BytesIO(content), len(content), content_type=old.content_type, metadata=old.metadata)


# --- round trip ------------------------------------------------------------------------------------


def test_backup_restores_into_an_empty_database_identically(db_url, engine, corpus, store, empty_db_url):
    result = backup.run_backup(db_url, store, now=NIGHT)

    assert result.key == "postgres/2026/05/15/observatory_20260515_020007.sql.gz"
    dump = read_object(store, result.key)
    assert (result.size, result.sha256) == (len(dump), hashlib.sha256(dump).hexdigest())
    assert b"Vindm\xc3\xb8ller ved \xc3\x86r\xc3\xb8" in gzip.decompress(dump)
    # The checksum object is a sha256sum line, so a downloaded pair checks with `sha256sum -c`.
    assert (
        read_object(store, result.key + ".sha256").decode() == f"{result.sha256}  observatory_20260515_020007.sql.gz\n"
    )
    version = backup.server_version(db_url)[1]
    assert result.server_version == version and store.stat(result.key).metadata["server-version"] == version
    assert [(b.key, b.sha256, b.size) for b in backup.list_backups(store)] == [(result.key, result.sha256, result.size)]

    seen = []
    info = backup.restore_backup(store, result.key, empty_db_url, progress=lambda *args: seen.append(args))

    source = snapshot(db_url)
    assert snapshot(empty_db_url) == source
    content = {t: n for t, (n, _) in source["rows"].items() if t.startswith("content_records_")}
    assert content == {
        "content_records_2026_02": 1,
        "content_records_2026_03": 2,
        "content_records_2026_04": 1,
        "content_records_2026_05": 1,
        "content_records_default": 1,
    }
    assert info.server_version == version and seen[-1] == (result.size, result.size)


def test_a_newer_server_takes_an_older_servers_backup_and_an_older_one_is_refused(_embedded_server_url, local_store):
    """The version rule across the two test servers: 15 → 18 loads, 18 → 15 is refused untouched."""
    external = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not external:
        pytest.skip("TEST_DATABASE_URL is unset: no second server version to restore across")
    old_server, new_server = database.with_database(external, "postgres"), _embedded_server_url
    created = []
    try:
        for server in (old_server, new_server):
            created.append(create_database(server))
            with database.connect(created[-1]) as conn:
                conn.execute(sa.text("CREATE TABLE hilsner (id int PRIMARY KEY, tekst text NOT NULL)"))
                conn.execute(sa.text("INSERT INTO hilsner VALUES (1, :t)"), {"t": f"Hej fra {server[:10]} i Århus"})
        from_old = backup.run_backup(created[0], local_store, now=NIGHT).key
        from_new = backup.run_backup(created[1], local_store, now=NIGHT + timedelta(seconds=1)).key
        created.append(create_database(new_server))
        created.append(create_database(old_server))

        backup.restore_backup(local_store, from_old, created[2])
        assert snapshot(created[2]) == snapshot(created[0])
        with pytest.raises(BackupError, match=r"only into its own major version or a newer one") as err:
            backup.restore_backup(local_store, from_new, created[3])
        assert "restore into a PostgreSQL 18" in str(err.value)
        assert backup.user_tables(created[3]) == []
    finally:
        for url in created:
            drop_database(url)


# --- damaged backups ------------------------------------------------------------------------------


def test_damaged_backups_are_refused_before_the_target_is_touched(db_url, corpus, store):
    key = backup.run_backup(db_url, store, now=NIGHT).key
    good, checksum = read_object(store, key), read_object(store, key + ".sha256")
    half = good[: len(good) // 2]

    def refused(*fragments):
        # The target cannot even be reached: getting this error proves nothing connected to it.
        with pytest.raises(BackupCorrupted) as err:
            backup.restore_backup(store, key, UNREACHABLE)
        message = str(err.value)
        assert "\n" not in message and "observatory restore --list" in message
        for fragment in fragments:
            assert fragment in message
        with pytest.raises(BackupCorrupted):
            backup.verify_backup(store, key)

    replace(store, key, half)
    refused("is truncated", f"{len(half)} bytes stored, {len(good)} when it was made")

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    replace(store, key, bytes(flipped))
    refused("is corrupted", "SHA-256")

    # A checksum object rewritten to match the half: only the gzip stream shows it is cut short.
    replace(store, key, half)
    store.put_stream(
        key + ".sha256",
        io.BytesIO(f"{hashlib.sha256(half).hexdigest()}  x\n".encode()),
        -1,
        metadata={"size": str(len(half))},
    )
    refused("gzip stream ends early")

    # A complete gzip file of a dump that stopped early: pg_dump's closing line is missing.
    cut = gzip.compress(gzip.decompress(good)[:-300])
    replace(store, key, cut)
    store.put_stream(
        key + ".sha256",
        io.BytesIO(f"{hashlib.sha256(cut).hexdigest()}  x\n".encode()),
        -1,
        metadata={"size": str(len(cut))},
    )
    refused("closing line is missing")

    replace(store, key, good)
    store.put_stream(key + ".sha256", io.BytesIO(checksum), -1, metadata={"size": str(len(good))})
    assert backup.verify_backup(store, key).sha256 == hashlib.sha256(good).hexdigest()

    store.delete(key + ".sha256")
    refused("has no checksum object", "never finished")
    assert not backup.list_backups(store)[0].complete


def test_keys_that_are_not_backups_are_refused(local_store):
    with pytest.raises(BackupError, match="is not a backup key"):
        backup.verify_backup(local_store, "exports/forsker/klimadebat/2026-03/content.csv")
    with pytest.raises(BackupError, match="no backup postgres/2026/05/15/observatory_20260515_020007.sql.gz"):
        backup.verify_backup(local_store, "postgres/2026/05/15/observatory_20260515_020007.sql.gz")


# --- restoring over data --------------------------------------------------------------------------


def test_restoring_over_a_database_with_tables_needs_force(db_url, engine, corpus, local_store):
    key = backup.run_backup(db_url, local_store, now=NIGHT).key
    backed_up = snapshot(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM content_records WHERE platform_id = :p"), {"p": "m1"})
        conn.execute(sa.text("UPDATE users SET display_name = :n"), {"n": "Ændret Åge"})
    engine.dispose()
    changed = snapshot(db_url)

    with pytest.raises(BackupError, match="is not empty") as err:
        backup.restore_backup(local_store, key, db_url)
    assert "--force" in str(err.value) and "(it has public.actor" in str(err.value)
    assert snapshot(db_url) == changed

    backup.restore_backup(local_store, key, db_url, force=True)
    assert snapshot(db_url) == backed_up


class DamagedAfterVerifying(LocalObjectStore):
    """A store whose dump changes between the verification and the load (a concurrent overwrite)."""

    dump_reads = 0

    def open(self, key):
        handle = super().open(key)
        if not key.endswith(".sql.gz"):
            return handle
        self.dump_reads += 1
        if self.dump_reads == 1:
            return handle
        with handle:
            content = bytearray(handle.read())
        # A byte of the gzip trailer's CRC: all the SQL still decompresses and reaches psql,
        # and only the end of the stream shows the damage.
        content[-6] ^= 0x01
        return io.BytesIO(bytes(content))


def test_a_backup_damaged_during_the_load_leaves_the_target_as_it_was(db_url, engine, corpus, tmp_path):
    store = DamagedAfterVerifying(tmp_path / "objects")
    key = backup.run_backup(db_url, store, now=NIGHT).key
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM content_records WHERE platform_id = :p"), {"p": "m1"})
    engine.dispose()
    before = snapshot(db_url)

    with pytest.raises(BackupCorrupted, match="is corrupted"):
        backup.restore_backup(store, key, db_url, force=True)

    assert store.dump_reads == 2
    assert snapshot(db_url) == before


# --- retention -------------------------------------------------------------------------------------


def test_retention_prunes_old_backups_but_never_the_newest(db_url, local_store):
    first = NIGHT - timedelta(days=35)
    keys = [
        backup.run_backup(db_url, local_store, now=first + timedelta(days=d), retention_days=30).key for d in (0, 10)
    ]
    latest = backup.run_backup(db_url, local_store, now=NIGHT, retention_days=30)

    # 35 days on, only the first backup is past 30 days: it goes with its checksum.
    assert sorted(latest.pruned) == [keys[0], keys[0] + ".sha256"] and not latest.warnings
    assert [b.key for b in backup.list_backups(local_store)] == [latest.key, keys[1]]

    # A year on, everything is past the retention, but the newest backup stays. An object under
    # postgres/ that is not ours is aged by its modification date.
    local_store.put_stream("postgres/gammel/handlavet.sql.gz", io.BytesIO(b"x"), 1)
    pruned = backup.prune_backups(local_store, retention_days=1, now=datetime.now(UTC) + timedelta(days=365))
    assert sorted(pruned.pruned) == sorted([keys[1], keys[1] + ".sha256", "postgres/gammel/handlavet.sql.gz"])
    assert [b.key for b in backup.list_backups(local_store)] == [latest.key]
    assert backup.verify_backup(local_store, latest.key).sha256 == latest.sha256


def test_dry_run_shows_the_dump_and_the_pruning_and_changes_nothing(db_url, local_store):
    old = backup.run_backup(db_url, local_store, now=NIGHT - timedelta(days=40)).key
    before = sorted(obj.key for obj in local_store.list())

    result = backup.run_backup(db_url, local_store, now=NIGHT, dry_run=True)

    assert result.dry_run and result.size is None and result.sha256 is None
    assert result.key == "postgres/2026/05/15/observatory_20260515_020007.sql.gz"
    # What would be pruned once the new backup exists: the old one is no longer the newest.
    assert sorted(result.pruned) == [old, old + ".sha256"]
    assert sorted(obj.key for obj in local_store.list()) == before


class RefusingDeletes(LocalObjectStore):
    def delete(self, key):
        raise StorageError(f"S3 at minio:9000 answered AccessDenied for key {key!r}")


def test_a_pruning_failure_is_a_warning_and_the_backup_stands(db_url, tmp_path):
    old = backup.run_backup(db_url, LocalObjectStore(tmp_path / "objects"), now=NIGHT - timedelta(days=40)).key
    lines = []

    result = backup.run_backup(db_url, RefusingDeletes(tmp_path / "objects"), now=NIGHT, log=lines.append)

    assert result.pruned == [] and len(result.warnings) == 2
    assert all(w.startswith(f"could not prune {old}") and "AccessDenied" in w for w in result.warnings)
    assert sum(line.startswith("warning: could not prune") for line in lines) == 2
    store = LocalObjectStore(tmp_path / "objects")
    assert backup.verify_backup(store, result.key).sha256 == result.sha256


@pytest.mark.parametrize("value", ["tredive", "0", "-3", "1.5", " "])
def test_a_bad_retention_setting_is_one_line(monkeypatch, local_store, value):
    monkeypatch.setenv("BACKUP_RETENTION_DAYS", value)
    if not value.strip():
        assert backup.resolve_retention_days() == 30
        return
    # Refused before any connection: the URL leads nowhere.
    with pytest.raises(ConfigError, match="BACKUP_RETENTION_DAYS must be a whole number of days, 1 or more"):
        backup.run_backup(UNREACHABLE, local_store, dry_run=True)


# --- tools and connections ----------------------------------------------------------------------


def test_the_pg_tool_must_match_the_server_major(monkeypatch, tmp_path):
    monkeypatch.setenv("OBSERVATORY_PG_BIN", str(bin_dir()))
    assert backup.find_pg_tool("pg_dump", 18) == bin_dir() / "pg_dump"

    monkeypatch.setenv("OBSERVATORY_PG_BIN", str(tmp_path))
    with pytest.raises(PgToolMissing) as err:
        backup.find_pg_tool("pg_dump", 11)
    message = str(err.value)
    assert "no pg_dump of PostgreSQL 11" in message and f"{tmp_path}/pg_dump (missing)" in message
    assert f"{bin_dir()}/pg_dump (version 18)" in message and "set OBSERVATORY_PG_BIN" in message


def test_the_password_goes_to_the_environment_never_the_command_line():
    conninfo, env = backup.libpq_connection(f"postgresql+psycopg://forsker:{PASSWORD}@/observatory?host=/run/pg sock")
    assert conninfo == "host='/run/pg sock' user='forsker' dbname='observatory'"
    assert env["PGPASSWORD"] == PASSWORD
    conninfo, env = backup.libpq_connection("postgresql://postgres@db.example.dk:5433/observatory?sslmode=require")
    assert conninfo == "sslmode='require' host='db.example.dk' port='5433' user='postgres' dbname='observatory'"
    assert "PGPASSWORD" not in env


# --- command line ---------------------------------------------------------------------------------


def test_cli_backs_up_lists_verifies_and_restores_without_showing_the_password(db_url, corpus, empty_db_url, tmp_path):
    """``observatory backup`` and ``observatory restore`` as a user runs them: the installed entry
    point, in a subprocess, with the password in DATABASE_URL."""
    env = cli_environment(
        tmp_path / "home", DATABASE_URL=with_password(db_url), OBSERVATORY_STORAGE_DIR=str(tmp_path / "objects")
    )
    outputs = []

    def cli(*argv):
        proc = observatory(*argv, env=env, timeout=300)
        outputs.append(proc)
        return proc

    dry = cli("backup", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: would dump" in dry.stdout and "would prune 0 object(s)" in dry.stdout
    assert not list(LocalObjectStore(tmp_path / "objects").list())

    made = cli("backup")
    assert made.returncode == 0, made.stderr
    key = made.stdout.split(" to ", 1)[1].split(" in ", 1)[0]
    assert key.startswith("postgres/") and "sha256" in made.stdout

    listed = cli("restore", "--list")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{key}\t") and "PostgreSQL" in listed.stdout
    verified = cli("restore", "--verify", key)
    assert verified.returncode == 0 and f"{key}: OK" in verified.stdout

    restored = cli("restore", "--restore", key, "--target-url", with_password(empty_db_url))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored {key} (sha256 verified) into")
    assert restored.stderr.splitlines()[-1].startswith("restore: 100%")
    assert snapshot(empty_db_url) == snapshot(db_url)

    again = one_line_error(cli("restore", "--restore", key, "--target-url", with_password(empty_db_url)))
    assert "is not empty" in again and "--force" in again
    assert "go with --restore" in one_line_error(cli("restore", "--list", "--force"))

    everything = "".join(o.stdout + o.stderr for o in outputs)
    assert PASSWORD not in everything
