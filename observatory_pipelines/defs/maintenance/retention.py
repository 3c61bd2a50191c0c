"""Content retention in Dagster: the ``content_retention`` asset, its check, job and daily schedule.

The rules are ``core.retention``'s: a monthly partition older than ``CONTENT_RETENTION_DAYS`` is
dropped only when it is empty or the newest verified backup holds all of its rows.

Dropping a month leaves that month's Dagster partitions (collection, statistics, exports of the
month) and their materialization history as they were: the history says what was done then, and
re-materializing such a partition collects into a month whose table is gone, so its rows land in
``content_records_default`` until ``content_partitions`` gives them a partition again.
"""

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.maintenance import retention
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.maintenance.backup import BACKUP_ASSET
from observatory_pipelines.defs.maintenance.scheduling import scheduled_asset_job
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource, StorageResource

RETENTION_ASSET = asset_keys.CONTENT_RETENTION
RETENTION_CHECK = "expired_partitions_dropped"


class RetentionConfig(dg.Config):
    # A launch from the UI previews; the schedule sets false. Dropping months is not undone by
    # re-running, so the default is the harmless choice.
    dry_run: bool = Field(
        default=True,
        description="Only list what would be dropped (the default for manual launches); the daily schedule sets false.",
    )


@dg.multi_asset(
    name="content_retention",
    specs=[
        dg.AssetSpec(
            RETENTION_ASSET,
            group_name="maintenance",
            kinds={"postgres"},
            deps=[BACKUP_ASSET],
            skippable=True,  # a dry run materializes nothing
            description=(
                "Drops whole monthly partitions of content_records whose month ended more than "
                "CONTENT_RETENTION_DAYS (default 730) ago, each only when it is empty or when the newest complete "
                "backup was started after the partition's last write (newest collected_at), passes verification "
                "and holds exactly its rows. Otherwise the partition is kept and a warning says why. The default "
                "partition and current or future months are never dropped. Manual launches default to dry_run "
                "(an observation lists what would be dropped); the daily schedule drops for real. Dropping a month "
                "leaves its Dagster partitions and their history as they were."
            ),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            RETENTION_CHECK,
            asset=RETENTION_ASSET,
            description=(
                "Warns when a partition past the retention is still there because no verified backup holds its "
                "rows (or it was busy or written to while retention ran)."
            ),
        )
    ],
    # Lets the check run alone ("Execute check" in the UI): it plans, and drops nothing.
    can_subset=True,
    pool=CONTENT_DB_POOL,
)
def content_retention(
    context: dg.AssetExecutionContext, config: RetentionConfig, postgres: PostgresResource, storage: StorageResource
):
    act = RETENTION_ASSET in context.selected_asset_keys
    check_wanted = dg.AssetCheckKey(RETENTION_ASSET, RETENTION_CHECK) in context.selected_asset_check_keys
    applied = None
    with postgres.engine() as engine:
        plan = retention.plan_retention(engine, storage.store())
        for warning in plan.warnings:
            context.log.warning(warning)
        if act and not config.dry_run:
            applied = retention.apply_retention(engine, plan)
            for warning in applied.warnings:
                context.log.warning(warning)
            if applied.dropped:
                context.log.info("dropped " + ", ".join(p.name for p in applied.dropped))
    dry_run = config.dry_run or not act
    kept = plan.expired_kept + (applied.skipped if applied else [])
    metadata: dict[str, str | bool | dg.MetadataValue] = {
        "partitions": dg.MetadataValue.md(retention.markdown_table(plan, applied=applied, dry_run=dry_run)),
        "would_drop" if dry_run else "dropped": dg.MetadataValue.json(
            [p.name for p in (plan.to_drop if applied is None else applied.dropped)]
        ),
        "kept_expired": dg.MetadataValue.json({p.name: p.reason for p in kept}),
        "retention_days": dg.MetadataValue.int(plan.retention_days),
        "cutoff": plan.cutoff.isoformat(),
        "backup": plan.backup.key if plan.backup else "",
        "backup_verified": plan.backup_verified,
        "store": plan.store,
    }
    if act and config.dry_run:
        context.log_event(dg.AssetObservation(asset_key=RETENTION_ASSET, metadata={"dry_run": True, **metadata}))
        context.log.info(f"dry run: would drop {len(plan.to_drop)} partition(s)")
    elif act:
        yield dg.MaterializeResult(asset_key=RETENTION_ASSET, metadata={"dry_run": False, **metadata})
    if check_wanted and not (act and config.dry_run):
        yield dg.AssetCheckResult(
            asset_key=RETENTION_ASSET,
            check_name=RETENTION_CHECK,
            passed=not kept,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(f"{p.name} kept: {p.reason}" for p in kept) or None,
            metadata={"kept_expired": dg.MetadataValue.json({p.name: p.reason for p in kept})},
        )


# Not named content_retention: a job's graph shares the namespace of op names.
content_retention_job, content_retention_daily = scheduled_asset_job(
    "apply_content_retention",
    dg.AssetSelection.assets(RETENTION_ASSET),
    "Drop monthly partitions past CONTENT_RETENTION_DAYS that a verified backup holds (a dry run unless "
    "dry_run is set to false, as the schedule does).",
    "content_retention_daily",
    "30 3 * * *",  # after the 02:00 backup, so the night's backup can cover the month
    run_config={"ops": {"content_retention": {"config": {"dry_run": False}}}},
)

defs = dg.Definitions(
    assets=[content_retention],
    jobs=[content_retention_job],
    schedules=[content_retention_daily],
)
