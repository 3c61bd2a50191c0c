"""The ``observatory`` CLI as a user runs it: a subprocess, its stdout, stderr and exit code."""

import os
import subprocess
import sys

import dagster as dg
import sqlalchemy as sa

from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.platform import database, migrate
from observatory_pipelines.core.platform.storage import LocalObjectStore
from observatory_pipelines.defs.partitions import QUERY_DESIGN_PARTITIONS
from tests.factories import KAREN, SALT, cli_environment, make_design, observatory, one_line_error, seed_exports


def run_cli(*args, env_extra=None, drop=("DATABASE_URL",), timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "observatory_pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_subcommands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("db", "partitions", "ui"):
        assert word in proc.stdout
    db_help = run_cli("db", "--help").stdout
    for action in ("up", "down", "status", "url", "migrate"):
        assert action in db_help
    assert "--months-ahead" in run_cli("partitions", "ensure", "--help").stdout


def test_unreachable_database_is_one_line_naming_the_host():
    proc = run_cli("db", "migrate", env_extra={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/observatory"})
    assert_one_line_error(proc, "127.0.0.1:1", "check DATABASE_URL")


def test_non_postgres_url_is_refused_clearly():
    proc = run_cli("db", "status", env_extra={"DATABASE_URL": "mysql://root@localhost/x"})
    assert_one_line_error(proc, "only PostgreSQL is supported")


def test_bad_arguments_are_refused_by_the_parser():
    proc = run_cli("partitions", "ensure", "--months-ahead", "-4")
    assert proc.returncode == 2 and "between 0 and 120" in proc.stderr
    proc = run_cli("partitions", "ensure", "--first-month", "2026-13")
    assert proc.returncode == 2 and "YYYY-MM" in proc.stderr


def test_external_database_migrate_ensure_status(empty_db_url):
    env = {"DATABASE_URL": empty_db_url}
    unmigrated = run_cli("partitions", "ensure", env_extra=env)
    assert_one_line_error(unmigrated, "observatory db migrate")

    migrated = run_cli("db", "migrate", env_extra=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema at {migrate.head()}" in migrated.stdout

    ensured = run_cli("partitions", "ensure", "--months-ahead", "2", env_extra=env)
    assert ensured.returncode == 0, ensured.stderr
    again = run_cli("partitions", "ensure", "--months-ahead", "2", env_extra=env)
    assert again.stdout.strip().startswith("0 created")

    status = run_cli("db", "status", env_extra=env)
    assert status.returncode == 0, status.stderr
    assert f"schema: {migrate.head()}" in status.stdout
    assert "warning" not in status.stdout

    engine = database.make_engine(empty_db_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert "content_records_2026_02" in tables


def test_embedded_database_lifecycle(tmp_path):
    env = {"OBSERVATORY_HOME": str(tmp_path / "state")}
    try:
        down_before = run_cli("db", "status", env_extra=env)
        assert down_before.returncode != 0 and "observatory db up" in down_before.stdout

        up = run_cli("db", "up", env_extra=env)
        assert up.returncode == 0, up.stderr
        assert "PostgreSQL 18 (embedded) is up" in up.stdout
        assert up.stderr == ""

        url = run_cli("db", "url", env_extra=env).stdout.strip()
        assert url.startswith("postgresql://") and "observatory" in url
        assert run_cli("db", "up", env_extra=env).returncode == 0  # reused, not re-created

        migrated = run_cli("db", "migrate", env_extra=env)
        assert migrated.returncode == 0, migrated.stderr
        status = run_cli("db", "status", env_extra=env)
        assert "embedded, running" in status.stdout and "PostgreSQL 18" in status.stdout
    finally:
        down = run_cli("db", "down", env_extra=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert "stopped" in run_cli("db", "status", env_extra=env).stdout


def test_a_malformed_design_slug_is_refused_before_any_database_or_dagster_work():
    for command in (
        ("run", "--month", "2026-03", "--design", "Klima Debat!"),
        ("exports", "download", "--design", "../klimadebat", "--month", "2026-03", "--format", "csv"),
    ):
        # An unreachable database proves nothing was opened: the parser refuses first.
        proc = run_cli(*command, env_extra={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/observatory"})
        assert proc.returncode == 2, proc.stderr
        assert "is not a query design slug" in proc.stderr and "Traceback" not in proc.stderr


# --- error paths, through the installed entry point -----------------------------------------------------


def test_an_unknown_arena_and_a_malformed_design_are_one_line_and_register_no_partition(
    db_url, engine, dagster_storage_url, tmp_path, monkeypatch
):
    make_design(engine, slug="klimadebat")
    env = cli_environment(
        tmp_path / "home", DATABASE_URL=db_url, DAGSTER_POSTGRES_URL=dagster_storage_url, PSEUDONYMIZATION_SALT=SALT
    )

    unknown = one_line_error(
        observatory("run", "--month", "2026-03", "--design", "klimadebat", "--arena", "tiktok_live", env=env)
    )
    assert "tiktok_live" in unknown and ", ".join(registry()) in unknown
    malformed = observatory("run", "--month", "2026-03", "--design", "Klima Debat!", env=env)
    assert malformed.returncode == 2
    line = one_line_error(malformed)
    assert "is not a query design slug" in line and "observatory run --help" in line

    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_storage_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster_home")) as instance:
        assert instance.get_dynamic_partitions(QUERY_DESIGN_PARTITIONS) == []
        assert not instance.get_runs()


def test_an_unwritable_to_is_one_line(db_url, engine, people, tmp_path):
    objects = tmp_path / "objects"
    seed_exports(LocalObjectStore(objects), people)
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("not a folder")
    env = cli_environment(tmp_path / "home", DATABASE_URL=db_url, OBSERVATORY_STORAGE_DIR=str(objects))
    download = ("exports", "download", "--user", KAREN, "--design", "klimadebat", "--month", "2026-03")

    for to in (not_a_folder / "inside", not_a_folder / "inside" / "x.csv"):
        line = one_line_error(observatory(*download, "--format", "csv", "--to", str(to), env=env))
        assert line.startswith("observatory: error: cannot save to ") and str(not_a_folder) in line
        assert "--to" in line.split(";")[-1]  # and says what to do
    assert not_a_folder.read_text() == "not a folder"


def test_backup_and_restore_with_a_bad_key_or_an_unreachable_store_are_one_line(db_url, tmp_path):
    local = cli_environment(tmp_path / "home", DATABASE_URL=db_url, OBSERVATORY_STORAGE_DIR=str(tmp_path / "objects"))
    for action, key, said in (
        ("--verify", "postgres/latest.sql.gz", "is not a backup key"),
        ("--restore", "../../etc/observatory.sql.gz", "is not a backup key"),
        ("--verify", "postgres/2026/05/15/observatory_20260515_020007.sql.gz", "no backup postgres/2026/05/15/"),
        ("--restore", "postgres/2026/05/15/observatory_20260515_020007.sql.gz", "no backup postgres/2026/05/15/"),
    ):
        line = one_line_error(observatory("restore", action, key, env=local))
        assert said in line and "observatory restore --list" in line, line

    unreachable = cli_environment(
        tmp_path / "home",
        DATABASE_URL=db_url,
        MINIO_ENDPOINT="127.0.0.1:1",
        MINIO_ACCESS_KEY="observatory",
        MINIO_SECRET_KEY="Hemmelig-S3-Kode-4711",
    )
    for command in (
        ("backup",),
        ("backup", "--dry-run"),
        ("restore", "--list"),
        ("restore", "--verify", "postgres/2026/05/15/observatory_20260515_020007.sql.gz"),
    ):
        proc = observatory(*command, env=unreachable)
        line = one_line_error(proc)
        assert "cannot reach S3 at 127.0.0.1:1" in line and "MINIO_ENDPOINT" in line, (command, line)
        assert "Hemmelig-S3-Kode-4711" not in proc.stdout + proc.stderr
