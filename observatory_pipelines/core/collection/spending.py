"""What a paid collection may spend, counted call by call, and where it stops.

Before a paid arena calls its platform, the runner has reserved the arena's estimate in the credit
ledger. The arena then asks its ``Budget`` before every paid request, for the most that request
can cost (``budget.call(most=...)``); a request that would take spending past the reservation is
never sent (``BudgetExhausted``). After the answer, the arena says what it really cost (fewer
results than asked for, a cached search the platform does not bill, an error it does not bill),
so the budget counts what the platform charges, and the runner settles exactly that: the rest of
the reservation is refunded.

Stopping at the reservation is not a failure. The runner stores what was fetched, settles, and
says so in one line: "stopped at the reserved 1,200 credits; 340 results not fetched".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class BudgetExhausted(Exception):
    """The next paid request would spend more than was reserved; it was not sent."""

    def __init__(self, reserved: int, spent: int, asked: int, unfetched: int | None):
        self.reserved = reserved
        self.spent = spent
        self.asked = asked
        self.unfetched = unfetched
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        line = f"stopped at the reserved {self.reserved:,} credits ({self.spent:,} spent)"
        if self.unfetched:
            line += f"; {self.unfetched:,} results not fetched"
        elif self.unfetched is None:
            line += "; more results were not fetched"
        return line


@dataclass
class Charge:
    """One paid request's cost: ``most`` was set aside before it was sent; the arena sets
    ``credits`` to what the platform really charged (left unset, the most is counted)."""

    most: int
    credits: int | None = None


@dataclass
class Budget:
    reserved: int
    spent: int = 0
    calls: int = 0

    @property
    def left(self) -> int:
        return self.reserved - self.spent

    @contextmanager
    def call(self, most: int, *, unfetched: int | None = None) -> Iterator[Charge]:
        """Around one paid request that costs at most ``most`` credits. Refuses before the request
        when that does not fit in what is left (``unfetched``: the results known to remain, for the
        message). If the request raises, nothing is counted unless the arena set ``credits``:
        platforms bill answers, not failures, and the arena knows which it got."""
        most = int(math.ceil(most))
        if most < 0:
            raise ValueError(f"a request cannot cost {most} credits")
        if most > self.left:
            raise BudgetExhausted(self.reserved, self.spent, most, unfetched)
        charge = Charge(most=most)
        try:
            yield charge
        except BaseException:
            self._count(charge.credits or 0, most)
            raise
        self._count(charge.most if charge.credits is None else charge.credits, charge.most)

    def _count(self, credits: int, most: int) -> None:
        # Never more than was set aside for the request, so spending can never pass the reservation.
        self.spent += max(0, min(int(math.ceil(credits)), most))
        self.calls += 1
