"""Actor erasure: the audit log also records erasures (action 'erase').

An erasure deletes an actor, its presences, aliases and content; its audit row keeps the actor id,
the counts, who erased and why, never the name.

Revision ID: 005_actor_erasure_audit
Revises: 004_entity_resolution
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "005_actor_erasure_audit"
down_revision: str | Sequence[str] | None = "004_entity_resolution"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = "('merge', 'split')"
NEW_ACTIONS = "('merge', 'split', 'erase')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_actor_audit_log_action"), "actor_audit_log", type_="check")
    op.create_check_constraint(op.f("ck_actor_audit_log_action"), "actor_audit_log", f"action IN {NEW_ACTIONS}")


def downgrade() -> None:
    # The rows are the only record that an erasure happened: refuse rather than delete them.
    erasures = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM actor_audit_log WHERE action = :erase"), {"erase": "erase"})
        .scalar_one()
    )
    if erasures:
        raise RuntimeError(
            f"actor_audit_log records {erasures} erasure(s), which revision 004 cannot hold; "
            "back up and remove those rows yourself before downgrading"
        )
    op.drop_constraint(op.f("ck_actor_audit_log_action"), "actor_audit_log", type_="check")
    op.create_check_constraint(op.f("ck_actor_audit_log_action"), "actor_audit_log", f"action IN {OLD_ACTIONS}")
