"""Personal API tokens: what scripts send as ``Authorization: Bearer`` instead of a password.

A token is shown once, when it is made; the database keeps its SHA-256, its name and its first
characters (so a person can tell their tokens apart). Revoking is for good. Each use records when
it was last used, which the tokens page shows so forgotten tokens can be found and revoked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from observatory_pipelines.core.accounts.signin import new_token, token_hash
from observatory_pipelines.core.exports.access import Viewer
from observatory_pipelines.core.platform.errors import ObservatoryError

#: Marks the string as an observatory token (secret scanners and people both recognise it).
TOKEN_PREFIX = "obs_"
_SHOWN = len(TOKEN_PREFIX) + 6
MAX_NAME_LENGTH = 100


class TokenNameRejected(ObservatoryError):
    pass


@dataclass(frozen=True)
class ApiTokenInfo:
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


_COLUMNS = "id, name, prefix, created_at, last_used_at, revoked_at"


def create_token(engine: sa.Engine, viewer: Viewer, name: str) -> tuple[ApiTokenInfo, str]:
    """A new token for the viewer: its description, and the token itself (never shown again)."""
    name = " ".join((name or "").split())
    if not name:
        raise TokenNameRejected("give the token a name, such as the script or laptop that will use it")
    if len(name) > MAX_NAME_LENGTH:
        raise TokenNameRejected(f"the token's name must have at most {MAX_NAME_LENGTH} characters")
    token = TOKEN_PREFIX + new_token()
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                f"INSERT INTO api_tokens (user_id, name, token_hash, prefix) VALUES (:user, :name, :hash, :prefix) "
                f"RETURNING {_COLUMNS}"
            ),
            {"user": viewer.user_id, "name": name, "hash": token_hash(token), "prefix": token[:_SHOWN]},
        ).one()
    return ApiTokenInfo(*row), token


def list_tokens(engine: sa.Engine, viewer: Viewer) -> list[ApiTokenInfo]:
    """The viewer's own tokens, newest first (admins too see only their own)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM api_tokens WHERE user_id = :user ORDER BY created_at DESC, id"),
            {"user": viewer.user_id},
        ).all()
    return [ApiTokenInfo(*row) for row in rows]


def revoke_token(engine: sa.Engine, viewer: Viewer, token_id: uuid.UUID) -> bool:
    """Revoke one of the viewer's tokens. ``False`` when the viewer has no such token (someone
    else's looks exactly like one that does not exist); revoking twice is harmless."""
    with engine.begin() as conn:
        found = conn.execute(
            sa.text(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE id = :id AND user_id = :user RETURNING id"
            ),
            {"id": token_id, "user": viewer.user_id},
        ).first()
    return found is not None


def token_viewer(engine: sa.Engine, token: str, *, now: datetime | None = None) -> tuple[Viewer, uuid.UUID] | None:
    """Whose token this is and its id, while it is unrevoked and its account active; records the use."""
    if not (token or "").startswith(TOKEN_PREFIX):
        return None
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE api_tokens t SET last_used_at = :now FROM users u "
                "WHERE t.token_hash = :hash AND t.revoked_at IS NULL AND u.id = t.user_id AND u.is_active "
                "RETURNING u.id, u.email, u.role, t.id AS token_id"
            ),
            {"hash": token_hash(token), "now": now or datetime.now(UTC)},
        ).first()
    if row is None:
        return None
    return Viewer(user_id=row.id, email=row.email, is_admin=row.role == "admin"), row.token_id
