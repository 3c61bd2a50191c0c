"""The backup job, its checks and schedules, run in process against real PostgreSQL (15 and 18) and
real stores (a local folder and an S3 server)."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.maintenance import backup
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.storage import LocalObjectStore, StorageError
from observatory_pipelines.defs.maintenance import backup as backup_defs
from observatory_pipelines.defs.maintenance.backup import backup_database_nightly, check_database_backup_daily
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import PASSWORD, make_design, new_bucket, open_s3_store, read_object, with_password

UTC = timezone.utc
UNREACHABLE = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/observatory"


# No backup, storage or database setting from the machine leaks into a test.
pytestmark = pytest.mark.usefixtures("isolated_settings")


@pytest.fixture
def content(engine):
    design = make_design(engine, slug="havvind", terms=("havvind", "Thyborøn"))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO content_records (published_at, platform, arena, platform_id, text_content, "
                "query_design_id) VALUES (:p, 'rss', 'rss_feeds', :id, :t, :d)"
            ),
            [
                {
                    "p": datetime(2026, 3, d, 12, tzinfo=UTC),
                    "id": f"dr-{d}",
                    "d": design,
                    "t": f"Havvind ud for Thyborøn, dag {d}: æbler, øl og åer",
                }
                for d in (1, 2, 3)
            ],
        )
    return design


def run_job(instance, db_url: str, storage: StorageResource, job: str = "backup_database", dry_run: bool | None = None):
    resources = {"postgres": PostgresResource(database_url=db_url), "storage": storage}
    run_config = None if dry_run is None else {"ops": {"database_backup": {"config": {"dry_run": dry_run}}}}
    definitions = dg.Definitions.merge(backup_defs.defs, dg.Definitions(resources=resources))
    return definitions.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False
    )


def everything_logged(instance, result) -> str:
    return "\n".join(str(record) for record in instance.all_logs(result.run_id))


def checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def old_backup(db_url, store, days: float) -> str:
    """A backup that looks ``days`` old by its name (retention ages backups by the time in the name)."""
    return backup.run_backup(db_url, store, now=datetime.now(UTC) - timedelta(days=days), retention_days=100_000).key


@pytest.fixture(params=["local", "s3"])
def stores(request, tmp_path, monkeypatch):
    """The StorageResource a run gets, and the same store opened directly."""
    if request.param == "local":
        return StorageResource(local_dir=str(tmp_path / "objects")), LocalObjectStore(tmp_path / "objects")
    server = request.getfixturevalue("s3_server")
    monkeypatch.setenv("MINIO_ACCESS_KEY", server.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", server.secret_key)
    bucket = new_bucket()
    return StorageResource(endpoint=server.endpoint, bucket=bucket), open_s3_store(server, bucket=bucket)


# --- the nightly job ------------------------------------------------------------------------------------


def test_the_job_stores_a_complete_backup_prunes_and_reads_it_back(instance, db_url, content, stores):
    resource, store = stores
    expired = old_backup(db_url, store, days=40)

    result = run_job(instance, with_password(db_url), resource)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("database_backup")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    key = meta["key"]
    assert key.startswith("postgres/") and key.endswith(".sql.gz") and key != expired
    dump = read_object(store, key)
    assert (meta["size"], meta["sha256"]) == (len(dump), hashlib.sha256(dump).hexdigest())
    assert read_object(store, key + ".sha256").decode().startswith(meta["sha256"] + "  observatory_")
    assert meta["uri"] == store.uri(key) and meta["store"] == store.describe()
    major, version = backup.server_version(db_url)
    assert (meta["server_version"], meta["pg_dump_version"]) == (version, str(major))
    assert meta["database"] == database.describe(db_url)
    assert meta["pruned_count"] == 2 and sorted(meta["pruned"]) == [expired, expired + ".sha256"]
    assert meta["warnings"] == []
    assert [b.key for b in backup.list_backups(store)] == [key]

    found = checks(result)
    assert found["backup_pruning_ok"].passed
    assert found["recent_verified_backup"].passed
    assert found["recent_verified_backup"].metadata["key"].value == key
    logged = everything_logged(instance, result)
    assert PASSWORD not in logged
    assert not os.environ.get("MINIO_SECRET_KEY") or os.environ["MINIO_SECRET_KEY"] not in logged


class RefusingDeletes(LocalObjectStore):
    def delete(self, key):
        raise StorageError(f"S3 at minio:9000 answered AccessDenied for key {key!r}")


def test_a_pruning_failure_warns_and_the_backup_stands(instance, db_url, content, tmp_path, monkeypatch):
    folder = tmp_path / "objects"
    expired = old_backup(db_url, LocalObjectStore(folder), days=40)
    # StorageResource builds its store from settings alone; the refusing one is swapped in here.
    monkeypatch.setattr(StorageResource, "store", lambda self: RefusingDeletes(folder))

    result = run_job(instance, db_url, StorageResource(local_dir=str(folder)))

    assert result.success
    meta = result.asset_materializations_for_node("database_backup")[0].metadata
    assert meta["pruned_count"].value == 0
    assert [w.split(":")[0] for w in meta["warnings"].value] == [
        f"could not prune {expired}",
        f"could not prune {expired}.sha256",
    ]
    check = checks(result)["backup_pruning_ok"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith(
        f"2 object(s) under postgres/ are past the 30-day retention and were not pruned, e.g. {expired}"
    )
    assert "AccessDenied" in check.description and check.description.endswith("may delete")
    assert sorted(check.metadata["unpruned"].value) == [expired, expired + ".sha256"]
    warnings = [r.user_message for r in instance.all_logs(result.run_id) if r.level == 30]  # logging.WARNING
    assert sum(m.startswith("warning: could not prune") for m in warnings) == 2
    store = LocalObjectStore(folder)
    assert backup.verify_backup(store, meta["key"].value).sha256 == meta["sha256"].value
    assert checks(result)["recent_verified_backup"].passed


def test_a_dry_run_stores_nothing_and_records_an_observation(instance, db_url, content, tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    expired = old_backup(db_url, store, days=40)
    before = sorted(o.key for o in store.list())

    result = run_job(instance, db_url, StorageResource(local_dir=str(store.root)), dry_run=True)

    assert result.success
    assert sorted(o.key for o in store.list()) == before
    assert not result.asset_materializations_for_node("database_backup")
    assert not result.get_asset_check_evaluations()  # nothing was backed up or pruned to check
    (observation,) = [
        e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert meta["dry_run"] is True and meta["would_write"].startswith("postgres/")
    assert sorted(meta["would_prune"]) == [expired, expired + ".sha256"] and meta["would_prune_count"] == 2


def test_an_unreachable_database_fails_in_one_line_without_the_password(instance, tmp_path):
    result = run_job(instance, UNREACHABLE, StorageResource(local_dir=str(tmp_path / "objects")))

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("cannot use PostgreSQL at 127.0.0.1:1/observatory: ") and "\n" not in description
    assert PASSWORD not in everything_logged(instance, result)
    assert not list(LocalObjectStore(tmp_path / "objects").list())


def test_s3_without_credentials_fails_in_one_line(instance, db_url):
    result = run_job(instance, db_url, StorageResource(endpoint="127.0.0.1:1", bucket="observatory"))

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data.description == (
        "S3 storage needs credentials: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY "
        "(or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD)"
    )


# --- the checks on their own -------------------------------------------------------------------------------


def test_the_checks_warn_about_no_stale_and_damaged_backups(instance, db_url, content, tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    resource = StorageResource(local_dir=str(store.root))

    def evaluate():
        result = run_job(instance, db_url, resource, job="check_database_backup")
        assert result.success and not result.asset_materializations_for_node("database_backup")
        found = checks(result)
        assert found["backup_pruning_ok"].passed  # nothing here is past 30 days
        return found["recent_verified_backup"]

    check = evaluate()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == f"no complete backup in {store.describe()}; materialize database_backup"

    stale = old_backup(db_url, store, days=3)
    check = evaluate()
    assert not check.passed and check.metadata["key"].value == stale
    assert check.description.startswith(f"the newest complete backup, {stale}, is 72.")

    fresh = old_backup(db_url, store, days=0.5)
    assert evaluate().passed

    dump = bytearray(read_object(store, fresh))
    dump[len(dump) // 2] ^= 0x01
    store.put_stream(fresh, io.BytesIO(bytes(dump)), len(dump), metadata=store.stat(fresh).metadata)
    check = evaluate()
    assert not check.passed and check.description.startswith(f"backup {fresh} is corrupted")


# --- schedules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, job, cron, hour",
    [
        (backup_database_nightly, "backup_database", "0 2 * * *", 2),
        (check_database_backup_daily, "check_database_backup", "0 7 * * *", 7),
    ],
)
def test_the_schedules_request_their_jobs_in_utc(schedule, job, cron, hour):
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone) == (job, cron, "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 25, hour, tzinfo=UTC))
    (request,) = schedule.evaluate_tick(context).run_requests
    assert isinstance(request, dg.RunRequest)
    # The nightly run makes a real backup: no dry run hides in its config.
    assert not request.run_config


def test_the_maintenance_definitions_load_with_the_project():
    from observatory_pipelines.definitions import defs as project
    from observatory_pipelines.defs.maintenance import retention as retention_defs

    merged = dg.Definitions.merge(project, backup_defs.defs, retention_defs.defs)
    dg.Definitions.validate_loadable(merged)
    repository = merged.get_repository_def()
    assert {"backup_database", "check_database_backup", "apply_content_retention"} <= {
        job.name for job in repository.get_all_jobs()
    }
