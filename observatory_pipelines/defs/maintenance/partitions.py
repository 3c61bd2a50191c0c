"""Partition upkeep: the ``content_partitions`` asset, its checks, job and daily schedule."""

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.maintenance import partitions, retention
from observatory_pipelines.core.platform import months
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.maintenance.scheduling import scheduled_asset_job
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource


class EnsurePartitionsConfig(dg.Config):
    months_ahead: int = 3
    first_month: str | None = Field(
        default=None,
        description=f"First month to create (default: {months.FIRST_MONTH}, or the oldest month content "
        "retention keeps if that is later, so retention never drops a month this recreates).",
    )


@dg.asset(
    key=asset_keys.CONTENT_PARTITIONS,
    group_name="maintenance",
    pool=CONTENT_DB_POOL,
    kinds={"postgres"},
    description=(
        "The monthly partitions of content_records (content_records_YYYY_MM, bounds "
        "[first day 00:00 UTC, next first day 00:00 UTC)). Materializing creates every missing "
        "month from the first month through N months ahead (default 3) and moves rows that were "
        "parked in content_records_default into their new month's partition, one transaction per month."
    ),
)
def content_partitions(
    context: dg.AssetExecutionContext, config: EnsurePartitionsConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    with postgres.engine() as engine:
        result = partitions.ensure_partitions(
            engine,
            first_month=config.first_month or retention.default_first_month(),
            months_ahead=config.months_ahead,
        )
        with engine.connect() as conn:
            present = sorted(partitions.existing_months(conn))
    if result.created:
        context.log.info("created partitions for %s", ", ".join(result.created))
    return dg.MaterializeResult(
        metadata={
            "created": dg.MetadataValue.json(result.created),
            "rows_moved_from_default": dg.MetadataValue.int(result.total_moved),
            "partition_count": dg.MetadataValue.int(len(present)),
            "first_month": present[0] if present else "",
            "last_month": present[-1] if present else "",
        }
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "next_month_partition_exists",
            asset=content_partitions,
            description="Warns when next month's partition is missing: its rows would land in the default partition.",
        ),
        dg.AssetCheckSpec(
            "default_partition_empty",
            asset=content_partitions,
            description="Warns when content_records_default holds rows: a month without a partition received data.",
        ),
    ],
)
def partition_health_checks(postgres: PostgresResource):
    with postgres.engine() as engine:
        health = partitions.partition_health(engine)
    parked = health.default_rows
    yield dg.AssetCheckResult(
        check_name="next_month_partition_exists",
        passed=health.next_month_exists,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if health.next_month_exists
        else f"{months.partition_name(health.next_month)} is missing; materialize content_partitions",
        metadata={"next_month": health.next_month},
    )
    yield dg.AssetCheckResult(
        check_name="default_partition_empty",
        passed=not parked,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not parked
        else f"{sum(parked.values())} rows wait in the default partition; materialize content_partitions to move them",
        metadata={"rows_by_month": dg.MetadataValue.json(parked)},
    )


ensure_partitions_job, ensure_partitions_daily = scheduled_asset_job(
    "ensure_partitions",
    dg.AssetSelection.assets(content_partitions),
    "Create missing monthly partitions ahead of time and empty the default partition.",
    "ensure_partitions_daily",
    "15 0 * * *",
)

defs = dg.Definitions(
    assets=[content_partitions],
    asset_checks=[partition_health_checks],
    jobs=[ensure_partitions_job],
    schedules=[ensure_partitions_daily],
)
