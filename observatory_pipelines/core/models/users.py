"""People who use the observatory: their accounts, credit allocations, portal sign-ins and tokens,
and the record of what they downloaded."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from observatory_pipelines.core.models.base import Base, TimestampMixin, created_at, one_of, uuid_pk

USER_ROLES = ("researcher", "admin")
DOWNLOAD_CHANNELS = ("session", "token")


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(one_of("role", USER_ROLES), name="role"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    display_name: Mapped[str | None] = mapped_column(Text)
    # NULL for accounts that never log in with a password (CLI-only or single sign-on users).
    password_hash: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'researcher'"))
    # Users are deactivated, not deleted: query designs and the credit ledger point at them.
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))


class CreditAllocation(Base):
    __tablename__ = "credit_allocations"
    __table_args__ = (
        CheckConstraint("credits_amount > 0", name="credits_amount_positive"),
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="validity_period"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    credits_amount: Mapped[int] = mapped_column(Integer, nullable=False)
    valid_from: Mapped[date] = mapped_column(Date, nullable=False, server_default=func.current_date())
    # Inclusive last day; NULL means open-ended.
    valid_until: Mapped[date | None] = mapped_column(Date)
    allocated_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created_at()


class Invitation(Base):
    """A one-time link that lets a person set their password; only its hash is stored."""

    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    created_by: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()


class PortalSession(Base):
    """A signed-in browser. The cookie carries the token; only its hash is stored, and sign-out
    ends the row, so a copied cookie stops working at once."""

    __tablename__ = "portal_sessions"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()


class ApiToken(Base):
    """A personal token for scripts, sent as ``Authorization: Bearer``; shown once, stored hashed."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("length(name) BETWEEN 1 AND 100", name="name_length"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    token_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    #: The token's first characters, so a person can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(Text, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()


class SignInFailure(Base):
    """A failed sign-in, kept briefly to slow guessing per account and per address. Both are
    stored as keyed hashes: the table holds neither e-mail addresses nor IP addresses."""

    __tablename__ = "sign_in_failures"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_hash: Mapped[str] = mapped_column(Text, nullable=False)
    address_hash: Mapped[str] = mapped_column(Text, nullable=False)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        Index("ix_sign_in_failures_account", "account_hash", "failed_at"),
        Index("ix_sign_in_failures_address", "address_hash", "failed_at"),
    )


class ExportDownload(Base):
    """Who downloaded which export, when, and how (a portal session, an API token)."""

    __tablename__ = "export_downloads"
    __table_args__ = (CheckConstraint(one_of("via", DOWNLOAD_CHANNELS), name="via"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    month: Mapped[str] = mapped_column(Text, nullable=False)
    file: Mapped[str] = mapped_column(Text, nullable=False)
    via: Mapped[str] = mapped_column(Text, nullable=False)
    api_token_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_tokens.id", ondelete="SET NULL")
    )
    downloaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
