"""Signing in to the portal: passwords, one-time invitations, sessions, and slowing down guessing.

Every secret handed to a person (an invitation link, a session cookie) is a 256-bit random token
of which only the SHA-256 is stored, so a copy of the database lets nobody in. Passwords are hashed
with Argon2id (argon2-cffi's defaults, which follow RFC 9106's recommendations).

Nothing here says whether an address has an account: a wrong password, an unknown address, a
deactivated account and an account without a password all get the same ``SignInRefused``, after
the same Argon2 work. Failed attempts are counted per account and per client address over a
sliding window; past the limit, sign-in is refused before any password is checked, for known and
unknown addresses alike.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from observatory_pipelines.core.accounts.users import UserError, UserInfo, find_user
from observatory_pipelines.core.exports.access import Viewer
from observatory_pipelines.core.platform.errors import ObservatoryError

INVITATION_LIFETIME = timedelta(days=7)
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 12
#: Argon2 hashes whatever it is given: an unbounded password is a cheap way to burn the server's CPU.
MAX_PASSWORD_LENGTH = 256

FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
#: Higher than per account: several researchers may share one institute's address.
MAX_FAILURES_PER_ADDRESS = 20

_hasher = PasswordHasher()
#: Verified against when there is no account, so an unknown address costs what a wrong password costs.
_DECOY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(ObservatoryError):
    """Wrong address or password; deliberately never says which."""

    def __init__(self) -> None:
        super().__init__("wrong e-mail address or password")


class SignInThrottled(ObservatoryError):
    def __init__(self, retry_after: timedelta) -> None:
        minutes = max(1, round(retry_after.total_seconds() / 60))
        super().__init__(f"too many failed sign-ins; wait {minutes} minute{'s' * (minutes != 1)} and try again")
        self.retry_after = retry_after


class InvitationInvalid(ObservatoryError):
    def __init__(self) -> None:
        super().__init__(
            "this invitation link has expired or was already used; ask an admin for a new one "
            "(observatory users invite EMAIL)"
        )


class PasswordRejected(ObservatoryError):
    """The new password does not meet the rules; the message says which."""


@dataclass(frozen=True)
class Invitation:
    token: str
    email: str
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise PasswordRejected("the password must not be only spaces")
    return password


def _store_password(conn: sa.Connection, user_id: uuid.UUID, password: str) -> None:
    conn.execute(
        sa.text("UPDATE users SET password_hash = :hash, updated_at = now() WHERE id = :id"),
        {"hash": _hasher.hash(check_password(password)), "id": user_id},
    )
    # A new password ends every session and open invitation: whoever knew the old one is out.
    conn.execute(
        sa.text("UPDATE portal_sessions SET ended_at = now() WHERE user_id = :id AND ended_at IS NULL"),
        {"id": user_id},
    )
    conn.execute(
        sa.text("UPDATE invitations SET used_at = now() WHERE user_id = :id AND used_at IS NULL"), {"id": user_id}
    )


def set_password(engine: sa.Engine, email: str, password: str) -> UserInfo:
    """Set an account's password (``observatory users set-password``)."""
    check_password(password)
    with engine.begin() as conn:
        user = find_user(conn, email)
        if not user.is_active:
            raise UserError(f"user {user.email} is deactivated; reactivate the account first")
        _store_password(conn, user.id, password)
    return user


def invite(
    engine: sa.Engine, email: str, created_by: str, *, lifetime: timedelta = INVITATION_LIFETIME, now=None
) -> Invitation:
    """A one-time token with which the account's owner sets a password (``observatory users invite``)."""
    token = new_token()
    created_at = _now(now)
    expires_at = created_at + lifetime
    with engine.begin() as conn:
        user = find_user(conn, email)
        if not user.is_active:
            raise UserError(f"user {user.email} is deactivated; reactivate the account first")
        conn.execute(
            sa.text(
                "INSERT INTO invitations (user_id, token_hash, created_by, expires_at, created_at) "
                "VALUES (:user, :hash, :by, :expires, :created)"
            ),
            {
                "user": user.id,
                "hash": token_hash(token),
                "by": created_by,
                "expires": expires_at,
                "created": created_at,
            },
        )
    return Invitation(token=token, email=user.email, expires_at=expires_at)


def _open_invitation(conn: sa.Connection, token: str, now: datetime, *, lock: bool = False):
    row = conn.execute(
        sa.text(
            "SELECT i.id, i.user_id, u.email FROM invitations i JOIN users u ON u.id = i.user_id "
            "WHERE i.token_hash = :hash AND i.used_at IS NULL AND i.expires_at > :now AND u.is_active"
            + (" FOR UPDATE OF i" if lock else "")
        ),
        {"hash": token_hash(token or ""), "now": now},
    ).first()
    if row is None:
        raise InvitationInvalid()
    return row


def invitation_email(engine: sa.Engine, token: str, *, now: datetime | None = None) -> str:
    """The address an open invitation is for; ``InvitationInvalid`` when it is expired, used or unknown."""
    with engine.connect() as conn:
        return str(_open_invitation(conn, token, _now(now)).email)


def accept_invitation(engine: sa.Engine, token: str, password: str, *, now: datetime | None = None) -> str:
    """Set the password the invitation was for and use the invitation up; returns the address."""
    check_password(password)
    with engine.begin() as conn:
        invitation = _open_invitation(conn, token, _now(now), lock=True)
        _store_password(conn, invitation.user_id, password)
    return str(invitation.email)


def _keyed(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def _failures_since(conn: sa.Connection, column: str, value: str, since: datetime):
    assert column in ("account_hash", "address_hash")
    return conn.execute(
        sa.text(
            f"SELECT count(*), min(failed_at) FROM sign_in_failures WHERE {column} = :value AND failed_at > :since"
        ),
        {"value": value, "since": since},
    ).one()


def _check_throttle(conn: sa.Connection, account: str, address: str, now: datetime) -> None:
    since = now - FAILURE_WINDOW
    for column, value, limit in (
        ("account_hash", account, MAX_FAILURES_PER_ACCOUNT),
        ("address_hash", address, MAX_FAILURES_PER_ADDRESS),
    ):
        count, oldest = _failures_since(conn, column, value, since)
        if count >= limit:
            raise SignInThrottled(oldest + FAILURE_WINDOW - now)


def sign_in(
    engine: sa.Engine, email: str, password: str, address: str, *, secret: bytes, now: datetime | None = None
) -> str:
    """A new session token for the account, if the password is right and guessing is not throttled.

    ``address`` is the client's network address and ``secret`` the portal's key: both it and the
    address are kept only as keyed hashes.
    """
    now = _now(now)
    stated = (email or "").strip().lower()
    account, client = _keyed(secret, "account", stated), _keyed(secret, "address", address or "")
    with engine.begin() as conn:
        _check_throttle(conn, account, client, now)
        rows = conn.execute(
            sa.text(
                "SELECT id, email, password_hash FROM users WHERE lower(email) = :email AND is_active "
                "AND password_hash IS NOT NULL"
            ),
            {"email": stated},
        ).all()
        user = rows[0] if len(rows) == 1 else None
        if not _verify(user.password_hash if user else _DECOY_HASH, password) or user is None:
            conn.execute(
                sa.text("INSERT INTO sign_in_failures (account_hash, address_hash, failed_at) VALUES (:a, :b, :at)"),
                {"a": account, "b": client, "at": now},
            )
            conn.execute(sa.text("DELETE FROM sign_in_failures WHERE failed_at < :old"), {"old": now - FAILURE_WINDOW})
            failed = True
        else:
            failed = False
            if _hasher.check_needs_rehash(user.password_hash):
                conn.execute(
                    sa.text("UPDATE users SET password_hash = :hash WHERE id = :id"),
                    {"hash": _hasher.hash(password), "id": user.id},
                )
            conn.execute(sa.text("DELETE FROM sign_in_failures WHERE account_hash = :a"), {"a": account})
            token = new_token()
            conn.execute(
                sa.text(
                    "INSERT INTO portal_sessions (user_id, token_hash, expires_at, last_seen_at, created_at) "
                    "VALUES (:user, :hash, :expires, :now, :now)"
                ),
                {"user": user.id, "hash": token_hash(token), "expires": now + SESSION_LIFETIME, "now": now},
            )
    # Raised after the commit, so the failure is counted.
    if failed:
        raise SignInRefused()
    return token


def _verify(stored: str, password: str) -> bool:
    # Refused by length alone: that depends on what was typed, never on whether the account exists.
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def session_viewer(engine: sa.Engine, token: str, *, now: datetime | None = None) -> Viewer | None:
    """Who a session token belongs to, while it is open, unexpired and its account active."""
    now = _now(now)
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE portal_sessions s SET last_seen_at = :now FROM users u "
                "WHERE s.token_hash = :hash AND s.ended_at IS NULL AND s.expires_at > :now "
                "AND u.id = s.user_id AND u.is_active RETURNING u.id, u.email, u.role"
            ),
            {"hash": token_hash(token or ""), "now": now},
        ).first()
    return None if row is None else Viewer(user_id=row.id, email=row.email, is_admin=row.role == "admin")


def end_session(engine: sa.Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE portal_sessions SET ended_at = now() WHERE token_hash = :hash AND ended_at IS NULL"),
            {"hash": token_hash(token or "")},
        )
