"""How maintenance declares its jobs: each runs on its own UTC schedule, on from the start."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # what define_asset_job returns; Dagster does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def on_schedule(
    job: dg.JobDefinition | UnresolvedAssetJobDefinition,
    name: str,
    cron: str,
    *,
    run_config: dict | None = None,
    description: str | None = None,
) -> dg.ScheduleDefinition:
    """A schedule for ``job``, in UTC, running unless someone turns it off in the UI."""
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        run_config=run_config,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


def scheduled_asset_job(
    job_name: str,
    selection: dg.AssetSelection,
    description: str,
    schedule_name: str,
    cron: str,
    *,
    run_config: dict | None = None,
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """A job that materializes (or checks) ``selection``, and its schedule."""
    job = dg.define_asset_job(job_name, selection=selection, description=description)
    return job, on_schedule(job, schedule_name, cron, run_config=run_config)
