"""What the bluesky and mastodon arenas share: option checks, required fields, and reading
``HttpClient``'s errors for the status the platform answered with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from observatory_pipelines.core.collection.arenas.errors import ArenaError, MalformedResponse

# HttpClient words every 4xx it does not handle itself as "HTTP <status> from <host/path>: <body excerpt>".
_STATUS_IN_MESSAGE = re.compile(r"\bHTTP (\d{3}) from ")


def http_status(error: ArenaError) -> int | None:
    """The HTTP status an ``ArenaError`` from ``HttpClient`` reports, if any."""
    found = _STATUS_IN_MESSAGE.search(str(error))
    return int(found.group(1)) if found else None


def require(document: Any, path: str, arena: str, what: str) -> Any:
    """``document`` at the dotted ``path``; a missing or empty value is a changed response shape,
    which fails the task in one line naming the field rather than writing empty rows."""
    value = document
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    if value is None or value == "":
        raise MalformedResponse(arena, f"{what} has no '{path}'; the API may have changed")
    return value


def text_or_none(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def count_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; None when it does not parse."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def check_base_url(value: Any, key: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
        raise ValueError(f"option '{key}' must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def check_int(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"option '{key}' must be a whole number from {low} to {high}, not {value!r}")
    return value


def check_seconds(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"option '{key}' must be a number of seconds >= 0, not {value!r}")
    return float(value)


def check_unknown(options: Mapping[str, Any], known: Mapping[str, Any], arena: str) -> None:
    for key in options:
        if key not in known:
            raise ValueError(f"arena '{arena}' has no option '{key}'; use one of {', '.join(known)}")


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one: optional parts are read forgivingly."""
    return value if isinstance(value, Mapping) else {}


def array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
