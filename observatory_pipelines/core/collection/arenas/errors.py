"""What can go wrong talking to an arena. Every message is one line that says what to do."""

from __future__ import annotations

import re
from datetime import datetime

from observatory_pipelines.core.platform.errors import ObservatoryError

_ONE_LINE = re.compile(r"\s*[\r\n]+\s*")


class ArenaError(ObservatoryError):
    """An arena could not deliver. ``retryable`` tells Dagster's retry policy whether to try again."""

    retryable = False

    def __init__(self, arena: str, message: str):
        self.arena = arena
        # Messages quote what platforms send (ids, timestamps, error text), which may hold line
        # breaks; the user reads one line wherever the error lands.
        super().__init__(_ONE_LINE.sub(" ", f"{arena}: {message}"))


class RateLimited(ArenaError):
    """HTTP 429 (or the platform's equivalent) that outlasted our own waiting."""

    retryable = True

    def __init__(self, arena: str, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(arena, message)


class ServerError(ArenaError):
    """HTTP 5xx that persisted through our retries."""

    retryable = True


class TransportError(ArenaError):
    """Timeouts, refused connections and truncated bodies that persisted through our retries."""

    retryable = True


class CredentialError(ArenaError):
    """HTTP 401/403 or an expired token: retrying will not help until the credential is fixed."""


class QuotaExceeded(ArenaError):
    """Every credential of the arena's platform and tier is spent (its daily quota, or a 429 that
    asked to wait): retryable once ``retry_at``, when the first of them is usable again."""

    retryable = True

    def __init__(self, arena: str, message: str, retry_at: datetime):
        self.retry_at = retry_at
        super().__init__(arena, message)


class MalformedResponse(ArenaError):
    """The arena answered, but not in its documented format (e.g. HTML where JSON was promised)."""

    retryable = True
