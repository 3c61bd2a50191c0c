"""Shared pieces of the benchmark harness: a scratch database and synthetic corpora.

Every figure is reported as a ratio against a limit of the same machine, measured in the same
run (e.g. raw COPY into the same table), so results compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from observatory_pipelines.core.collection import privacy, records, terms, text
from observatory_pipelines.core.collection.arenas.base import CollectedItem, Interaction
from observatory_pipelines.core.platform import database, migrate

RESULTS = Path(__file__).resolve().parent / "results"
_ROOT = Path(__file__).resolve().parents[1]

WORDS = (
    "klima klimaet regeringen folketinget grøn omstilling CO2-afgift vindmøller havvind landbruget "
    "København Aarhus Odense Aalborg Esbjerg borgere kommunen minister udspil aftale debat energi "
    "elbiler fjernvarme biogas skovrejsning vandmiljø kvælstof økologi afgift stigning reduktion "
    "mål procent milliarder kroner forhandlinger partier oppositionen kritik forslag høring"
).split()
TERMS = ["klima", "grøn omstilling", "CO2-afgift", "vindmøller", "landbruget"]


def bench_database(name: str | None = None, migrated: bool = True) -> str:
    """A fresh scratch database on DATABASE_URL's server (or the embedded one), named ``name``, else
    ``BENCH_DATABASE``, else ``observatory_bench`` (two benchmarks at once need two); migrated to
    the project's schema unless ``migrated`` is false."""
    name = name or os.environ.get("BENCH_DATABASE") or "observatory_bench"
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"BENCH_DATABASE '{name}' must be letters, digits and underscores")
    url = database.with_database(database.resolve_url(), name)
    admin = database.make_engine(
        database.with_database(url, "postgres"), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"))
    admin.dispose()
    if migrated:
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


SHAPES = ("x", "social")
SOCIAL_PLATFORMS = ("bluesky", "mastodon", "reddit", "youtube", "telegram")
_EMOJI = ("🌍", "🔥", "💨", "🌱", "👍", "😡", "🚲", "⚡")
_HASHTAGS = ("#klima", "#dkpol", "#grønomstilling", "#havvind", "#landbrug", "#co2")


def synthetic_rows(
    n: int, design_id: uuid.UUID, run_id: uuid.UUID, month_start: datetime, seed: int = 7, shape: str = "x"
) -> list[tuple]:
    """``n`` rows in ``records.COLUMNS`` order, one month.

    ``shape="x"``: X posts of 45 Danish words (~300 characters) with little metadata.
    ``shape="social"``: posts of the social arenas (``SOCIAL_PLATFORMS`` mixed), 10–25 words with
    emoji, hashtags and mentions, one to three interactions each, platform fields and media URLs.
    """
    if shape == "social":
        return _social_rows(n, design_id, run_id, month_start, seed)
    if shape != "x":
        raise ValueError(f"unknown row shape {shape!r}; use one of {', '.join(SHAPES)}")
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


def _social_item(i: int, n: int, platform: str, rng: random.Random, published: datetime) -> CollectedItem:
    """One item as the social arenas map it, so ``records.prepare`` builds its row and metadata."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(10, 25))]
    for extra in (_EMOJI, _HASHTAGS):
        for _ in range(rng.randint(0, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(extra))
    author = f"user{rng.randrange(n // 20 + 1)}"
    others = [f"user{rng.randrange(n // 20 + 1)}" for _ in range(rng.randint(1, 3))]
    interactions = []
    for k, other in enumerate(others):
        kind = "mention" if k else rng.choice(("reply", "quote", "repost", "mention"))
        if kind == "mention":
            words.insert(rng.randrange(len(words) + 1), f"@{other}")
            interactions.append(Interaction("mention", author_id=f"id-{other}", handle=other))
        else:
            parent = f"{platform}-post-{rng.randrange(max(i, 1))}"
            interactions.append(Interaction(kind, platform_id=parent, author_id=f"id-{other}", handle=other))
    body = " ".join(words)
    likes, shares, comments = rng.randrange(500), rng.randrange(50), rng.randrange(80)
    media = [f"https://media.example/{platform}/{i}/{k}.jpg" for k in range(rng.choice((0, 0, 1, 2)))]
    content_type, title, raw = "post", None, {}
    if platform == "bluesky":
        raw = {
            "cid": f"bafyrei{rng.getrandbits(160):040x}",
            "handle": f"{author}.bsky.social",
            "indexed_at": published.isoformat(),
            "langs": ["da"],
            "repost_count": shares,
            "quote_count": rng.randrange(10),
        }
    elif platform == "mastodon":
        raw = {
            "instance": "mastodon.example",
            "local_id": str(110_000_000_000_000_000 + i),
            "visibility": "public",
            "tags": [tag.lstrip("#") for tag in words if tag.startswith("#")],
        }
    elif platform == "reddit":
        content_type = rng.choice(("post", "comment"))
        title = " ".join(rng.choice(WORDS) for _ in range(8)) if content_type == "post" else None
        raw = {
            "subreddit": "Denmark",
            "subreddit_id": "t5_2qjto",
            "permalink": f"/r/Denmark/comments/{i:x}/",
            "domain": "self.Denmark",
            "is_self": True,
            "upvote_ratio": round(rng.random(), 2),
            "author_user_id": f"t2_{author}",
        }
    elif platform == "youtube":
        content_type = "comment"
        raw = {"video_id": f"vid{rng.randrange(5000):08d}"}
    elif platform == "telegram":
        raw = {"channel": author, "message_id": i, "signature": f"Bruger {author}"}
    return CollectedItem(
        platform=platform,
        platform_id=f"{platform}-post-{i}",
        published_at=published,
        content_type=content_type,
        url=f"https://{platform}.example/{author}/{i}",
        text_content=body,
        title=title,
        language="da",
        author_platform_id=f"id-{author}",
        author_display_name=f"Bruger {author}",
        views_count=rng.randrange(10_000) if platform in ("youtube", "telegram") else None,
        likes_count=likes,
        shares_count=shares,
        comments_count=comments,
        media_urls=media,
        raw_metadata=raw,
        interactions=interactions,
    )


def record_context(
    arena: str, design_id: uuid.UUID, run_id: uuid.UUID, start: datetime, end: datetime, collected: datetime
) -> records.RecordContext:
    """The conversion context a collection of ``arena`` would use, keeping every item it is given."""
    return records.RecordContext(
        arena=arena,
        query_design_id=design_id,
        collection_run_id=run_id,
        tier="free",
        window_start=start,
        window_end=end,
        collected_at=collected,
        salt=b"benchmark-salt-not-secret",
        matcher=terms.TermMatcher(TERMS),
        keep_unmatched=True,
    )


def _social_rows(n: int, design_id: uuid.UUID, run_id: uuid.UUID, month_start: datetime, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    end = month_start + timedelta(days=31)
    contexts = {p: record_context(p, design_id, run_id, month_start, end, end) for p in SOCIAL_PLATFORMS}
    rows = []
    for i in range(n):
        platform = rng.choice(SOCIAL_PLATFORMS)
        item = _social_item(i, n, platform, rng, month_start + timedelta(seconds=rng.randrange(28 * 86400)))
        row = records.prepare(item, contexts[platform])
        if not isinstance(row, tuple):
            raise AssertionError(f"synthetic item {i} did not become a row: {row}")
        rows.append(row)
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


def run_child(module: str, argument: list, url_variable: str, url: str, what: str) -> dict:
    """Run ``python -m <module> --child <argument as JSON>`` in a fresh process (its own peak RSS)
    and return the JSON object it prints last. The database URL goes in the environment, as
    ``url_variable``: on the command line, any password in it would show in `ps`."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--child", json.dumps(argument)],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, url_variable: url},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
