"""Collection runs, their per-arena tasks, and the credit ledger."""

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
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from observatory_pipelines.core.models.base import TIERS, Base, created_at, one_of, uuid_pk

RUN_MODES = ("batch", "live")
RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
TASK_STATUSES = (*RUN_STATUSES, "skipped")  # skipped: the design has this arena disabled
TASK_COUNTERS = (
    "records_collected",
    "attempts",
    "records_new",
    "records_updated",
    "records_rejected",
    "records_filtered",
    "api_calls",
    "credits_reserved",
    "credits_spent",
)
TRANSACTION_TYPES = ("reservation", "settlement", "refund")


class CollectionRun(Base):
    __tablename__ = "collection_runs"
    __table_args__ = (
        # The arena assets of one Dagster run share one collection run per corpus.
        UniqueConstraint(
            "dagster_run_id", "query_design_id", "partition_key", name="uq_collection_runs_dagster_run_id"
        ),
        CheckConstraint(one_of("mode", RUN_MODES), name="mode"),
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        CheckConstraint(one_of("tier", TIERS), name="tier"),
        # Windows are [date_from, date_to), as Dagster's time windows are.
        CheckConstraint("date_from IS NULL OR date_to IS NULL OR date_from < date_to", name="date_window"),
        CheckConstraint("records_collected >= 0 AND credits_spent >= 0", name="counters_nonnegative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("query_designs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    initiated_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    mode: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'batch'"))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    tier: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'free'"))
    date_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    date_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Links back to the Dagster run and partition that did the work; NULL for runs made elsewhere.
    dagster_run_id: Mapped[str | None] = mapped_column(Text, index=True)
    partition_key: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    records_collected: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    credits_spent: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    error_log: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()

    tasks: Mapped[list[CollectionTask]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )


class CollectionTask(Base):
    """One arena's share of a run: each arena succeeds or fails on its own."""

    __tablename__ = "collection_tasks"
    __table_args__ = (
        UniqueConstraint("collection_run_id", "arena"),
        CheckConstraint(one_of("status", TASK_STATUSES), name="status"),
        CheckConstraint(" AND ".join(f"{c} >= 0" for c in TASK_COUNTERS), name="counters_nonnegative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    collection_run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_runs.id", ondelete="CASCADE"), nullable=False
    )
    arena: Mapped[str] = mapped_column(Text, nullable=False)
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    records_collected: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = created_at()
    # Figures shown in the Dagster UI for each arena's materialization (migration 003).
    records_new: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    records_updated: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    records_rejected: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # Read but not stored: outside the month, or matching none of the design's terms.
    records_filtered: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    api_calls: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    credits_reserved: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    credits_spent: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    #: Up to a few dozen {"reason", "source"} objects: why records were rejected.
    rejection_samples: Mapped[list] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))

    run: Mapped[CollectionRun] = relationship(back_populates="tasks")


class SourceYield(Base):
    """What one source (a feed, channel, instance and tag, query) gave one task: its yield history.

    ``items`` counts records stored (new and already known alike, so re-collecting a quiet feed
    still shows what it holds), ``filtered`` those read but not stored (no term matched, outside
    the month), ``rejected`` those that could not be read. A source searched that gave nothing
    has a row of zeros: that is how a silent dropout shows.
    """

    __tablename__ = "source_yields"
    __table_args__ = (
        UniqueConstraint("collection_task_id", "source"),
        CheckConstraint("items >= 0 AND filtered >= 0 AND rejected >= 0", name="counters_nonnegative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    collection_task_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_tasks.id", ondelete="CASCADE"), nullable=False
    )
    # Denormalised from the task's run, so one source's history is one index scan.
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), nullable=False
    )
    arena: Mapped[str] = mapped_column(Text, nullable=False)
    month: Mapped[str] = mapped_column(Text, nullable=False)  # YYYY-MM, the corpus month collected
    #: Never holds a secret: arenas name sources without API keys or tokens (docs/collection.md).
    source: Mapped[str] = mapped_column(Text, nullable=False)
    items: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    filtered: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


Index(
    "ix_source_yields_history",
    SourceYield.query_design_id,
    SourceYield.arena,
    SourceYield.source,
    SourceYield.collected_at.desc(),
)


class CreditTransaction(Base):
    """The credit ledger. Rows are appended, never updated.

    Balance = allocated - reserved - settled + refunded; history pages by keyset on
    ``(created_at DESC, id DESC)``, which the composite index serves per user.
    """

    __tablename__ = "credit_transactions"
    __table_args__ = (
        CheckConstraint(one_of("transaction_type", TRANSACTION_TYPES), name="transaction_type"),
        CheckConstraint("credits_consumed >= 0", name="credits_consumed_nonnegative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # No cascade: the ledger is an audit trail; users are deactivated, not deleted.
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"), nullable=False)
    # Kept when a run is deleted, so spent credits stay accounted for.
    collection_run_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_runs.id", ondelete="SET NULL"), index=True
    )
    arena: Mapped[str | None] = mapped_column(Text)
    platform: Mapped[str | None] = mapped_column(Text)
    credits_consumed: Mapped[int] = mapped_column(Integer, nullable=False)
    transaction_type: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()


Index(
    "ix_credit_transactions_user_id_created_at_id",
    CreditTransaction.user_id,
    CreditTransaction.created_at.desc(),
    CreditTransaction.id.desc(),
)


class CollectionCheckpoint(Base):
    """Where one paged query of a corpus stood on one UTC day (``core.collection.checkpoints``)."""

    __tablename__ = "collection_checkpoints"

    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), primary_key=True
    )
    arena: Mapped[str] = mapped_column(Text, primary_key=True)
    month: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    collection_day: Mapped[date] = mapped_column(Date, primary_key=True)
    state: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    finished: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
