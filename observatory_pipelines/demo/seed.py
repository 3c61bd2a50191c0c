"""The offline demo: a researcher, a credit allocation, a query design and bundled sample data.

Everything is idempotent, so ``observatory demo`` can be run again and again. The sample feeds
and import files (``observatory_pipelines/demo/data``) are fictional Danish content written for
the project; ``demo/data/README.md`` lists the duplicates and cross-platform authors planted in them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sqlalchemy as sa

from observatory_pipelines.core.collection import privacy
from observatory_pipelines.core.platform import settings

DESIGN_SLUG = "klimadebat"
DEMO_MONTH = "2026-03"
DEMO_EMAIL = "demo@observatory.local"
TERMS = ("klima", "klimaet", "grøn omstilling", "CO2-afgift", "vindmøller", "havvind", "landbruget")
#: A fictional minister, flagged as a public figure, so outputs may show his name.
PUBLIC_FIGURE = {"name": "Henrik Dalsgaard", "platform": "x_twitter", "username": "hdalsgaard"}
ALLOCATION_CREDITS = 5_000


def data_dir() -> Path:
    return Path(str(resources.files("observatory_pipelines.demo") / "data"))


def feed_urls() -> list[str]:
    return sorted(path.resolve().as_uri() for path in (data_dir() / "feeds").glob("*.xml"))


def demo_salt(state: Path) -> str:
    """The salt from the environment, or the demo's own, created once and kept in the state dir."""
    configured = settings.current().salt
    if configured:
        return configured.reveal()
    path = privacy.kept_salt_path(state)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class DemoSeed:
    user_id: object
    design_id: object
    import_folder: Path


def seed(engine: sa.Engine, import_dir: Path) -> DemoSeed:
    arenas_config = {
        "rss_feeds": {"enabled": True, "options": {"feeds": feed_urls()}},
        "gdelt": {"enabled": False},  # the demo runs offline
        "file_import": {"enabled": True},
    }
    with engine.begin() as conn:
        user_id = conn.execute(
            sa.text(
                """
                INSERT INTO users (email, display_name, role) VALUES (:email, 'Demo Forsker', 'researcher')
                ON CONFLICT (email) DO UPDATE SET is_active = true RETURNING id
                """
            ),
            {"email": DEMO_EMAIL},
        ).scalar_one()
        has_allocation = conn.execute(
            sa.text("SELECT 1 FROM credit_allocations WHERE user_id = :u"), {"u": user_id}
        ).first()
        if not has_allocation:
            conn.execute(
                sa.text(
                    "INSERT INTO credit_allocations (user_id, credits_amount, valid_from) "
                    "VALUES (:u, :c, DATE '2026-01-01')"
                ),
                {"u": user_id, "c": ALLOCATION_CREDITS},
            )
        design_id = conn.execute(
            sa.text(
                """
                INSERT INTO query_designs (owner_id, name, slug, description, arenas_config)
                VALUES (:owner, 'Klimadebat i Danmark', :slug,
                        'Demo: Danish public debate on climate policy, March 2026 (fictional sample data).',
                        CAST(:config AS jsonb))
                ON CONFLICT (slug) DO UPDATE SET arenas_config = EXCLUDED.arenas_config, is_active = true
                RETURNING id
                """
            ),
            {"owner": user_id, "slug": DESIGN_SLUG, "config": json.dumps(arenas_config)},
        ).scalar_one()
        for term in TERMS:
            conn.execute(
                sa.text(
                    """
                    INSERT INTO search_terms (query_design_id, term, term_type)
                    VALUES (:d, :t, CASE WHEN :t LIKE '% %' THEN 'phrase' ELSE 'keyword' END)
                    ON CONFLICT (query_design_id, term) DO NOTHING
                    """
                ),
                {"d": design_id, "t": term},
            )
        _seed_public_figure(conn, design_id)

    folder = import_dir / DESIGN_SLUG
    folder.mkdir(parents=True, exist_ok=True)
    for source in (data_dir() / "imports" / DESIGN_SLUG).iterdir():
        if source.is_file():
            shutil.copyfile(source, folder / source.name)
    return DemoSeed(user_id=user_id, design_id=design_id, import_folder=folder)


def _seed_public_figure(conn: sa.Connection, design_id) -> None:
    actor_id = conn.execute(
        sa.text(
            """
            SELECT a.id FROM actors a JOIN actor_platform_presences p ON p.actor_id = a.id
            WHERE p.platform = :platform AND p.platform_username = :username
            """
        ),
        PUBLIC_FIGURE,
    ).scalar()
    if actor_id is None:
        actor_id = conn.execute(
            sa.text(
                "INSERT INTO actors (canonical_name, actor_type, is_public_figure) "
                "VALUES (:name, 'person', true) RETURNING id"
            ),
            PUBLIC_FIGURE,
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO actor_platform_presences (actor_id, platform, platform_username, platform_user_id) "
                "VALUES (:a, :platform, :username, :username)"
            ),
            {"a": actor_id, **PUBLIC_FIGURE},
        )
    list_id = conn.execute(
        sa.text("SELECT id FROM actor_lists WHERE query_design_id = :d AND name = 'Klimapolitikere'"),
        {"d": design_id},
    ).scalar()
    if list_id is None:
        list_id = conn.execute(
            sa.text("INSERT INTO actor_lists (query_design_id, name) VALUES (:d, 'Klimapolitikere') RETURNING id"),
            {"d": design_id},
        ).scalar_one()
    conn.execute(
        sa.text("INSERT INTO actor_list_members (actor_list_id, actor_id) VALUES (:l, :a) ON CONFLICT DO NOTHING"),
        {"l": list_id, "a": actor_id},
    )
