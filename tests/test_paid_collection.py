"""Money in a paid collection, whatever the arena: the reservation is the ceiling, what is spent is
counted per request and settled, and a killed run that is run again never pays twice for pages it
stored. A paging test arena (no platform behind it) runs through the real runner on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import prices
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas.base import (
    Arena,
    Checkpoint,
    CollectedItem,
    CollectionContext,
    QuerySpec,
)
from observatory_pipelines.core.collection.arenas.errors import ArenaError
from observatory_pipelines.core.collection.credits import CreditReservationError, CreditService
from observatory_pipelines.core.collection.spending import Budget, BudgetExhausted
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform.errors import ConfigError
from tests.factories import MARCH, SALT, content_rows, make_design, owner_of, task

PRICE = prices.Price(per_request=2, per_result=1)
PER_PAGE = 10
NOW = datetime(2026, 3, 20, 9, tzinfo=timezone.utc)


class PagedPaidArena(Arena):
    """Pages of ``PER_PAGE`` posts for each of the design's terms, one paid request a page:
    ``PRICE`` per request and per result. ``failing_page`` (option) fails that page's request."""

    name = "paid_test"
    platform = "paid_test"
    description = "A paged, paid test arena."
    supported_tiers = frozenset({Tier.MEDIUM})
    metered = True
    enabled_by_default = False
    requests: ClassVar[list[tuple[str, int]]] = []

    def validate_options(self, options):
        return {"pages": 3, "failing_page": None, **options}

    def estimate_credits(self, spec: QuerySpec) -> int:
        return len(spec.terms) * spec.options["pages"] * PRICE.of(PER_PAGE)

    def collect(self, spec: QuerySpec, ctx: CollectionContext):
        assert ctx.budget is not None
        pages = spec.options["pages"]
        for term in spec.terms:
            source = f"q={term}"
            resumed = ctx.resume(source)
            if resumed and resumed.today and resumed.finished:
                continue
            first = int(resumed.state["page"]) if resumed and resumed.today else 1
            ctx.searched(source)
            for page in range(first, pages + 1):
                left = (pages - page + 1) * PER_PAGE
                with ctx.budget.call(most=PRICE.of(PER_PAGE), unfetched=left) as charge:
                    self.requests.append((term, page))
                    if page == spec.options["failing_page"]:
                        raise ArenaError(self.name, f"HTTP 500 on page {page}")
                    posts = [f"{term}-{page}-{n}" for n in range(PER_PAGE)]
                    charge.credits = PRICE.of(len(posts))
                for post in posts:
                    yield CollectedItem(
                        platform=self.platform,
                        platform_id=post,
                        published_at=datetime(2026, 3, 1 + page, 12, tzinfo=timezone.utc),
                        text_content=f"Indlæg om {term} fra Ærø ({post})",
                        author_platform_id="åse",
                        source=source,
                    )
                yield Checkpoint(source, {"page": page + 1}, finished=page == pages)


@pytest.fixture
def paid_arena(monkeypatch):
    from observatory_pipelines.core.collection import arenas

    monkeypatch.setitem(arenas._REGISTRY, PagedPaidArena.name, PagedPaidArena)
    PagedPaidArena.requests = []
    return PagedPaidArena


def paid_design(engine, slug="klimadebat", credits=1_000, **options: Any) -> uuid.UUID:
    config = {"paid_test": {"enabled": True, "tier": "medium", "options": options}}
    return make_design(engine, slug=slug, terms=("klima", "havvind"), arenas_config=config, credits=credits)


def collect(engine, slug="klimadebat", now=NOW, run_id=None):
    return collection.collect_arena(
        engine,
        design_slug=slug,
        month=MARCH,
        arena_name="paid_test",
        dagster_run_id=run_id or f"run-{uuid.uuid4().hex[:8]}",
        salt=SALT,
        now=now,
    )


def ledger(engine, user) -> list[tuple[str, int, str | None]]:
    entries, _ = CreditService(engine).history(user, limit=100)
    return [(e.transaction_type, e.credits_consumed, e.arena) for e in reversed(entries)]


#: One full page: 2 + 10 × 1.
PAGE_COST = PRICE.of(PER_PAGE)


# --- the budget alone -------------------------------------------------------------------------------


def test_a_request_that_would_pass_the_reservation_is_never_sent():
    budget = Budget(reserved=30)
    sent = []
    with budget.call(most=12) as charge:
        sent.append(1)
        charge.credits = 7
    assert (budget.spent, budget.left) == (7, 23)
    with budget.call(most=12):
        sent.append(2)  # left unset: the most is counted
    assert budget.spent == 19
    with pytest.raises(BudgetExhausted) as stop:
        with budget.call(most=12, unfetched=340):
            sent.append(3)
    assert sent == [1, 2]
    assert str(stop.value) == "stopped at the reserved 30 credits (19 spent); 340 results not fetched"


def test_a_failed_request_costs_what_the_arena_says_and_never_more_than_its_most():
    budget = Budget(reserved=100)
    with pytest.raises(ArenaError):
        with budget.call(most=10):
            raise ArenaError("paid_test", "HTTP 500")
    assert budget.spent == 0  # platforms bill answers, not failures
    with pytest.raises(ArenaError):
        with budget.call(most=10) as charge:
            charge.credits = 3  # billed, then the answer could not be read
            raise ArenaError("paid_test", "not JSON")
    with budget.call(most=10) as charge:
        charge.credits = 55  # a platform answering more than it was asked for
    assert budget.spent == 13 and budget.calls == 3
    with pytest.raises(ValueError):
        with budget.call(most=-1):
            pass


def test_prices_come_from_the_table_and_an_admins_file(isolated_settings, tmp_path):
    assert prices.price("x_twitter", "premium").of(100) == 500
    assert prices.price("x_twitter", "medium").of(0) == 1  # a request costs at least its minimum
    assert prices.price("google_search", "premium").of(10) == 15
    override = tmp_path / "priser.yaml"
    override.write_text("x_twitter:\n  premium: {per_result: 4.5}\nny_platform:\n  medium: {per_request: 3}\n")
    isolated_settings.setenv("OBSERVATORY_PRICES_FILE", str(override))
    assert prices.price("x_twitter", "premium").of(100) == 450
    assert prices.price("ny_platform", "medium").of(7) == 3
    for text, message in (
        ("x_twitter:\n  premium: {per_post: 1}\n", "x_twitter.premium.per_post is not one of minimum, per_request"),
        ("x_twitter:\n  premium: {per_result: -1}\n", "x_twitter.premium.per_result must be a number of credits"),
        ("- en liste\n", "must map arenas to tiers to prices"),
        ("x_twitter: [1\n", "is not YAML"),
    ):
        override.write_text(text)
        with pytest.raises(ConfigError) as refused:
            prices.price("x_twitter", "premium")
        assert message in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="no price for arena 'ukendt' at tier 'medium'"):
        isolated_settings.delenv("OBSERVATORY_PRICES_FILE")
        prices.price("ukendt", "medium")


# --- through the runner -----------------------------------------------------------------------------


def test_what_was_spent_is_settled_and_the_rest_refunded_with_the_arena_and_run(engine, paid_arena):
    design = paid_design(engine)
    outcome = collect(engine)
    estimate = 2 * 3 * PAGE_COST
    assert (outcome.status, outcome.credits_reserved, outcome.credits_spent) == ("completed", estimate, estimate)
    assert outcome.written.new == 60
    smaller = paid_design(engine, slug="groen-omstilling", pages=2)
    cheaper = collect(engine, slug="groen-omstilling")
    assert cheaper.credits_spent == 2 * 2 * PAGE_COST
    entries, _ = CreditService(engine).history(owner_of(engine, design), limit=10)
    assert {(e.transaction_type, e.arena, e.collection_run_id) for e in entries} == {
        ("reservation", "paid_test", outcome.collection_run_id),
        ("settlement", "paid_test", outcome.collection_run_id),
    }
    assert ledger(engine, owner_of(engine, smaller))[-1] == ("settlement", 4 * PAGE_COST, "paid_test")


def test_a_run_that_reaches_its_reservation_stops_keeps_what_it_fetched_and_settles(engine, paid_arena, monkeypatch):
    design = paid_design(engine)
    # An estimate below what the design can cost: the ceiling the run must respect.
    monkeypatch.setattr(PagedPaidArena, "estimate_credits", lambda self, spec: 4 * PAGE_COST + 5)
    outcome = collect(engine)
    assert outcome.status == "completed"
    assert outcome.credits_reserved == 4 * PAGE_COST + 5 and outcome.credits_spent == 4 * PAGE_COST
    assert len(paid_arena.requests) == 4 and outcome.written.new == 40
    assert outcome.message.endswith(
        f"stopped at the reserved {4 * PAGE_COST + 5} credits ({4 * PAGE_COST} spent); 20 results not fetched"
    )
    stored = task(engine, design, "paid_test")
    assert (stored["status"], stored["credits_spent"], stored["records_collected"]) == ("completed", 4 * PAGE_COST, 40)
    assert len(content_rows(engine, design)) == 40
    # The ledger settles the reservation and refunds what was not spent.
    assert ledger(engine, owner_of(engine, design)) == [
        ("reservation", 4 * PAGE_COST + 5, "paid_test"),
        ("settlement", 4 * PAGE_COST + 5, "paid_test"),
        ("refund", 5, "paid_test"),
    ]


def test_a_killed_run_run_again_the_same_day_resumes_and_never_pays_twice(engine, paid_arena):
    design = paid_design(engine, failing_page=3)
    with pytest.raises(ArenaError, match="HTTP 500 on page 3"):
        collect(engine)
    assert paid_arena.requests == [("havvind", 1), ("havvind", 2), ("havvind", 3)]
    first = task(engine, design, "paid_test")
    assert first["credits_spent"] == 2 * PAGE_COST and len(content_rows(engine, design)) == 20

    with engine.begin() as conn:  # the platform is healthy again
        conn.execute(
            sa.text("UPDATE query_designs SET arenas_config = CAST(:c AS jsonb) WHERE id = :d"),
            {"c": '{"paid_test": {"enabled": true, "tier": "medium"}}', "d": design},
        )
    paid_arena.requests.clear()
    again = collect(engine, now=NOW + timedelta(hours=3))
    assert paid_arena.requests == [("havvind", 3), *(("klima", page) for page in (1, 2, 3))]
    assert again.credits_spent == 4 * PAGE_COST
    assert len(content_rows(engine, design)) == 60
    entries = ledger(engine, owner_of(engine, design))
    paid = sum(a for k, a, _ in entries if k == "settlement") - sum(a for k, a, _ in entries if k == "refund")
    assert paid == 6 * PAGE_COST  # every page paid for exactly once

    paid_arena.requests.clear()
    finished = collect(engine, now=NOW + timedelta(hours=5))
    assert paid_arena.requests == [] and finished.credits_spent == 0
    # The next day the searches run again, on purpose: new results, and no second row for old ones.
    collect(engine, now=NOW + timedelta(days=1))
    assert len(paid_arena.requests) == 6 and len(content_rows(engine, design)) == 60


def test_a_run_that_cannot_reserve_calls_nothing_and_says_the_balance_and_estimate(engine, paid_arena):
    design = paid_design(engine, credits=50)
    with pytest.raises(CreditReservationError) as refused:
        collect(engine)
    message = str(refused.value)
    assert f"cannot reserve {6 * PAGE_COST} credits" in message and "50 available" in message
    assert "\n" not in message
    assert paid_arena.requests == [] and content_rows(engine, design) == []
    assert task(engine, design, "paid_test")["status"] == "failed"


def test_concurrent_runs_against_one_balance_never_overspend(engine, paid_arena):
    first = paid_design(engine, slug="klimadebat")
    owner = owner_of(engine, first)
    second = paid_design(engine, slug="groen-omstilling")
    with engine.begin() as conn:  # one researcher, one allocation that covers one run
        conn.execute(sa.text("UPDATE query_designs SET owner_id = :u WHERE id = :d"), {"u": owner, "d": second})
        conn.execute(
            sa.text("UPDATE credit_allocations SET credits_amount = :c WHERE user_id = :u"),
            {"c": 6 * PAGE_COST + 10, "u": owner},
        )
    start = threading.Barrier(2)
    results: dict[str, object] = {}

    def run(slug: str) -> None:
        start.wait(timeout=30)
        try:
            results[slug] = collect(engine, slug=slug)
        except CreditReservationError as refused:
            results[slug] = refused

    threads = [threading.Thread(target=run, args=(slug,)) for slug in ("klimadebat", "groen-omstilling")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    outcomes = sorted(results.values(), key=lambda r: isinstance(r, CreditReservationError))
    assert isinstance(outcomes[0], collection.CollectionOutcome) and outcomes[0].credits_spent == 6 * PAGE_COST
    assert isinstance(outcomes[1], CreditReservationError)
    balance = CreditService(engine).balance(owner)
    assert balance.available == 10 and balance.reserved == 0
