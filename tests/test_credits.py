"""The credit ledger on real PostgreSQL: the balance formula, reserve/settle/refund, stale
releases, estimates, history paging and concurrent reservations."""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import arenas
from observatory_pipelines.core.collection.arenas.base import Arena, CollectedItem, QuerySpec
from observatory_pipelines.core.collection.credits import (
    HISTORY_MAX_LIMIT,
    CreditError,
    CreditReservationError,
    CreditService,
    Settlement,
)
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform import database

UTC = timezone.utc


@pytest.fixture
def credits(engine) -> CreditService:
    return CreditService(engine)


def make_user(engine) -> uuid.UUID:
    with engine.begin() as conn:
        return conn.execute(
            sa.text("INSERT INTO users (email) VALUES (:email) RETURNING id"),
            {"email": f"{uuid.uuid4().hex}@example.org"},
        ).scalar_one()


def allocate(engine, user_id, amount, valid_from=None, valid_until=None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO credit_allocations (user_id, credits_amount, valid_from, valid_until) "
                "VALUES (:user_id, :amount, :valid_from, :valid_until)"
            ),
            {
                "user_id": user_id,
                "amount": amount,
                "valid_from": valid_from or datetime.now(UTC).date(),
                "valid_until": valid_until,
            },
        )


def make_run(engine, user_id, status="running") -> uuid.UUID:
    with engine.begin() as conn:
        design_id = conn.execute(
            sa.text("INSERT INTO query_designs (owner_id, name, slug) VALUES (:owner, 'D', :slug) RETURNING id"),
            {"owner": user_id, "slug": f"design-{uuid.uuid4().hex[:12]}"},
        ).scalar_one()
        return conn.execute(
            sa.text(
                "INSERT INTO collection_runs (query_design_id, initiated_by, status) "
                "VALUES (:design, :user, :status) RETURNING id"
            ),
            {"design": design_id, "user": user_id, "status": status},
        ).scalar_one()


def add_transaction(engine, user_id, kind, amount, created_at) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO credit_transactions (user_id, credits_consumed, transaction_type, created_at) "
                "VALUES (:user_id, :amount, :kind, :created_at)"
            ),
            {"user_id": user_id, "amount": amount, "kind": kind, "created_at": created_at},
        )


def ledger(engine, run_id) -> list[tuple[str, str | None, int]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT transaction_type, arena, credits_consumed FROM credit_transactions "
                    "WHERE collection_run_id = :run ORDER BY created_at, id"
                ),
                {"run": run_id},
            )
        ]


# --- the balance formula -------------------------------------------------------------------------


def test_only_allocations_valid_today_count(engine, credits):
    user = make_user(engine)
    today = date(2026, 3, 15)
    allocate(engine, user, 100, date(2026, 3, 1))  # open-ended
    allocate(engine, user, 50, date(2026, 3, 10), today)  # its inclusive last day
    allocate(engine, user, 70, date(2026, 2, 1), date(2026, 3, 14))  # expired yesterday
    allocate(engine, user, 30, date(2026, 3, 16))  # starts tomorrow

    balance = credits.balance(user, today)

    assert (balance.allocated, balance.available, balance.period_start) == (150, 150, date(2026, 3, 1))
    assert credits.available(user, date(2026, 3, 16)) == 130
    assert credits.available(user, date(2026, 2, 28)) == 70


def test_spending_before_the_period_does_not_count(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 100, date(2026, 3, 1))
    add_transaction(engine, user, "settlement", 40, datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC))
    add_transaction(engine, user, "settlement", 25, datetime(2026, 3, 1, tzinfo=UTC))
    add_transaction(engine, user, "refund", 5, datetime(2026, 3, 2, tzinfo=UTC))

    balance = credits.balance(user, date(2026, 3, 15))

    assert (balance.settled, balance.refunded, balance.available) == (25, 5, 80)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_today_and_the_period_are_utc_whatever_the_session_time_zone(db_url, zone):
    # UTC+14 and UTC-11: at any moment at least one of them is on another date than UTC, so a
    # boundary taken from the session's current_date fails on one of the two.
    engine = database.make_engine(db_url, connect_args={"options": f"-c TimeZone={zone}"})
    try:
        today = datetime.now(UTC).date()
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        user = make_user(engine)
        allocate(engine, user, 70, today - timedelta(days=30), today - timedelta(days=1))
        allocate(engine, user, 100, today, today)
        add_transaction(engine, user, "settlement", 40, midnight - timedelta(seconds=1))
        add_transaction(engine, user, "settlement", 25, midnight)

        balance = CreditService(engine).balance(user)

        assert (balance.allocated, balance.settled, balance.available) == (100, 25, 75)
        assert balance.period_start == today
    finally:
        engine.dispose()


# --- reserve, settle, refund ---------------------------------------------------------------------


def test_settling_refunds_the_surplus(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)

    reservation = credits.reserve(user, run, 40, arena="youtube", platform="youtube")
    assert (reservation.transaction_type, reservation.credits_consumed) == ("reservation", 40)
    balance = credits.balance(user)
    assert (balance.reserved, balance.available) == (40, 60)

    outcome = credits.settle(run, 25, arena="youtube")

    assert outcome == Settlement(reserved=40, charged=25, refunded=15)
    assert outcome.overrun == 0
    assert ledger(engine, run) == [
        ("reservation", "youtube", 40),
        ("settlement", "youtube", 40),
        ("refund", "youtube", 15),
    ]
    balance = credits.balance(user)
    assert (balance.reserved, balance.settled, balance.refunded, balance.available) == (0, 40, 15, 75)


def test_an_overrun_is_charged_and_logged(engine, credits, caplog):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)
    credits.reserve(user, run, 10, arena="x_twitter")

    with caplog.at_level(logging.WARNING, logger="observatory_pipelines.core.collection.credits"):
        outcome = credits.settle(run, 25, arena="x_twitter")

    assert outcome == Settlement(reserved=10, charged=25, refunded=0)
    assert outcome.overrun == 15
    assert "overrun of 15" in caplog.text
    assert ledger(engine, run) == [("reservation", "x_twitter", 10), ("settlement", "x_twitter", 25)]
    assert credits.available(user) == 75


def test_settling_a_whole_run_attributes_the_cost_in_reservation_order(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)
    credits.reserve(user, run, 30, arena="gdelt")
    credits.reserve(user, run, 20, arena="rss_feeds")

    outcome = credits.settle(run, 35)

    assert outcome == Settlement(reserved=50, charged=35, refunded=15)
    assert ledger(engine, run) == [
        ("reservation", "gdelt", 30),
        ("reservation", "rss_feeds", 20),
        ("settlement", "gdelt", 30),
        ("settlement", "rss_feeds", 20),
        ("refund", "rss_feeds", 15),
    ]
    assert credits.available(user) == 65


def test_reserving_again_returns_the_open_reservation(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)

    first = credits.reserve(user, run, 30, arena="reddit")
    again = credits.reserve(user, run, 30, arena="reddit")
    other = credits.reserve(user, run, 30, arena="bluesky")

    assert again == first
    assert other.id != first.id
    assert credits.available(user) == 40

    credits.settle(run, 30, arena="reddit")


def test_a_retry_after_settlement_reserves_and_is_charged_again(engine, credits):
    """A Dagster retry of a failed attempt: the first attempt settled what it used."""
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)

    first = credits.reserve(user, run, 40, arena="reddit")
    credits.settle(run, 10, arena="reddit")  # failed half-way, used 10
    assert credits.available(user) == 90

    retry = credits.reserve(user, run, 40, arena="reddit")
    assert retry.id != first.id
    assert credits.available(user) == 50
    outcome = credits.settle(run, 25, arena="reddit")
    assert outcome.charged == 35  # both attempts, for this (run, arena)
    assert credits.available(user) == 65


def test_a_run_is_charged_to_one_user(engine, credits):
    owner, other = make_user(engine), make_user(engine)
    allocate(engine, owner, 100)
    allocate(engine, other, 100)
    run = make_run(engine, owner)
    credits.reserve(owner, run, 10, arena="gdelt")

    with pytest.raises(CreditReservationError, match=f"charged to user {owner}"):
        credits.reserve(other, run, 10, arena="wikipedia")


def test_zero_credit_reservations_are_recorded_even_without_credits(engine, credits):
    user = make_user(engine)
    run = make_run(engine, user)

    reservation = credits.reserve(user, run, 0, arena="rss_feeds")

    assert reservation.credits_consumed == 0
    assert credits.settle(run, 0, arena="rss_feeds") == Settlement(reserved=0, charged=0, refunded=0)
    assert ledger(engine, run) == [("reservation", "rss_feeds", 0), ("settlement", "rss_feeds", 0)]


def test_settling_twice_changes_nothing(engine, credits, caplog):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)
    credits.reserve(user, run, 40, arena="youtube")
    first = credits.settle(run, 25, arena="youtube")
    rows = ledger(engine, run)

    assert credits.settle(run, 25, arena="youtube") == first
    with caplog.at_level(logging.WARNING, logger="observatory_pipelines.core.collection.credits"):
        assert credits.settle(run, 99, arena="youtube") == first
    assert "already settled at 25 credits; ignoring the actual 99" in caplog.text
    assert credits.settle(run, 25) == first
    assert ledger(engine, run) == rows
    assert credits.available(user) == 75


def test_settling_without_a_reservation_is_refused(engine, credits):
    user = make_user(engine)
    run = make_run(engine, user)

    with pytest.raises(CreditError, match=f"run {run} \\(youtube\\) has no credit reservation"):
        credits.settle(run, 10, arena="youtube")


def test_the_refusal_names_the_run_the_estimate_and_the_balance(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 35)
    run = make_run(engine, user)

    with pytest.raises(CreditReservationError) as caught:
        credits.reserve(user, run, 120, arena="youtube")

    message = str(caught.value)
    assert message.startswith(f"cannot reserve 120 credits for run {run} (youtube): 35 available")
    assert "ask an admin for a larger allocation or lower the tier" in message
    assert "\n" not in message
    assert (caught.value.collection_run_id, caught.value.available, caught.value.requested) == (run, 35, 120)
    assert ledger(engine, run) == []


def test_unknown_users_and_runs_are_refused(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)
    stranger, nowhere = uuid.uuid4(), uuid.uuid4()

    with pytest.raises(CreditReservationError, match=f"user {stranger} does not exist"):
        credits.reserve(stranger, run, 10)
    with pytest.raises(CreditReservationError, match="no such collection run"):
        credits.reserve(user, nowhere, 10)
    with pytest.raises(CreditError, match=f"user {stranger} does not exist"):
        credits.refund(stranger, 10)


def test_an_admin_refund_adds_credits(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 100)
    run = make_run(engine, user)
    credits.reserve(user, run, 50)
    credits.settle(run, 50)

    entry = credits.refund(user, 20, collection_run_id=run, description="platform outage")

    assert (entry.transaction_type, entry.credits_consumed) == ("refund", 20)
    assert entry.description == "platform outage"
    assert credits.available(user) == 70
    with pytest.raises(ValueError):
        credits.refund(user, 0)


# --- stale reservations --------------------------------------------------------------------------


def test_release_stale_settles_finished_and_old_reservations_only(engine, credits):
    user = make_user(engine)
    allocate(engine, user, 1000)
    failed, cancelled, running, slow, settled = (
        make_run(engine, user, status) for status in ("failed", "cancelled", "running", "running", "failed")
    )
    for run in (failed, cancelled, running, slow, settled):
        credits.reserve(user, run, 100, arena="youtube")
    credits.reserve(user, failed, 50, arena="reddit")
    credits.settle(settled, 60, arena="youtube")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE credit_transactions SET created_at = now() - interval '7 hours' WHERE collection_run_id = :run"
            ),
            {"run": slow},
        )

    released = credits.release_stale(timedelta(hours=6))

    assert sorted(released) == sorted([failed, cancelled, slow])
    assert ledger(engine, running) == [("reservation", "youtube", 100)]
    assert sorted(ledger(engine, failed)[2:]) == [
        ("refund", "reddit", 50),
        ("refund", "youtube", 100),
        ("settlement", "reddit", 50),
        ("settlement", "youtube", 100),
    ]
    assert credits.balance(user).reserved == 100
    assert credits.available(user) == 1000 - 100 - 60
    assert credits.release_stale(timedelta(hours=6)) == []


# --- estimates -----------------------------------------------------------------------------------


class _Collects(Arena):
    platform = "test"
    description = "A test arena."

    def collect(self, spec, ctx) -> Iterator[CollectedItem]:
        return iter(())


class _Fractional(_Collects):
    name = "fractional"

    def estimate_credits(self, spec: QuerySpec) -> float:
        return 2.2


class _Default(_Collects):
    name = "default"
    expected_items_per_month = 1_500


class _Broken(_Collects):
    name = "broken"

    def estimate_credits(self, spec: QuerySpec) -> int:
        raise RuntimeError("no quota endpoint")


def _spec(tier: Tier) -> QuerySpec:
    return QuerySpec(
        design_slug="design",
        terms=("klima",),
        actors=(),
        window_start=datetime(2026, 3, 1, tzinfo=UTC),
        window_end=datetime(2026, 4, 1, tzinfo=UTC),
        tier=tier,
        options={},
    )


def test_estimates(credits, monkeypatch, caplog):
    monkeypatch.setattr(arenas, "registry", lambda: {cls.name: cls for cls in (_Fractional, _Default, _Broken)})

    assert credits.estimate("fractional", _spec(Tier.FREE)) == 3  # partial credits round up
    assert credits.estimate("default", _spec(Tier.MEDIUM)) == 2  # 1,500 items at 1 per 1,000
    assert credits.estimate("default", _spec(Tier.FREE)) == 0
    # Unknown arenas: the tier's rate for 1,000 items.
    assert [credits.estimate("unknown", _spec(tier)) for tier in Tier] == [0, 1, 5]
    with caplog.at_level(logging.WARNING, logger="observatory_pipelines.core.collection.credits"):
        assert credits.estimate("broken", _spec(Tier.PREMIUM)) == 0
    assert "arena broken could not estimate its credits" in caplog.text


# --- history -------------------------------------------------------------------------------------


def _walk(credits, user, limit) -> tuple[list, int]:
    entries, cursor, pages = [], None, 0
    while True:
        page, cursor = credits.history(user, limit=limit, before=cursor)
        entries.extend(page)
        pages += 1
        if cursor is None:
            return entries, pages


def test_history_pages_through_everything_once(engine, credits):
    user, neighbour = make_user(engine), make_user(engine)
    with engine.begin() as conn:
        # Three rows per timestamp, so page boundaries fall between rows that only the id orders.
        ids = set(
            conn.execute(
                sa.text(
                    "INSERT INTO credit_transactions "
                    "(user_id, credits_consumed, transaction_type, created_at) "
                    "SELECT :user_id, n, 'refund', :base + (n / 3) * interval '1 second' "
                    "FROM generate_series(0, 449) AS n RETURNING id"
                ),
                {"user_id": user, "base": datetime(2026, 3, 1, tzinfo=UTC)},
            ).scalars()
        )
    add_transaction(engine, neighbour, "refund", 1, datetime(2026, 3, 1, tzinfo=UTC))

    first, cursor = credits.history(user, limit=1000)
    assert len(first) == HISTORY_MAX_LIMIT and cursor is not None

    for limit, expected_pages in ((1000, 3), (50, 9), (7, 65)):
        entries, pages = _walk(credits, user, limit)
        keys = [(entry.created_at, entry.id) for entry in entries]
        assert pages == expected_pages
        assert len(keys) == 450 and {entry.id for entry in entries} == ids
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == 450

    assert credits.history(uuid.uuid4()) == ([], None)


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        base64.urlsafe_b64encode(b"2026-03-01T00:00:00+00:00").decode(),
        base64.urlsafe_b64encode(b"yesterday|0b5e0000-0000-4000-8000-000000000001").decode(),
        base64.urlsafe_b64encode(b"2026-03-01T00:00:00|0b5e0000-0000-4000-8000-000000000002").decode(),
        base64.urlsafe_b64encode(b"2026-03-01T00:00:00+00:00|nope").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_cursor_is_a_clear_error(engine, credits, cursor):
    with pytest.raises(ValueError, match="malformed history cursor .*pass back the next_cursor"):
        credits.history(make_user(engine), before=cursor)


def test_history_limit_must_be_positive(engine, credits):
    with pytest.raises(ValueError, match="limit must be at least 1"):
        credits.history(make_user(engine), limit=0)


# --- concurrency ---------------------------------------------------------------------------------

THREADS = 20
ROUNDS = 5


def _race(credits: CreditService, user: uuid.UUID, run: uuid.UUID) -> list[bool]:
    """Whether each of THREADS simultaneous 10-credit reservations (one arena each) succeeded."""
    barrier = threading.Barrier(THREADS)

    def attempt(arena: str) -> bool:
        barrier.wait()
        try:
            credits.reserve(user, run, 10, arena=arena)
        except CreditReservationError:
            return False
        return True

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(attempt, [f"arena_{i:02d}" for i in range(THREADS)]))


def test_concurrent_reservations_never_overspend(db_url):
    engine = database.make_engine(db_url, pool_size=THREADS, max_overflow=0)
    try:
        # Open every connection beforehand, so the threads race on the lock, not on connecting.
        warm = [engine.connect() for _ in range(THREADS)]
        for conn in warm:
            conn.close()
        credits = CreditService(engine)

        for _ in range(ROUNDS):
            user = make_user(engine)
            allocate(engine, user, 95)
            run = make_run(engine, user)

            outcomes = _race(credits, user, run)

            assert outcomes.count(True) == 9
            assert outcomes.count(False) == THREADS - 9
            assert credits.available(user) == 5
            assert [kind for kind, _, _ in ledger(engine, run)] == ["reservation"] * 9
    finally:
        engine.dispose()


def test_two_simultaneous_reservations_for_the_same_run_and_arena_make_one(db_url):
    """Two workers of one run and arena (a double submit, a retry racing its original) reserve at
    the same moment: both get the same reservation, and the ledger holds it once."""
    engine = database.make_engine(db_url, pool_size=2, max_overflow=0)
    try:
        warm = [engine.connect() for _ in range(2)]
        for conn in warm:
            conn.close()
        credits = CreditService(engine)
        for _ in range(ROUNDS * 4):
            user = make_user(engine)
            allocate(engine, user, 100)
            run = make_run(engine, user)
            barrier = threading.Barrier(2)

            def attempt(user: uuid.UUID, run: uuid.UUID, barrier: threading.Barrier) -> uuid.UUID:
                barrier.wait()
                return credits.reserve(user, run, 30, arena="rss_feeds", platform="rss").id

            with ThreadPoolExecutor(2) as pool:
                first, second = (pool.submit(attempt, user, run, barrier) for _ in range(2))
                first, second = first.result(timeout=60), second.result(timeout=60)

            assert first == second
            assert ledger(engine, run) == [("reservation", "rss_feeds", 30)]
            assert credits.balance(user).reserved == 30
    finally:
        engine.dispose()
