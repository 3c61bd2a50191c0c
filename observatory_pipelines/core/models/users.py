"""People who use the observatory, their credit allocations and their refresh tokens."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from observatory_pipelines.core.models.base import Base, TimestampMixin, created_at, one_of, uuid_pk

USER_ROLES = ("researcher", "admin")


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


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # Only a hash is stored, so a database dump does not hand out live tokens.
    token_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
