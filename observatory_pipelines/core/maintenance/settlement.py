"""Settling collection runs whose worker is gone: closing the runs that no worker will finish.

A collection run whose worker died (killed, out of memory, a lost node) stays ``running``: nothing
in ``collection.run`` would ever close it. This is upkeep, not collection, so it lives with the
other maintenance: the ``settle_stale_collections`` job (``defs.maintenance.settlement``) asks
Dagster which of ``open_dagster_run_ids`` ended and hands them to ``close_orphaned_runs``. It shares
two things with collection itself: the advisory lock key of a (design, month, arena), and the
derivation of a run's status from its tasks.

The lock is the worker's pulse. A worker takes it before it opens its task and releases it only
after closing the task, on a session of its own; PostgreSQL releases it when that session dies with
its process. So a run one of whose tasks' locks is held is being collected and is left alone,
whatever Dagster says; and an open task whose lock nobody holds has lost its worker, even when
Dagster never heard of the death (an ``observatory run`` killed with SIGKILL leaves its Dagster run
``STARTED`` for good).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from observatory_pipelines.core.collection.run import collection_month, lock_key, refresh_run

#: Run statuses that say a worker is still collecting (or about to).
OPEN_RUN_STATUSES = ("pending", "running")


@dataclass(frozen=True)
class ClosedRun:
    """A collection run ``close_orphaned_runs`` closed."""

    collection_run_id: uuid.UUID
    design: str
    month: str
    partition_key: str | None
    dagster_run_id: str | None
    started_at: datetime
    #: The arenas whose open tasks were marked failed.
    arenas: tuple[str, ...]
    status: str
    reason: str


def open_dagster_run_ids(engine: sa.Engine) -> list[str]:
    """The Dagster runs of the collection runs still pending or running, to be looked up in the instance."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT DISTINCT dagster_run_id FROM collection_runs "
                    "WHERE status = ANY(CAST(:open AS text[])) AND dagster_run_id IS NOT NULL ORDER BY 1"
                ),
                {"open": list(OPEN_RUN_STATUSES)},
            ).scalars()
        )


def _collecting(conn: sa.Connection, keys: list[int]) -> bool:
    """Whether a session holds one of these collection locks: a worker is collecting right now."""
    # A bigint advisory lock shows in pg_locks as its high and low 32 bits (classid, objid).
    return bool(
        keys
        and conn.execute(
            sa.text(
                """
                SELECT EXISTS (
                    SELECT 1 FROM pg_locks
                    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                      AND ((classid::bigint << 32) | objid::bigint) = ANY(CAST(:keys AS bigint[]))
                )
                """
            ),
            {"keys": keys},
        ).scalar_one()
    )


def close_orphaned_runs(
    engine: sa.Engine,
    ended_dagster_runs: dict[str, str],
    started_before: datetime,
    log: Callable[[str], None] = lambda message: None,
) -> list[ClosedRun]:
    """Close the pending or running collection runs that no worker will finish.

    Those are the runs whose Dagster run ended (``ended_dagster_runs``: Dagster run id → what
    became of it, e.g. ``FAILURE`` or ``not found``; the caller asks Dagster), those that started
    before ``started_before``, and those with open tasks whose collection lock no session holds
    (the worker died, whatever Dagster believes). Their open tasks fail with the reason, and the
    run's status and error log are derived from its tasks again (a run without tasks fails
    outright). A run that another transaction is updating, or one of whose tasks' collection lock
    is still held (a worker is collecting it now, whatever Dagster says), is left for the next
    pass. Credits are not touched here: ``CreditService.release_stale`` refunds the reservations
    of runs once they are finished.
    """
    if started_before.tzinfo is None:
        raise ValueError("started_before must be timezone-aware")
    closed: list[ClosedRun] = []
    with engine.begin() as conn:
        runs = conn.execute(
            sa.text(
                """
                SELECT r.id, r.dagster_run_id, r.partition_key, coalesce(r.started_at, r.created_at) AS started_at,
                       d.slug,
                       coalesce(r.dagster_run_id = ANY(CAST(:ended AS text[])), false) AS ended,
                       coalesce(r.started_at, r.created_at) < :before AS overdue
                FROM collection_runs r JOIN query_designs d ON d.id = r.query_design_id
                WHERE r.status = ANY(CAST(:open AS text[]))
                  AND (r.dagster_run_id = ANY(CAST(:ended AS text[]))
                       OR coalesce(r.started_at, r.created_at) < :before
                       OR EXISTS (SELECT 1 FROM collection_tasks t WHERE t.collection_run_id = r.id
                                  AND t.status = ANY(CAST(:open AS text[]))))
                ORDER BY 4, r.id
                FOR UPDATE OF r SKIP LOCKED
                """
            ),
            {"open": list(OPEN_RUN_STATUSES), "ended": list(ended_dagster_runs), "before": started_before},
        ).all()
        for run in runs:
            open_arenas = (
                conn.execute(
                    sa.text(
                        "SELECT arena FROM collection_tasks WHERE collection_run_id = :run "
                        "AND status = ANY(CAST(:open AS text[])) ORDER BY arena"
                    ),
                    {"run": run.id, "open": list(OPEN_RUN_STATUSES)},
                )
                .scalars()
                .all()
            )
            month = collection_month(run.partition_key)
            if _collecting(conn, [lock_key(run.slug, month, arena) for arena in open_arenas]):
                if run.ended or run.overdue:
                    log(f"collection run {run.id} ({run.slug} {month}) is still being collected; left open")
                continue
            if run.ended:
                reason = (
                    f"run ended without finishing (Dagster run {run.dagster_run_id} "
                    f"{ended_dagster_runs[run.dagster_run_id]})"
                )
            elif run.overdue:
                reason = (
                    f"run abandoned: still open since {run.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M}Z "
                    f"(Dagster run {run.dagster_run_id or 'none'})"
                )
            elif open_arenas:
                reason = (
                    "worker gone: no process holds its collection lock, so it died mid-collection "
                    f"(Dagster run {run.dagster_run_id or 'none'})"
                )
            else:
                continue  # its last task closed since the query above: nothing to do
            conn.execute(
                sa.text(
                    "UPDATE collection_tasks SET status = 'failed', completed_at = now(), error_message = :reason "
                    "WHERE collection_run_id = :run AND status = ANY(CAST(:open AS text[]))"
                ),
                {"run": run.id, "reason": reason, "open": list(OPEN_RUN_STATUSES)},
            )
            refresh_run(conn, run.id)
            # With no task at all, nothing says why the run stopped: it fails with the reason.
            status = conn.execute(
                sa.text(
                    """
                    UPDATE collection_runs SET
                        status = CASE WHEN has_tasks THEN status ELSE 'failed' END,
                        completed_at = coalesce(completed_at, now()),
                        error_log = CASE WHEN has_tasks THEN error_log ELSE :reason END
                    FROM (SELECT EXISTS (SELECT 1 FROM collection_tasks WHERE collection_run_id = :run) AS has_tasks) t
                    WHERE id = :run
                    RETURNING status
                    """
                ),
                {"run": run.id, "reason": reason},
            ).scalar_one()
            closed.append(
                ClosedRun(
                    collection_run_id=run.id,
                    design=run.slug,
                    month=month,
                    partition_key=run.partition_key,
                    dagster_run_id=run.dagster_run_id,
                    started_at=run.started_at,
                    arenas=tuple(open_arenas),
                    status=status,
                    reason=reason,
                )
            )
    return closed
