"""Faults a user will meet, for real: an `observatory run` SIGKILLed in the middle of a large file
import, and an `observatory backup` SIGKILLed in the middle of its upload. Each is a subprocess of
the installed entry point against real PostgreSQL (15 and 18) and, for backups, the test S3 server;
the test only starts, watches and kills the processes it started."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.defs.maintenance import settlement
from observatory_pipelines.defs.resources import PostgresResource
from tests.factories import (
    MARCH,
    OBSERVATORY,
    SALT,
    ThrottlingProxy,
    cli_environment,
    lock_held,
    make_design,
    new_bucket,
    observatory,
    one_line_error,
    owner_of,
    task,
    wait_for,
    write_zeeschuimer_x_export,
)

SLUG = "masseimport"
#: Posts in the import file: four batches of 5,000, so the kill lands after the first is stored.
POSTS = 4 * collection.BATCH_SIZE


@contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A command in a process group of its own; whatever happens, that group is gone afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def stored(engine: sa.Engine, design) -> tuple[int, int]:
    """(rows, distinct items) of the design's corpus."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT (platform, platform_id)) FROM content_records "
                    "WHERE query_design_id = :d"
                ),
                {"d": design},
            ).one()
        )


def ledger(engine: sa.Engine, collection_run_id) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT transaction_type FROM credit_transactions WHERE collection_run_id = :r ORDER BY created_at"
                ),
                {"r": collection_run_id},
            ).scalars()
        )


# --- a run killed in the middle of a large import ------------------------------------------------------


def test_a_run_killed_mid_import_is_re_run_to_every_item_once_and_settled(
    engine, db_url, dagster_storage_url, tmp_path, monkeypatch
):
    design = make_design(engine, slug=SLUG, arenas_config={"file_import": {"enabled": True}})
    imports = tmp_path / "imports"
    (imports / SLUG).mkdir(parents=True)
    write_zeeschuimer_x_export(imports / SLUG / "zeeschuimer-export-twitter.com-2026-03-20T10-00-00.ndjson", POSTS)
    home = tmp_path / "home"
    env = cli_environment(
        home,
        DATABASE_URL=db_url,
        DAGSTER_POSTGRES_URL=dagster_storage_url,
        OBSERVATORY_IMPORT_DIR=str(imports),
        OBSERVATORY_STORAGE_DIR=str(tmp_path / "objects"),
        PSEUDONYMIZATION_SALT=SALT,
    )
    argv = [OBSERVATORY, "run", "--month", MARCH, "--design", SLUG, "--arena", "file_import"]
    lock = collection.lock_key(SLUG, MARCH, "file_import")

    with started(argv, env, tmp_path / "killed.log") as proc:
        # Killed as soon as the first batch is stored: the other batches are still to come.
        wait_for(lambda: stored(engine, design)[0] or proc.poll() is not None, 180, "no rows stored")
        assert proc.poll() is None, (
            "the import finished before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
        )
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    # PostgreSQL ends the dead process's sessions (rolling back a batch in flight, releasing its lock).
    wait_for(lambda: not lock_held(engine, lock), 60, "the killed run's collection lock is still held")
    rows_at_kill, items_at_kill = stored(engine, design)
    assert 0 < rows_at_kill < POSTS and rows_at_kill == items_at_kill
    killed = task(engine, design, "file_import")
    assert (killed["status"], killed["run_status"]) == ("running", "running")
    assert ledger(engine, killed["collection_run_id"]) == ["reservation"]

    # --- the re-run stores every item, each once ---------------------------------------------------
    rerun = observatory(*argv[1:], env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    line = next(line.split() for line in rerun.stdout.splitlines() if line.strip().startswith("collect_file_import"))
    assert [int(n) for n in line[1:4]] == [POSTS - rows_at_kill, 0, rows_at_kill]  # new, updated, same
    assert stored(engine, design) == (POSTS, POSTS)
    again = task(engine, design, "file_import")
    assert again["collection_run_id"] != killed["collection_run_id"] and again["status"] == "completed"

    # --- the stale-collection job, on the instance the runs were recorded in ---------------------------
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_storage_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        # Nothing told Dagster: its run of the killed process is still STARTED.
        assert instance.get_run_by_id(killed["dagster_run_id"]).status == dg.DagsterRunStatus.STARTED
        definitions = dg.Definitions.merge(
            settlement.defs, dg.Definitions(resources={"postgres": PostgresResource(database_url=db_url)})
        )
        result = definitions.resolve_job_def("settle_stale_collections").execute_in_process(instance=instance)
    assert result.success

    with engine.connect() as conn:
        closed = (
            conn.execute(
                sa.text(
                    "SELECT t.status, t.error_message, r.status AS run_status FROM collection_tasks t "
                    "JOIN collection_runs r ON r.id = t.collection_run_id WHERE r.id = :r"
                ),
                {"r": killed["collection_run_id"]},
            )
            .mappings()
            .one()
        )
    assert (closed["status"], closed["run_status"]) == ("failed", "failed")
    assert closed["error_message"].startswith("worker gone: no process holds its collection lock")
    assert ledger(engine, killed["collection_run_id"]) == ["reservation", "settlement"]
    assert CreditService(engine).balance(owner_of(engine, design)).reserved == 0
    # The re-run is untouched, and its rows are still every item once.
    assert task(engine, design, "file_import")["status"] == "completed"
    assert stored(engine, design) == (POSTS, POSTS)


# --- a backup killed in the middle of its upload ---------------------------------------------------------

#: Bytes a second the proxy lets the backup upload: a dump of a few MB then takes seconds to send.
UPLOAD_RATE = 512 * 1024


@pytest.mark.parametrize("moment", ["dump", "checksum"])
def test_a_backup_killed_mid_upload_is_never_listed_as_valid_and_the_next_one_succeeds(
    moment, engine, db_url, s3_server, tmp_path
):
    """Killed while the dump is on its way (``dump``), or after the dump is stored while its checksum
    object, the completion marker, is on its way (``checksum``)."""
    with engine.begin() as conn:  # a few MB of dump that gzip cannot shrink much
        conn.execute(
            sa.text(
                "CREATE TABLE ballast AS SELECT i, md5(i::text) || md5((i * 7)::text) AS filler "
                "FROM generate_series(1, :n) AS i"
            ),
            {"n": 60_000},
        )
    bucket = new_bucket()
    settings = {
        "DATABASE_URL": db_url,
        "MINIO_ACCESS_KEY": s3_server.access_key,
        "MINIO_SECRET_KEY": s3_server.secret_key,
        "MINIO_BUCKET": bucket,
    }
    direct = cli_environment(tmp_path / "home", MINIO_ENDPOINT=s3_server.endpoint, **settings)
    hold = b".sql.gz.sha256 HTTP/1.1" if moment == "checksum" else None

    with ThrottlingProxy(s3_server.endpoint, UPLOAD_RATE, hold=hold) as proxy:
        slow = cli_environment(tmp_path / "home", MINIO_ENDPOINT=proxy.endpoint, **settings)
        with started([OBSERVATORY, "backup"], slow, tmp_path / "killed.log") as proc:
            if moment == "dump":
                # The requests before the upload (the bucket check) are a few hundred bytes: past
                # UPLOAD_RATE bytes, the dump itself is on its way.
                wait_for(lambda: proxy.sent > UPLOAD_RATE or proc.poll() is not None, 120, "no upload started")
            else:
                wait_for(lambda: proxy.holding.is_set() or proc.poll() is not None, 120, "no checksum upload started")
            assert proc.poll() is None, (
                "the backup finished before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
            )
            os.killpg(proc.pid, signal.SIGKILL)
            sent_at_kill = proxy.sent
            assert proc.wait(timeout=60) == -signal.SIGKILL

    listed = observatory("restore", "--list", env=direct)
    assert listed.returncode == 0, listed.stderr
    partial = [line.split("\t") for line in listed.stdout.splitlines() if line.startswith("postgres/")]
    # The dump may be stored without its checksum: bytes a process wrote before it died still reach
    # the server, and a body that arrives whole makes an object. It is listed, but only as what it
    # is, and never verified or restored. Once the dump is stored (``checksum``), it always is.
    assert len(partial) == 1 if moment == "checksum" else len(partial) <= 1, listed.stdout
    for key, *_, state in partial:
        assert state == "INCOMPLETE (no checksum)", listed.stdout
        for action in ("--verify", "--restore"):
            refused = one_line_error(observatory("restore", action, key, env=direct))
            assert "has no checksum object" in refused and "never finished" in refused

    backed_up = observatory("backup", env=direct, timeout=300)
    assert backed_up.returncode == 0, backed_up.stderr
    key = backed_up.stdout.split(" to ", 1)[1].split(" in ", 1)[0]
    size = int(backed_up.stdout.splitlines()[1].split()[0])
    if moment == "dump":
        assert 0 < sent_at_kill < size  # the server had not had the whole dump when the process died
    listed = observatory("restore", "--list", env=direct)
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines[0][0] == key and lines[0][3].startswith("PostgreSQL ")
    assert [line[0] for line in lines[1:]] == [key for key, *_ in partial], listed.stdout
    verified = observatory("restore", "--verify", key, env=direct)
    assert verified.returncode == 0 and verified.stdout.startswith(f"{key}: OK"), verified.stderr
