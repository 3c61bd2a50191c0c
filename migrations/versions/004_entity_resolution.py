"""Entity resolution: suggested actor matches per month, and an audit log of merges and splits.

- actor_match_suggestions: one row per (month, kind, pair of sides); a side is a registry actor or
  an author account no actor claims yet. The pair key is order-free, so re-running a month
  updates rows (and keeps a curator's status) instead of adding new ones.
- actor_audit_log: who merged or split which actor, when, and what moved. No foreign key to
  actors: a merge deletes the duplicates the log talks about.

Revision ID: 004_entity_resolution
Revises: 003_collection_task_accounting
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "004_entity_resolution"
down_revision: str | Sequence[str] | None = "003_collection_task_accounting"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTH_FORMAT = "^[0-9]{4}-(0[1-9]|1[0-2])$"


def _uuid() -> postgresql.UUID:
    return postgresql.UUID(as_uuid=True)


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def _side(side: str) -> list[sa.Column]:
    return [
        sa.Column(f"{side}_actor_id", _uuid(), nullable=True),
        sa.Column(f"{side}_platform", sa.Text(), nullable=True),
        sa.Column(f"{side}_account", sa.Text(), nullable=True),
        sa.Column(f"{side}_name", sa.Text(), nullable=False),
    ]


def _side_check(side: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(
        f"({side}_actor_id IS NOT NULL AND {side}_platform IS NULL AND {side}_account IS NULL)"
        f" OR ({side}_actor_id IS NULL AND {side}_platform IS NOT NULL AND {side}_account IS NOT NULL)",
        name=op.f(f"ck_actor_match_suggestions_{side}_side"),
    )


def _side_fk(side: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [f"{side}_actor_id"],
        ["actors.id"],
        ondelete="CASCADE",
        name=op.f(f"fk_actor_match_suggestions_{side}_actor_id_actors"),
    )


def upgrade() -> None:
    op.create_table(
        "actor_match_suggestions",
        sa.Column("id", _uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("month", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("pair_key", sa.Text(), nullable=False),
        *_side("left"),
        *_side("right"),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'open'"), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_match_suggestions")),
        sa.UniqueConstraint("month", "kind", "pair_key", name=op.f("uq_actor_match_suggestions_month_kind_pair_key")),
        _side_fk("left"),
        _side_fk("right"),
        sa.CheckConstraint(f"month ~ '{MONTH_FORMAT}'", name=op.f("ck_actor_match_suggestions_month_format")),
        sa.CheckConstraint(
            "kind IN ('exact_name', 'shared_username', 'fuzzy_name')",
            name=op.f("ck_actor_match_suggestions_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'rejected')", name=op.f("ck_actor_match_suggestions_status")
        ),
        sa.CheckConstraint("score >= 0 AND score <= 1", name=op.f("ck_actor_match_suggestions_score_range")),
        _side_check("left"),
        _side_check("right"),
    )
    # Deleting an actor cascades to its suggestions; these keep that from scanning the table.
    for side in ("left", "right"):
        op.create_index(
            op.f(f"ix_actor_match_suggestions_{side}_actor_id"), "actor_match_suggestions", [f"{side}_actor_id"]
        )

    op.create_table(
        "actor_audit_log",
        sa.Column("id", _uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("actor_id", _uuid(), nullable=False),
        sa.Column("details", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("performed_by", sa.Text(), nullable=False),
        _now("performed_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_audit_log")),
        sa.CheckConstraint("action IN ('merge', 'split')", name=op.f("ck_actor_audit_log_action")),
    )
    op.create_index(op.f("ix_actor_audit_log_actor_id"), "actor_audit_log", ["actor_id"])


def downgrade() -> None:
    op.drop_table("actor_audit_log")
    op.drop_table("actor_match_suggestions")
