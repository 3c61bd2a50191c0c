"""The 6-hourly settlement of collection runs whose worker is gone, run by Dagster in process against a
real PostgreSQL: stuck runs are closed, their credit reservations refunded, live runs left alone."""

import uuid
from datetime import datetime, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.collection.designs import load_design
from observatory_pipelines.core.maintenance.settlement import close_orphaned_runs
from observatory_pipelines.core.platform import months
from observatory_pipelines.defs.maintenance import settlement
from observatory_pipelines.defs.resources import PostgresResource
from tests.factories import MARCH, make_design

UTC = timezone.utc


def _open_collection(
    engine, slug: str, dagster_run_id: str, arenas: dict[str, int], started_hours_ago: float = 0
) -> uuid.UUID:
    """A collection run as collect_arena leaves it when its worker dies mid-collection: the run and
    each arena's task 'running', each arena's estimated credits reserved."""
    with engine.begin() as conn:
        design = load_design(conn, slug)
        run = collection._start_run(conn, design, MARCH, dagster_run_id, months.month_bounds(MARCH))
        for arena in arenas:
            collection._start_task(conn, run, arena, arena, "running")
        conn.execute(
            sa.text("UPDATE collection_runs SET started_at = now() - make_interval(secs => :s) WHERE id = :run"),
            {"s": started_hours_ago * 3600, "run": run},
        )
    for arena, credits in arenas.items():
        CreditService(engine).reserve(
            design.owner_id, run, credits, arena=arena, platform=arena, description=f"{slug} {MARCH} {arena} (free)"
        )
    return run


class _Crash(dg.Config):
    slug: str


def _crashing_collection_job(db_url: str) -> dg.JobDefinition:
    """A Dagster run that opens a collection, reserves its credits and dies before settling."""

    @dg.op
    def collect_then_crash(context: dg.OpExecutionContext, config: _Crash, postgres: PostgresResource):
        with postgres.engine() as engine:
            _open_collection(engine, config.slug, context.run.run_id, {"rss_feeds": 40, "gdelt": 25})
        raise RuntimeError("worker lost")

    @dg.job(resource_defs={"postgres": PostgresResource(database_url=db_url)})
    def crashing_collection():
        collect_then_crash()

    return crashing_collection


def _dagster_run(instance, status: dg.DagsterRunStatus) -> str:
    """A run in the instance with that status, as the daemon and run monitoring record it."""
    job = _crashing_collection_job("postgresql://unused@127.0.0.1:1/none")
    run_config = {"ops": {"collect_then_crash": {"config": {"slug": "klimadebat"}}}}
    return instance.create_run_for_job(job, run_config=run_config, status=status).run_id


def _settle(db_url: str, instance, **config) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions.merge(
        settlement.defs, dg.Definitions(resources={"postgres": PostgresResource(database_url=db_url)})
    )
    result = defs.resolve_job_def("settle_stale_collections").execute_in_process(
        run_config={"ops": {"settle_stale": {"config": config}}},
        instance=instance,
    )
    assert result.success
    return result


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def _run(engine, run_id: uuid.UUID) -> dict:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM collection_runs WHERE id = :r"), {"r": run_id}).mappings().one()
    return dict(row)


def _tasks(engine, run_id: uuid.UUID) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {
            arena: (status, error, completed is not None)
            for arena, status, error, completed in conn.execute(
                sa.text(
                    "SELECT arena, status, error_message, completed_at FROM collection_tasks "
                    "WHERE collection_run_id = :r"
                ),
                {"r": run_id},
            )
        }


def _owner(engine, slug: str) -> uuid.UUID:
    with engine.connect() as conn:
        return load_design(conn, slug).owner_id


def test_a_run_whose_dagster_run_failed_is_closed_and_its_credits_refunded(engine, db_url, instance):
    make_design(engine, slug="klimadebat")
    make_design(engine, slug="groen-omstilling")
    credits = CreditService(engine)
    owner, other_owner = _owner(engine, "klimadebat"), _owner(engine, "groen-omstilling")
    assert credits.available(owner) == 1_000

    crashed = _crashing_collection_job(db_url).execute_in_process(
        run_config={"ops": {"collect_then_crash": {"config": {"slug": "klimadebat"}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert instance.get_run_by_id(crashed.run_id).status == dg.DagsterRunStatus.FAILURE
    # A run that is still collecting: Dagster says STARTED and it began minutes ago.
    live = _dagster_run(instance, dg.DagsterRunStatus.STARTED)
    live_run = _open_collection(engine, "groen-omstilling", live, {"bluesky": 30})
    with engine.connect() as conn:
        (stuck,) = conn.execute(
            sa.text("SELECT id FROM collection_runs WHERE dagster_run_id = :d"), {"d": crashed.run_id}
        ).scalars()
    assert credits.available(owner) == 1_000 - 65
    assert _run(engine, stuck)["status"] == "running"

    with engine.connect() as worker:  # the live run's worker holds its collection lock, as collect_arena does
        worker.execute(
            sa.text("SELECT pg_advisory_lock(:k)"), {"k": collection.lock_key("groen-omstilling", MARCH, "bluesky")}
        )
        worker.commit()
        try:
            result = _settle(db_url, instance)
        finally:
            worker.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            worker.commit()

    reason = f"run ended without finishing (Dagster run {crashed.run_id} FAILURE)"
    assert _tasks(engine, stuck) == {"gdelt": ("failed", reason, True), "rss_feeds": ("failed", reason, True)}
    run = _run(engine, stuck)
    assert run["status"] == "failed" and run["completed_at"] is not None
    assert run["error_log"] == f"gdelt: {reason}\nrss_feeds: {reason}"
    assert credits.available(owner) == 1_000
    assert credits.balance(owner).reserved == 0

    assert _run(engine, live_run)["status"] == "running"
    assert _tasks(engine, live_run) == {"bluesky": ("running", None, False)}
    assert credits.balance(other_owner).reserved == 30

    metadata = _metadata(result)
    assert metadata["runs_closed"] == 1
    assert metadata["reservations_released"] == 2
    assert metadata["credits_refunded"] == 65
    assert f"| {stuck} | klimadebat | {MARCH} | gdelt, rss_feeds | failed | {reason} |" in metadata["closed_runs"]

    # Nothing is left to do, so a second pass changes nothing (the live run's worker still collects).
    with engine.connect() as worker:
        worker.execute(
            sa.text("SELECT pg_advisory_lock(:k)"), {"k": collection.lock_key("groen-omstilling", MARCH, "bluesky")}
        )
        worker.commit()
        try:
            again = _metadata(_settle(db_url, instance))
        finally:
            worker.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            worker.commit()
    assert (again["runs_closed"], again["credits_refunded"]) == (0, 0)
    assert again["closed_runs"] == "No collection run needed closing."
    assert credits.available(owner) == 1_000


def test_gone_and_overdue_runs_are_closed_unless_a_worker_still_collects(engine, db_url, instance):
    for slug in ("klimadebat", "vindmoeller", "landbrug", "tom", "havvind"):
        make_design(engine, slug=slug)
    started = [_dagster_run(instance, dg.DagsterRunStatus.STARTED) for _ in range(3)]
    # Dagster's run was deleted (or lived in another instance): it will never finish the collection.
    gone = _open_collection(engine, "klimadebat", "f3b1c0de-0000-4000-8000-000000000000", {"rss_feeds": 10})
    # Dagster still says STARTED after 30 hours, and no worker holds the collection lock.
    overdue = _open_collection(engine, "vindmoeller", started[0], {"gdelt": 5}, started_hours_ago=30)
    # Just as old, but a worker is collecting it: its collection lock is held.
    busy = _open_collection(engine, "landbrug", started[1], {"gdelt": 7}, started_hours_ago=30)
    # Dagster says STARTED and it began just now, but no worker holds its lock: the worker died
    # without Dagster hearing of it (a SIGKILLed `observatory run`).
    dead = _open_collection(engine, "havvind", started[2], {"rss_feeds": 4})
    # A run that never got a task (an old pending run).
    with engine.begin() as conn:
        empty = collection._start_run(conn, load_design(conn, "tom"), MARCH, "", months.month_bounds(MARCH))
        conn.execute(
            sa.text(
                "UPDATE collection_runs SET started_at = now() - interval '2 days', dagster_run_id = NULL WHERE id = :r"
            ),
            {"r": empty},
        )

    with engine.connect() as worker:
        worker.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": collection.lock_key("landbrug", MARCH, "gdelt")})
        worker.commit()
        try:
            metadata = _metadata(_settle(db_url, instance, stale_after_hours=24))
        finally:
            worker.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            worker.commit()

    assert _tasks(engine, gone) == {
        "rss_feeds": (
            "failed",
            f"run ended without finishing (Dagster run f3b1c0de-0000-4000-8000-000000000000 {settlement.NOT_FOUND})",
            True,
        )
    }
    (status, error, closed) = _tasks(engine, overdue)["gdelt"]
    assert (status, closed) == ("failed", True)
    assert error.startswith("run abandoned: still open since ") and error.endswith(f"(Dagster run {started[0]})")
    assert _run(engine, busy)["status"] == "running"
    assert _tasks(engine, busy) == {"gdelt": ("running", None, False)}
    empty_run = _run(engine, empty)
    assert empty_run["status"] == "failed" and empty_run["error_log"].startswith("run abandoned: still open since ")
    assert _tasks(engine, dead) == {
        "rss_feeds": (
            "failed",
            f"worker gone: no process holds its collection lock, so it died mid-collection (Dagster run {started[2]})",
            True,
        )
    }
    assert metadata["runs_closed"] == 4
    # The closed runs' reservations came back; the busy run's (made recently) still holds.
    assert metadata["credits_refunded"] == 10 + 5 + 4
    assert CreditService(engine).balance(_owner(engine, "landbrug")).reserved == 7


def test_close_orphaned_runs_wants_an_aware_cut_off(engine):
    with pytest.raises(ValueError, match="timezone-aware"):
        close_orphaned_runs(engine, {}, datetime(2026, 3, 1))


def test_only_ended_or_unknown_dagster_runs_are_reported(instance):
    runs = {
        status: _dagster_run(instance, status)
        for status in (
            dg.DagsterRunStatus.NOT_STARTED,
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED,
            dg.DagsterRunStatus.CANCELING,
            dg.DagsterRunStatus.SUCCESS,
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED,
        )
    }
    ended = settlement.ended_dagster_runs(instance, [*runs.values(), "no-such-run"])
    assert ended == {
        runs[dg.DagsterRunStatus.SUCCESS]: "SUCCESS",
        runs[dg.DagsterRunStatus.FAILURE]: "FAILURE",
        runs[dg.DagsterRunStatus.CANCELED]: "CANCELED",
        "no-such-run": settlement.NOT_FOUND,
    }
    assert settlement.ended_dagster_runs(instance, []) == {}


def test_schedule_runs_every_6_hours_in_utc():
    schedule = settlement.settle_stale_collections_schedule
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 */6 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "settle_stale_collections"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 14, 18, tzinfo=UTC))
    (request,) = settlement.settle_stale_collections_schedule.evaluate_tick(context).run_requests
    assert isinstance(request, dg.RunRequest)


def test_the_modules_load_beside_the_project_definitions():
    from observatory_pipelines.definitions import defs as project
    from observatory_pipelines.defs.maintenance import erasure

    merged = dg.Definitions.merge(project, settlement.defs, erasure.defs)
    dg.Definitions.validate_loadable(merged)
    repository = merged.get_repository_def()
    assert {"settle_stale_collections", "erase_actor"} <= {job.name for job in repository.get_all_jobs()}
    assert "settle_stale_collections_every_6_hours" in {s.name for s in repository.schedule_defs}


def test_stale_after_hours_must_be_positive(db_url, instance):
    defs = dg.Definitions.merge(
        settlement.defs, dg.Definitions(resources={"postgres": PostgresResource(database_url=db_url)})
    )
    with pytest.raises(Exception, match="stale_after_hours\n.*greater than or equal to 1"):
        defs.resolve_job_def("settle_stale_collections").execute_in_process(
            run_config={"ops": {"settle_stale": {"config": {"stale_after_hours": 0}}}},
            instance=instance,
        )
    assert settlement.SettleConfig().stale_after_hours == 24
