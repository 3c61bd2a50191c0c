"""Add query_designs.arenas_config: per-arena settings, keyed by arena name.

Revision ID: 002_add_arenas_config_to_query_designs
Revises: 001_initial_schema
Create Date: 2026-02-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "002_add_arenas_config_to_query_designs"
down_revision: str | Sequence[str] | None = "001_initial_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL 11+ adds the column without rewriting the table.
    op.add_column(
        "query_designs",
        sa.Column(
            "arenas_config",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("query_designs", "arenas_config")
