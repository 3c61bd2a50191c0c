"""Export identity: a query design's exports are pseudonymised unless it records a legal basis.

- query_designs.export_identity: 'pseudonymised' (the default: authors by pseudonymised id, names
  only for public figures) or 'identified' (every author's name and the platform's own URLs);
- query_designs.identity_legal_basis: free text, why identified exports are lawful (GDPR Art. 6 /
  Art. 9 basis, the approval it rests on). A design is 'identified' only with a non-empty basis.

Revision ID: 006_export_identity
Revises: 005_actor_erasure_audit
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "006_export_identity"
down_revision: str | Sequence[str] | None = "005_actor_erasure_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = "('pseudonymised', 'identified')"
BASIS_REQUIRED = "export_identity <> 'identified' OR length(btrim(coalesce(identity_legal_basis, ''))) > 0"


def upgrade() -> None:
    op.add_column(
        "query_designs",
        sa.Column("export_identity", sa.Text(), server_default=sa.text("'pseudonymised'"), nullable=False),
    )
    op.add_column("query_designs", sa.Column("identity_legal_basis", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_query_designs_export_identity"), "query_designs", f"export_identity IN {LEVELS}"
    )
    op.create_check_constraint(op.f("ck_query_designs_identity_legal_basis"), "query_designs", BASIS_REQUIRED)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_query_designs_identity_legal_basis"), "query_designs", type_="check")
    op.drop_constraint(op.f("ck_query_designs_export_identity"), "query_designs", type_="check")
    op.drop_column("query_designs", "identity_legal_basis")
    op.drop_column("query_designs", "export_identity")
