"""Pseudonymisation of authors.

``pseudonymized_author_id`` is HMAC-SHA256 keyed by a secret salt over ``platform:author id``:
stable across runs (so networks and statistics can count authors) but not reversible or
guessable without the salt. The salt comes from the environment (``PSEUDONYMIZATION_SALT``) and
is never logged or stored in Dagster metadata.

Where names are shown: the database keeps what the platform published (the author's platform id
and display name), because per-actor erasure (GDPR Art. 17) and entity resolution need them.
Everything that leaves the database for analysis (statistics, networks, exports) identifies
authors by the pseudonymised id and shows a display name only for actors flagged as public
figures. Who is one is ``PUBLIC_FIGURE_SQL``: the record's author is an actor (entity resolution
linked it) flagged ``is_public_figure``. Statistics, networks and exports all ask it;
``core.exports.identity`` applies the rule to every export file.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from pathlib import Path

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.errors import ConfigError

SALT_VARIABLE = settings.PSEUDONYMIZATION_SALT.name
#: Where the local state keeps a salt of its own (the demo makes it), for runs on this checkout.
KEPT_SALT_FILE = "demo_salt"
MIN_SALT_LENGTH = 16
#: Whether a ``content_records`` row's author is a public figure: the one rule for showing a name.
PUBLIC_FIGURE_SQL = "EXISTS (SELECT 1 FROM actors a WHERE a.id = content_records.author_id AND a.is_public_figure)"


def load_salt(explicit: str | None = None) -> bytes:
    """The salt from ``explicit`` or the environment; a one-line ``ConfigError`` when missing or weak."""
    configured = settings.current().salt
    value = explicit if explicit is not None else (configured.reveal() if configured else "")
    if not value:
        raise ConfigError(
            f"{SALT_VARIABLE} is not set, so authors cannot be pseudonymised and collection will not "
            "start; set it to a long random secret, e.g. "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if len(value) < MIN_SALT_LENGTH:
        raise ConfigError(f"{SALT_VARIABLE} is shorter than {MIN_SALT_LENGTH} characters; use a long random secret")
    return value.encode("utf-8")


@functools.lru_cache(maxsize=1 << 16)  # authors post many times: a month's busy ones are keyed once
def pseudonymise(platform: str, author_platform_id: str | None, salt: bytes) -> str | None:
    if not author_platform_id:
        return None
    message = f"{platform}:{author_platform_id}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


def kept_salt_path(state: Path) -> Path:
    return state / KEPT_SALT_FILE


def kept_salt(state: Path) -> str | None:
    """The salt the local state keeps (``<state>/demo_salt``), or ``None`` when it keeps none."""
    path = kept_salt_path(state)
    return (path.read_text(encoding="utf-8").strip() or None) if path.is_file() else None
