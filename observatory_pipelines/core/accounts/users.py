"""User accounts: added, listed and deactivated, never deleted (designs and the ledger point at them).

Addresses are compared without regard to case, as ``exports`` compares them: two accounts that
differ only in case would be one person twice, so adding one is refused.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from observatory_pipelines.core.platform.errors import ObservatoryError

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ObservatoryError):
    """A user cannot be added, found or changed; the message says why."""


@dataclass(frozen=True)
class UserInfo:
    id: uuid.UUID
    email: str
    display_name: str | None
    role: str
    is_active: bool
    created_at: datetime


_COLUMNS = "id, email, display_name, role, is_active, created_at"


def check_email(email: str) -> str:
    stated = (email or "").strip()
    if not _ADDRESS.match(stated):
        raise UserError(f"{stated!r} is not an email address")
    return stated


def add_user(engine: sa.Engine, email: str, *, admin: bool = False, name: str | None = None) -> UserInfo:
    address = check_email(email)
    role = "admin" if admin else "researcher"
    with engine.begin() as conn:
        # Two admins adding one address (in any case) at once: the second waits here, then sees the first.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(lower(:email)))"), {"email": address})
        clash = conn.execute(
            sa.text("SELECT email FROM users WHERE lower(email) = lower(:email)"), {"email": address}
        ).scalar()
        if clash is not None:
            raise UserError(f"user {clash} already exists; see: observatory users list")
        row = conn.execute(
            sa.text(
                f"INSERT INTO users (email, display_name, role) VALUES (:email, :name, :role) RETURNING {_COLUMNS}"
            ),
            {"email": address, "name": (name or "").strip() or None, "role": role},
        ).one()
    return UserInfo(*row)


def list_users(engine: sa.Engine) -> list[UserInfo]:
    with engine.connect() as conn:
        return [UserInfo(*row) for row in conn.execute(sa.text(f"SELECT {_COLUMNS} FROM users ORDER BY lower(email)"))]


def find_user(conn: sa.Connection, email: str) -> UserInfo:
    """The account with this address, active or not; a one-line ``UserError`` when there is none."""
    stated = (email or "").strip()
    rows = conn.execute(
        sa.text(f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower(:email)"), {"email": stated}
    ).all()
    # Accounts older than the case-insensitive check may differ only in case: the exact one wins.
    if len(rows) > 1:
        rows = [row for row in rows if row.email == stated]
    if len(rows) != 1:
        raise UserError(f"no user {stated!r}; see: observatory users list")
    return UserInfo(*rows[0])


def deactivate_user(engine: sa.Engine, email: str) -> tuple[UserInfo, bool]:
    """Deactivate the account; returns it and whether it was active until now."""
    with engine.begin() as conn:
        user = find_user(conn, email)
        if user.is_active:
            conn.execute(
                sa.text("UPDATE users SET is_active = false, updated_at = now() WHERE id = :id"), {"id": user.id}
            )
    return user, user.is_active
