"""Yield history per source.

- source_yields: one row per source (feed URL, channel, instance and tag, query) and collection
  task: the items it gave (stored, filtered, rejected) and when. Rows go with their task
  (cascade); query_design_id, arena and month are copied from the task and its run so that the
  history of one source is one index scan, which the silent-dropout check and
  ``observatory sources`` read.

Revision ID: 009_source_yields
Revises: 008_designs_and_credentials
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "009_source_yields"
down_revision: str | Sequence[str] | None = "008_designs_and_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_yields",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("collection_task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("query_design_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("arena", sa.Text(), nullable=False),
        sa.Column("month", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("items", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("filtered", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rejected", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "items >= 0 AND filtered >= 0 AND rejected >= 0", name=op.f("ck_source_yields_counters_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["collection_task_id"],
            ["collection_tasks.id"],
            name=op.f("fk_source_yields_collection_task_id_collection_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            name=op.f("fk_source_yields_query_design_id_query_designs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_yields")),
        sa.UniqueConstraint("collection_task_id", "source", name=op.f("uq_source_yields_collection_task_id_source")),
    )
    op.create_index(
        "ix_source_yields_history",
        "source_yields",
        ["query_design_id", "arena", "source", sa.text("collected_at DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_source_yields_history", table_name="source_yields")
    op.drop_table("source_yields")
