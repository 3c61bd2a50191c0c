"""The credit ledger: reserve before collecting, settle afterwards, and what a user has left.

Ledger
    ``credit_transactions`` is append-only and ``credits_consumed`` is never negative; the type
    says which way a row counts:

    - ``reservation``: credits set aside for one arena of one collection run before it collects;
    - ``settlement``: closes the reservation of that (run, arena) and charges the amount it records;
    - ``refund``: gives credits back, either a settlement's surplus or an admin correction.

Allocations
    ``credit_allocations`` holds what users are given (``grant``, behind ``observatory credits
    grant``): an amount valid from one UTC day through another (inclusive) or open-ended.

Balance
    ``available = allocated - open_reserved - settled + refunded``, where

    - *allocated* sums the user's allocations valid today in UTC: ``valid_from <= today`` and
      ``valid_until`` NULL or ``>= today`` (``valid_until`` is the inclusive last day). Today is
      taken from Python's UTC clock, never from the session's ``current_date``, whose TimeZone
      would move the boundary;
    - the *period* starts at 00:00 UTC on the earliest ``valid_from`` among those allocations (today
      when there are none). Only transactions created in the period count, so last period's
      spending does not eat this period's allocation. A charge counts in the period it was settled
      in: a reservation made late in one period and settled in the next charges the next;
    - *open_reserved* sums reservations with no settlement of the same (run, arena) written at or
      after them (each settlement closes the reservations before it). A reservation
      whose run was deleted (``collection_run_id`` set NULL) can never be settled, so it holds
      nothing;
    - *settled* and *refunded* sum those rows.

Reservations
    A run is charged to one user, and each (run, arena) has at most one open reservation.
    Reserving again while it is open returns it, so a repeated call does not reserve twice. Once
    settled, a new reservation may be made: that is a Dagster retry of a failed attempt, which
    settled what it used, and the retry is a new collection attempt with its own reservation and
    charge. Zero-credit reservations are always accepted, even on
    a balance an overrun took below zero: free tiers cost nothing, and the row is the audit trail.

Settlement
    Settling writes a settlement of the reserved amount and refunds the surplus, so a (run,
    arena) nets exactly its actual cost. An overrun is charged in full on the settlement row and
    logged, and may take ``available`` below zero. When one call settles several reservations
    (``arena=None``), the actual cost is attributed to them in reservation order and any overrun
    to the last. ``release_stale`` settles abandoned reservations at 0, for the 6-hourly schedule;
    a late ``settle`` of a released reservation changes nothing and logs a warning.

Concurrency
    Under READ COMMITTED, "sum the balance, then insert a reservation" races: two transactions
    both see 95 credits and both reserve 90. Every write therefore locks the user's row first, so
    one user's ledger writes run one transaction at a time; the second waits, and its sum, being
    a new statement, takes a new snapshot that includes the first's reservation. The service pins
    READ COMMITTED because under REPEATABLE READ that snapshot would predate the wait. The lock is
    ``FOR NO KEY UPDATE``: it conflicts with itself as ``FOR UPDATE`` does, but not with the key-share
    locks that foreign-key checks take, so creating a run or a design for the user never waits on
    a reservation. The lock is per user, which is enough because a run is charged to one user.
"""

from __future__ import annotations

import base64
import logging
import math
import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta, timezone
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from observatory_pipelines.core.collection.arenas import get_arena
from observatory_pipelines.core.collection.arenas.base import QuerySpec
from observatory_pipelines.core.collection.tiers import TIER_DEFAULTS
from observatory_pipelines.core.models import CollectionRun, CreditAllocation, CreditTransaction, User
from observatory_pipelines.core.platform.errors import ObservatoryError

log = logging.getLogger(__name__)

HISTORY_MAX_LIMIT = 200
#: Items assumed when the registry does not know an arena, priced at the tier's per-1,000 rate.
FALLBACK_EXPECTED_ITEMS = 1_000
#: Run statuses after which nothing will settle a reservation but ``release_stale``.
FINISHED_RUN_STATUSES = ("completed", "failed", "cancelled")

_users = User.__table__
_allocations = cast(sa.Table, CreditAllocation.__table__)
# Declarative types ``__table__`` as any FromClause; this model maps a plain Table, which insert needs.
_ledger = cast(sa.Table, CreditTransaction.__table__)
_runs = CollectionRun.__table__


class CreditError(ObservatoryError):
    """A credit operation cannot go ahead; the message says why and what to do."""


class CreditReservationError(CreditError):
    """Credits could not be reserved for a collection run."""

    def __init__(self, message: str, *, collection_run_id: uuid.UUID, available: int, requested: int):
        self.collection_run_id = collection_run_id
        self.available = available
        self.requested = requested
        super().__init__(message)


@dataclass(frozen=True)
class Balance:
    allocated: int
    reserved: int
    settled: int
    refunded: int
    available: int
    period_start: date


@dataclass(frozen=True)
class Allocation:
    id: uuid.UUID
    credits: int
    valid_from: date
    valid_until: date | None  # inclusive; None: open-ended


@dataclass(frozen=True)
class LedgerEntry:
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    transaction_type: str
    credits_consumed: int
    collection_run_id: uuid.UUID | None
    arena: str | None
    platform: str | None
    description: str | None


@dataclass(frozen=True)
class Settlement:
    reserved: int
    charged: int
    refunded: int

    @property
    def overrun(self) -> int:
        return max(0, self.charged - self.reserved)


@dataclass(frozen=True)
class Release:
    """A reservation ``release_stale`` settled at 0: all its credits went back to the user."""

    collection_run_id: uuid.UUID
    arena: str | None
    credits: int


_ENTRY_COLUMNS = tuple(_ledger.c[f.name] for f in fields(LedgerEntry))


def _entry(row: Row) -> LedgerEntry:
    return LedgerEntry(*(row._mapping[column] for column in _ENTRY_COLUMNS))


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _amount(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(_ledger.c.credits_consumed).filter(condition), 0)


def _is_open(reservation: sa.FromClause) -> sa.ColumnElement[bool]:
    settlement = _ledger.alias("settlement")
    return sa.and_(
        reservation.c.transaction_type == "reservation",
        reservation.c.collection_run_id.is_not(None),
        ~sa.exists().where(
            settlement.c.transaction_type == "settlement",
            settlement.c.collection_run_id == reservation.c.collection_run_id,
            settlement.c.arena.is_not_distinct_from(reservation.c.arena),
            settlement.c.created_at >= reservation.c.created_at,
        ),
    )


def _of_run(collection_run_id: uuid.UUID, arena: str | None, every_arena: bool) -> sa.ColumnElement[bool]:
    condition = _ledger.c.collection_run_id == collection_run_id
    if every_arena:
        return condition
    return sa.and_(condition, _ledger.c.arena.is_not_distinct_from(arena))


def _lock_user(conn: Connection, user_id: uuid.UUID) -> bool:
    """Serialise this user's ledger writes (see the module docstring); False if no such user."""
    locked = conn.execute(sa.select(_users.c.id).where(_users.c.id == user_id).with_for_update(key_share=True)).first()
    return locked is not None


def _insert(conn: Connection, **values) -> LedgerEntry:
    # clock_timestamp, not now(): rows written by one transaction keep their order in the history.
    row = conn.execute(
        sa.insert(_ledger).values(created_at=sa.func.clock_timestamp(), **values).returning(*_ENTRY_COLUMNS)
    ).one()
    return _entry(row)


def _balance(conn: Connection, user_id: uuid.UUID, today: date) -> Balance:
    allocated, first_day = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(_allocations.c.credits_amount), 0),
            sa.func.min(_allocations.c.valid_from),
        ).where(
            _allocations.c.user_id == user_id,
            _allocations.c.valid_from <= today,
            sa.or_(_allocations.c.valid_until.is_(None), _allocations.c.valid_until >= today),
        )
    ).one()
    period_start = first_day or today
    reserved, settled, refunded = conn.execute(
        sa.select(
            _amount(_is_open(_ledger)),
            _amount(_ledger.c.transaction_type == "settlement"),
            _amount(_ledger.c.transaction_type == "refund"),
        ).where(
            _ledger.c.user_id == user_id,
            _ledger.c.created_at >= datetime.combine(period_start, time.min, tzinfo=timezone.utc),
        )
    ).one()
    return Balance(
        allocated=allocated,
        reserved=reserved,
        settled=settled,
        refunded=refunded,
        available=allocated - reserved - settled + refunded,
        period_start=period_start,
    )


def _outcome(conn: Connection, where: sa.ColumnElement[bool]) -> Settlement:
    reserved, settled, refunded = conn.execute(
        sa.select(
            _amount(_ledger.c.transaction_type == "reservation"),
            _amount(_ledger.c.transaction_type == "settlement"),
            _amount(_ledger.c.transaction_type == "refund"),
        ).where(where)
    ).one()
    return Settlement(reserved=reserved, charged=settled - refunded, refunded=refunded)


def _encode_cursor(entry: LedgerEntry) -> str:
    raw = f"{entry.created_at.isoformat()}|{entry.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, separator, ident = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().partition("|")
        created_at = datetime.fromisoformat(stamp)
        if not separator or created_at.tzinfo is None:
            raise ValueError(cursor)
        return created_at, uuid.UUID(ident)
    except ValueError:  # also binascii.Error and the Unicode errors, which subclass it
        raise ValueError(
            f"malformed history cursor {cursor!r}: pass back the next_cursor of the previous page unchanged"
        ) from None


class CreditService:
    """Reservations, settlements, refunds, balances and history over the credit ledger."""

    def __init__(self, engine: Engine):
        # The reservation check depends on READ COMMITTED (see the module docstring).
        self._engine = engine.execution_options(isolation_level="READ COMMITTED")

    def balance(self, user_id: uuid.UUID, today: date | None = None) -> Balance:
        with self._engine.connect() as conn:
            return _balance(conn, user_id, today or _utc_today())

    def available(self, user_id: uuid.UUID, today: date | None = None) -> int:
        return self.balance(user_id, today).available

    def reserve(
        self,
        user_id: uuid.UUID,
        collection_run_id: uuid.UUID,
        credits: int,
        arena: str | None = None,
        platform: str | None = None,
        description: str | None = None,
    ) -> LedgerEntry:
        """Set ``credits`` aside for ``arena`` of the run, or return the open reservation it has."""
        if credits < 0:
            raise ValueError(f"cannot reserve {credits} credits: the amount must be 0 or more")
        what = f"cannot reserve {credits} credits for run {collection_run_id}"
        what += f" ({arena})" if arena else ""

        def refuse(reason: str, available: int) -> CreditReservationError:
            return CreditReservationError(
                f"{what}: {reason}",
                collection_run_id=collection_run_id,
                available=available,
                requested=credits,
            )

        with self._engine.begin() as conn:
            if not _lock_user(conn, user_id):
                raise refuse(f"user {user_id} does not exist", 0)
            if conn.execute(sa.select(_runs.c.id).where(_runs.c.id == collection_run_id)).first() is None:
                raise refuse("no such collection run", 0)
            balance = _balance(conn, user_id, _utc_today())
            earlier = conn.execute(
                sa.select(*_ENTRY_COLUMNS, _is_open(_ledger).label("is_open")).where(
                    _ledger.c.transaction_type == "reservation",
                    _ledger.c.collection_run_id == collection_run_id,
                )
            ).all()
            for row in earlier:
                if row.user_id != user_id:
                    raise refuse(f"the run is charged to user {row.user_id}", balance.available)
                if row.arena == arena and row.is_open:
                    return _entry(row)
            if credits and balance.available < credits:
                raise refuse(
                    f"{balance.available} available (allocated {balance.allocated}, reserved "
                    f"{balance.reserved}, settled {balance.settled}, refunded {balance.refunded} "
                    f"since {balance.period_start}); ask an admin for a larger allocation or lower the tier",
                    balance.available,
                )
            return _insert(
                conn,
                user_id=user_id,
                collection_run_id=collection_run_id,
                arena=arena,
                platform=platform,
                credits_consumed=credits,
                transaction_type="reservation",
                description=description,
            )

    def settle(self, collection_run_id: uuid.UUID, actual_credits: int, arena: str | None = None) -> Settlement:
        """Charge ``actual_credits`` against the run's open reservations (one arena's, if given).

        Settling twice changes nothing: the second call returns what the ledger recorded.
        """
        outcome, _ = self._settle(collection_run_id, actual_credits, arena, every_arena=arena is None)
        return outcome

    def _settle(
        self, collection_run_id: uuid.UUID, actual: int, arena: str | None, every_arena: bool
    ) -> tuple[Settlement, list[LedgerEntry]]:
        """The outcome, and the reservations this call settled (none: they were already settled)."""
        if actual < 0:
            raise ValueError(f"cannot settle {actual} credits: the amount must be 0 or more")
        label = f"run {collection_run_id}" + ("" if every_arena else f" ({arena or 'no arena'})")
        of_run = _of_run(collection_run_id, arena, every_arena)
        reservations = sa.and_(of_run, _ledger.c.transaction_type == "reservation")
        with self._engine.begin() as conn:
            user_id = conn.execute(sa.select(_ledger.c.user_id).where(reservations).limit(1)).scalar()
            if user_id is None:
                raise CreditError(f"{label} has no credit reservation to settle; reserve credits before collecting")
            _lock_user(conn, user_id)
            pending = [
                _entry(row)
                for row in conn.execute(
                    sa.select(*_ENTRY_COLUMNS)
                    .where(reservations, _is_open(_ledger))
                    .order_by(_ledger.c.created_at, _ledger.c.id)
                )
            ]
            remaining = actual
            for position, reservation in enumerate(pending):
                last = position == len(pending) - 1
                charge = remaining if last else min(remaining, reservation.credits_consumed)
                remaining -= charge
                common = dict(
                    user_id=user_id,
                    collection_run_id=collection_run_id,
                    arena=reservation.arena,
                    platform=reservation.platform,
                )
                _insert(
                    conn,
                    **common,
                    credits_consumed=max(charge, reservation.credits_consumed),
                    transaction_type="settlement",
                    description=f"settles reservation {reservation.id}",
                )
                if charge < reservation.credits_consumed:
                    _insert(
                        conn,
                        **common,
                        credits_consumed=reservation.credits_consumed - charge,
                        transaction_type="refund",
                        description=f"unused part of reservation {reservation.id}",
                    )
            outcome = _outcome(conn, of_run)
        if not pending and outcome.charged != actual:
            log.warning("%s was already settled at %d credits; ignoring the actual %d", label, outcome.charged, actual)
        if pending and outcome.overrun:
            log.warning(
                "%s used %d credits but reserved %d; the overrun of %d is charged",
                label,
                outcome.charged,
                outcome.reserved,
                outcome.overrun,
            )
        return outcome, pending

    def grant(
        self,
        user_id: uuid.UUID,
        credits: int,
        valid_from: date | None = None,
        valid_until: date | None = None,
        allocated_by: uuid.UUID | None = None,
    ) -> Allocation:
        """Allocate ``credits`` to the user from ``valid_from`` (default today, UTC) through
        ``valid_until`` (inclusive; None: open-ended)."""
        if credits <= 0:
            raise CreditError(f"cannot grant {credits} credits: the amount must be more than 0")
        starts = valid_from or _utc_today()
        if valid_until is not None and valid_until < starts:
            raise CreditError(f"cannot grant credits valid until {valid_until}: that is before they start ({starts})")
        with self._engine.begin() as conn:
            if not _lock_user(conn, user_id):
                raise CreditError(f"cannot grant {credits} credits: user {user_id} does not exist")
            row = conn.execute(
                sa.insert(_allocations)
                .values(
                    user_id=user_id,
                    credits_amount=credits,
                    valid_from=starts,
                    valid_until=valid_until,
                    allocated_by=allocated_by,
                )
                .returning(
                    _allocations.c.id,
                    _allocations.c.credits_amount,
                    _allocations.c.valid_from,
                    _allocations.c.valid_until,
                )
            ).one()
        return Allocation(*row)

    def refund(
        self,
        user_id: uuid.UUID,
        credits: int,
        collection_run_id: uuid.UUID | None = None,
        description: str = "admin correction",
    ) -> LedgerEntry:
        """Give ``credits`` back to the user, outside any settlement."""
        if credits <= 0:
            raise ValueError(f"cannot refund {credits} credits: the amount must be more than 0")
        with self._engine.begin() as conn:
            if not _lock_user(conn, user_id):
                raise CreditError(f"cannot refund {credits} credits: user {user_id} does not exist")
            return _insert(
                conn,
                user_id=user_id,
                collection_run_id=collection_run_id,
                credits_consumed=credits,
                transaction_type="refund",
                description=description,
            )

    def release_stale(self, older_than: timedelta, now: datetime | None = None) -> list[uuid.UUID]:
        """Settle at 0 the open reservations of finished runs, and those older than ``older_than``.

        Returns the runs that had a reservation released, each once.
        """
        return list(dict.fromkeys(r.collection_run_id for r in self.release_stale_reservations(older_than, now)))

    def release_stale_reservations(self, older_than: timedelta, now: datetime | None = None) -> list[Release]:
        """``release_stale``, returning each (run, arena) released with the credits it gave back."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        cutoff = (now or datetime.now(timezone.utc)) - older_than
        with self._engine.connect() as conn:
            stale = conn.execute(
                sa.select(_ledger.c.collection_run_id, _ledger.c.arena)
                .join(_runs, _runs.c.id == _ledger.c.collection_run_id)
                .where(
                    _is_open(_ledger),
                    sa.or_(_runs.c.status.in_(FINISHED_RUN_STATUSES), _ledger.c.created_at < cutoff),
                )
                .distinct()
                .order_by(_ledger.c.collection_run_id, _ledger.c.arena)
            ).all()
        released: list[Release] = []
        for run_id, arena in stale:
            # A run's own settle may get there first; then there is nothing left to release.
            _, settled_now = self._settle(run_id, 0, arena, every_arena=False)
            if settled_now:
                # Settled at 0: each reservation's whole amount was refunded.
                release = Release(run_id, arena, sum(r.credits_consumed for r in settled_now))
                log.info("released %d credits reserved for run %s (%s)", release.credits, run_id, arena)
                released.append(release)
        return released

    def estimate(self, arena_name: str, spec: QuerySpec) -> int:
        """Credits a collection is expected to cost, rounded up to whole credits."""
        try:
            arena = get_arena(arena_name)
        except KeyError:
            per_1k = TIER_DEFAULTS[spec.tier].credits_per_1k_items
            return math.ceil(FALLBACK_EXPECTED_ITEMS * per_1k / 1000)
        try:
            credits = arena.estimate_credits(spec)
        except Exception:
            # An estimate only sizes the reservation, and settle charges the actual cost anyway, so
            # one arena's broken estimate must not stop its collection.
            log.warning("arena %s could not estimate its credits; reserving 0", arena_name, exc_info=True)
            return 0
        return math.ceil(credits)

    def history(
        self, user_id: uuid.UUID, limit: int = 50, before: str | None = None
    ) -> tuple[list[LedgerEntry], str | None]:
        """One page of the user's ledger, newest first, and the cursor of the next page (None at the end)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        limit = min(limit, HISTORY_MAX_LIMIT)
        query = sa.select(*_ENTRY_COLUMNS).where(_ledger.c.user_id == user_id)
        if before is not None:
            created_at, entry_id = _decode_cursor(before)
            query = query.where(sa.tuple_(_ledger.c.created_at, _ledger.c.id) < sa.tuple_(created_at, entry_id))
        # One row more than the page tells whether another page follows.
        query = query.order_by(_ledger.c.created_at.desc(), _ledger.c.id.desc()).limit(limit + 1)
        with self._engine.connect() as conn:
            rows = [_entry(row) for row in conn.execute(query)]
        page = rows[:limit]
        return page, _encode_cursor(page[-1]) if len(rows) > limit else None
