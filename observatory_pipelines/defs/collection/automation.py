"""Keeping the design partitions in step with the database, the nightly collection, and the hourly
collection of the arenas that only show their latest items."""

from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import dagster as dg
import sqlalchemy as sa

from observatory_pipelines.core.collection import designs
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.platform import months
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.partitions import QUERY_DESIGN_PARTITIONS, corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource

_AC = dg.AutomationCondition
#: What the processing after collection (dedup, actor suggestions) runs on: eager, but triggered
#: only by a collection that changed the corpus (a new data version, see ``defs.collection.assets``),
#: so the hourly re-collection of a quiet feed does not re-run dedup, analysis and exports. It does
#: not wait for every arena either: a disabled or failing arena leaves its partition missing for
#: good, and what the others collected is worth processing without it.
AFTER_CORPUS_CHANGED = (
    _AC.eager()
    .without(~_AC.any_deps_missing())
    .replace(
        "any_deps_updated",
        _AC.any_deps_match(
            (_AC.newly_updated() & _AC.data_version_changed() & ~_AC.executed_with_root_target())
            | _AC.will_be_requested()
        ).with_label("any_deps_changed"),
    )
    .with_label("after_corpus_changed")
)

collect_corpus_job = dg.define_asset_job(
    "collect_corpus",
    selection=dg.AssetSelection.groups("collection"),
    description="Collect every arena for one corpus (month × query design), the arenas in parallel processes.",
    # Arenas wait on remote APIs, so they run side by side; everything else runs in process.
    executor_def=dg.multiprocess_executor,
)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def sync_query_design_partitions(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    """Adds a design partition for each active query design and removes those of deleted designs.

    Inactive designs keep their partition, so their materialization history stays visible.
    """
    known = set(context.instance.get_dynamic_partitions(QUERY_DESIGN_PARTITIONS))
    try:
        with postgres.engine() as engine, engine.connect() as conn:
            requests = design_partition_requests(conn, known)
    except dg.Failure as failure:
        return dg.SkipReason(f"design partitions not synced: {failure.description}")
    if not requests:
        return dg.SkipReason(f"{len(known)} design partitions, all in step with the database")
    return dg.SensorResult(dynamic_partitions_requests=requests)


def design_partition_requests(
    conn: sa.Connection, known: set[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """What brings the design partitions ``known`` in step with the database: active designs
    added, deleted designs removed (inactive designs keep theirs, so their history stays visible)."""
    active = set(designs.active_design_slugs(conn))
    existing_designs = set(designs.all_design_slugs(conn))
    to_add = sorted(active - known)
    to_delete = sorted(known - existing_designs)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if to_add:
        requests.append(query_design_partitions.build_add_request(to_add))
    if to_delete:
        requests.append(query_design_partitions.build_delete_request(to_delete))
    return requests


def months_to_collect(when: datetime) -> list[str]:
    """The current month, plus a last pass over the previous month on the 1st."""
    current = months.current_month(when)
    if when.astimezone(timezone.utc).day == 1:
        previous = months.add_months(current, -1)
        if previous >= months.FIRST_MONTH:
            return [previous, current]
    return [current]


def _corpus_run_requests(
    context: dg.ScheduleEvaluationContext,
    postgres: PostgresResource,
    months_for: Callable[[datetime], list[str]],
    name: str,
    asset_selection: Sequence[dg.AssetKey] | None = None,
):
    """One run of ``collect_corpus_job`` per active design and month ``months_for`` the tick's
    time gives, restricted to ``asset_selection`` when given; ``name`` starts each run key."""
    when = context.scheduled_execution_time or datetime.now(timezone.utc)
    try:
        with postgres.engine() as engine, engine.connect() as conn:
            active = designs.active_design_slugs(conn)
    except dg.Failure as failure:
        yield dg.SkipReason(f"nothing collected ({name}): {failure.description}")
        return
    known = set(context.instance.get_dynamic_partitions(QUERY_DESIGN_PARTITIONS))
    waiting = sorted(set(active) - known)
    if waiting:
        context.log.warning(f"designs without a partition yet (the sensor adds them): {', '.join(waiting)}")
    for slug in active:
        if slug not in known:
            continue
        for month in months_for(when):
            yield dg.RunRequest(
                partition_key=corpus_key(month, slug),
                run_key=f"{name}|{slug}|{month}|{when:%Y-%m-%dT%H:%M}",
                asset_selection=asset_selection,
            )


#: The hour (UTC) of the nightly collection, which the hourly one leaves to it.
NIGHTLY_HOUR = 1


@dg.schedule(
    job=collect_corpus_job,
    cron_schedule=f"0 {NIGHTLY_HOUR} * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: re-collect the current month for every active design (and the previous month on the 1st).",
)
def nightly_collection(context: dg.ScheduleEvaluationContext, postgres: PostgresResource):
    yield from _corpus_run_requests(context, postgres, months_to_collect, "nightly")


def latest_only_collections() -> list[dg.AssetKey]:
    """The collection assets of arenas whose sources show only their latest items (``Arena.latest_only``)."""
    return [asset_keys.collection(name) for name, cls in registry().items() if cls.latest_only]


@dg.schedule(
    job=collect_corpus_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly: collect the arenas that only show their latest items (RSS feeds) for the current month, "
        "for every active design, before anything scrolls out of the feed. Re-collecting adds no rows."
    ),
)
def hourly_latest_collection(context: dg.ScheduleEvaluationContext, postgres: PostgresResource):
    when = context.scheduled_execution_time or datetime.now(timezone.utc)
    if when.astimezone(timezone.utc).hour == NIGHTLY_HOUR:
        # The nightly run collects these arenas too; a second run of the same corpus would only queue behind it.
        yield dg.SkipReason("the nightly collection covers this hour")
        return
    yield from _corpus_run_requests(
        context,
        postgres,
        lambda when: [months.current_month(when)],
        "hourly",
        asset_selection=latest_only_collections(),
    )
