"""Checkpoints of paged paid queries.

- collection_checkpoints: per query design, arena, month, source (one query) and UTC day, the
  arena's last stored position (cursor, page, search id, newest id) and whether the source is
  finished. A killed run resumes from it instead of paying for pages it already stored. Rows go
  with their design (cascade).

Revision ID: 011_collection_checkpoints
Revises: 010_portal
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "011_collection_checkpoints"
down_revision: str | Sequence[str] | None = "010_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collection_checkpoints",
        sa.Column("query_design_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("arena", sa.Text(), nullable=False),
        sa.Column("month", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("collection_day", sa.Date(), nullable=False),
        sa.Column(
            "state", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("finished", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            name=op.f("fk_collection_checkpoints_query_design_id_query_designs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "query_design_id", "arena", "month", "source", "collection_day", name=op.f("pk_collection_checkpoints")
        ),
    )


def downgrade() -> None:
    op.drop_table("collection_checkpoints")
