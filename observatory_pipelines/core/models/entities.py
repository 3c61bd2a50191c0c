"""Entity resolution: suggested actor matches, and the audit trail of merges, splits and erasures."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from observatory_pipelines.core.models.base import Base, TimestampMixin, one_of, uuid_pk

MATCH_KINDS = ("exact_name", "shared_username", "fuzzy_name")
SUGGESTION_STATUSES = ("open", "accepted", "rejected")
AUDIT_ACTIONS = ("merge", "split", "erase")
MONTH_FORMAT = "^[0-9]{4}-(0[1-9]|1[0-2])$"


def _side_is_actor_or_account(side: str) -> str:
    """A side is an actor of the registry, or an author account no actor claims yet; never both."""
    return (
        f"({side}_actor_id IS NOT NULL AND {side}_platform IS NULL AND {side}_account IS NULL)"
        f" OR ({side}_actor_id IS NULL AND {side}_platform IS NOT NULL AND {side}_account IS NOT NULL)"
    )


class ActorMatchSuggestion(TimestampMixin, Base):
    """Two sides that may be the same person or organisation, found in one month's authors.

    ``pair_key`` names the pair independently of its order (``core.entities`` builds it from the
    two sides' keys, sorted), so re-running a month updates a suggestion instead of adding a
    second one, and a curator's ``status`` survives the re-run.
    """

    __tablename__ = "actor_match_suggestions"
    __table_args__ = (
        UniqueConstraint("month", "kind", "pair_key"),
        CheckConstraint(f"month ~ '{MONTH_FORMAT}'", name="month_format"),
        CheckConstraint(one_of("kind", MATCH_KINDS), name="kind"),
        CheckConstraint(one_of("status", SUGGESTION_STATUSES), name="status"),
        CheckConstraint("score >= 0 AND score <= 1", name="score_range"),
        CheckConstraint(_side_is_actor_or_account("left"), name="left_side"),
        CheckConstraint(_side_is_actor_or_account("right"), name="right_side"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    month: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    pair_key: Mapped[str] = mapped_column(Text, nullable=False)
    # Indexed for the cascade: deleting an actor (a merge does) removes its suggestions.
    left_actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("actors.id", ondelete="CASCADE"), index=True
    )
    left_platform: Mapped[str | None] = mapped_column(Text)
    left_account: Mapped[str | None] = mapped_column(Text)
    # The name shown when the suggestion was made: an actor's canonical name or an account's
    # display name (else its handle).
    left_name: Mapped[str] = mapped_column(Text, nullable=False)
    right_actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("actors.id", ondelete="CASCADE"), index=True
    )
    right_platform: Mapped[str | None] = mapped_column(Text)
    right_account: Mapped[str | None] = mapped_column(Text)
    right_name: Mapped[str] = mapped_column(Text, nullable=False)
    score: Mapped[float] = mapped_column(Double, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'open'"))


class ActorAuditLog(Base):
    """Who merged, split or erased which actors, when, and what moved.

    ``actor_id`` has no foreign key on purpose: the row must outlive the actors a merge or an
    erasure deletes. An erasure's row holds counts, never the actor's name (migration 005).
    """

    __tablename__ = "actor_audit_log"
    __table_args__ = (CheckConstraint(one_of("action", AUDIT_ACTIONS), name="action"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    action: Mapped[str] = mapped_column(Text, nullable=False)
    actor_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    performed_by: Mapped[str] = mapped_column(Text, nullable=False)
    performed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
