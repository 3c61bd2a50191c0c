"""Initial schema: users and credits, credentials, actors, query designs, collection runs, and the
partitioned content_records table.

Revision ID: 001_initial_schema
Revises:
Create Date: 2026-02-01

Written by hand: observatory_pipelines.core.models must describe exactly what this creates
(tests/test_schema.py checks it). Names are spelled out with op.f() as base.NAMING_CONVENTION
would derive them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "001_initial_schema"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTENT_RECORDS_DDL = Path(__file__).resolve().parents[2] / "sql" / "content_records.sql"

TIERS = "('free', 'medium', 'premium')"
STATUSES = "('pending', 'running', 'completed', 'failed', 'cancelled')"


def _uuid() -> postgresql.UUID:
    return postgresql.UUID(as_uuid=True)


def _id() -> sa.Column:
    return sa.Column("id", _uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def _timestamps() -> list[sa.Column]:
    return [_timestamp("created_at"), _timestamp("updated_at")]


def _optional_time(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def _text(name: str, default: str | None = None) -> sa.Column:
    if default is None:
        return sa.Column(name, sa.Text(), nullable=False)
    return sa.Column(name, sa.Text(), server_default=sa.text(f"'{default}'"), nullable=False)


def _optional_text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=True)


def _flag(name: str, default: bool) -> sa.Column:
    value = "true" if default else "false"
    return sa.Column(name, sa.Boolean(), server_default=sa.text(value), nullable=False)


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def _fk_name(table: str, column: str, referred: str) -> sa.sql.elements.conv:
    return op.f(f"fk_{table}_{column}_{referred}")


def upgrade() -> None:
    # No pgcrypto: gen_random_uuid() is core since PostgreSQL 13 (we require 15), and the embedded
    # PostgreSQL is built without pgcrypto, so creating it would fail there.
    # Entity resolution ranks actor names by trigram similarity.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    op.create_table(
        "users",
        _id(),
        _text("email"),
        _optional_text("display_name"),
        _optional_text("password_hash"),
        _text("role", "researcher"),
        _flag("is_active", True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.CheckConstraint("role IN ('researcher', 'admin')", name=op.f("ck_users_role")),
    )

    op.create_table(
        "credit_allocations",
        _id(),
        sa.Column("user_id", _uuid(), nullable=False),
        sa.Column("credits_amount", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), server_default=sa.text("CURRENT_DATE"), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("allocated_by", _uuid(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_allocations")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name=_fk_name("credit_allocations", "user_id", "users"),
        ),
        sa.ForeignKeyConstraint(
            ["allocated_by"],
            ["users.id"],
            ondelete="SET NULL",
            name=_fk_name("credit_allocations", "allocated_by", "users"),
        ),
        sa.CheckConstraint("credits_amount > 0", name=op.f("ck_credit_allocations_credits_amount_positive")),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until >= valid_from",
            name=op.f("ck_credit_allocations_validity_period"),
        ),
    )
    op.create_index(op.f("ix_credit_allocations_user_id"), "credit_allocations", ["user_id"])

    op.create_table(
        "refresh_tokens",
        _id(),
        sa.Column("user_id", _uuid(), nullable=False),
        _text("token_hash"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _optional_time("revoked_at"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name=_fk_name("refresh_tokens", "user_id", "users"),
        ),
    )
    op.create_index(op.f("ix_refresh_tokens_user_id"), "refresh_tokens", ["user_id"])

    op.create_table(
        "api_credentials",
        _id(),
        _text("platform"),
        _text("tier", "free"),
        _text("credential_name"),
        sa.Column("encrypted_payload", sa.LargeBinary(), nullable=False),
        _flag("is_active", True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        _counter("quota_used_today"),
        _optional_time("last_used_at"),
        _optional_text("last_error"),
        sa.Column("created_by", _uuid(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_credentials")),
        sa.UniqueConstraint(
            "platform",
            "credential_name",
            name=op.f("uq_api_credentials_platform_credential_name"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            ondelete="SET NULL",
            name=_fk_name("api_credentials", "created_by", "users"),
        ),
        sa.CheckConstraint(f"tier IN {TIERS}", name=op.f("ck_api_credentials_tier")),
        sa.CheckConstraint("quota_used_today >= 0", name=op.f("ck_api_credentials_quota_used_nonnegative")),
        sa.CheckConstraint(
            "daily_quota IS NULL OR daily_quota >= 0",
            name=op.f("ck_api_credentials_daily_quota_nonnegative"),
        ),
    )

    op.create_table(
        "actors",
        _id(),
        _text("canonical_name"),
        _text("actor_type", "unknown"),
        _flag("is_public_figure", False),
        _optional_text("description"),
        sa.Column("created_by", _uuid(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actors")),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            ondelete="SET NULL",
            name=_fk_name("actors", "created_by", "users"),
        ),
    )
    op.create_index(
        "idx_actors_name_trgm",
        "actors",
        ["canonical_name"],
        postgresql_using="gin",
        postgresql_ops={"canonical_name": "gin_trgm_ops"},
    )

    op.create_table(
        "actor_aliases",
        _id(),
        sa.Column("actor_id", _uuid(), nullable=False),
        _text("alias"),
        _optional_text("source"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_aliases")),
        sa.UniqueConstraint("actor_id", "alias", name=op.f("uq_actor_aliases_actor_id_alias")),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["actors.id"],
            ondelete="CASCADE",
            name=_fk_name("actor_aliases", "actor_id", "actors"),
        ),
    )

    # (platform, platform_user_id) is unique: one account belongs to one actor. Usernames get
    # renamed and recycled, so (platform, platform_username) is only indexed.
    op.create_table(
        "actor_platform_presences",
        _id(),
        sa.Column("actor_id", _uuid(), nullable=False),
        _text("platform"),
        _optional_text("platform_user_id"),
        _optional_text("platform_username"),
        _optional_text("profile_url"),
        _flag("verified", False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_platform_presences")),
        sa.UniqueConstraint(
            "platform",
            "platform_user_id",
            name=op.f("uq_actor_platform_presences_platform_platform_user_id"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["actors.id"],
            ondelete="CASCADE",
            name=_fk_name("actor_platform_presences", "actor_id", "actors"),
        ),
        sa.CheckConstraint(
            "platform_user_id IS NOT NULL OR platform_username IS NOT NULL",
            name=op.f("ck_actor_platform_presences_identified"),
        ),
    )
    op.create_index(op.f("ix_actor_platform_presences_actor_id"), "actor_platform_presences", ["actor_id"])
    op.create_index(
        op.f("ix_actor_platform_presences_platform_username"),
        "actor_platform_presences",
        ["platform", "platform_username"],
    )

    op.create_table(
        "query_designs",
        _id(),
        sa.Column("owner_id", _uuid(), nullable=False),
        _text("name"),
        _text("slug"),
        _optional_text("description"),
        _text("visibility", "private"),
        _text("default_tier", "free"),
        _text("language", "da"),
        _text("locale_country", "dk"),
        _flag("is_active", True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_designs")),
        sa.UniqueConstraint("slug", name=op.f("uq_query_designs_slug")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=_fk_name("query_designs", "owner_id", "users")),
        # The slug is a Dagster partition key and part of export file names.
        sa.CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name=op.f("ck_query_designs_slug_format")),
        sa.CheckConstraint(
            "visibility IN ('private', 'shared', 'public')",
            name=op.f("ck_query_designs_visibility"),
        ),
        sa.CheckConstraint(f"default_tier IN {TIERS}", name=op.f("ck_query_designs_default_tier")),
    )
    op.create_index(op.f("ix_query_designs_owner_id"), "query_designs", ["owner_id"])

    op.create_table(
        "search_terms",
        _id(),
        sa.Column("query_design_id", _uuid(), nullable=False),
        _text("term"),
        _text("term_type", "keyword"),
        _flag("is_active", True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_terms")),
        sa.UniqueConstraint("query_design_id", "term", name=op.f("uq_search_terms_query_design_id_term")),
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            ondelete="CASCADE",
            name=_fk_name("search_terms", "query_design_id", "query_designs"),
        ),
        sa.CheckConstraint(
            "term_type IN ('keyword', 'phrase', 'hashtag', 'url')",
            name=op.f("ck_search_terms_term_type"),
        ),
    )

    op.create_table(
        "actor_lists",
        _id(),
        sa.Column("query_design_id", _uuid(), nullable=False),
        _text("name"),
        _optional_text("description"),
        sa.Column("created_by", _uuid(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_lists")),
        sa.UniqueConstraint("query_design_id", "name", name=op.f("uq_actor_lists_query_design_id_name")),
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            ondelete="CASCADE",
            name=_fk_name("actor_lists", "query_design_id", "query_designs"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            ondelete="SET NULL",
            name=_fk_name("actor_lists", "created_by", "users"),
        ),
    )

    op.create_table(
        "actor_list_members",
        sa.Column("actor_list_id", _uuid(), nullable=False),
        sa.Column("actor_id", _uuid(), nullable=False),
        _timestamp("added_at"),
        sa.PrimaryKeyConstraint("actor_list_id", "actor_id", name=op.f("pk_actor_list_members")),
        sa.ForeignKeyConstraint(
            ["actor_list_id"],
            ["actor_lists.id"],
            ondelete="CASCADE",
            name=_fk_name("actor_list_members", "actor_list_id", "actor_lists"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["actors.id"],
            ondelete="CASCADE",
            name=_fk_name("actor_list_members", "actor_id", "actors"),
        ),
    )
    op.create_index(op.f("ix_actor_list_members_actor_id"), "actor_list_members", ["actor_id"])

    op.create_table(
        "collection_runs",
        _id(),
        sa.Column("query_design_id", _uuid(), nullable=False),
        sa.Column("initiated_by", _uuid(), nullable=True),
        _text("mode", "batch"),
        _text("status", "pending"),
        _text("tier", "free"),
        _optional_time("date_from"),
        _optional_time("date_to"),
        _optional_text("dagster_run_id"),
        _optional_text("partition_key"),
        _optional_time("started_at"),
        _optional_time("completed_at"),
        _counter("records_collected"),
        _counter("credits_spent"),
        _optional_text("error_log"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_runs")),
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            ondelete="CASCADE",
            name=_fk_name("collection_runs", "query_design_id", "query_designs"),
        ),
        sa.ForeignKeyConstraint(
            ["initiated_by"],
            ["users.id"],
            ondelete="SET NULL",
            name=_fk_name("collection_runs", "initiated_by", "users"),
        ),
        sa.CheckConstraint("mode IN ('batch', 'live')", name=op.f("ck_collection_runs_mode")),
        sa.CheckConstraint(f"status IN {STATUSES}", name=op.f("ck_collection_runs_status")),
        sa.CheckConstraint(f"tier IN {TIERS}", name=op.f("ck_collection_runs_tier")),
        sa.CheckConstraint(
            "date_from IS NULL OR date_to IS NULL OR date_from < date_to",
            name=op.f("ck_collection_runs_date_window"),
        ),
        sa.CheckConstraint(
            "records_collected >= 0 AND credits_spent >= 0",
            name=op.f("ck_collection_runs_counters_nonnegative"),
        ),
    )
    op.create_index(op.f("ix_collection_runs_query_design_id"), "collection_runs", ["query_design_id"])
    op.create_index(op.f("ix_collection_runs_dagster_run_id"), "collection_runs", ["dagster_run_id"])

    op.create_table(
        "collection_tasks",
        _id(),
        sa.Column("collection_run_id", _uuid(), nullable=False),
        _text("arena"),
        _text("platform"),
        _text("status", "pending"),
        _counter("records_collected"),
        _optional_text("error_message"),
        _optional_time("started_at"),
        _optional_time("completed_at"),
        _counter("attempts"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_tasks")),
        sa.UniqueConstraint("collection_run_id", "arena", name=op.f("uq_collection_tasks_collection_run_id_arena")),
        sa.ForeignKeyConstraint(
            ["collection_run_id"],
            ["collection_runs.id"],
            ondelete="CASCADE",
            name=_fk_name("collection_tasks", "collection_run_id", "collection_runs"),
        ),
        sa.CheckConstraint(f"status IN {STATUSES}", name=op.f("ck_collection_tasks_status")),
        sa.CheckConstraint(
            "records_collected >= 0 AND attempts >= 0",
            name=op.f("ck_collection_tasks_counters_nonnegative"),
        ),
    )

    op.create_table(
        "credit_transactions",
        _id(),
        sa.Column("user_id", _uuid(), nullable=False),
        sa.Column("collection_run_id", _uuid(), nullable=True),
        _optional_text("arena"),
        _optional_text("platform"),
        sa.Column("credits_consumed", sa.Integer(), nullable=False),
        _text("transaction_type"),
        _optional_text("description"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_transactions")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=_fk_name("credit_transactions", "user_id", "users")),
        sa.ForeignKeyConstraint(
            ["collection_run_id"],
            ["collection_runs.id"],
            ondelete="SET NULL",
            name=_fk_name("credit_transactions", "collection_run_id", "collection_runs"),
        ),
        sa.CheckConstraint(
            "transaction_type IN ('reservation', 'settlement', 'refund')",
            name=op.f("ck_credit_transactions_transaction_type"),
        ),
        sa.CheckConstraint(
            "credits_consumed >= 0",
            name=op.f("ck_credit_transactions_credits_consumed_nonnegative"),
        ),
    )
    op.create_index(
        op.f("ix_credit_transactions_collection_run_id"),
        "credit_transactions",
        ["collection_run_id"],
    )
    # Keyset pagination of a user's history: ORDER BY created_at DESC, id DESC.
    op.create_index(
        op.f("ix_credit_transactions_user_id_created_at_id"),
        "credit_transactions",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )

    # Partitioned table, its indexes and first partitions. text() would read ":word" as a bind
    # parameter, which the DDL file avoids.
    op.execute(sa.text(CONTENT_RECORDS_DDL.read_text(encoding="utf-8")))


def downgrade() -> None:
    # CASCADE takes the partitions along. Extensions stay: other objects may rely on them, and
    # creating them again can need privileges the next upgrade lacks.
    op.execute("DROP TABLE content_records CASCADE")
    for table in (
        "credit_transactions",
        "collection_tasks",
        "collection_runs",
        "actor_list_members",
        "actor_lists",
        "search_terms",
        "query_designs",
        "actor_platform_presences",
        "actor_aliases",
        "actors",
        "api_credentials",
        "refresh_tokens",
        "credit_allocations",
        "users",
    ):
        op.drop_table(table)
