"""``content_records``: every collected post and article, partitioned by month of ``published_at``.

The table, its indexes and its partitions are created by raw DDL (``sql/content_records.sql``, run
by migration 001), because Alembic cannot express ``PARTITION BY``. This model mirrors that DDL.

- ``published_at`` is in the primary key (PostgreSQL requires the partition key in every unique
  constraint), so it is never NULL: records without a publication time take their collection time
  and say so in ``raw_metadata``.
- An item is ``(query_design_id, platform, platform_id)``, and it has one row. That cannot be a
  unique constraint here (it lacks the partition key), so ``content_items`` holds it: ingest
  registers each item there and writes its row under the ``published_at`` registered first.
- Uniqueness is per corpus: the same post collected by two query designs is kept twice, each with
  its own ``search_terms_matched``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from observatory_pipelines.core.models.base import Base

#: The document that ``idx_content_fulltext`` indexes. A query uses that index only when it repeats
#: this expression (columns unqualified, 'danish' configuration), e.g.
#: ``WHERE {FULLTEXT_DOCUMENT_SQL} @@ plainto_tsquery('danish', :q)``.
FULLTEXT_DOCUMENT_SQL = "to_tsvector('danish', coalesce(title, '') || ' ' || coalesce(text_content, ''))"

#: ``raw_metadata.duplicate_kind`` of the further copies of an item that a database held before
#: items were registered (migration 007): kept, marked ``duplicate_of`` the first copy, and left
#: out of the dedup pass, which neither groups nor unmarks them.
ITEM_COPY_KIND = "same_item"

#: The corpus key that makes writes idempotent (``INSERT ... ON CONFLICT (its columns) ...``).
CORPUS_ITEM_CONSTRAINT = "uq_content_corpus_item"


class ContentRecord(Base):
    __tablename__ = "content_records"
    __table_args__ = (
        PrimaryKeyConstraint("id", "published_at"),
        UniqueConstraint(
            "query_design_id",
            "platform",
            "platform_id",
            "published_at",
            name=CORPUS_ITEM_CONSTRAINT,
        ),
        Index("idx_content_platform", "platform"),
        Index("idx_content_arena", "arena"),
        Index("idx_content_published", "published_at"),
        Index("idx_content_query", "query_design_id"),
        Index("idx_content_hash", "content_hash"),
        Index("idx_content_author", "author_id"),
        Index("idx_content_terms", "search_terms_matched", postgresql_using="gin"),
        Index(
            "idx_content_metadata",
            "raw_metadata",
            postgresql_using="gin",
            postgresql_ops={"raw_metadata": "jsonb_path_ops"},
        ),
        Index("idx_content_fulltext", text(FULLTEXT_DOCUMENT_SQL), postgresql_using="gin"),
        {"postgresql_partition_by": "RANGE (published_at)"},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, server_default=text("gen_random_uuid()"))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    arena: Mapped[str] = mapped_column(Text, nullable=False)
    platform_id: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'post'"))
    url: Mapped[str | None] = mapped_column(Text)
    text_content: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    author_platform_id: Mapped[str | None] = mapped_column(Text)
    author_display_name: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("actors.id", ondelete="SET NULL")
    )
    pseudonymized_author_id: Mapped[str | None] = mapped_column(Text)
    views_count: Mapped[int | None] = mapped_column(BigInteger)
    likes_count: Mapped[int | None] = mapped_column(BigInteger)
    shares_count: Mapped[int | None] = mapped_column(BigInteger)
    comments_count: Mapped[int | None] = mapped_column(BigInteger)
    engagement_score: Mapped[float | None] = mapped_column(Double)
    collection_run_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_runs.id", ondelete="SET NULL")
    )
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), nullable=False
    )
    search_terms_matched: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    collection_tier: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'free'"))
    raw_metadata: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    media_urls: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'::text[]"))
    content_hash: Mapped[str | None] = mapped_column(Text)
    # 64-bit SimHash stored as a signed bigint (two's complement of the unsigned value).
    simhash: Mapped[int | None] = mapped_column(BigInteger)


class ContentItem(Base):
    """Each corpus item once, with the ``published_at`` its ``content_records`` row keeps.

    Not partitioned, so the item itself can be the primary key; ``core.collection.ingest`` writes
    here first, in the same transaction as the row.
    """

    __tablename__ = "content_items"

    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), primary_key=True
    )
    platform: Mapped[str] = mapped_column(Text, primary_key=True)
    platform_id: Mapped[str] = mapped_column(Text, primary_key=True)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
