"""Database backups in Dagster: the ``database_backup`` asset, its checks, the nightly job and schedule.

The work is ``core.backup.run_backup`` (pg_dump → gzip → object store, then pruning); see
docs/operations/backup_restore.md. A dry run records an observation of what it would do, not a
materialization, so "last materialized" always means a stored, complete backup.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.maintenance import backup
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.storage import ObjectStore
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.maintenance.scheduling import scheduled_asset_job
from observatory_pipelines.defs.resources import PostgresResource, StorageResource, one_line_failures

BACKUP_ASSET = asset_keys.DATABASE_BACKUP
PRUNING_CHECK = "backup_pruning_ok"
#: A nightly backup is at most 24 h old; the margin covers a slow dump or a late tick.
MAX_BACKUP_AGE = timedelta(hours=26)


class BackupConfig(dg.Config):
    dry_run: bool = Field(
        default=False,
        description="Only say what would be dumped where and what would be pruned; store and delete nothing.",
    )


def _log_lines(context: dg.AssetExecutionContext):
    def log(line: str) -> None:
        # run_backup sends progress and warnings through one callable and marks warnings so.
        (context.log.warning if line.startswith("warning: ") else context.log.info)(line)

    return log


def _pruning_check(store: ObjectStore, now: datetime, run_warnings: list[str]) -> dg.AssetCheckResult:
    """Whether anything past the backup retention is still stored (the newest complete backup
    excepted): asked of the store itself, so it holds whatever the run's warnings said."""
    try:
        days = backup.resolve_retention_days()
        left = backup.prune_backups(store, retention_days=days, now=now, dry_run=True)
    except ObservatoryError as err:
        left, days = backup.PruneResult(warnings=[str(err)]), None
    related = [w for w in run_warnings if any(key in w for key in left.pruned)]
    if left.warnings:
        description = left.warnings[0]
    elif left.pruned:
        description = (
            f"{len(left.pruned)} object(s) under {backup.PREFIX} are past the {days}-day retention and were not "
            f"pruned, e.g. {left.pruned[0]}"
            + (f": {related[0]}" if related else "")
            + "; check that the storage credentials may delete"
        )
    else:
        description = None
    return dg.AssetCheckResult(
        asset_key=BACKUP_ASSET,
        check_name=PRUNING_CHECK,
        passed=description is None,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"unpruned": dg.MetadataValue.json(left.pruned), "warnings": dg.MetadataValue.json(related)},
    )


@dg.multi_asset(
    name="database_backup",
    specs=[
        dg.AssetSpec(
            BACKUP_ASSET,
            group_name="maintenance",
            kinds={"postgres", "s3"},
            skippable=True,  # a dry run materializes nothing
            description=(
                "A full backup of the content database: pg_dump (of the server's own major version), "
                "gzipped and streamed to postgres/YYYY/MM/DD/observatory_YYYYMMDD_HHMMSS.sql.gz in the object "
                "store, with a .sha256 checksum object that marks it complete. Afterwards, backups older than "
                "BACKUP_RETENTION_DAYS (default 30) are pruned, except the newest complete one; a pruning "
                "failure is a warning (check backup_pruning_ok), not a failed backup. With dry_run, an "
                "observation records what would be dumped and pruned. Runbook: docs/operations/backup_restore.md."
            ),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            PRUNING_CHECK,
            asset=BACKUP_ASSET,
            description="Warns when backups past BACKUP_RETENTION_DAYS are still stored: pruning failed.",
        )
    ],
    # Lets the pruning check run alone ("Execute check" in the UI) without making a backup.
    can_subset=True,
)
def database_backup(
    context: dg.AssetExecutionContext, config: BackupConfig, postgres: PostgresResource, storage: StorageResource
):
    check_wanted = dg.AssetCheckKey(BACKUP_ASSET, PRUNING_CHECK) in context.selected_asset_check_keys
    started = datetime.now(timezone.utc)
    with one_line_failures():
        store = storage.store()
        result = None
        if BACKUP_ASSET in context.selected_asset_keys:
            result = backup.run_backup(
                postgres.url(), store, now=started, dry_run=config.dry_run, log=_log_lines(context)
            )
    if result is not None:
        common: dict[str, str | dg.MetadataValue] = {
            "database": result.database,
            "server_version": result.server_version,
            "pg_dump": str(result.pg_dump),
            "store": result.store,
            "warnings": dg.MetadataValue.json(result.warnings),
        }
        if result.dry_run:
            context.log_event(
                dg.AssetObservation(
                    asset_key=BACKUP_ASSET,
                    metadata={
                        "dry_run": True,
                        "would_write": result.key,
                        "would_prune_count": dg.MetadataValue.int(len(result.pruned)),
                        "would_prune": dg.MetadataValue.json(result.pruned),
                        **common,
                    },
                )
            )
            context.log.info(f"dry run: would write {result.key}; would prune {len(result.pruned)} object(s)")
        else:
            assert result.size is not None  # run_backup sets the size of every backup it writes
            with one_line_failures():
                dumped_with = (store.stat(result.key).metadata or {}).get("pg-dump-version", "")
            yield dg.MaterializeResult(
                asset_key=BACKUP_ASSET,
                metadata={
                    "key": result.key,
                    "uri": store.uri(result.key),
                    "size": dg.MetadataValue.int(result.size),
                    "sha256": result.sha256,
                    "pg_dump_version": dumped_with,
                    "pruned_count": dg.MetadataValue.int(len(result.pruned)),
                    "pruned": dg.MetadataValue.json(result.pruned),
                    **common,
                },
            )
    if check_wanted and not config.dry_run:
        yield _pruning_check(store, started, result.warnings if result else [])


@dg.asset_check(
    asset=BACKUP_ASSET,
    description=(
        f"Warns unless the newest complete backup is less than {MAX_BACKUP_AGE.total_seconds() / 3600:.0f} hours "
        "old and passes verification (size, SHA-256, gzip, pg_dump's closing line; the whole dump is read back)."
    ),
)
def recent_verified_backup(storage: StorageResource) -> dg.AssetCheckResult:
    def result(passed: bool, description: str | None, **metadata) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=passed, severity=dg.AssetCheckSeverity.WARN, description=description, metadata=metadata
        )

    now = datetime.now(timezone.utc)
    try:
        store = storage.store()
        complete = [b for b in backup.list_backups(store) if b.complete]
        if not complete:
            return result(False, f"no complete backup in {store.describe()}; materialize database_backup")
        newest = complete[0]
        backup.verify_backup(store, newest.key)
    except ObservatoryError as err:
        return result(False, str(err))
    age = now - newest.created
    hours = round(age.total_seconds() / 3600, 1)
    fresh = age <= MAX_BACKUP_AGE
    return result(
        fresh,
        None if fresh else f"the newest complete backup, {newest.key}, is {hours} hours old; check the backup runs",
        key=newest.key,
        created=newest.created.isoformat(),
        age_hours=dg.MetadataValue.float(hours),
        size=dg.MetadataValue.int(newest.size),
    )


backup_database_job, backup_database_nightly = scheduled_asset_job(
    "backup_database",
    dg.AssetSelection.assets(BACKUP_ASSET),
    "Back up the content database to object storage, prune old backups, read the new one back.",
    "backup_database_nightly",
    "0 2 * * *",
)

# Apart from the backup job so that a backup that never ran (schedule off, failed run) shows too.
check_database_backup_job, check_database_backup_daily = scheduled_asset_job(
    "check_database_backup",
    dg.AssetSelection.checks_for_assets(BACKUP_ASSET),
    "Check that a recent backup exists and verifies, and that pruning keeps up; backs nothing up.",
    "check_database_backup_daily",
    "0 7 * * *",
)

defs = dg.Definitions(
    assets=[database_backup],
    asset_checks=[recent_verified_backup],
    jobs=[backup_database_job, check_database_backup_job],
    schedules=[backup_database_nightly, check_database_backup_daily],
)
