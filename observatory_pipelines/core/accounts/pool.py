"""The credential pool: hands an arena a credential of its platform and tier, counting every use.

Choosing and counting
    ``acquire`` picks, among the active credentials of (platform, tier) that are not exhausted and
    have quota left today, the least used (then the longest unused), and counts the use, in one
    ``UPDATE ... WHERE id = (candidate) AND <quota left> RETURNING``. When a concurrent run counted
    a use on that row first, PostgreSQL re-checks the quota condition on the newest row version and
    updates nothing if the quota is gone; ``acquire`` then chooses again. So two runs never take a
    credential past its daily quota, and as each statement locks one row, they never deadlock.
    Quota days are UTC days: ``quota_used_today`` counts ``quota_date``, and a use on a later day
    starts again from 0. ``now`` is injectable (``clock``), so tests drive midnight without waiting.

What the platform says
    - 401/403 (``refused``): the credential is switched off (``is_active = false``) with a one-line
      ``last_error``, and never tried again until an admin enables it;
    - 429 or a spent quota (``rate_limited``): ``exhausted_until`` is set to ``Retry-After`` from
      now when the platform gave one, else to the next 00:00 UTC; the pool skips it until then.

    ``ArenaCredentials.call`` does this for an arena: it leases, calls, and on those answers marks
    the credential and tries the next one. When none is left it raises ``QuotaExceeded`` with the
    time the first credential is usable again ("all 3 youtube credentials (free tier) are spent
    until 00:00 UTC"), or ``CredentialError`` when no active credential exists at all.

Secrets
    A ``Lease`` holds its secret as a ``settings.Secret``; errors recorded in ``last_error`` have the
    secret's text (and each JSON field's) replaced by ``***``, whatever the arena put in them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from observatory_pipelines.core.accounts.credentials import CredentialInfo, CredentialKey, unseal
from observatory_pipelines.core.collection.arenas.base import Arena
from observatory_pipelines.core.collection.arenas.errors import CredentialError, QuotaExceeded, RateLimited
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.settings import Secret

T = TypeVar("T")

#: A 429 that asks for no wait at all still rests the credential this long, so rotation moves on.
MIN_REST = timedelta(seconds=1)
#: ``last_error`` keeps one line of at most this many characters.
MAX_ERROR_CHARS = 300
#: Scrubbing shorter values would blank out ordinary words.
_MIN_SCRUBBED = 4


def next_utc_midnight(now: datetime) -> datetime:
    moment = months.utc(now)
    return datetime.combine(moment.date() + timedelta(days=1), time.min, tzinfo=moment.tzinfo)


def describe_time(when: datetime, now: datetime) -> str:
    """``00:00 UTC`` within the next day, else with its date; seconds only when they matter."""
    when = months.utc(when)
    clock = f"{when:%H:%M}" if when.second == 0 else f"{when:%H:%M:%S}"
    if when - months.utc(now) < timedelta(hours=24):
        return f"{clock} UTC"
    return f"{when:%Y-%m-%d} {clock} UTC"


def _secret_texts(secret: Secret) -> list[str]:
    value = secret.reveal()
    texts = [value]
    if value.startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            fields = {}
        texts += [str(v) for v in fields.values() if isinstance(v, (str, int))]
    return sorted((t for t in texts if len(t) >= _MIN_SCRUBBED), key=len, reverse=True)


def scrub(message: str, secret: Secret) -> str:
    """One line of ``message`` without the secret's text."""
    for text in _secret_texts(secret):
        message = message.replace(text, "***")
    line = " ".join(message.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True)
class Lease:
    """One counted use of a credential. ``secret`` is revealed only where the request is built."""

    id: uuid.UUID
    platform: str
    tier: str
    name: str
    secret: Secret
    _pool: CredentialPool = field(repr=False, compare=False)

    def field(self, name: str) -> Secret:
        """A field of a JSON secret (``{"client_id": ..., "client_secret": ...}``)."""
        try:
            value = json.loads(self.secret.reveal())[name]
        except (ValueError, TypeError, KeyError):
            raise CredentialError(
                self.platform, f"credential {self.name} has no field {name!r}; re-add it as JSON with that field"
            ) from None
        return Secret(str(value))

    def refused(self, reason: str) -> None:
        """The platform refused it (401/403): switch it off and record why."""
        self._pool.mark_refused(self, reason)

    def rate_limited(self, reason: str, retry_after: float | None = None) -> None:
        """The platform asked us to stop (429, a spent quota): rest it until then."""
        self._pool.mark_exhausted(self, reason, retry_after)


_USABLE = """
    platform = :platform AND tier = :tier AND is_active
    AND (exhausted_until IS NULL OR exhausted_until <= :now)
    AND (daily_quota IS NULL OR CASE WHEN quota_date = :today THEN quota_used_today ELSE 0 END + :cost <= daily_quota)
"""
_CANDIDATE = sa.text(
    f"""
    SELECT id FROM api_credentials
    WHERE {_USABLE} AND NOT (id = ANY(:skip))
    ORDER BY CASE WHEN quota_date = :today THEN quota_used_today ELSE 0 END, last_used_at NULLS FIRST, id
    LIMIT 1
    """
)
# The candidate is chosen without a lock, and the UPDATE locks that one row only: statements that
# locked candidates in their own snapshot's order could each hold one the other waits for. The
# usable condition is repeated on the UPDATE, so PostgreSQL re-checks it on the newest version of a
# row a concurrent run just counted a use on, and updates nothing if the quota is gone.
_TAKE_ONE = sa.text(
    f"""
    UPDATE api_credentials SET
        quota_used_today = CASE WHEN quota_date = :today THEN quota_used_today ELSE 0 END + :cost,
        quota_date = :today, last_used_at = :now, updated_at = now()
    WHERE id = ({_CANDIDATE.text}) AND {_USABLE}
    RETURNING id, platform, tier, credential_name, encrypted_payload
    """
)


class CredentialPool:
    """The pool over ``api_credentials``; ``key`` decrypts what it hands out."""

    def __init__(self, engine: sa.Engine, key: CredentialKey, *, clock: Callable[[], datetime] = months.utc):
        self._engine = engine
        self._key = key
        self._clock = clock

    def now(self) -> datetime:
        return months.utc(self._clock())

    def acquire(
        self, platform: str, tier: str, *, arena: str, cost: int = 1, skip: Collection[uuid.UUID] = ()
    ) -> Lease:
        """A credential with ``cost`` uses counted on it; ``skip`` leaves out ones tried already."""
        if cost < 1:
            raise ValueError(f"a lease costs at least 1 use, not {cost}")
        now = self.now()
        params = {"platform": platform, "tier": tier, "now": now, "today": now.date(), "cost": cost, "skip": list(skip)}
        while True:
            with self._engine.begin() as conn:
                row = conn.execute(_TAKE_ONE, params).first()
                if row is not None:
                    break
                if conn.execute(_CANDIDATE, params).first() is None:
                    raise self._none_left(conn, platform, tier, arena, now, skip)
            # A concurrent run took the candidate's last use first: choose again.
        credential_id, platform, tier, name, payload = row
        return Lease(
            credential_id, platform, tier, name, unseal(self._key, credential_id, platform, name, payload), self
        )

    def _none_left(
        self, conn: sa.Connection, platform: str, tier: str, arena: str, now: datetime, skip: Collection[uuid.UUID]
    ) -> CredentialError | QuotaExceeded:
        rows = conn.execute(
            sa.text(
                """
                SELECT id, is_active, exhausted_until, daily_quota,
                       CASE WHEN quota_date = :today THEN quota_used_today ELSE 0 END AS used
                FROM api_credentials WHERE platform = :platform AND tier = :tier
                """
            ),
            {"platform": platform, "tier": tier, "today": now.date()},
        ).all()
        active = [r for r in rows if r.is_active]
        if not active:
            flagged = f" ({len(rows)} switched off after the platform refused them)" if rows else ""
            return CredentialError(
                arena,
                f"no active {platform} credential for the {tier} tier{flagged}; add one with: "
                f"observatory credentials add {platform} NAME --tier {tier}",
            )
        midnight = next_utc_midnight(now)

        def usable_again(r) -> datetime:
            if r.exhausted_until is not None and r.exhausted_until > now:
                return r.exhausted_until
            if r.daily_quota is not None and r.used + 1 > r.daily_quota:
                return midnight
            return now  # tried already in this call, and rested only briefly

        retry_at = min(usable_again(r) for r in active)
        which = (
            f"all {len(active)} {platform} credentials ({tier} tier) are"
            if len(active) > 1
            else f"the only {platform} credential ({tier} tier) is"
        )
        return QuotaExceeded(
            arena,
            f"{which} spent until {describe_time(retry_at, now)}; the collection can be retried then",
            retry_at=retry_at,
        )

    def mark_refused(self, lease: Lease, reason: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE api_credentials SET is_active = false, last_error = :error, updated_at = now() WHERE id = :id"
                ),
                {"error": scrub(f"{self.now():%Y-%m-%d %H:%M} UTC: {reason}", lease.secret), "id": lease.id},
            )

    def mark_exhausted(self, lease: Lease, reason: str, retry_after: float | None) -> datetime:
        now = self.now()
        until = (
            now + max(timedelta(seconds=retry_after), MIN_REST) if retry_after is not None else next_utc_midnight(now)
        )
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE api_credentials SET exhausted_until = :until, last_error = :error, updated_at = now() "
                    "WHERE id = :id"
                ),
                {"until": until, "error": scrub(f"{now:%Y-%m-%d %H:%M} UTC: {reason}", lease.secret), "id": lease.id},
            )
        return until


class ArenaCredentials:
    """What ``CollectionContext.credentials`` gives an arena: leases of its platform and the
    design's tier, and ``call``, which rotates through the pool as the platform answers."""

    def __init__(self, pool: CredentialPool, *, arena: str, platform: str, tier: str, log: Callable[[str], None]):
        self._pool = pool
        self.arena = arena
        self.platform = platform
        self.tier = tier
        self._log = log

    def __repr__(self) -> str:
        return f"ArenaCredentials(arena={self.arena!r}, platform={self.platform!r}, tier={self.tier!r})"

    def lease(self, platform: str | None = None, tier: str | None = None, *, cost: int = 1) -> Lease:
        """One counted use of a credential; the arena reports a refusal or a 429 on the lease itself."""
        return self._pool.acquire(platform or self.platform, tier or self.tier, arena=self.arena, cost=cost)

    def call(self, request: Callable[[Lease], T], *, platform: str | None = None, cost: int = 1) -> T:
        """``request(lease)`` with the next usable credential until one succeeds.

        ``CredentialError`` (401/403) switches the credential off, ``RateLimited`` (429) rests it,
        and the next one is tried; each credential at most once per call. ``request`` should ask
        the HTTP client not to wait out 429s itself (``wait_on_rate_limit=False``), so the pool
        moves on at once instead of holding a worker.
        """
        tried: list[uuid.UUID] = []
        while True:
            lease = self._pool.acquire(platform or self.platform, self.tier, arena=self.arena, cost=cost, skip=tried)
            tried.append(lease.id)
            try:
                return request(lease)
            except CredentialError as err:
                lease.refused(str(err))
                self._log(f"{self.arena}: {lease.platform} credential {lease.name} was refused; switched it off")
            except RateLimited as err:
                lease.rate_limited(str(err), err.retry_after)
                self._log(f"{self.arena}: {lease.platform} credential {lease.name} is rate-limited; trying the next")


def for_arena(
    engine: sa.Engine,
    arena: Arena,
    tier: str,
    *,
    options: Mapping[str, Any] | None = None,
    key: str | None = None,
    clock: Callable[[], datetime] = months.utc,
    log: Callable[[str], None] = lambda message: None,
) -> ArenaCredentials | None:
    """The pool as ``arena`` sees it, or None for an arena that needs no credential with the
    design's ``options`` (it carries on whatever the key). ``key`` overrides
    ``OBSERVATORY_CREDENTIAL_KEY``; without either, an arena that needs credentials refuses to
    start, in one line naming the variable."""
    if not arena.needs_credential_for(options or {}):
        return None
    try:
        parsed = CredentialKey.parse(Secret(key)) if key else CredentialKey.from_settings()
    except ConfigError as err:
        raise ConfigError(f"{arena.name} calls a keyed API and cannot start: {err}") from None
    return ArenaCredentials(
        CredentialPool(engine, parsed, clock=clock), arena=arena.name, platform=arena.platform, tier=tier, log=log
    )


def health_summary(found: list[CredentialInfo], now: datetime) -> tuple[list[str], str]:
    """The credentials that need an admin (switched off after a refusal) or wait (spent), one line
    each, and a one-line summary, for the Dagster UI."""
    problems = []
    for c in found:
        if c.flagged:
            problems.append(f"{c.platform}/{c.name} ({c.tier}) switched off: {c.last_error}")
        elif c.is_active and c.spent(now):
            until = c.exhausted_until if c.exhausted_until and c.exhausted_until > now else next_utc_midnight(now)
            problems.append(f"{c.platform}/{c.name} ({c.tier}) spent until {describe_time(until, now)}")
    if not found:
        return problems, "no API credentials yet (observatory credentials add PLATFORM NAME)"
    if not problems:
        return problems, f"all {len(found)} API credentials usable (or disabled by an admin)"
    return problems, f"{len(problems)} of {len(found)} API credentials need attention: " + "; ".join(problems)
