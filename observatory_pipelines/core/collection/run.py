"""Collect one arena's share of one corpus (query design × month), end to end.

``collect_arena`` is what a Dagster collection asset and ``observatory run`` call. In order:

1. load the design and this arena's settings (a bad ``arenas_config`` is a one-line error);
2. refuse to start without the pseudonymisation salt, or, for an arena that calls a keyed API,
   without the credential key (``OBSERVATORY_CREDENTIAL_KEY``); other arenas carry on;
3. a disabled arena completes at once as ``skipped``;
4. take a PostgreSQL advisory lock for (design, month, arena), so the same collection never
   runs twice at once, whoever launched it;
5. record the collection run (one per Dagster run and corpus) and this arena's task;
6. reserve the estimated credits, before any paid API is called;
7. stream the arena's items through ``records.prepare`` into ``ingest.write_batch``, batch by
   batch (each written on a background thread while the next is prepared: ``ingest.BatchWriter``),
   counting new / updated / unchanged / rejected / filtered records. A large file import into an
   empty month is loaded in bulk instead (``ingest.FirstLoad``): indexes are built once, at the end;
8. settle the credits with what was really used, and close the task, writing what each source
   gave to ``source_yields`` (``core.collection.yields``).

When the arena fails half-way, the records already read are still written, the task is marked
failed with a one-line error, unused credits are refunded, and the error is raised again for
Dagster to retry or report.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from observatory_pipelines.core.accounts import pool
from observatory_pipelines.core.collection import checkpoints, ingest, privacy, records, terms, yields
from observatory_pipelines.core.collection.arenas import get_arena
from observatory_pipelines.core.collection.arenas.base import (
    Checkpoint,
    CollectedItem,
    CollectionContext,
    QuerySpec,
    Rejected,
)
from observatory_pipelines.core.collection.credits import CreditService
from observatory_pipelines.core.collection.designs import Design, load_design
from observatory_pipelines.core.collection.spending import Budget, BudgetExhausted
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.http import HttpClient

BATCH_SIZE = 5_000
MAX_REJECTION_SAMPLES = 25


class CollectionInProgress(ObservatoryError):
    """The same design × month × arena is being collected by another run."""


@dataclass
class CollectionOutcome:
    arena: str
    design: str
    month: str
    status: str  # completed | skipped | failed
    collection_run_id: uuid.UUID | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    tier: str | None = None
    written: ingest.WriteCounts = field(default_factory=ingest.WriteCounts)
    rejected: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    rejection_samples: list[dict[str, str]] = field(default_factory=list)
    api_calls: int = 0
    credits_reserved: int = 0
    credits_spent: int = 0
    #: Set when a metered arena stopped at its reservation (not a failure): the one line saying so.
    stopped: str | None = None
    message: str = ""
    #: Sources the arena queried (``source_yields`` rows written for this task).
    sources: int = 0

    @property
    def filtered_total(self) -> int:
        return sum(self.filtered.values())


def lock_key(design: str, month: str, arena: str) -> int:
    """The advisory lock of one design × month × arena collection. Settlement checks it too
    (``core.maintenance.settlement``), to leave alone a run a worker is still collecting."""
    digest = hashlib.sha256(f"collect|{design}|{month}|{arena}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _author_directory(conn: sa.Connection) -> records.AuthorDirectory:
    rows = conn.execute(
        sa.text("SELECT platform, platform_user_id, platform_username, actor_id FROM actor_platform_presences")
    ).all()
    accounts: dict[tuple[str, str], uuid.UUID] = {}
    for platform, user_id, username, actor_id in rows:
        for account in (user_id, username):
            if account:
                accounts[(platform, account.lower())] = actor_id
    return records.AuthorDirectory(accounts)


def collection_partition_key(slug: str, month: str) -> str:
    """How ``collection_runs.partition_key`` names a corpus: ``YYYY-MM|slug``."""
    return f"{month}|{slug}"


def collection_month(partition_key: str | None) -> str:
    """The month (``YYYY-MM``) of a ``collection_runs.partition_key``; empty when it has none."""
    return (partition_key or "").split("|")[0]


def _start_run(conn: sa.Connection, design: Design, month: str, dagster_run_id: str, window) -> uuid.UUID:
    return conn.execute(
        sa.text(
            """
            INSERT INTO collection_runs (query_design_id, initiated_by, mode, status, tier, date_from,
                                         date_to, dagster_run_id, partition_key, started_at)
            VALUES (:design, :owner, 'batch', 'running', :tier, :start, :end, :run, :partition, now())
            ON CONFLICT ON CONSTRAINT uq_collection_runs_dagster_run_id
            DO UPDATE SET status = 'running', completed_at = NULL
            RETURNING id
            """
        ),
        {
            "design": design.id,
            "owner": design.owner_id,
            "tier": design.default_tier.value,
            "start": window[0],
            "end": window[1],
            "run": dagster_run_id,
            "partition": collection_partition_key(design.slug, month),
        },
    ).scalar_one()


def _start_task(conn: sa.Connection, run_id: uuid.UUID, arena: str, platform: str, status: str) -> None:
    conn.execute(
        sa.text(
            """
            INSERT INTO collection_tasks (collection_run_id, arena, platform, status, started_at, attempts)
            VALUES (:run, :arena, :platform, :status, now(), 1)
            ON CONFLICT (collection_run_id, arena) DO UPDATE SET
                status = EXCLUDED.status, started_at = now(), completed_at = NULL, error_message = NULL,
                attempts = collection_tasks.attempts + 1
            """
        ),
        {"run": run_id, "arena": arena, "platform": platform, "status": status},
    )


def _finish(conn: sa.Connection, outcome: CollectionOutcome) -> None:
    if outcome.collection_run_id is None:
        raise ValueError(f"{outcome.arena}: a task is finished only once its run has started")
    conn.execute(
        sa.text(
            """
            UPDATE collection_tasks SET
                status = :status, completed_at = now(), error_message = :error,
                records_collected = :written, records_new = :new, records_updated = :updated,
                records_rejected = :rejected, records_filtered = :filtered, api_calls = :api_calls,
                credits_reserved = :reserved, credits_spent = :spent,
                rejection_samples = CAST(:samples AS jsonb)
            WHERE collection_run_id = :run AND arena = :arena
            """
        ),
        {
            "status": outcome.status,
            "error": outcome.message if outcome.status == "failed" else None,
            "written": outcome.written.written,
            "new": outcome.written.new,
            "updated": outcome.written.updated,
            "rejected": outcome.rejected,
            "filtered": outcome.filtered_total,
            "api_calls": outcome.api_calls,
            "reserved": outcome.credits_reserved,
            "spent": outcome.credits_spent,
            "samples": json.dumps(outcome.rejection_samples, ensure_ascii=False),
            "run": outcome.collection_run_id,
            "arena": outcome.arena,
        },
    )
    refresh_run(conn, outcome.collection_run_id)


def refresh_run(conn: sa.Connection, collection_run_id: uuid.UUID) -> None:
    """Derive the run's status and totals from its tasks, whichever arena finishes last (or
    settlement, once it has failed the tasks of a run no worker will finish)."""
    conn.execute(
        sa.text(
            """
            UPDATE collection_runs r SET
                status = CASE WHEN t.failed THEN 'failed' WHEN t.open THEN 'running' ELSE 'completed' END,
                completed_at = CASE WHEN t.open THEN NULL ELSE now() END,
                records_collected = t.records, credits_spent = t.credits,
                error_log = t.errors
            FROM (
                SELECT bool_or(status = 'failed') AS failed,
                       bool_or(status IN ('pending', 'running')) AS open,
                       coalesce(sum(records_collected), 0) AS records,
                       coalesce(sum(credits_spent), 0) AS credits,
                       string_agg(arena || ': ' || error_message, E'\\n' ORDER BY arena)
                           FILTER (WHERE status = 'failed') AS errors
                FROM collection_tasks WHERE collection_run_id = :run
            ) t
            WHERE r.id = :run
            """
        ),
        {"run": collection_run_id},
    )


def collect_arena(
    engine: sa.Engine,
    *,
    design_slug: str,
    month: str,
    arena_name: str,
    dagster_run_id: str,
    salt: str | None = None,
    import_dir: str | None = None,
    http_factory: Callable[..., HttpClient] = HttpClient,
    log: Callable[[str], None] = lambda message: None,
    now: datetime | None = None,
    credential_key: str | None = None,
) -> CollectionOutcome:
    """``now`` fixes the collection time and the credential pool's clock (tests); ``credential_key``
    overrides ``OBSERVATORY_CREDENTIAL_KEY``."""
    arena = get_arena(arena_name)
    window = months.month_bounds(month)
    with engine.connect() as conn:
        design = load_design(conn, design_slug)
    settings = design.settings_for(arena)
    outcome = CollectionOutcome(
        arena=arena.name,
        design=design.slug,
        month=month,
        status="running",
        window_start=window[0],
        window_end=window[1],
        tier=settings.tier.value,
    )

    if not settings.enabled:
        with engine.begin() as conn:
            outcome.collection_run_id = _start_run(conn, design, month, dagster_run_id, window)
            _start_task(conn, outcome.collection_run_id, arena.name, arena.platform, "skipped")
            outcome.status = "skipped"
            outcome.message = f"arena {arena.name} is disabled for design '{design.slug}'; nothing collected"
            _finish(conn, outcome)
        return outcome

    salt_bytes = privacy.load_salt(salt)
    credentials = pool.for_arena(
        engine,
        arena,
        settings.tier.value,
        options=settings.options,
        key=credential_key,
        clock=(lambda: now) if now is not None else months.utc,
        log=log,
    )
    key = lock_key(design.slug, month, arena.name)
    with engine.connect() as lock_conn:
        # A session-level lock, held on this connection while the collection runs (the pooled
        # connection outlives us, so it is released explicitly).
        if not lock_conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one():
            raise CollectionInProgress(
                f"{arena.name} for design '{design.slug}', {month} is already being collected by another run; "
                "wait for it to finish or cancel it in the Dagster UI"
            )
        lock_conn.commit()
        try:
            return _collect_locked(
                engine,
                arena,
                design,
                settings,
                month,
                window,
                dagster_run_id,
                salt_bytes,
                import_dir,
                http_factory,
                log,
                now,
                credentials,
                outcome,
            )
        finally:
            lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            lock_conn.commit()


def _collect_locked(
    engine,
    arena,
    design,
    settings,
    month,
    window,
    dagster_run_id,
    salt,
    import_dir,
    http_factory,
    log,
    now,
    credentials,
    outcome: CollectionOutcome,
) -> CollectionOutcome:
    collected_at = now or datetime.now(timezone.utc)
    spec = QuerySpec(
        design_slug=design.slug,
        terms=design.terms,
        actors=design.actors,
        window_start=window[0],
        window_end=window[1],
        tier=settings.tier,
        options=settings.options,
        language=design.language,
        country=design.country,
    )
    with engine.begin() as conn:
        outcome.collection_run_id = _start_run(conn, design, month, dagster_run_id, window)
        _start_task(conn, outcome.collection_run_id, arena.name, arena.platform, "running")
        authors = _author_directory(conn)

    credits = CreditService(engine)
    tally = yields.SourceTally()
    failure: BaseException | None = None
    reserved = False
    budget: Budget | None = None
    items = 0
    http = http_factory(log=log)
    try:
        outcome.credits_reserved = arena.estimate_credits(spec)
        credits.reserve(
            design.owner_id,
            outcome.collection_run_id,
            outcome.credits_reserved,
            arena=arena.name,
            platform=arena.platform,
            description=f"{design.slug} {month} {arena.name} ({settings.tier.value})",
        )
        reserved = True
        budget = Budget(reserved=outcome.credits_reserved) if arena.metered else None
        today = collected_at.astimezone(timezone.utc).date()
        with engine.connect() as conn:
            resumes = checkpoints.load(conn, design.id, arena.name, month, today)
        ctx = records.RecordContext(
            arena=arena.name,
            query_design_id=design.id,
            collection_run_id=outcome.collection_run_id,
            tier=arena.fixed_record_tier or settings.tier.value,
            window_start=window[0],
            window_end=window[1],
            collected_at=collected_at,
            salt=salt,
            matcher=terms.TermMatcher(design.terms),
            keep_unmatched=arena.keep_unmatched,
            authors=authors,
        )
        batch: list[tuple] = []
        context = CollectionContext(
            http=http,
            import_dir=import_dir,
            log=log,
            credentials=credentials,
            searched=tally.searched,
            budget=budget,
            resume=resumes.get,
            collected_at=collected_at,
        )
        if (arena.input_bytes(spec, context) or 0) >= ingest.FIRST_LOAD_MIN_BYTES:
            writer = ingest.FirstLoad.open(engine, month, design.id, outcome.written, log)
        else:
            writer = ingest.BatchWriter(engine, outcome.written)
        try:
            for found in arena.collect(spec, context):
                if isinstance(found, Checkpoint):
                    if isinstance(writer, ingest.FirstLoad):  # stores nothing before its end
                        raise TypeError(f"arena {arena.name} checkpoints, so its input_bytes must be None")
                    # The page's items first: a checkpoint must never run ahead of what is stored.
                    if batch:
                        writer.submit(batch)
                        batch = []
                    writer.flush()
                    checkpoints.save(engine, design.id, arena.name, month, today, found)
                    continue
                source = ""
                if isinstance(found, CollectedItem):
                    items += 1
                    source = found.source
                    found = records.prepare(found, ctx)
                if isinstance(found, Rejected):
                    outcome.rejected += 1
                    tally.rejected(source)
                    if len(outcome.rejection_samples) < MAX_REJECTION_SAMPLES:
                        outcome.rejection_samples.append({"reason": found.reason, "source": found.source})
                elif isinstance(found, records.Filtered):
                    outcome.filtered[found.reason] = outcome.filtered.get(found.reason, 0) + 1
                    tally.filtered(source)
                else:
                    tally.stored(source)
                    batch.append(found)
                    if len(batch) >= BATCH_SIZE:
                        writer.submit(batch)
                        batch = []
        except BudgetExhausted as stop:
            # Not a failure: the reservation is the ceiling the researcher agreed to.
            outcome.stopped = stop.summary
            log(f"{arena.name}: {stop.summary}")
        finally:
            # Whatever was read before a failure is kept: re-running is idempotent anyway.
            try:
                if batch:
                    writer.submit(batch)
            finally:
                writer.close()
    except BaseException as err:  # recorded on the task, then raised again
        failure = err
    finally:
        outcome.api_calls = http.api_calls
        http.close()

    if reserved:
        try:
            used = budget.spent if budget is not None else arena.credits_used(spec, items, outcome.api_calls)
            outcome.credits_spent = credits.settle(outcome.collection_run_id, used, arena=arena.name).charged
        except ObservatoryError as err:
            failure = failure or err

    outcome.status = "failed" if failure else "completed"
    if failure is not None:
        outcome.message = str(failure).splitlines()[0] if str(failure) else type(failure).__name__
    else:
        outcome.message = (
            f"{outcome.written.new} new, {outcome.written.updated} updated, {outcome.written.unchanged} unchanged, "
            f"{outcome.rejected} rejected, {outcome.filtered_total} filtered"
        )
        if outcome.stopped:
            outcome.message += f"; {outcome.stopped}"
    with engine.begin() as conn:
        _finish(conn, outcome)
        outcome.sources = yields.record_yields(
            conn,
            collection_run_id=outcome.collection_run_id,
            arena=arena.name,
            month=month,
            tally=tally,
            collected_at=collected_at,
        )
    if failure is not None:
        raise failure
    return outcome
