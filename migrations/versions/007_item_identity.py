"""One row per item: ``content_items`` holds each corpus item's identity and the date its row keeps.

An item is ``(query_design_id, platform, platform_id)``. ``content_records`` cannot hold that
as a unique key, because PostgreSQL requires the partition key (``published_at``) in every unique
constraint of a partitioned table; so an undated item (which takes its collection time) or an item
whose date the platform changed got a second row on every re-collection. ``content_items`` is not
partitioned and has the item as its primary key: ingest registers each item there first and
writes the row under the date registered.

Existing databases: the first copy of each item (the earliest ``collected_at``, then
``published_at``, then ``id``) is registered; every other copy is kept and marked
``raw_metadata.duplicate_of`` = the first copy's id with ``duplicate_kind`` = ``'same_item'``.
Nothing is deleted. The count is reported on stderr, per design.

Revision ID: 007_item_identity
Revises: 006_export_identity
Create Date: 2026-12-06
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "007_item_identity"
down_revision: str | Sequence[str] | None = "006_export_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The copies of each item, first copy first. Frozen here (not imported) so the migration keeps
# meaning what it meant when it ran.
_RANKED = """
CREATE TEMP TABLE item_copies ON COMMIT DROP AS
SELECT id, published_at, query_design_id, platform, platform_id,
       first_value(id) OVER item AS first_id,
       row_number() OVER item AS copy
FROM content_records
WINDOW item AS (PARTITION BY query_design_id, platform, platform_id ORDER BY collected_at, published_at, id)
"""


def upgrade() -> None:
    op.create_table(
        "content_items",
        sa.Column("query_design_id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("platform_id", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            name=op.f("fk_content_items_query_design_id_query_designs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("query_design_id", "platform", "platform_id", name=op.f("pk_content_items")),
    )
    op.execute(_RANKED)
    op.execute(
        """
        INSERT INTO content_items (query_design_id, platform, platform_id, published_at)
        SELECT query_design_id, platform, platform_id, published_at FROM item_copies WHERE copy = 1
        """
    )
    op.execute(
        """
        UPDATE content_records c
        SET raw_metadata = coalesce(nullif(c.raw_metadata, 'null'::jsonb), '{}'::jsonb)
            || jsonb_build_object('duplicate_of', k.first_id::text, 'duplicate_kind', 'same_item')
        FROM item_copies k
        WHERE k.copy > 1 AND c.id = k.id AND c.published_at = k.published_at
          AND jsonb_typeof(c.raw_metadata) IN ('object', 'null')
        """
    )
    copies = (
        op.get_bind()
        .execute(
            sa.text(
                """
                SELECT coalesce(d.slug, k.query_design_id::text) AS design, count(*) AS copies
                FROM item_copies k LEFT JOIN query_designs d ON d.id = k.query_design_id
                WHERE k.copy > 1 GROUP BY 1 ORDER BY 1
                """
            )
        )
        .all()
    )
    for design, count in copies:
        # Alembic has no report channel of its own; stderr is where `observatory db upgrade` users look.
        print(
            f"migration 007_item_identity: design {design}: {count} row(s) were further copies of an item "
            "already stored; kept and marked duplicate_of its first copy (duplicate_kind 'same_item')",
            file=sys.stderr,
        )


def downgrade() -> None:
    op.drop_table("content_items")
