"""Actors (people, organisations, outlets), their aliases, platform accounts and list membership."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from observatory_pipelines.core.models.base import Base, TimestampMixin, created_at, uuid_pk


class Actor(TimestampMixin, Base):
    __tablename__ = "actors"
    __table_args__ = (
        # Entity resolution ranks candidates by pg_trgm similarity on the name.
        Index(
            "idx_actors_name_trgm",
            "canonical_name",
            postgresql_using="gin",
            postgresql_ops={"canonical_name": "gin_trgm_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    canonical_name: Mapped[str] = mapped_column(Text, nullable=False)
    # An open vocabulary (person, organization, media_outlet, ...): arenas keep inventing kinds.
    actor_type: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'unknown'"))
    # Public figures are exempt from pseudonymisation.
    is_public_figure: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )

    aliases: Mapped[list[ActorAlias]] = relationship(
        back_populates="actor", cascade="all, delete-orphan", passive_deletes=True
    )
    presences: Mapped[list[ActorPlatformPresence]] = relationship(
        back_populates="actor", cascade="all, delete-orphan", passive_deletes=True
    )


class ActorAlias(Base):
    __tablename__ = "actor_aliases"
    __table_args__ = (UniqueConstraint("actor_id", "alias"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    actor_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("actors.id", ondelete="CASCADE"), nullable=False
    )
    alias: Mapped[str] = mapped_column(Text, nullable=False)
    # Where the alias came from: "manual", "merge", an arena name, ...
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()

    actor: Mapped[Actor] = relationship(back_populates="aliases")


class ActorPlatformPresence(TimestampMixin, Base):
    """One account of an actor on one platform.

    The platform's own user id is stable, so ``(platform, platform_user_id)`` is unique: one account
    belongs to one actor. Usernames are renamed and recycled (handles on X, Bluesky, Telegram), so
    ``(platform, platform_username)`` is only indexed; two actors sharing a username is exactly
    what entity resolution reports. NULL ids (username-only arenas) do not collide.
    """

    __tablename__ = "actor_platform_presences"
    __table_args__ = (
        UniqueConstraint("platform", "platform_user_id"),
        Index("ix_actor_platform_presences_platform_username", "platform", "platform_username"),
        CheckConstraint(
            "platform_user_id IS NOT NULL OR platform_username IS NOT NULL",
            name="identified",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    actor_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("actors.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    platform_user_id: Mapped[str | None] = mapped_column(Text)
    platform_username: Mapped[str | None] = mapped_column(Text)
    profile_url: Mapped[str | None] = mapped_column(Text)
    verified: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))

    actor: Mapped[Actor] = relationship(back_populates="presences")


class ActorListMember(Base):
    __tablename__ = "actor_list_members"

    actor_list_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("actor_lists.id", ondelete="CASCADE"), primary_key=True
    )
    # The primary key leads with the list; this index serves "which lists is this actor on".
    actor_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("actors.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    added_at: Mapped[datetime] = created_at()

    actor: Mapped[Actor] = relationship()
