"""One request through the shared ``HttpClient`` that hands back 4xx answers instead of raising.

Reddit and YouTube say *why* they refuse in the body (a private subreddit vs a bad token; a spent
quota vs an invalid key, both HTTP 403), and ``HttpClient.get`` raises before anyone reads it. This
keeps the client's pacing, User-Agent, request count, retries of 5xx and timeouts and secret-free
wording, and returns every other answer for the arena to interpret. It also sends the one POST
Reddit needs (the OAuth token). Once another arena needs the same, it belongs in ``HttpClient``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from observatory_pipelines.core.collection.arenas.errors import ArenaError, ServerError, TransportError
from observatory_pipelines.core.platform.http import _RETRYABLE_TRANSPORT, HttpClient, _describe, where


def send(
    http: HttpClient,
    url: str,
    *,
    arena: str,
    method: str = "GET",
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    min_interval_seconds: float = 0.0,
) -> httpx.Response:
    """The first answer below 500 (any 2xx, 3xx or 4xx), after retrying 5xx and transport failures."""
    endpoint = where(url)
    interval = max(http.min_interval_seconds, min_interval_seconds)
    attempt = 0
    while True:
        attempt += 1
        last_try = attempt >= http.max_attempts
        http._pace(interval)
        try:
            response = http._client.request(method, url, params=params, headers=headers, data=data, auth=auth)
        except _RETRYABLE_TRANSPORT as exc:
            problem = _describe(exc)
            if last_try:
                raise TransportError(
                    arena,
                    f"{endpoint} {problem} on all {attempt} attempts; check the host is reachable, or retry later",
                ) from None
            http._back_off(arena, endpoint, problem, attempt, http._backoff_delay(attempt))
            continue
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ArenaError(arena, f"cannot fetch {endpoint} ({type(exc).__name__}); check the URL") from None
        if response.status_code >= 500:
            if last_try:
                raise ServerError(
                    arena,
                    f"HTTP {response.status_code} from {endpoint} on all {attempt} attempts; "
                    "the service is failing, retry later",
                )
            http._back_off(arena, endpoint, f"HTTP {response.status_code}", attempt, http._backoff_delay(attempt))
            continue
        return response
