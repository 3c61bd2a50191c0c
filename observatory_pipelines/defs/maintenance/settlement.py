"""Settling what dead runs left behind: the ``settle_stale_collections`` job and its 6-hourly schedule.

A collection run whose worker died (killed, out of memory, a lost node) stays ``running`` and keeps
its credits reserved: nothing else would ever close it. Every 6 hours this job asks the Dagster
instance which of the open collection runs' Dagster runs have ended, closes those runs, the runs
whose collection locks no process holds any more (a worker Dagster never heard die) and any open
longer than ``stale_after_hours``, then refunds the reservations of finished runs.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.maintenance.settlement import ClosedRun, close_orphaned_runs, open_dagster_run_ids
from observatory_pipelines.core.platform import markdown
from observatory_pipelines.defs.maintenance.scheduling import on_schedule
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource

#: Dagster run statuses after which a run's steps never write again.
ENDED_STATUSES = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
#: What a Dagster run id that the instance does not know is reported as (deleted, or another instance).
NOT_FOUND = "not found in the Dagster instance"
#: Run ids per instance query.
LOOKUP_CHUNK = 100
TABLE_ROWS = 50


class SettleConfig(dg.Config):
    stale_after_hours: int = Field(
        default=24,
        ge=1,
        description="A collection run still open this long after it started is closed whatever Dagster says "
        "(unless a worker still holds its collection lock), and a reservation this old is released.",
    )


def ended_dagster_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, str]:
    """The runs among ``run_ids`` that ended, or that the instance does not know, with their status."""
    found: dict[str, dg.DagsterRunStatus] = {}
    for start in range(0, len(run_ids), LOOKUP_CHUNK):
        chunk = run_ids[start : start + LOOKUP_CHUNK]
        for run in instance.get_runs(filters=dg.RunsFilter(run_ids=chunk)):
            found[run.run_id] = run.status
    return {
        run_id: found[run_id].value if run_id in found else NOT_FOUND
        for run_id in run_ids
        if run_id not in found or found[run_id] in ENDED_STATUSES
    }


def closed_runs_markdown(closed: list[ClosedRun]) -> str:
    if not closed:
        return "No collection run needed closing."
    return markdown.table(
        ["collection run", "design", "month", "arenas", "status", "reason"],
        [(run.collection_run_id, run.design, run.month, run.arenas, run.status, run.reason) for run in closed],
        limit=TABLE_ROWS,
        rest="in collection_runs.",
    )


@dg.op(
    name="settle_stale",
    pool=CONTENT_DB_POOL,
    description="Close collection runs whose Dagster run ended, whose worker is gone (no process holds their "
    "collection lock) or that have been open too long: their open tasks fail with the reason and the run's "
    "status follows; then refund the credit reservations of "
    "finished runs and of reservations older than stale_after_hours.",
)
def settle_stale_op(context: dg.OpExecutionContext, config: SettleConfig, postgres: PostgresResource) -> dg.Output:
    now = datetime.now(timezone.utc)
    stale_after = timedelta(hours=config.stale_after_hours)
    with postgres.engine() as engine:
        ended = ended_dagster_runs(context.instance, open_dagster_run_ids(engine))
        closed = close_orphaned_runs(engine, ended, now - stale_after, log=context.log.info)
        released = CreditService(engine).release_stale_reservations(stale_after, now=now)
    refunded = sum(r.credits for r in released)
    summary = (
        f"closed {len(closed)} collection run(s); released {len(released)} reservation(s) of "
        f"{len({r.collection_run_id for r in released})} run(s), {refunded} credits refunded"
    )
    context.log.info(summary)
    return dg.Output(
        summary,
        metadata={
            "runs_closed": dg.MetadataValue.int(len(closed)),
            "closed_runs": dg.MetadataValue.md(closed_runs_markdown(closed)),
            "reservations_released": dg.MetadataValue.int(len(released)),
            "credits_refunded": dg.MetadataValue.int(refunded),
        },
    )


@dg.job(
    name="settle_stale_collections",
    description="Close collection runs left 'running' by Dagster runs that ended (failed, canceled, or gone), "
    "by workers that died (no process holds their collection lock) or that have been open longer than "
    "stale_after_hours (default 24), and refund the credits their reservations still hold. Runs every 6 hours.",
)
def settle_stale_collections_job():
    settle_stale_op()


settle_stale_collections_schedule = on_schedule(
    settle_stale_collections_job,
    "settle_stale_collections_every_6_hours",
    "0 */6 * * *",
    description="Every 6 hours: close collection runs whose worker is gone and refund their credit reservations.",
)

defs = dg.Definitions(jobs=[settle_stale_collections_job], schedules=[settle_stale_collections_schedule])
