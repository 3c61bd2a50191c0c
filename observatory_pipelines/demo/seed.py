"""The offline demo: a researcher, a credit allocation, a query design and bundled sample data.

The design is ``designs/klimadebat.yaml``, applied like any design file; its feeds are named in the
``package:`` form, so the file works wherever the package is installed.

Everything is idempotent, so ``observatory demo`` can be run again and again. The sample feeds
and import files (``observatory_pipelines/demo/data``) are fictional Danish content written for
the project; ``demo/data/README.md`` lists the duplicates and cross-platform authors planted in them.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sqlalchemy as sa

from observatory_pipelines.core.collection import design_files, privacy
from observatory_pipelines.core.platform import paths, settings

DESIGN_SLUG = "klimadebat"
DEMO_MONTH = "2026-03"
DEMO_EMAIL = "demo@observatory.local"
#: What the design's terms mean (its file writes the phrase quoted, as the term grammar reads phrases).
TERMS = ("klima", "klimaet", "grøn omstilling", "CO2-afgift", "vindmøller", "havvind", "landbruget")
#: A fictional minister, flagged as a public figure, so outputs may show his name (the design file's actor list).
PUBLIC_FIGURE = {"name": "Henrik Dalsgaard", "platform": "x_twitter", "username": "hdalsgaard"}
ALLOCATION_CREDITS = 5_000


def data_dir() -> Path:
    return Path(str(resources.files("observatory_pipelines.demo") / "data"))


def design_file() -> Path:
    """The demo design's file, shipped in the checkout's designs folder (the example of docs/designs.md).

    Read from the checkout, not from ``OBSERVATORY_DESIGNS_DIR``: the demo is the same wherever a
    deployment keeps its own designs."""
    return paths.project_root() / "designs" / f"{DESIGN_SLUG}.yaml"


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
    """The demo researcher and allocation, then the demo design applied from its file (as any design is)."""
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
    design_files.apply_design_files(engine, design_file(), design_files.cli_actor())
    with engine.connect() as conn:
        design_id = conn.execute(
            sa.text("SELECT id FROM query_designs WHERE slug = :slug"), {"slug": DESIGN_SLUG}
        ).scalar_one()

    folder = import_dir / DESIGN_SLUG
    folder.mkdir(parents=True, exist_ok=True)
    for source in (data_dir() / "imports" / DESIGN_SLUG).iterdir():
        if source.is_file():
            shutil.copyfile(source, folder / source.name)
    return DemoSeed(user_id=user_id, design_id=design_id, import_folder=folder)


def set_portal_password(engine: sa.Engine) -> str:
    """A fresh random password for the demo researcher, printed by ``observatory demo``: the demo
    account never has a password anyone could know in advance."""
    from observatory_pipelines.core.accounts import signin

    password = secrets.token_urlsafe(12)
    signin.set_password(engine, DEMO_EMAIL, password)
    return password
