"""Per-arena accounting on collection tasks, one collection run per Dagster run and corpus.

- collection_tasks gains the figures shown in the Dagster UI (new / updated / rejected / filtered
  records, API calls, credits) and a sample of rejection reasons, and a 'skipped' status for
  arenas a design has disabled.
- collection_runs is unique per (dagster_run_id, query_design_id, partition_key), so the arena
  assets of one Dagster run share one collection run (get-or-create with ON CONFLICT).

Revision ID: 003_collection_task_accounting
Revises: 002_add_arenas_config_to_query_designs
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "003_collection_task_accounting"
down_revision: str | Sequence[str] | None = "002_add_arenas_config_to_query_designs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "records_new",
    "records_updated",
    "records_rejected",
    "records_filtered",
    "api_calls",
    "credits_reserved",
    "credits_spent",
)
OLD_STATUSES = "('pending', 'running', 'completed', 'failed', 'cancelled')"
NEW_STATUSES = "('pending', 'running', 'completed', 'failed', 'cancelled', 'skipped')"


def upgrade() -> None:
    for name in COUNTERS:
        op.add_column(
            "collection_tasks",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
    op.add_column(
        "collection_tasks",
        sa.Column("rejection_samples", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.drop_constraint(op.f("ck_collection_tasks_counters_nonnegative"), "collection_tasks", type_="check")
    op.create_check_constraint(
        op.f("ck_collection_tasks_counters_nonnegative"),
        "collection_tasks",
        " AND ".join(f"{c} >= 0" for c in ("records_collected", "attempts", *COUNTERS)),
    )
    op.drop_constraint(op.f("ck_collection_tasks_status"), "collection_tasks", type_="check")
    op.create_check_constraint(op.f("ck_collection_tasks_status"), "collection_tasks", f"status IN {NEW_STATUSES}")
    op.create_unique_constraint(
        op.f("uq_collection_runs_dagster_run_id"),
        "collection_runs",
        ["dagster_run_id", "query_design_id", "partition_key"],
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_collection_runs_dagster_run_id"), "collection_runs", type_="unique")
    op.execute("UPDATE collection_tasks SET status = 'completed' WHERE status = 'skipped'")
    op.drop_constraint(op.f("ck_collection_tasks_status"), "collection_tasks", type_="check")
    op.create_check_constraint(op.f("ck_collection_tasks_status"), "collection_tasks", f"status IN {OLD_STATUSES}")
    op.drop_constraint(op.f("ck_collection_tasks_counters_nonnegative"), "collection_tasks", type_="check")
    op.create_check_constraint(
        op.f("ck_collection_tasks_counters_nonnegative"),
        "collection_tasks",
        "records_collected >= 0 AND attempts >= 0",
    )
    op.drop_column("collection_tasks", "rejection_samples")
    for name in reversed(COUNTERS):
        op.drop_column("collection_tasks", name)
