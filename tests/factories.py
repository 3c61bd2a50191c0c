"""Small builders for rows the collection tests need (plain SQL, as an operator would)."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

TERMS = ("klima", "grøn omstilling", "CO2-afgift", "vindmøller")
SALT = "test-salt-0123456789abcdef"


def make_design(
    engine: sa.Engine,
    slug: str = "klimadebat",
    terms=TERMS,
    arenas_config: dict | None = None,
    credits: int | None = 1_000,
    default_tier: str = "free",
) -> uuid.UUID:
    with engine.begin() as conn:
        user = conn.execute(
            sa.text("INSERT INTO users (email, display_name) VALUES (:e, 'Forsker Ørsted') RETURNING id"),
            {"e": f"{slug}-{uuid.uuid4().hex[:6]}@example.dk"},
        ).scalar_one()
        if credits is not None:
            conn.execute(
                sa.text(
                    "INSERT INTO credit_allocations (user_id, credits_amount, valid_from) "
                    "VALUES (:u, :c, DATE '2026-01-01')"
                ),
                {"u": user, "c": credits},
            )
        design = conn.execute(
            sa.text(
                """
                INSERT INTO query_designs (owner_id, name, slug, default_tier, arenas_config)
                VALUES (:u, :n, :s, :tier, CAST(:cfg AS jsonb)) RETURNING id
                """
            ),
            {"u": user, "n": f"Design {slug}", "s": slug, "tier": default_tier,
             "cfg": json.dumps(arenas_config or {})},
        ).scalar_one()
        for term in terms:
            conn.execute(
                sa.text("INSERT INTO search_terms (query_design_id, term) VALUES (:d, :t)"),
                {"d": design, "t": term},
            )
    return design


def content_rows(engine: sa.Engine, design_id: uuid.UUID) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text(
                    "SELECT *, tableoid::regclass::text AS partition FROM content_records "
                    "WHERE query_design_id = :d ORDER BY platform, platform_id"
                ),
                {"d": design_id},
            ).mappings()
        ]


def task(engine: sa.Engine, design_id: uuid.UUID, arena: str) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    """
                    SELECT t.*, r.dagster_run_id, r.status AS run_status FROM collection_tasks t
                    JOIN collection_runs r ON r.id = t.collection_run_id
                    WHERE r.query_design_id = :d AND t.arena = :a ORDER BY t.created_at DESC LIMIT 1
                    """
                ),
                {"d": design_id, "a": arena},
            ).mappings().one()
        )
