"""Query designs (a researcher's corpus definition), their search terms and their actor lists."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from observatory_pipelines.core.models.base import TIERS, Base, TimestampMixin, created_at, one_of, uuid_pk

if TYPE_CHECKING:
    from observatory_pipelines.core.models.actors import ActorListMember

VISIBILITIES = ("private", "shared", "public")
#: How a term reads (``core.collection.terms``); 'boolean' has groups, OR or exclusions.
TERM_TYPES = ("keyword", "phrase", "hashtag", "url", "boolean")
DESIGN_CHANGES = ("created", "updated", "deactivated")
#: Who a design's exports name (``core.exports.identity``); 'identified' needs a recorded legal basis.
EXPORT_IDENTITIES = ("pseudonymised", "identified")

#: The slug becomes a Dagster dynamic-partition key and part of export file names, so it is kept to
#: lowercase ASCII words joined by single hyphens.
SLUG_PATTERN = "^[a-z0-9]+(-[a-z0-9]+)*$"


class QueryDesign(TimestampMixin, Base):
    __tablename__ = "query_designs"
    __table_args__ = (
        CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="slug_format"),
        CheckConstraint(one_of("visibility", VISIBILITIES), name="visibility"),
        CheckConstraint(one_of("default_tier", TIERS), name="default_tier"),
        CheckConstraint(one_of("export_identity", EXPORT_IDENTITIES), name="export_identity"),
        CheckConstraint(
            "export_identity <> 'identified' OR length(btrim(coalesce(identity_legal_basis, ''))) > 0",
            name="identity_legal_basis",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # No cascade: a user's corpora outlive the account; reassign them before deleting a user.
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'private'"))
    default_tier: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'free'"))
    language: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'da'"))
    locale_country: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'dk'"))
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    # Per-arena settings keyed by arena name (added by migration 002).
    arenas_config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    # Who the design's exports name, and why identified exports are lawful (added by migration 006).
    export_identity: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pseudonymised'"))
    identity_legal_basis: Mapped[str | None] = mapped_column(Text)
    # The design file (name inside the designs folder) it was last applied from; NULL when made
    # another way. Only file-made designs are deactivated when their file goes (migration 008).
    source_file: Mapped[str | None] = mapped_column(Text)

    search_terms: Mapped[list[SearchTerm]] = relationship(
        back_populates="query_design", cascade="all, delete-orphan", passive_deletes=True
    )
    actor_lists: Mapped[list[ActorList]] = relationship(
        back_populates="query_design", cascade="all, delete-orphan", passive_deletes=True
    )


class SearchTerm(Base):
    __tablename__ = "search_terms"
    __table_args__ = (
        UniqueConstraint("query_design_id", "term"),
        CheckConstraint(one_of("term_type", TERM_TYPES), name="term_type"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), nullable=False
    )
    term: Mapped[str] = mapped_column(Text, nullable=False)
    term_type: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'keyword'"))
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = created_at()

    query_design: Mapped[QueryDesign] = relationship(back_populates="search_terms")


class ActorList(TimestampMixin, Base):
    __tablename__ = "actor_lists"
    __table_args__ = (UniqueConstraint("query_design_id", "name"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )

    query_design: Mapped[QueryDesign] = relationship(back_populates="actor_lists")
    members: Mapped[list[ActorListMember]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class DesignChange(Base):
    """One design an apply of the design files changed: who or what applied it, when, and the diff.

    Designs are never deleted (a removed file deactivates its design), so the foreign key has no cascade.
    """

    __tablename__ = "design_changes"
    __table_args__ = (CheckConstraint(one_of("change", DESIGN_CHANGES), name="change"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    query_design_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("query_designs.id"), nullable=False, index=True
    )
    slug: Mapped[str] = mapped_column(Text, nullable=False)
    change: Mapped[str] = mapped_column(Text, nullable=False)
    # Field by field: {"field": {"before": ..., "after": ...}}; terms and actors as added/removed lists.
    diff: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    source_file: Mapped[str | None] = mapped_column(Text)
    # "cli:<os user>" or "sensor:<sensor name>"; never a secret.
    applied_by: Mapped[str] = mapped_column(Text, nullable=False)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
