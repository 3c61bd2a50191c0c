"""API credentials for the arenas, kept encrypted at rest."""

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
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from observatory_pipelines.core.models.base import TIERS, Base, TimestampMixin, one_of, uuid_pk


class ApiCredential(TimestampMixin, Base):
    __tablename__ = "api_credentials"
    __table_args__ = (
        UniqueConstraint("platform", "credential_name"),
        CheckConstraint(one_of("tier", TIERS), name="tier"),
        CheckConstraint("quota_used_today >= 0", name="quota_used_nonnegative"),
        CheckConstraint("daily_quota IS NULL OR daily_quota >= 0", name="daily_quota_nonnegative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    tier: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'free'"))
    credential_name: Mapped[str] = mapped_column(Text, nullable=False)
    # Ciphertext only; the plaintext secret never reaches the database.
    encrypted_payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    # NULL: the platform imposes no daily quota on this credential.
    daily_quota: Mapped[int | None] = mapped_column(Integer)
    quota_used_today: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # The UTC day quota_used_today counts; use on a later day starts again from 0 (migration 008).
    quota_date: Mapped[date | None] = mapped_column(Date)
    # Set when the platform said "no more" (HTTP 429, a spent quota): the pool skips it until then.
    exhausted_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
