"""Dagster wiring, run in process against a real PostgreSQL."""

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from observatory_pipelines.core.maintenance import partitions
from observatory_pipelines.core.platform import database, months
from observatory_pipelines.defs.maintenance.partitions import (
    content_partitions,
    ensure_partitions_daily,
    partition_health_checks,
)
from observatory_pipelines.defs.partitions import monthly_partitions
from observatory_pipelines.defs.resources import PostgresResource


def _clean_env() -> dict[str, str]:
    prefixes = ("DATABASE_URL", "DAGSTER", "MINIO", "OBSERVATORY")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def test_definitions_validate_with_a_bare_environment(repo_root, tmp_path):
    # An empty DAGSTER_HOME: an ephemeral instance, and no variable of ours set.
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(repo_root / "workspace.yaml")],
        capture_output=True,
        text=True,
        env={**_clean_env(), "DAGSTER_HOME": str(tmp_path)},
        cwd=repo_root,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Validation successful" in proc.stderr + proc.stdout


def test_dg_check_defs_with_the_project_instance_on_postgres(repo_root, tmp_path, empty_db_url):
    """`dg check defs` with the repository's dagster.yaml, its storage on a real PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(repo_root / "dagster.yaml", home / "dagster.yaml")
    env = {**_clean_env(), "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": database.psycopg2_url(empty_db_url)}
    dg_cli = Path(sys.executable).parent / "dg"
    proc = subprocess.run(
        [str(dg_cli), "check", "defs"], capture_output=True, text=True, env=env, cwd=repo_root, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr
    # The instance really is PostgreSQL: Dagster created its tables in that database.
    engine = database.make_engine(empty_db_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"runs", "event_logs"} <= tables


def test_a_configured_dagster_storage_is_what_local_runs_use(tmp_path, monkeypatch):
    """`observatory run` and `observatory ui` keep DAGSTER_POSTGRES_URL when it is set, and then create
    no `dagster` database beside the content database (the content server here is unreachable)."""
    from observatory_pipelines.core.platform import dagster_home

    configured = "postgresql+psycopg2://dagster@storage.example.dk:5432/dagster_runs"
    monkeypatch.setenv("OBSERVATORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", configured)
    environment = dagster_home.prepare("postgresql://postgres@127.0.0.1:1/observatory")
    assert environment["DAGSTER_POSTGRES_URL"] == configured
    assert dagster_home.storage_url() == configured


def test_every_asset_is_described_and_grouped():
    from observatory_pipelines.definitions import defs

    specs = list(defs.resolve_all_asset_specs())
    assert specs
    for spec in specs:
        assert spec.description and len(spec.description) > 40, spec.key
        assert spec.group_name != "default", spec.key


def test_monthly_partition_keys_are_the_postgres_partitions(engine):
    now = datetime(2026, 7, 14, 12, tzinfo=timezone.utc)
    keys = monthly_partitions.get_partition_keys(current_time=now)
    assert keys[0] == months.FIRST_MONTH
    assert keys[-1] == "2026-07"  # the current, unfinished month is collectable
    assert keys == months.month_range(months.FIRST_MONTH, "2026-07")

    partitions.ensure_partitions(engine, months_ahead=3, now=now)
    with engine.connect() as conn:
        tables = {p.name for p in partitions.list_partitions(conn)}
    assert {months.partition_name(k) for k in keys} <= tables
    # Everything else is the default partition or a month still ahead of Dagster's calendar.
    ahead = {months.partition_name(m) for m in months.month_range("2026-08", "2026-10")}
    assert tables - {months.partition_name(k) for k in keys} == ahead | {partitions.DEFAULT_PARTITION}


def test_content_partitions_materializes_and_its_checks_pass(db_url, instance):
    result = dg.materialize(
        [content_partitions, partition_health_checks],
        resources={"postgres": PostgresResource(database_url=db_url)},
        instance=instance,
        run_config={"ops": {"content_partitions": {"config": {"months_ahead": 2}}}},
    )
    assert result.success
    materialization = result.asset_materializations_for_node("content_partitions")[0]
    created = materialization.metadata["created"].value
    current = months.current_month()
    assert months.add_months(current, 2) in created
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["next_month_partition_exists"].passed
    assert checks["default_partition_empty"].passed


def test_checks_warn_on_missing_next_month_and_parked_rows(db_url, instance):
    # A fresh schema only has 2026-02..04 and the default partition.
    engine = database.make_engine(db_url)
    later = months.add_months(months.current_month(), 2)
    start, _ = months.month_bounds(later)
    with engine.begin() as conn:
        user = conn.execute(
            sa.text("INSERT INTO users (email, display_name) VALUES ('a@b.dk', 'Åse') RETURNING id")
        ).scalar_one()
        design = conn.execute(
            sa.text(
                "INSERT INTO query_designs (owner_id, name, slug) VALUES (:u, 'Grøn omstilling', 'groen') RETURNING id"
            ),
            {"u": user},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO content_records (published_at, platform, arena, platform_id, query_design_id) "
                "VALUES (:ts, 'rss', 'rss_feeds', 'x1', :d)"
            ),
            {"ts": start, "d": design},
        )
    engine.dispose()
    # Run the checks alone, as the UI's "Execute checks" does, without materializing the asset.
    result = dg.materialize(
        [content_partitions, partition_health_checks],
        resources={"postgres": PostgresResource(database_url=db_url)},
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(content_partitions),
    )
    assert result.success  # WARN checks never fail the run
    assert not result.asset_materializations_for_node("content_partitions")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    missing, parked = checks["next_month_partition_exists"], checks["default_partition_empty"]
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.WARN
    assert "materialize content_partitions" in missing.description
    assert not parked.passed and parked.metadata["rows_by_month"].value == {later: 1}


def test_daily_schedule_requests_the_ensure_job():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 25, 0, 15, tzinfo=timezone.utc))
    data = ensure_partitions_daily.evaluate_tick(context)
    assert len(data.run_requests) == 1
    assert ensure_partitions_daily.job_name == "ensure_partitions"
    assert ensure_partitions_daily.execution_timezone == "UTC"
