"""Designs as files and the credential pool.

- design_changes: one audit row per design an apply changed (who or what applied it, when, the
  file it came from, and the field-by-field diff). No foreign key cascade: designs are never
  deleted, and the audit row must outlive any future reassignment.
- query_designs.source_file: the design file (its name inside the designs folder) the design was
  last applied from; NULL for designs made any other way. Applying the folder deactivates a
  design whose file is gone, and leaves designs without a file alone.
- search_terms.term_type gains 'boolean' (terms with groups, OR or exclusions). Terms written
  before the grammar existed meant a multi-word term as a phrase; the grammar reads unquoted words
  as all-of, so those terms are quoted here to keep their meaning.
- api_credentials.quota_date: the UTC day quota_used_today counts (use resets at 00:00 UTC);
  api_credentials.exhausted_until: a platform said "no more" (HTTP 429 or a spent quota) and the
  pool skips the credential until then.

Revision ID: 008_designs_and_credentials
Revises: 007_item_identity
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "008_designs_and_credentials"
down_revision: str | Sequence[str] | None = "007_item_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TERM_TYPES = "term_type IN ('keyword', 'phrase', 'hashtag', 'url')"
NEW_TERM_TYPES = "term_type IN ('keyword', 'phrase', 'hashtag', 'url', 'boolean')"
CHANGE_KINDS = "change IN ('created', 'updated', 'deactivated')"


def upgrade() -> None:
    op.create_table(
        "design_changes",
        sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("query_design_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column(
            "diff", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("applied_by", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(CHANGE_KINDS, name=op.f("ck_design_changes_change")),
        sa.ForeignKeyConstraint(
            ["query_design_id"], ["query_designs.id"], name=op.f("fk_design_changes_query_design_id_query_designs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_design_changes")),
    )
    op.create_index(op.f("ix_design_changes_query_design_id"), "design_changes", ["query_design_id"])

    op.add_column("query_designs", sa.Column("source_file", sa.Text(), nullable=True))

    op.drop_constraint(op.f("ck_search_terms_term_type"), "search_terms", type_="check")
    op.create_check_constraint(op.f("ck_search_terms_term_type"), "search_terms", NEW_TERM_TYPES)
    op.execute(
        """
        UPDATE search_terms SET term = '"' || btrim(term) || '"'
        WHERE term_type = 'phrase' AND btrim(term) ~ '\\s' AND position('"' IN term) = 0
          AND NOT EXISTS (
              SELECT 1 FROM search_terms other
              WHERE other.query_design_id = search_terms.query_design_id
                AND other.term = '"' || btrim(search_terms.term) || '"'
          )
        """
    )

    op.add_column("api_credentials", sa.Column("quota_date", sa.Date(), nullable=True))
    op.add_column("api_credentials", sa.Column("exhausted_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_credentials", "exhausted_until")
    op.drop_column("api_credentials", "quota_date")
    op.execute(
        """
        UPDATE search_terms SET term = substr(term, 2, length(term) - 2)
        WHERE term_type = 'phrase' AND term ~ '^"[^"]*"$'
        """
    )
    op.execute("DELETE FROM search_terms WHERE term_type = 'boolean'")
    op.drop_constraint(op.f("ck_search_terms_term_type"), "search_terms", type_="check")
    op.create_check_constraint(op.f("ck_search_terms_term_type"), "search_terms", OLD_TERM_TYPES)
    op.drop_column("query_designs", "source_file")
    op.drop_index(op.f("ix_design_changes_query_design_id"), table_name="design_changes")
    op.drop_table("design_changes")
