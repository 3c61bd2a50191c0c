"""The researcher portal: passwords set by invitation, sessions, API tokens, sign-in throttling and
a record of every download.

- invitations: one-time links to set a password, stored as hashes, with an expiry.
- portal_sessions: signed-in browsers (hashed token, expiry, ended at sign-out).
- api_tokens: personal tokens for scripts (hashed, named, revocable, last use recorded).
- sign_in_failures: recent failed sign-ins by keyed hashes of the account and the address.
- export_downloads: who downloaded which export of which corpus, when and how.
- refresh_tokens, never used, is dropped: portal_sessions and api_tokens replace it.

Revision ID: 010_portal
Revises: 009_source_yields
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "010_portal"
down_revision: str | Sequence[str] | None = "009_source_yields"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = postgresql.UUID(as_uuid=True)
_TS = sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", _UUID, server_default=sa.text("gen_random_uuid()"), nullable=False)


def _user(table: str) -> list:
    return [
        sa.Column("user_id", _UUID, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"),
    ]


def upgrade() -> None:
    user_column, user_fk = _user("invitations")
    op.create_table(
        "invitations",
        _id(),
        user_column,
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        user_fk,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    op.create_index(op.f("ix_invitations_user_id"), "invitations", ["user_id"])

    user_column, user_fk = _user("portal_sessions")
    op.create_table(
        "portal_sessions",
        _id(),
        user_column,
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        user_fk,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_portal_sessions_token_hash")),
    )
    op.create_index(op.f("ix_portal_sessions_user_id"), "portal_sessions", ["user_id"])

    user_column, user_fk = _user("api_tokens")
    op.create_table(
        "api_tokens",
        _id(),
        user_column,
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 100", name=op.f("ck_api_tokens_name_length")),
        user_fk,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])

    op.create_table(
        "sign_in_failures",
        _id(),
        sa.Column("account_hash", sa.Text(), nullable=False),
        sa.Column("address_hash", sa.Text(), nullable=False),
        sa.Column("failed_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    op.create_index("ix_sign_in_failures_account", "sign_in_failures", ["account_hash", "failed_at"])
    op.create_index("ix_sign_in_failures_address", "sign_in_failures", ["address_hash", "failed_at"])

    user_column, user_fk = _user("export_downloads")
    op.create_table(
        "export_downloads",
        _id(),
        user_column,
        sa.Column("query_design_id", _UUID, nullable=False),
        sa.Column("month", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.Column("api_token_id", _UUID, nullable=True),
        sa.Column("downloaded_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("via IN ('session', 'token')", name=op.f("ck_export_downloads_via")),
        user_fk,
        sa.ForeignKeyConstraint(
            ["query_design_id"],
            ["query_designs.id"],
            name=op.f("fk_export_downloads_query_design_id_query_designs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_token_id"],
            ["api_tokens.id"],
            name=op.f("fk_export_downloads_api_token_id_api_tokens"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_downloads")),
    )
    op.create_index(op.f("ix_export_downloads_user_id"), "export_downloads", ["user_id"])
    op.create_index(op.f("ix_export_downloads_query_design_id"), "export_downloads", ["query_design_id"])

    op.drop_table("refresh_tokens")


def downgrade() -> None:
    op.create_table(
        "refresh_tokens",
        _id(),
        sa.Column("user_id", _UUID, nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_refresh_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    op.create_index(op.f("ix_refresh_tokens_user_id"), "refresh_tokens", ["user_id"])
    for table in ("export_downloads", "sign_in_failures", "api_tokens", "portal_sessions", "invitations"):
        op.drop_table(table)
