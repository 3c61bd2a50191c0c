"""Content retention: old monthly partitions are dropped only when a verified backup holds them.
Real servers (PostgreSQL 15 and 18), real backups in a local folder and on an S3 server."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.maintenance import backup, partitions, retention
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.defs.maintenance import retention as retention_defs
from observatory_pipelines.defs.maintenance.retention import content_retention, content_retention_daily
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import make_design

UTC = timezone.utc
# With the default 730 days the cutoff is 2024-06-01 00:00 UTC: May 2024 has just expired.
NOW = datetime(2026, 6, 1, tzinfo=UTC)
COLLECTED_2023 = datetime(2023, 2, 20, 9, tzinfo=UTC)
RECOLLECTED = datetime(2025, 3, 4, 8, tzinfo=UTC)
OLD = ["content_records_2023_01", "content_records_2023_02"]
EMPTY = ["content_records_2023_03", "content_records_2024_05"]


# No backup, storage or database setting from the machine leaks into a test.
pytestmark = pytest.mark.usefixtures("isolated_settings")


def insert(engine, design, published: datetime, collected: datetime, n: int, prefix: str) -> None:
    """``n`` items, each registered in content_items and stored in content_records, as ingest does."""
    rows = [
        {
            "p": published + timedelta(hours=i),
            "id": f"{prefix}{i}",
            "c": collected,
            "d": design,
            "t": f"Klimadebat {i} fra Ærø: grøn omstilling og vindmøller ved Æbelø",
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO content_items (query_design_id, platform, platform_id, published_at) "
                "VALUES (:d, 'rss', :id, :p)"
            ),
            rows,
        )
        conn.execute(
            sa.text(
                "INSERT INTO content_records (published_at, platform, arena, platform_id, text_content, "
                "collected_at, query_design_id) VALUES (:p, 'rss', 'rss_feeds', :id, :t, :c, :d)"
            ),
            rows,
        )


@pytest.fixture
def archive(engine):
    """Jan and Feb 2023 with rows, an empty March 2023, March 2026 with rows, and a 2022 row parked
    in the default partition. Which of them are expired is the same on any day from 2025 to 2027,
    so the Dagster tests, which run on the wall clock, can use it."""
    partitions.ensure_partitions(engine, first_month="2023-01", months_ahead=0, now=datetime(2023, 3, 1, tzinfo=UTC))
    design = make_design(engine, slug="arkiv", terms=("klima", "grøn omstilling"))
    insert(engine, design, datetime(2023, 1, 5, tzinfo=UTC), COLLECTED_2023, 3, "jan")
    insert(engine, design, datetime(2023, 2, 7, tzinfo=UTC), COLLECTED_2023, 2, "feb")
    insert(engine, design, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC), 4, "mar")
    insert(engine, design, datetime(2022, 12, 24, tzinfo=UTC), COLLECTED_2023, 1, "jul")
    return design


@pytest.fixture
def old_months(engine, archive):
    """The archive, plus an empty May 2024 (expired on NOW exactly) and June 2024 with rows (not expired)."""
    with engine.begin() as conn:
        for month in ("2024-05", "2024-06"):
            partitions.create_month_partition(conn, month)
    insert(engine, archive, datetime(2024, 6, 10, tzinfo=UTC), datetime(2024, 6, 11, tzinfo=UTC), 2, "jun")
    return archive


def row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        tables = (
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relname LIKE 'content\\_records\\_%' AND c.relkind = 'r' ORDER BY 1"
                )
            )
            .scalars()
            .all()
        )
        quote = conn.dialect.identifier_preparer.quote
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {quote(t)}")).scalar_one() for t in tables}


def decisions(plan) -> dict[str, tuple[str, str]]:
    return {p.name: (p.action, p.reason) for p in plan.partitions}


def make_backup(db_url, store, when: datetime) -> str:
    # A long backup retention: these tests keep several backups of made-up ages side by side.
    return backup.run_backup(db_url, store, now=when, retention_days=100_000).key


# --- planning and dropping --------------------------------------------------------------------------


def test_without_a_backup_only_the_empty_expired_month_goes(engine, old_months, local_store):
    before = row_counts(engine)
    plan = retention.plan_retention(engine, local_store, now=NOW)

    assert plan.cutoff == datetime(2024, 6, 1, tzinfo=UTC) and plan.retention_days == 730
    decided = decisions(plan)
    for name in EMPTY:
        assert decided[name] == (retention.DROP, "empty: no backup needed")
    for name in OLD:
        action, reason = decided[name]
        assert action == retention.KEEP and reason.startswith("no complete backup in ")
        assert "observatory backup" in reason
    assert decided["content_records_default"] == (retention.KEEP, "the default partition is never dropped")
    assert decided["content_records_2024_06"] == (retention.KEEP, "within the retention (expires 2026-07-01)")
    assert decided["content_records_2026_03"][0] == retention.KEEP
    assert [p.name for p in plan.expired_kept] == OLD
    assert len(plan.warnings) == 2 and all("past the retention but kept" in w for w in plan.warnings)
    assert plan.backup is None and not plan.backup_verified
    by_name = {p.name: p for p in plan.partitions}
    january = by_name["content_records_2023_01"]
    assert (january.rows, january.last_write) == (3, COLLECTED_2023)

    result = retention.apply_retention(engine, plan)
    assert [p.name for p in result.dropped] == EMPTY and not result.skipped
    after = row_counts(engine)
    assert after == {k: v for k, v in before.items() if k not in EMPTY}


def test_a_verified_newer_backup_lets_the_old_months_go_and_nothing_else(db_url, engine, old_months, store):
    key = make_backup(db_url, store, datetime(2026, 5, 31, 2, tzinfo=UTC))
    before = row_counts(engine)

    plan = retention.plan_retention(engine, store, now=NOW)
    assert plan.backup.key == key and plan.backup_verified
    assert [p.name for p in plan.to_drop] == [*OLD, *EMPTY]
    assert decisions(plan)["content_records_2023_01"] == (retention.DROP, f"3 rows held by verified backup {key}")
    assert not plan.warnings

    result = retention.apply_retention(engine, plan)
    assert [p.name for p in result.dropped] == [*OLD, *EMPTY]
    after = row_counts(engine)
    assert after == {k: v for k, v in before.items() if k not in [*OLD, *EMPTY]}
    assert after["content_records_default"] == 1 and after["content_records_2026_03"] == 4
    with engine.connect() as conn:
        left = {p.name for p in partitions.list_partitions(conn)}
        assert not left & {*OLD, *EMPTY}
        assert conn.execute(sa.text("SELECT to_regclass('content_records_2023_01')")).scalar() is None
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM content_records WHERE published_at < '2024-06-01 00:00+00'")
            ).scalar_one()
            == 1
        )
        # The dropped months' items are forgotten with them; the kept months' stay registered.
        registered = conn.execute(
            sa.text(
                "SELECT to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM'), count(*) FROM content_items GROUP BY 1"
            )
        ).all()
        assert dict(registered) == {"2022-12": 1, "2024-06": 2, "2026-03": 4}

    # The next run finds nothing to do, and downloads nothing for it.
    again = retention.plan_retention(engine, store, now=NOW)
    assert not again.to_drop and not again.warnings and not again.backup_verified


def test_a_backup_older_than_a_months_last_write_keeps_that_month(db_url, engine, old_months, local_store):
    # January 2023 was collected again after the backup: the backup misses that collection.
    key = make_backup(db_url, local_store, datetime(2025, 1, 1, 2, tzinfo=UTC))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE content_records_2023_01 SET collected_at = :c"), {"c": RECOLLECTED})

    plan = retention.plan_retention(engine, local_store, now=NOW)
    action, reason = decisions(plan)["content_records_2023_01"]
    assert action == retention.KEEP
    assert reason == (
        f"the newest backup, {key} (2025-01-01 02:00 UTC), is older than its last write (2025-03-04 08:00 UTC)"
    )
    assert decisions(plan)["content_records_2023_02"][0] == retention.DROP
    retention.apply_retention(engine, plan)
    assert row_counts(engine)["content_records_2023_01"] == 3
    assert "content_records_2023_02" not in row_counts(engine)


def test_a_damaged_newest_backup_drops_nothing_and_says_so(db_url, engine, old_months, local_store):
    make_backup(db_url, local_store, datetime(2026, 4, 1, 2, tzinfo=UTC))  # intact, older: not used instead
    newest = make_backup(db_url, local_store, datetime(2026, 5, 31, 2, tzinfo=UTC))
    with local_store.open(newest) as handle:
        good = bytearray(handle.read())
    good[len(good) // 2] ^= 0x01
    local_store.put_stream(newest, io.BytesIO(bytes(good)), len(good), metadata=local_store.stat(newest).metadata)
    before = row_counts(engine)

    plan = retention.plan_retention(engine, local_store, now=NOW)
    assert not plan.backup_verified
    assert plan.backup_problem.startswith(f"the newest backup could not be verified: backup {newest} is corrupted")
    for name in OLD:
        assert decisions(plan)[name] == (retention.KEEP, plan.backup_problem)
    result = retention.apply_retention(engine, plan)
    assert [p.name for p in result.dropped] == EMPTY
    assert row_counts(engine) == {k: v for k, v in before.items() if k not in EMPTY}


def test_rows_missing_from_the_backup_keep_the_month(db_url, engine, old_months, local_store):
    """A row whose collected_at precedes the backup can still be missing from it (its transaction
    committed after pg_dump's snapshot): the row count, not the timestamp, shows it."""
    key = make_backup(db_url, local_store, datetime(2026, 5, 31, 2, tzinfo=UTC))
    insert(engine, old_months, datetime(2023, 2, 14, tzinfo=UTC), datetime(2026, 5, 31, 1, 59, tzinfo=UTC), 1, "sen")

    plan = retention.plan_retention(engine, local_store, now=NOW)
    assert decisions(plan)["content_records_2023_02"] == (
        retention.KEEP,
        (
            f"the verified backup {key} holds 2 rows of it, the database 3 (written after the backup began); "
            "a later backup will cover it"
        ),
    )
    assert decisions(plan)["content_records_2023_01"][0] == retention.DROP


def test_a_month_written_to_after_planning_is_kept(db_url, engine, old_months, local_store):
    make_backup(db_url, local_store, datetime(2026, 5, 31, 2, tzinfo=UTC))
    plan = retention.plan_retention(engine, local_store, now=NOW)
    insert(engine, old_months, datetime(2023, 1, 30, tzinfo=UTC), COLLECTED_2023, 1, "ny")

    result = retention.apply_retention(engine, plan)
    assert [p.name for p in result.dropped] == ["content_records_2023_02", *EMPTY]
    (skipped,) = result.skipped
    assert skipped.name == "content_records_2023_01"
    assert skipped.reason.startswith("it was written to after the plan was made (4 rows now, 3 planned)")
    assert row_counts(engine)["content_records_2023_01"] == 4


def test_a_month_locked_by_a_writer_is_left_for_the_next_run(db_url, engine, old_months, local_store, monkeypatch):
    make_backup(db_url, local_store, datetime(2026, 5, 31, 2, tzinfo=UTC))
    plan = retention.plan_retention(engine, local_store, now=NOW)
    monkeypatch.setattr(retention, "LOCK_TIMEOUT", "200ms")
    writer = engine.connect()
    try:
        # An open transaction that writes to January 2023 (as a late re-collection would).
        writer.execute(sa.text("LOCK TABLE content_records_2023_01 IN ROW EXCLUSIVE MODE"))
        result = retention.apply_retention(engine, plan)
    finally:
        writer.rollback()
        writer.close()
    assert [p.name for p in result.dropped] == ["content_records_2023_02", *EMPTY]
    (skipped,) = result.skipped
    assert (skipped.name, skipped.reason) == (
        "content_records_2023_01",
        "it was busy (locks not granted within 200ms); the next run tries again",
    )
    assert result.warnings == [f"content_records_2023_01 was not dropped: {skipped.reason}"]
    assert row_counts(engine)["content_records_2023_01"] == 3


def test_dry_run_table_lists_what_would_go_and_changes_nothing(db_url, engine, old_months, local_store):
    make_backup(db_url, local_store, datetime(2026, 5, 31, 2, tzinfo=UTC))
    before = row_counts(engine)
    plan = retention.plan_retention(engine, local_store, now=NOW)
    table = retention.markdown_table(plan, dry_run=True)

    assert row_counts(engine) == before
    lines = table.splitlines()
    assert lines[0] == "| partition | month | rows | last write | decision |"
    row = next(line for line in lines if line.startswith("| content_records_2023_01 |"))
    assert row.startswith("| content_records_2023_01 | 2023-01 | 3 | 2023-02-20 09:00 UTC | would drop (3 rows held")
    assert "| content_records_default | default |  |  | kept: the default partition is never dropped |" in lines
    assert "| content_records_2024_05 | 2024-05 | 0 |  | would drop (empty: no backup needed) |" in lines


def test_the_boundary_month_and_the_current_month(engine, local_store):
    partitions.ensure_partitions(engine, first_month="2024-04", months_ahead=0, now=datetime(2024, 5, 2, tzinfo=UTC))
    # One second before May 2024 expires, only April has.
    plan = retention.plan_retention(engine, local_store, now=NOW - timedelta(seconds=1))
    expired = {p.name for p in plan.partitions if p.expired}
    assert expired == {"content_records_2024_04"}
    # A retention of one day: every month but the current one (March 2026's table is current on
    # 2026-03-15) is expired; the current and later ones never are.
    plan = retention.plan_retention(engine, local_store, retention_days=1, now=datetime(2026, 3, 15, tzinfo=UTC))
    decided = decisions(plan)
    assert {p.name for p in plan.partitions if p.expired} == {
        "content_records_2024_04",
        "content_records_2024_05",
        "content_records_2026_02",
    }
    assert decided["content_records_2026_03"] == (retention.KEEP, "current or future month")
    assert decided["content_records_2026_04"] == (retention.KEEP, "current or future month")


def test_partitions_made_from_the_first_retained_month_are_not_dropped_again(engine, local_store):
    first = retention.first_retained_month(now=NOW)
    assert first == "2024-06"  # May 2024 ends on the cutoff itself
    assert retention.first_retained_month(retention_days=1, now=datetime(2026, 3, 1, 12, tzinfo=UTC)) == "2026-02"
    partitions.ensure_partitions(engine, first_month=first, months_ahead=0, now=NOW)
    plan = retention.plan_retention(engine, local_store, now=NOW)
    assert not [p for p in plan.partitions if p.expired]


@pytest.mark.parametrize("value", ["tre år", "0", "-30", "1.5", "730 dage"])
def test_a_bad_content_retention_days_stops_with_one_line(engine, local_store, monkeypatch, value):
    monkeypatch.setenv("CONTENT_RETENTION_DAYS", value)
    with pytest.raises(ConfigError) as err:
        retention.plan_retention(engine, local_store, now=NOW)
    assert str(err.value) == f"CONTENT_RETENTION_DAYS must be a whole number of days, 1 or more; got {value!r}"


def test_content_retention_days_from_the_environment(engine, old_months, local_store, monkeypatch):
    monkeypatch.setenv("CONTENT_RETENTION_DAYS", " ")
    assert retention.plan_retention(engine, local_store, now=NOW).retention_days == 730
    monkeypatch.setenv("CONTENT_RETENTION_DAYS", "10000")
    assert not [p for p in retention.plan_retention(engine, local_store, now=NOW).partitions if p.expired]
    # Further back than the calendar goes: nothing expires, nothing breaks.
    monkeypatch.setenv("CONTENT_RETENTION_DAYS", "99999999999")
    plan = retention.plan_retention(engine, local_store, now=NOW)
    assert not plan.to_drop and plan.cutoff.year == 1


# --- what may be dropped at all ----------------------------------------------------------------------


def _forged_plan(name: str, month: str | None) -> retention.RetentionPlan:
    plan = retention.RetentionPlan(now=NOW, retention_days=730, cutoff=datetime(2024, 6, 1, tzinfo=UTC), store="x")
    plan.partitions.append(retention.PartitionDecision(name, month, True, retention.DROP, "forged", 0, None))
    return plan


@pytest.mark.parametrize(
    "name",
    [
        "content_records_default",
        "content_records",
        "users",
        'content_records_2023_01"; DROP TABLE users; --',
        "content_records_2026_05",  # not expired on NOW
    ],
)
def test_apply_refuses_anything_but_an_expired_monthly_partition(engine, old_months, name):
    before = row_counts(engine)
    with pytest.raises(ValueError, match="refusing"):
        retention.apply_retention(engine, _forged_plan(name, None))
    assert row_counts(engine) == before


def test_apply_drops_only_real_partitions_of_content_records(engine):
    # A stray table with a partition's name, e.g. left behind by a manual DETACH.
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE content_records_2023_04 (id int)"))
        conn.execute(sa.text("INSERT INTO content_records_2023_04 VALUES (1)"))
    result = retention.apply_retention(engine, _forged_plan("content_records_2023_04", "2023-04"))
    assert not result.dropped
    assert result.skipped[0].reason == "it is no longer a partition of content_records"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM content_records_2023_04")).scalar_one() == 1


# --- in Dagster ----------------------------------------------------------------------------------------


def run_retention(instance, db_url, store_dir, dry_run=None, **kwargs):
    run_config = None if dry_run is None else {"ops": {"content_retention": {"config": {"dry_run": dry_run}}}}
    return dg.materialize(
        [content_retention],
        instance=instance,
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "storage": StorageResource(local_dir=str(store_dir)),
        },
        run_config=run_config,
        raise_on_error=False,
        **kwargs,
    )


def test_a_manual_launch_previews_and_the_scheduled_run_drops(instance, db_url, engine, archive, local_store):
    # The wall clock decides here: 2023 is far past the retention, whatever today is.
    key = backup.run_backup(db_url, local_store, retention_days=100_000).key
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE content_records_2023_01 SET collected_at = now() + interval '1 day'"))
    before = row_counts(engine)

    preview = run_retention(instance, db_url, local_store.root)
    assert preview.success
    assert not preview.asset_materializations_for_node("content_retention")
    (observation,) = [
        e.event_specific_data.asset_observation for e in preview.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.metadata["dry_run"].value is True
    assert observation.metadata["would_drop"].value == ["content_records_2023_02", "content_records_2023_03"]
    assert "| content_records_2023_02 | 2023-02 | 2 |" in observation.metadata["partitions"].value
    assert not preview.get_asset_check_evaluations()
    assert row_counts(engine) == before

    scheduled = (
        content_retention_daily.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 25, 3, 30, tzinfo=UTC))
        )
        .run_requests[0]
        .run_config
    )
    dry_run = scheduled["ops"]["content_retention"]["config"]["dry_run"]
    result = run_retention(instance, db_url, local_store.root, dry_run=dry_run)
    assert result.success
    metadata = result.asset_materializations_for_node("content_retention")[0].metadata
    assert metadata["dropped"].value == ["content_records_2023_02", "content_records_2023_03"]
    assert metadata["backup"].value == key and metadata["backup_verified"].value is True
    table = metadata["partitions"].value
    assert (
        "| content_records_2023_02 | 2023-02 | 2 | 2023-02-20 09:00 UTC | dropped (2 rows held by verified backup"
    ) in table
    assert "kept: the newest backup" in table
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "expired_partitions_dropped" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("content_records_2023_01 kept: the newest backup, ")
    assert set(row_counts(engine)) == set(before) - {"content_records_2023_02", "content_records_2023_03"}


def test_the_check_alone_plans_and_drops_nothing(instance, db_url, engine, archive, tmp_path):
    before = row_counts(engine)
    result = run_retention(
        instance,
        db_url,
        tmp_path / "objects",
        dry_run=False,
        selection=dg.AssetSelection.checks_for_assets(content_retention),
    )
    assert result.success and not result.asset_materializations_for_node("content_retention")
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["kept_expired"].value.keys() == set(OLD)
    assert row_counts(engine) == before


def test_a_bad_setting_fails_the_run_with_one_line(instance, db_url, archive, tmp_path, monkeypatch):
    monkeypatch.setenv("CONTENT_RETENTION_DAYS", "to år")
    result = run_retention(instance, db_url, tmp_path / "objects", dry_run=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data.description == (
        "CONTENT_RETENTION_DAYS must be a whole number of days, 1 or more; got 'to år'"
    )


def test_the_retention_job_and_schedule():
    assert content_retention_daily.job_name == "apply_content_retention"
    assert (content_retention_daily.cron_schedule, content_retention_daily.execution_timezone) == ("30 3 * * *", "UTC")
    tick = content_retention_daily.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 25, 3, 30, tzinfo=UTC))
    )
    (request,) = tick.run_requests
    assert request.run_config == {"ops": {"content_retention": {"config": {"dry_run": False}}}}
    resources = {"postgres": PostgresResource(), "storage": StorageResource()}
    definitions = dg.Definitions.merge(retention_defs.defs, dg.Definitions(resources=resources))
    job = definitions.resolve_job_def("apply_content_retention")
    assert job.graph.node_names() == ["content_retention"]
    # A launch from the UI without config previews.
    assert retention_defs.RetentionConfig().dry_run is True
