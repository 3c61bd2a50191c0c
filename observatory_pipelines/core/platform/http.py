"""The HTTP client every network arena shares: polite, patient, and careful with secrets.

Arenas never talk to httpx directly, so that pacing, retries and error wording are the same
everywhere and the failure modes the original system hit (one 429 or flaky host sinking a run, a
key leaking into a log) are handled once:

- requests from one client are spaced by a minimum interval (GDELT asks for one every 5 s);
- 5xx, timeouts, dropped connections and truncated bodies are retried with exponential backoff
  and full jitter, then raised as ``ServerError`` / ``TransportError``;
- 429 waits as long as ``Retry-After`` asks, unless that is longer than ``max_wait_seconds``:
  then ``RateLimited`` is raised at once, so the run's retry policy waits instead of a worker
  (and at the first 429 when the caller rotates credentials: ``wait_on_rate_limit=False``);
- 401/403 raise ``CredentialError`` without retrying; other 4xx raise ``ArenaError``.

Messages name the arena, the host and path (never the query string) and what to do. Values of
query parameters and headers whose names look secret are scrubbed from any body excerpt.
"""

from __future__ import annotations

import json
import random as _random
import re
import time
from collections.abc import Callable, Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from observatory_pipelines import __version__
from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)

_SECRET_NAME = re.compile(r"key|token|secret|passw|auth|cookie|session|signature", re.IGNORECASE)
_EXCERPT_CHARS = 200
# Shorter values are too likely to occur by chance in a body to be worth scrubbing.
_MIN_SCRUBBED_LENGTH = 4

_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.DecodingError)


def user_agent(contact: str | None = None) -> str:
    """Identify ourselves: several platforms throttle or block anonymous clients first."""
    return f"observatory-pipelines/{__version__} (+research; {contact or 'contact via config'})"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT by definition
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def validate_min_interval(value: Any) -> float:
    """Check an arena's ``min_interval_seconds`` option: a finite number of seconds, at least 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"option 'min_interval_seconds' must be a number of seconds >= 0, not {value!r}")
    return float(value)


def where(url: str) -> str:
    """Host and path of ``url``: enough to find the endpoint, never a query-string secret."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or ''}{parts.path or '/'}"
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "(unparseable URL)"


def _secret_values(url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> list[str]:
    pairs: list[tuple[str, Any]] = parse_qsl(urlsplit(url).query)
    pairs += list((params or {}).items()) + list((headers or {}).items())
    values = [str(v) for k, v in pairs if _SECRET_NAME.search(str(k))]
    # "Bearer <token>": a body that echoes the credential usually echoes the token alone.
    values += [v.rsplit(" ", 1)[-1] for v in values if " " in v]
    return [v for v in values if len(v) >= _MIN_SCRUBBED_LENGTH]


def _excerpt(response: httpx.Response, secrets: list[str]) -> str:
    text = " ".join(response.content[: _EXCERPT_CHARS * 4].decode("utf-8", "replace").split())
    for secret in secrets:
        text = text.replace(secret, "***")
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "…"
    return text or "(empty body)"


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed before the full response arrived (truncated body)"
    if isinstance(exc, httpx.DecodingError):
        return "response body could not be decoded (truncated or corrupt)"
    return f"connection failed ({type(exc).__name__})"


class HttpClient:
    """Synchronous GET with pacing, retries and one-line errors. ``api_calls`` counts requests sent.

    ``clock`` returns wall-clock epoch seconds (an HTTP-date ``Retry-After`` is absolute), and
    ``sleep`` and ``random`` are injectable so tests can assert every wait without waiting.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base_seconds: float = 1.0,
        backoff_cap_seconds: float = 60.0,
        max_wait_seconds: float = 120.0,
        min_interval_seconds: float = 0.0,
        contact: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        log: Callable[[str], None] = lambda message: None,
        transport: httpx.BaseTransport | None = None,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        self.max_attempts = max_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self.max_wait_seconds = max_wait_seconds
        self.min_interval_seconds = min_interval_seconds
        self.api_calls = 0
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._log = log
        self._last_sent_at: float | None = None
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            headers={"User-Agent": user_agent(contact)},
            follow_redirects=True,
            transport=transport,
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        arena: str,
        min_interval_seconds: float | None = None,
        wait_on_rate_limit: bool = True,
    ) -> httpx.Response:
        """GET ``url`` and return the 2xx response, or raise the matching ``ArenaError``.

        ``min_interval_seconds`` raises this client's spacing for an arena that needs more.
        ``wait_on_rate_limit=False`` raises ``RateLimited`` at the first 429: a caller with other
        credentials to rotate to (``core.accounts.pool``) moves on rather than waiting.
        """
        interval = max(self.min_interval_seconds, min_interval_seconds or 0.0)
        endpoint = where(url)
        attempt = 0
        while True:
            attempt += 1
            last_try = attempt >= self.max_attempts
            response = self._try("GET", url, arena, endpoint, attempt, interval, params=params, headers=headers)
            if response is None:
                continue
            status = response.status_code
            if 200 <= status < 300:
                return response
            if status in (401, 403):
                raise CredentialError(
                    arena, f"HTTP {status} from {endpoint}: access refused; check or renew the credential"
                )
            if status == 429:
                asked = parse_retry_after(response.headers.get("retry-after"), self._clock())
                if not wait_on_rate_limit:
                    raise RateLimited(arena, f"HTTP 429 from {endpoint}; rate-limited", retry_after=asked)
                if asked is not None and asked > self.max_wait_seconds:
                    raise RateLimited(
                        arena,
                        f"HTTP 429 from {endpoint} asks to wait {asked:.0f} s (over our {self.max_wait_seconds:.0f} s "
                        "limit); the run will be retried later",
                        retry_after=asked,
                    )
                if last_try:
                    raise RateLimited(
                        arena,
                        f"HTTP 429 from {endpoint} on all {attempt} attempts; lower the request rate or retry later",
                        retry_after=asked,
                    )
                delay = asked if asked is not None else self._backoff_delay(attempt)
                self._back_off(arena, endpoint, "HTTP 429", attempt, delay)
                continue
            excerpt = _excerpt(response, _secret_values(url, params, headers))
            raise ArenaError(arena, f"HTTP {status} from {endpoint}: {excerpt}; check the request and its options")

    def request(
        self,
        method: str,
        url: str,
        *,
        arena: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        min_interval_seconds: float | None = None,
    ) -> httpx.Response:
        """Send a request with this client's pacing and retries of timeouts and 5xx, and return the
        first answer below 500, 4xx included: for platforms that say in the body *why* they refuse
        (a private subreddit and a bad token are both 403), which the arena then reads itself."""
        interval = max(self.min_interval_seconds, min_interval_seconds or 0.0)
        endpoint = where(url)
        attempt = 0
        while True:
            attempt += 1
            response = self._try(
                method,
                url,
                arena,
                endpoint,
                attempt,
                interval,
                params=params,
                headers=headers,
                data=data,
                json=json,
                auth=auth,
            )
            if response is not None:
                return response

    def _try(
        self, method: str, url: str, arena: str, endpoint: str, attempt: int, interval: float, **request: Any
    ) -> httpx.Response | None:
        """One attempt: the answer, or None when it failed in a way worth retrying (after backing
        off); on the last attempt that failure is raised as a one-line ``ArenaError``."""
        last_try = attempt >= self.max_attempts
        self._pace(interval)
        try:
            response = self._client.request(method, url, **{k: v for k, v in request.items() if v is not None})
        except _RETRYABLE_TRANSPORT as exc:
            problem = _describe(exc)
            if last_try:
                # ``from None``: httpx's own messages may carry the full URL with its query.
                raise TransportError(
                    arena,
                    f"{endpoint} {problem} on all {attempt} attempts; check the host is reachable, or retry later",
                ) from None
            self._back_off(arena, endpoint, problem, attempt, self._backoff_delay(attempt))
            return None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # bad URL or scheme, redirect loop
            raise ArenaError(arena, f"cannot fetch {endpoint} ({type(exc).__name__}); check the URL") from None
        status = response.status_code
        if status >= 500:
            if last_try:
                raise ServerError(
                    arena,
                    f"HTTP {status} from {endpoint} on all {attempt} attempts; the service is failing, retry later",
                )
            self._back_off(arena, endpoint, f"HTTP {status}", attempt, self._backoff_delay(attempt))
            return None
        return response

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        arena: str,
        min_interval_seconds: float | None = None,
        wait_on_rate_limit: bool = True,
    ) -> Any:
        """``get`` and decode a JSON body; anything else raises ``MalformedResponse``."""
        response = self.get(
            url,
            params=params,
            headers=headers,
            arena=arena,
            min_interval_seconds=min_interval_seconds,
            wait_on_rate_limit=wait_on_rate_limit,
        )
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError):
            content_type = response.headers.get("content-type") or "no content type"
            raise MalformedResponse(
                arena, f"{where(url)} answered with {content_type} that is not JSON; the API may have changed"
            ) from None

    def _backoff_delay(self, attempt: int) -> float:
        # Full jitter: clients that failed together must not retry together.
        return self._random() * min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))

    def _back_off(self, arena: str, endpoint: str, problem: str, attempt: int, delay: float) -> None:
        self._log(
            f"{arena}: {problem} from {endpoint}; retrying in {delay:.1f} s "
            f"(attempt {attempt + 1} of {self.max_attempts})"
        )
        if delay > 0:
            self._sleep(delay)

    def _pace(self, interval: float) -> None:
        now = self._clock()
        if self._last_sent_at is not None and interval > 0:
            # Clamped so a wall clock that jumps backwards cannot make us wait longer than asked.
            wait = min(interval, self._last_sent_at + interval - now)
            if wait > 0:
                self._sleep(wait)
                now = self._clock()
        self._last_sent_at = now
        self.api_calls += 1
