"""Signed cookies and CSRF tokens.

The session cookie carries a random token (its hash is the server's session row) and an HMAC of
it under the portal's secret, so a tampered or made-up cookie is refused before the database is
asked. Forms carry a CSRF token that must equal the signed one in the ``csrf`` cookie (the
double-submit pattern): another site can make a browser send the cookie, but cannot read it to
put it in the form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from observatory_pipelines.core.platform import paths, settings

SESSION_COOKIE = "observatory_session"
CSRF_COOKIE = "observatory_csrf"
CSRF_FIELD = "csrf_token"
KEPT_SECRET_FILE = "portal_secret"


@dataclass(frozen=True)
class PortalConfig:
    secret: bytes
    #: The address people reach the portal at; invitation links name it.
    base_url: str

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def config_from_env() -> PortalConfig:
    """``OBSERVATORY_PORTAL_SECRET`` and ``OBSERVATORY_PORTAL_URL``; without a secret, one kept in
    the local state folder, so a laptop's sessions survive a restart without any set-up."""
    current = settings.current()
    configured = current.portal_secret
    secret = configured.reveal() if configured else _kept_secret(paths.state_dir())
    return PortalConfig(secret=secret.encode(), base_url=current.portal_url)


def _kept_secret(state: Path) -> str:
    path = state / KEPT_SECRET_FILE
    if not path.is_file():
        state.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only, and never replaced: replacing it would sign everyone out.
        try:
            with open(path, "x", encoding="utf-8", opener=_owner_only) as handle:
                handle.write(secrets.token_urlsafe(48))
        except FileExistsError:
            pass
    return path.read_text(encoding="utf-8").strip()


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: bytes, purpose: str, value: str) -> str:
    return f"{value}.{_mac(secret, purpose, value)}"


def unsign(secret: bytes, purpose: str, signed: str | None) -> str | None:
    """The value, if the signature is ours; ``None`` for a missing, malformed or tampered cookie."""
    value, _, mac = (signed or "").rpartition(".")
    if not value or not hmac.compare_digest(mac, _mac(secret, purpose, value)):
        return None
    return value


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(secret: bytes, cookie: str | None, submitted: str | None) -> bool:
    expected = unsign(secret, "csrf", cookie)
    return bool(expected and submitted) and hmac.compare_digest(expected or "", submitted or "")
