"""Shared pieces of the benchmark harness: a scratch database and synthetic corpora.

Every figure is reported as a ratio against a limit of the same machine, measured in the same
run (e.g. raw COPY into the same table), so results compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from observatory_pipelines.core.collection import privacy, records, terms, text
from observatory_pipelines.core.platform import database, migrate

RESULTS = Path(__file__).resolve().parent / "results"

WORDS = (
    "klima klimaet regeringen folketinget grøn omstilling CO2-afgift vindmøller havvind landbruget "
    "København Aarhus Odense Aalborg Esbjerg borgere kommunen minister udspil aftale debat energi "
    "elbiler fjernvarme biogas skovrejsning vandmiljø kvælstof økologi afgift stigning reduktion "
    "mål procent milliarder kroner forhandlinger partier oppositionen kritik forslag høring"
).split()
TERMS = ["klima", "grøn omstilling", "CO2-afgift", "vindmøller", "landbruget"]


def bench_database(name: str = "observatory_bench") -> str:
    """A freshly migrated scratch database on DATABASE_URL's server (or the embedded one)."""
    url = database.with_database(database.resolve_url(), name)
    admin = database.make_engine(
        database.with_database(url, "postgres"), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"))
    admin.dispose()
    migrate.upgrade(url)
    return url


def make_design(engine: sa.Engine) -> tuple[uuid.UUID, uuid.UUID]:
    with engine.begin() as conn:
        user = conn.execute(
            sa.text("INSERT INTO users (email, display_name) VALUES ('bench@example.dk', 'Bench') RETURNING id")
        ).scalar_one()
        design = conn.execute(
            sa.text("INSERT INTO query_designs (owner_id, name, slug) VALUES (:u, 'Bench', 'bench') RETURNING id"),
            {"u": user},
        ).scalar_one()
        run = conn.execute(
            sa.text("INSERT INTO collection_runs (query_design_id, status) VALUES (:d, 'running') RETURNING id"),
            {"d": design},
        ).scalar_one()
    return design, run


def synthetic_rows(
    n: int, design_id: uuid.UUID, run_id: uuid.UUID, month_start: datetime, seed: int = 7
) -> list[tuple]:
    """``n`` rows in ``records.COLUMNS`` order, ~300 characters of Danish text each, one month."""
    rng = random.Random(seed)
    salt = b"benchmark-salt-not-secret"
    matcher = terms.TermMatcher(TERMS)
    collected = month_start + timedelta(days=31)
    rows = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(45))
        author = f"user{rng.randrange(n // 20 + 1)}"
        published = month_start + timedelta(seconds=rng.randrange(28 * 86400))
        likes, shares, comments = rng.randrange(500), rng.randrange(50), rng.randrange(80)
        rows.append(
            (
                published,
                "x_twitter",
                "file_import",
                f"post-{i}",
                "post",
                f"https://x.example/{author}/status/{i}",
                body,
                None,
                "da",
                collected,
                author,
                f"Bruger {author}",
                None,
                privacy.pseudonymise("x_twitter", author, salt),
                rng.randrange(10_000),
                likes,
                shares,
                comments,
                float(likes + shares + comments),
                run_id,
                design_id,
                matcher.match(body),
                "free",
                json.dumps({"import_file": "bench.ndjson", "line": i}),
                [],
                text.content_hash(body),
                text.simhash(body),
            )
        )
    return rows


def truncate_content(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE content_records, content_items"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("CHECKPOINT"))


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = round(time.perf_counter() - start, 3)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def finish(name: str, report: dict, engine: sa.Engine) -> dict:
    """Release the database, keep the report in bench/results/, and say where."""
    engine.dispose()
    print(f"saved {save(name, report)}")
    return report


def size_parser(doc: str | None, default_sizes: list[int]) -> argparse.ArgumentParser:
    """The command line every benchmark shares: ``--sizes N ...`` plus what it adds."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=default_sizes)
    return parser


def environment() -> dict:
    return {"cpus": os.cpu_count(), "database": database.describe(database.resolve_url())}


COLUMN_LIST = ", ".join(records.COLUMNS)
