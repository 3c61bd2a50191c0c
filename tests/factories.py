"""Builders for the tests' data: databases, query designs, content records, actors, collected corpora,
exports in a store, RSS feeds and a clock that only moves when slept on. Plain functions and constants
(plain SQL, as an operator would write it); the fixtures that use them live in ``conftest.py``.

Test modules import helpers from here, never from one another.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple, TypeVar

import openpyxl
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.accounts import credentials
from observatory_pipelines.core.collection import ingest, privacy
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection import text as text_features
from observatory_pipelines.core.collection.arenas.base import Arena, CollectedItem, CollectionContext, QuerySpec
from observatory_pipelines.core.collection.designs import Corpus, find_corpus
from observatory_pipelines.core.collection.records import COLUMNS
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.exports.layout import (
    MANIFEST,
    ExportFile,
    ExportMetadata,
    content_file,
    export_key,
    owner_folder,
)
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.settings import Secret
from observatory_pipelines.core.platform.storage import S3ObjectStore
from observatory_pipelines.demo import seed as demo

TERMS = ("klima", "grøn omstilling", "CO2-afgift", "vindmøller")
SALT = "test-salt-0123456789abcdef"
#: The salt the demo corpus is collected with.
DEMO_SALT = "x" * 32
#: The month most corpora are built in, and when their records were collected.
MARCH = "2026-03"
COLLECTED = datetime(2026, 4, 1, 6, tzinfo=timezone.utc)
LONG_TEXT = "Grøn omstilling kræver tålmodighed. " * 1000  # 36,000 characters: over Excel's cell limit


# --- databases --------------------------------------------------------------------------------------


def needs_tool(command: str, package: str) -> pytest.MarkDecorator:
    """Skip where ``command`` is not installed, except in CI (``CI`` set): ``.ci/run`` installs it
    there, so a missing tool is a failure, not a test that never runs anywhere."""
    missing = shutil.which(command) is None and not os.environ.get("CI")
    return pytest.mark.skipif(missing, reason=f"{command} is not installed (apt install {package})")


def _admin(server_url: str) -> sa.Engine:
    return database.make_engine(server_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")


def create_database(server_url: str, template: str | None = None) -> str:
    """A new database on the server (empty, or a copy of ``template``); returns its URL."""
    name = f"obs_test_{uuid.uuid4().hex[:12]}"
    engine = _admin(server_url)
    with engine.connect() as conn:
        clause = f" TEMPLATE {template}" if template else " TEMPLATE template0"
        conn.execute(sa.text(f"CREATE DATABASE {name} ENCODING 'UTF8'{clause}"))
    engine.dispose()
    return database.with_database(server_url, name)


def drop_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    engine = _admin(database.with_database(url, "postgres"))
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


#: A password put into database URLs, to show it never reaches a log, a dump or the UI.
PASSWORD = "Hemmelig-Kode-4711"


def with_password(url: str) -> str:
    """The same database with a password in the URL (the test servers trust, so it is ignored)."""
    return sa.engine.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


# --- the observatory command, as a user runs it ----------------------------------------------------

#: The installed console script (``[project.scripts]``), beside this interpreter.
OBSERVATORY = str(Path(sys.executable).parent / "observatory")
#: Settings of the developer's shell that would point a subprocess at their own state.
_LEAKY = ("DATABASE_URL", "DAGSTER", "MINIO_", "OBSERVATORY_", "PSEUDONYMIZATION_SALT", "PGPASSWORD")


def cli_environment(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a fresh shell, with state under ``home`` and these settings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY)}
    env["OBSERVATORY_HOME"] = str(home)
    env.update(settings)
    return env


def observatory(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``observatory ARGS`` through the installed entry point."""
    return subprocess.run([OBSERVATORY, *args], capture_output=True, text=True, env=env, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something true; return that. Fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def lock_held(engine: sa.Engine, key: int) -> bool:
    """Whether any session holds the advisory lock ``key`` (a collection lock, ``run.lock_key``)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND ((classid::bigint << 32) | objid::bigint) = :k)"
            ),
            {"k": key},
        ).scalar_one()


class ThrottlingProxy:
    """A TCP proxy in front of ``upstream`` (``host:port``) that forwards what clients send at about
    ``rate`` bytes a second and counts it (``sent``), so a test can kill a client mid-upload. From the
    first piece of a request that contains ``hold`` on, it forwards nothing more on that connection
    and sets ``holding``: the client waits there until the test kills it. What the server answers
    passes unthrottled. When a client dies, the bytes it had already written still arrive (its kernel
    sends them), then its server connection is cut, as a direct one would be. Use as a context manager."""

    def __init__(self, upstream: str, rate: int, hold: bytes | None = None):
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._rate = rate
        self._hold = hold
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.sent = 0
        self.holding = threading.Event()
        self._closed = threading.Event()
        self._count = threading.Lock()
        self._pumps: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._upstream)
            for pump in (
                threading.Thread(target=self._pump, args=(client, server, True), daemon=True),
                threading.Thread(target=self._pump, args=(server, client, False), daemon=True),
            ):
                self._pumps.append(pump)
                pump.start()

    def _pump(self, source: socket.socket, target: socket.socket, upload: bool) -> None:
        try:
            while chunk := source.recv(16 * 1024):
                if upload and self._hold and self._hold in chunk:
                    self.holding.set()
                    self._closed.wait()
                    return
                target.sendall(chunk)
                if upload:
                    with self._count:
                        self.sent += len(chunk)
                    time.sleep(len(chunk) / self._rate)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def __enter__(self) -> ThrottlingProxy:
        return self

    def __exit__(self, *exc) -> None:
        """Stop accepting, drop what is held, and wait until every connection has ended: what a
        killed client had already handed to its kernel is delivered first, as it would be directly."""
        self._closed.set()
        self._listener.close()
        for pump in self._pumps:
            pump.join(timeout=120)


# --- query designs and what collection wrote ---------------------------------------------------------


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
            {"u": user, "n": f"Design {slug}", "s": slug, "tier": default_tier, "cfg": json.dumps(arenas_config or {})},
        ).scalar_one()
        for term in terms:
            conn.execute(
                sa.text("INSERT INTO search_terms (query_design_id, term) VALUES (:d, :t)"),
                {"d": design, "t": term},
            )
    return design


def corpus_of(engine: sa.Engine, slug: str, month: str) -> Corpus:
    """The corpus value the pipeline's per-corpus steps take."""
    with engine.connect() as conn:
        return find_corpus(conn, slug, month)


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
            )
            .mappings()
            .one()
        )


# --- content records -----------------------------------------------------------------------------------


def at(day: int, hour: int = 12, minute: int = 0, month: int = 3, micro: int = 0) -> datetime:
    """A moment in 2026 (March unless ``month`` says otherwise), in UTC."""
    return datetime(2026, month, day, hour, minute, 0, micro, tzinfo=timezone.utc)


def pseudonym(platform: str, author: str) -> str:
    """The pseudonym collection gives ``author`` on ``platform`` under ``SALT``."""
    return privacy.pseudonymise(platform, author, SALT.encode())


_LINK = object()  # record()'s default url: a post link made from the author and the id


def record(
    design,
    platform_id: str,
    published: datetime,
    *,
    text: str | None = None,
    title: str | None = None,
    url=_LINK,
    author: str | None = "anna",
    display_name: str | None = None,
    author_id=None,
    terms=(),
    platform: str = "x_twitter",
    arena: str = "file_import",
    content_type: str = "post",
    views: int | None = None,
    likes: int | None = None,
    shares: int | None = None,
    comments: int | None = None,
    metadata: dict | None = None,
    duplicate_of: str | None = None,
    collected: datetime = COLLECTED,
    hashed: bool = False,
) -> tuple:
    """A content_records row in ``records.COLUMNS`` order, as collection writes it: the author
    pseudonymised under ``SALT``, the engagement score the sum of the counts given. ``author_id`` is
    the actor entity resolution linked; ``duplicate_of`` marks the record as the dedup pass would;
    ``hashed`` adds the content hash and simhash of the text (the dedup pass's input)."""
    text = text if text is not None else f"Indlæg {platform_id} om klima"
    counts = [c for c in (likes, shares, comments) if c is not None]
    raw_metadata = dict(metadata or {})
    if duplicate_of:
        raw_metadata["duplicate_of"] = duplicate_of
    values = {
        "published_at": published,
        "platform": platform,
        "arena": arena,
        "platform_id": platform_id,
        "content_type": content_type,
        "url": f"https://x.com/{author}/status/{platform_id}" if url is _LINK else url,
        "text_content": text,
        "title": title,
        "language": "da",
        "collected_at": collected,
        "author_platform_id": author,
        "author_display_name": display_name or author,
        "author_id": author_id,
        "pseudonymized_author_id": pseudonym(platform, author) if author else None,
        "views_count": views,
        "likes_count": likes,
        "shares_count": shares,
        "comments_count": comments,
        "engagement_score": float(sum(counts)) if counts else None,
        "collection_run_id": None,
        "query_design_id": design,
        "search_terms_matched": list(terms),
        "collection_tier": "free",
        "raw_metadata": json.dumps(raw_metadata),
        "media_urls": [],
        "content_hash": text_features.content_hash(text) if hashed else None,
        "simhash": text_features.simhash(text) if hashed else None,
    }
    assert set(values) == set(COLUMNS), set(values) ^ set(COLUMNS)
    return tuple(values[c] for c in COLUMNS)


# --- actors --------------------------------------------------------------------------------------------


class Actor(NamedTuple):
    id: uuid.UUID
    presence_ids: list[uuid.UUID]


def make_actor(
    db: sa.Engine | sa.Connection,
    name: str,
    *presences: tuple[str, str | None] | tuple[str, str | None, str | None],
    public_figure: bool = False,
    claim_records: bool = False,
) -> Actor:
    """A registry actor with platform presences, each ``(platform, username)`` or ``(platform,
    username, user_id)``, in a transaction of its own or in ``db``'s when it is a connection. With
    ``claim_records`` the records already stored under those usernames (in any case) are pointed at
    the actor, as entity resolution would."""
    with nullcontext(db) if isinstance(db, sa.Connection) else db.begin() as conn:
        actor = conn.execute(
            sa.text(
                "INSERT INTO actors (canonical_name, actor_type, is_public_figure) "
                "VALUES (:n, 'person', :p) RETURNING id"
            ),
            {"n": name, "p": public_figure},
        ).scalar_one()
        presence_ids = []
        for platform, username, *user_id in presences:
            presence_ids.append(
                conn.execute(
                    sa.text(
                        "INSERT INTO actor_platform_presences (actor_id, platform, platform_username, platform_user_id) "
                        "VALUES (:a, :platform, :username, :user_id) RETURNING id"
                    ),
                    {
                        "a": actor,
                        "platform": platform,
                        "username": username,
                        "user_id": user_id[0] if user_id else None,
                    },
                ).scalar_one()
            )
            if claim_records:
                conn.execute(
                    sa.text(
                        "UPDATE content_records SET author_id = :a "
                        "WHERE platform = :platform AND lower(author_platform_id) = lower(:username)"
                    ),
                    {"a": actor, "platform": platform, "username": username},
                )
    return Actor(actor, presence_ids)


# --- a corpus with people in it, for the identity rule of exports -------------------------------------

#: The legal basis a design records for identified exports.
LEGAL_BASIS = "Aftale med Datatilsynet, j.nr. 2026-31-0042: GDPR art. 6, stk. 1, litra e, og art. 89"
#: The public figure, and the RSS byline of the public-figure outlet (with the editor's address).
PUBLIC_NAME = "Mette Frederiksen"
BYLINE = "redaktion@fjordposten.example.dk (Hanne Krog)"
#: Names, handles and addresses of people who are not public figures: no pseudonymised export holds any.
PRIVATE = (
    "Søren Ærø",
    "soeren_aeroe",
    "Åse Kløft",
    "aase.kloeft",
    "Bjørn Ågård",
    "bjoern_aagaard",
    "Jens Ærtebjerg",
    "jens@lokalavisen.example.dk",
    "redaktion@fjordposten.example.dk",
    "1450001",
)
X_STATUS = {"mette": "1769000000000000001", "soeren": "1769000000000000002"}


def people_corpus(engine: sa.Engine) -> uuid.UUID:
    """klimadebat, March 2026: posts by a public figure on X, by people who are not (X, TikTok,
    Instagram), and articles from an outlet flagged as a public figure (its byline holds an e-mail
    address) and one that is not."""
    design = make_design(engine, terms=("klima", "grøn omstilling", "vindmøller"))
    x_raw = {
        "raw": {"core": {"user_results": {"result": {"legacy": {"screen_name": "soeren_aeroe", "name": "Søren Ærø"}}}}},
        "author_user_id": "1450001",
        "source_platform_url": "https://x.com/soeren_aeroe",
        "hashtags": ["klima"],
    }
    rss = {"platform": "rss", "arena": "rss_feeds", "content_type": "article"}
    ingest.write_batch(
        engine,
        [
            record(
                design,
                X_STATUS["mette"],
                at(2, 9),
                text="Vi skal have grøn omstilling nu – klima er årets valgtema",
                author="mette_f",
                display_name=PUBLIC_NAME,
                terms=["klima", "grøn omstilling"],
                likes=5000,
            ),
            record(
                design,
                X_STATUS["soeren"],
                at(3, 14),
                text="Vindmøller på Ærø? Klima kræver mod.",
                author="soeren_aeroe",
                display_name="Søren Ærø",
                terms=["klima", "vindmøller"],
                metadata=x_raw,
                likes=12,
            ),
            record(
                design,
                "7345000000000000003",
                at(4, 20),
                text="Min klima-dans ved fjorden",
                url="https://www.tiktok.com/@aase.kloeft/video/7345000000000000003",
                author="aase.kloeft",
                display_name="Åse Kløft",
                platform="tiktok",
                content_type="video",
                terms=["klima"],
            ),
            record(
                design,
                "C4xYz_12ab",
                at(5, 8),
                text="Solceller på taget – grøn omstilling i praksis",
                url="https://www.instagram.com/p/C4xYz_12ab/",
                author="bjoern_aagaard",
                display_name="Bjørn Ågård",
                platform="instagram",
                terms=["grøn omstilling"],
            ),
            record(
                design,
                "fp-1",
                at(6, 7),
                title="Havvind ud for Thyborøn",
                text="Kommunen vil have flere vindmøller og mere klima-handling.",
                url="https://fjordposten.example.dk/klima/2026/03/havvind",
                author="fjordposten-example-dk",
                display_name=BYLINE,
                terms=["klima", "vindmøller"],
                metadata={"feed_url": "https://fjordposten.example.dk/rss", "categories": ["Klima"]},
                **rss,
            ),
            record(
                design,
                "la-1",
                at(7, 7),
                title="Borgermøde om klima",
                text="Borgerne i Sønderå diskuterede klima og grøn omstilling.",
                url="https://lokalavisen.example.dk/artikel/borgermoede",
                author="lokalavisen-example-dk",
                display_name="Jens Ærtebjerg <jens@lokalavisen.example.dk>",
                terms=["klima", "grøn omstilling"],
                **rss,
            ),
        ],
    )
    make_actor(engine, PUBLIC_NAME, ("x_twitter", "mette_f"), public_figure=True, claim_records=True)
    make_actor(engine, "Fjordposten", ("rss", "fjordposten-example-dk"), public_figure=True, claim_records=True)
    # Resolved, but not a public figure: a name in the registry is no licence to show it.
    make_actor(engine, "Søren Ærø", ("x_twitter", "soeren_aeroe"), claim_records=True)
    return design


def record_identified_basis(engine: sa.Engine, slug: str, basis: str = LEGAL_BASIS) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE query_designs SET export_identity = 'identified', identity_legal_basis = :b WHERE slug = :s"
            ),
            {"b": basis, "s": slug},
        )


def read_export(path, fmt: str) -> list[dict]:
    """The rows of an export file, read as a researcher's tools read it (csv, openpyxl, json, pyarrow)."""
    if fmt == "csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]
    if fmt == "ndjson":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "xlsx":
        workbook = openpyxl.load_workbook(path, read_only=True)
        rows = []
        for sheet in workbook.worksheets:
            values = list(sheet.iter_rows(values_only=True))
            rows += [dict(zip(values[0], row)) for row in values[1:]]
        workbook.close()
        return rows
    raise ValueError(fmt)


# --- the demo corpus -----------------------------------------------------------------------------------


def collect_demo(engine: sa.Engine, import_dir) -> demo.DemoSeed:
    """The demo design seeded, its import files copied under ``import_dir``, and its month collected
    from the bundled feeds and files (offline), as ``observatory demo`` does."""
    seeded = demo.seed(engine, import_dir)
    for arena in ("rss_feeds", "file_import"):
        outcome = collection.collect_arena(
            engine,
            design_slug=demo.DESIGN_SLUG,
            month=demo.DEMO_MONTH,
            arena_name=arena,
            dagster_run_id="t",
            salt=DEMO_SALT,
            import_dir=str(import_dir),
        )
        assert outcome.status == "completed", outcome.message
    return seeded


# --- import files --------------------------------------------------------------------------------------


def write_zeeschuimer_x_export(path, count: int, month: str = MARCH) -> None:
    """A Zeeschuimer export of ``count`` X posts (NDJSON, one envelope per line), spread over ``month``,
    each post with its own id, a Danish text and an author among a hundred."""
    year, number = (int(part) for part in month.split("-"))
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            when = datetime(year, number, 1 + i % 28, i % 24, i % 60, tzinfo=timezone.utc)
            post_id = str(2_040_000_000_000_000_000 + i)
            author = f"{1_480_000_000_000_000_000 + i % 100}"
            data = {
                "__typename": "Tweet",
                "rest_id": post_id,
                "core": {
                    "user_results": {
                        "result": {
                            "__typename": "User",
                            "rest_id": author,
                            "core": {"name": f"Skribent {i % 100}", "screen_name": f"skribent_{i % 100}"},
                        }
                    }
                },
                "views": {"count": str(i % 5000)},
                "legacy": {
                    "created_at": when.strftime("%a %b %d %H:%M:%S +0000 %Y"),
                    "full_text": f"Indlæg {i} om klima og grøn omstilling på Ærø",
                    "id_str": post_id,
                    "user_id_str": author,
                    "lang": "da",
                    "favorite_count": i % 50,
                    "retweet_count": i % 7,
                    "reply_count": i % 3,
                    "quote_count": 0,
                },
            }
            envelope = {
                "id": i + 1,
                "nav_index": f"1:1:{i}",
                "item_id": post_id,
                "timestamp_collected": 1_775_000_000_000,
                "source_platform": "twitter.com",
                "source_platform_url": "https://x.com/search?q=klima",
                "data": data,
            }
            out.write(json.dumps(envelope, ensure_ascii=False) + "\n")


# --- RSS feeds -----------------------------------------------------------------------------------------


def rss_item(guid: str, title: str, body: str, pub: str, link: str) -> str:
    return (
        f'<item><title>{title}</title><link>{link}</link><guid isPermaLink="false">{guid}</guid>'
        f"<pubDate>{pub}</pubDate><description>{body}</description></item>"
    )


def rss_feed(*items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Nordlys</title>'
        "<link>https://nordlys.example.dk</link><language>da</language>" + "".join(items) + "</channel></rss>"
    ).encode("utf-8")


FEED_A = rss_feed(
    rss_item(
        "a1",
        "Klima i København",
        "Byrådet vedtog en plan for grøn omstilling i København.",
        "Tue, 10 Mar 2026 09:00:00 +0100",
        "https://nordlys.example.dk/a1",
    ),
    rss_item(
        "a2", "Fodbold", "FCK vandt igen i Parken.", "Wed, 11 Mar 2026 20:00:00 +0100", "https://nordlys.example.dk/a2"
    ),  # matches no term: filtered
    rss_item(
        "a3",
        "Ny CO2-afgift",
        "Regeringen vil indføre en CO2-afgift på landbruget.",
        "Thu, 12 Mar 2026 07:30:00 +0100",
        "https://nordlys.example.dk/a3",
    ),
    rss_item(
        "a4",
        "Vindmøller i Aabenraa",
        "Borgerne klager over nye vindmøller.",
        "Sun, 01 Mar 2026 00:30:00 +0100",
        "https://nordlys.example.dk/a4",
    ),  # 28 Feb UTC: outside
)
FEED_B = rss_feed(
    rss_item(
        "b1",
        "Debat",
        "Klima er årets vigtigste emne, mener vælgerne.",
        "Fri, 20 Mar 2026 12:00:00 +0000",
        "https://fjord.example.dk/b1",
    ),
)


# --- time ----------------------------------------------------------------------------------------------


class FakeClock:
    """A wall clock (epoch seconds) that only moves when slept on: every wait is recorded, none is real."""

    def __init__(self, now: float = 1_741_000_000.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


# --- object stores and exports in them -----------------------------------------------------------------


def read_object(store, key: str) -> bytes:
    with store.open(key) as body:
        return body.read()


def new_bucket() -> str:
    """A bucket name no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"


def open_s3_store(server, **options) -> S3ObjectStore:
    """A store on the test S3 server (``s3_server``), in a bucket of its own unless ``bucket`` is given."""
    options.setdefault("bucket", new_bucket())
    return S3ObjectStore(server.endpoint, server.access_key, server.secret_key, **options)


CSV = content_file("csv")
PARQUET = content_file("parquet")
XLSX = content_file("xlsx")
ACTORS_GEXF = ExportFile("gexf", "actor_cooccurrence")

KLIMA_CSV = (
    "id,tekst,aktør\n"
    "1,Grøn omstilling på Ærø kræver flere vindmøller,Søren Ørsted\n"
    "2,CO2-afgiften rammer landbruget i Sønderjylland,Karen Blixen\n"
).encode()
KLIMA_APRIL_CSV = "id,tekst,aktør\n1,Åbent samråd om klimaloven,Æbelø Lokalråd\n".encode()
VIND_CSV = "id,tekst,aktør\n1,Havvindmøller ved Bornholm,Østkraft\n".encode()
GEXF = '<?xml version="1.0" encoding="UTF-8"?><gexf><graph><nodes><node id="0" label="Søren Ørsted"/></nodes></graph></gexf>'.encode()
MANIFEST_JSON = '{"design": "klimadebat", "month": "2026-03", "note": "æøå"}'.encode()

KAREN = "karen.blixen@ku.dk"
SOEREN = "søren.ørsted@au.dk"
ADMIN = "admin@observatoriet.dk"
INACTIVE = "tidligere.forsker@ku.dk"
FORMER_OWNER_FOLDER = "user-6b0f3a52-3c1e-4f5e-9a57-0e2d1c4b8a90"


@dataclass(frozen=True)
class People:
    karen: uuid.UUID  # researcher: owns klimadebat and groen-omstilling
    soeren: uuid.UUID  # researcher whose address cannot be a folder name: owns vindmoeller
    admin: uuid.UUID
    karen_folder: str
    soeren_folder: str


def owner_of(engine: sa.Engine, design_id) -> uuid.UUID:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT owner_id FROM query_designs WHERE id = :d"), {"d": design_id}).scalar_one()


def seed_people(engine: sa.Engine) -> People:
    """Two researchers, an admin and a deactivated account, with three designs."""
    klima = make_design(engine, slug="klimadebat")
    groen = make_design(engine, slug="groen-omstilling")
    vind = make_design(engine, slug="vindmoeller", terms=("havvind", "vindmøller"))
    karen, soeren = owner_of(engine, klima), owner_of(engine, vind)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET email = :e, display_name = 'Karen Blixen' WHERE id = :u"),
            {"e": KAREN, "u": karen},
        )
        conn.execute(
            sa.text("UPDATE users SET email = :e, display_name = 'Søren Ørsted' WHERE id = :u"),
            {"e": SOEREN, "u": soeren},
        )
        conn.execute(sa.text("UPDATE query_designs SET owner_id = :u WHERE id = :d"), {"u": karen, "d": groen})
        admin = conn.execute(
            sa.text("INSERT INTO users (email, display_name, role) VALUES (:e, 'Åse Admin', 'admin') RETURNING id"),
            {"e": ADMIN},
        ).scalar_one()
        conn.execute(sa.text("INSERT INTO users (email, is_active) VALUES (:e, false)"), {"e": INACTIVE})
    return People(karen, soeren, admin, owner_folder(karen), owner_folder(soeren))


def put_export(
    store, owner: str, slug: str, month: str, file: ExportFile, data: bytes, rows: int, metadata: dict | None = None
):
    """An export object where the export assets put it, with the metadata they record (or ``metadata``)."""
    recorded = ExportMetadata(sha256=hashlib.sha256(data).hexdigest(), rows=rows).to_object_metadata()
    return store.put_stream(
        export_key(owner, slug, month, file),
        io.BytesIO(data),
        len(data),
        file.content_type,
        recorded if metadata is None else metadata,
    )


def seed_exports(store, people: People) -> None:
    put_export(store, people.karen_folder, "klimadebat", "2026-03", CSV, KLIMA_CSV, 2)
    put_export(store, people.karen_folder, "klimadebat", "2026-03", MANIFEST, MANIFEST_JSON, 0)
    put_export(store, people.karen_folder, "klimadebat", "2026-03", ACTORS_GEXF, GEXF, 1)
    put_export(store, people.karen_folder, "klimadebat", "2026-04", CSV, KLIMA_APRIL_CSV, 1)
    put_export(store, people.karen_folder, "groen-omstilling", "2026-03", PARQUET, b"PAR1\x00\x01PAR1", 0)
    put_export(store, people.soeren_folder, "vindmoeller", "2026-03", CSV, VIND_CSV, 1)
    # Left behind by klimadebat's former owner: the design is Karen's now, the folder is not.
    put_export(store, FORMER_OWNER_FOLDER, "klimadebat", "2026-02", CSV, KLIMA_CSV, 2)
    # Objects no export writes: a note beside the exports, and a database backup.
    store.put_stream(f"exports/{people.karen_folder}/klimadebat/2026-03/noter.txt", io.BytesIO(b"note"), 4)
    store.put_stream("postgres/2026/03/01/observatory.sql.gz", io.BytesIO(b"\x1f\x8b"), 2)


def ingest_in_process(url: str, rows: list[tuple], batch_size: int, start) -> None:
    """Write ``rows`` through ``ingest.write_batch`` in batches, once ``start`` (a multiprocessing
    barrier) lets every process go: the body of a separate ingest process."""
    engine = database.make_engine(url)
    try:
        start.wait(timeout=60)
        for first in range(0, len(rows), batch_size):
            ingest.write_batch(engine, rows[first : first + batch_size])
    finally:
        engine.dispose()


# --- design files ---------------------------------------------------------------------------------------

RESEARCHER_EMAIL = "forsker@example.dk"


def make_user(engine: sa.Engine, email: str = RESEARCHER_EMAIL) -> uuid.UUID:
    with engine.begin() as conn:
        return conn.execute(
            sa.text("INSERT INTO users (email, display_name) VALUES (:e, 'Forsker Ørsted') RETURNING id"),
            {"e": email},
        ).scalar_one()


def design_document(slug: str, owner: str = RESEARCHER_EMAIL, **fields) -> dict:
    """A valid design file's content (Danish text in name and terms); ``fields`` replace or add fields."""
    return {
        "slug": slug,
        "name": f"Grøn omstilling på Ærø ({slug})",
        "owner": owner,
        "description": "Øer, færger og vindmøller",
        "terms": ["klima", '"grøn omstilling"', "#dkpol", "vindmøller"],
        "arenas": {"gdelt": {"enabled": False}},
        **fields,
    }


def write_design_file(folder: Path, slug: str, text: str | None = None, **fields) -> Path:
    """``folder/<slug>.yaml`` holding ``text``, or else ``design_document(slug, **fields)`` as YAML."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.yaml"
    body = (
        text
        if text is not None
        else yaml.safe_dump(design_document(slug, **fields), allow_unicode=True, sort_keys=False)
    )
    path.write_text(body, encoding="utf-8")
    return path


def design_changes(engine: sa.Engine) -> list[dict]:
    """The audit rows of applied design files, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT slug, change, diff, source_file, applied_by FROM design_changes ORDER BY applied_at, slug")
        )
        return [dict(row._mapping) for row in rows]


# --- API credentials and an arena that needs them --------------------------------------------------------

#: The credential key the tests encrypt with (32 bytes, URL-safe base64), and another one.
CREDENTIAL_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
OTHER_CREDENTIAL_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode()
#: The keyed test API's platform and arena (registered only by the ``keyed_arena`` fixture).
KEYED_PLATFORM = "videoarkiv"
KEYED_PATH = "/v1/search"


def keyed_items(*ids: str) -> bytes:
    """One page of the keyed test API: posts in March 2026 that mention "klima"."""
    items = [
        {
            "id": i,
            "text": f"Klima og grøn omstilling på Ærø ({i})",
            "published": "2026-03-05T10:00:00Z",
            "author": "åse",
        }
        for i in ids
    ]
    return json.dumps({"items": items}, ensure_ascii=False).encode()


class KeyedArena(Arena):
    """A keyed API (``X-Api-Key``) served by the tests' HTTP server: ``pages`` pages, each one
    request through ``ctx.credentials.call``, so the pool rotates as the server answers."""

    name = KEYED_PLATFORM
    platform = KEYED_PLATFORM
    description = "A keyed test API served by tests/http_fixtures.py."
    needs_credential = True
    supported_tiers = frozenset(Tier)

    def validate_options(self, options):
        unknown = sorted(set(options) - {"base_url", "pages"})
        if unknown:
            raise ValueError(f"arena '{self.name}' has no option '{unknown[0]}'")
        return dict(options)

    def collect(self, spec: QuerySpec, ctx: CollectionContext):
        assert ctx.credentials is not None
        url = spec.options["base_url"] + KEYED_PATH
        for page in range(int(spec.options.get("pages", 1))):

            def request(lease, page=page):
                headers = {"X-Api-Key": lease.secret.reveal()}
                return ctx.http.get_json(
                    url, params={"q": "klima", "page": page}, headers=headers, arena=self.name, wait_on_rate_limit=False
                )

            for item in ctx.credentials.call(request)["items"]:
                yield CollectedItem(
                    platform=self.platform,
                    platform_id=item["id"],
                    published_at=datetime.fromisoformat(item["published"]),
                    text_content=item["text"],
                    author_platform_id=item["author"],
                )


def add_api_credential(
    engine: sa.Engine, name: str, secret: str, *, quota: int | None = None, tier: str = "free"
) -> uuid.UUID:
    """A credential of the keyed test platform, encrypted with ``CREDENTIAL_KEY``."""
    key = credentials.CredentialKey.parse(Secret(CREDENTIAL_KEY))
    return credentials.add_credential(
        engine, key, KEYED_PLATFORM, name, Secret(secret), tier=tier, daily_quota=quota
    ).id


def api_credential(engine: sa.Engine, name: str) -> dict:
    """A credential's row, as the pool left it (its payload included)."""
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT * FROM api_credentials WHERE platform = :p AND credential_name = :n"),
                {"p": KEYED_PLATFORM, "n": name},
            )
            .mappings()
            .one()
        )


# --- API credentials of any platform (social arenas) -------------------------------------------------------


def add_platform_credential(
    engine: sa.Engine, platform: str, name: str, secret: str, *, quota: int | None = None, tier: str = "free"
) -> uuid.UUID:
    """A credential of ``platform`` (a JSON text for several fields), encrypted with ``CREDENTIAL_KEY``."""
    key = credentials.CredentialKey.parse(Secret(CREDENTIAL_KEY))
    return credentials.add_credential(engine, key, platform, name, Secret(secret), tier=tier, daily_quota=quota).id


def platform_credentials(engine: sa.Engine, platform: str) -> list[dict]:
    """The credentials' rows of ``platform`` as the pool left them, by name."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM api_credentials WHERE platform = :p ORDER BY credential_name"), {"p": platform}
        )
        return [dict(row) for row in rows.mappings()]


def platform_credential(engine: sa.Engine, platform: str, name: str) -> dict:
    """One credential's row of ``platform``, as the pool left it."""
    return next(row for row in platform_credentials(engine, platform) if row["credential_name"] == name)


@dataclass
class FakeLease:
    """A pooled credential as an arena sees it, for arena tests that stand in for the pool."""

    id: uuid.UUID
    secret: Secret
    name: str
    platform: str

    def field(self, name: str) -> Secret:
        return Secret(json.loads(self.secret.reveal())[name])


class OneCredential:
    """``ctx.credentials`` holding one credential: each request once, as the pool's ``call`` does,
    with the cost of every call recorded."""

    def __init__(self, platform: str, secret: str, name: str = "forskning") -> None:
        self.lease = FakeLease(uuid.uuid4(), Secret(secret), name, platform)
        self.costs: list[int] = []

    def call(self, request, *, platform=None, cost=1):
        self.costs.append(cost)
        return request(self.lease)


# --- actor lists of a design (social arenas collect from them) ------------------------------------------


def add_actor_list(engine: sa.Engine, design_id: uuid.UUID, *actor_ids: uuid.UUID, name: str = "Kanaler") -> uuid.UUID:
    """An actor list on ``design_id`` holding ``actor_ids``: the accounts an arena collects from."""
    with engine.begin() as conn:
        list_id = conn.execute(
            sa.text("INSERT INTO actor_lists (query_design_id, name) VALUES (:d, :n) RETURNING id"),
            {"d": design_id, "n": name},
        ).scalar_one()
        for actor_id in actor_ids:
            conn.execute(
                sa.text("INSERT INTO actor_list_members (actor_list_id, actor_id) VALUES (:l, :a)"),
                {"l": list_id, "a": actor_id},
            )
    return list_id


# --- collection runs -------------------------------------------------------------------------------------


def add_run(
    engine: sa.Engine,
    design_id: uuid.UUID,
    month: str,
    started: datetime,
    tasks: tuple[tuple[str, str, int, str | None], ...] = (),
    status: str = "completed",
) -> uuid.UUID:
    """A collection run of the design's ``month`` started at ``started``, as collection records one,
    with ``tasks`` (arena, status, records collected, error message); platform named as the arena."""
    with engine.begin() as conn:
        slug = conn.execute(sa.text("SELECT slug FROM query_designs WHERE id = :d"), {"d": design_id}).scalar_one()
        run = conn.execute(
            sa.text(
                """
                INSERT INTO collection_runs (query_design_id, status, date_from, date_to, dagster_run_id,
                                             partition_key, started_at, completed_at)
                VALUES (:d, :status, :start, :start + interval '1 month', :dagster, :partition,
                        :started, :started + interval '5 minutes')
                RETURNING id
                """
            ),
            {
                "d": design_id,
                "status": status,
                "start": datetime.fromisoformat(f"{month}-01T00:00:00+00:00"),
                "dagster": f"run-{uuid.uuid4().hex[:8]}",
                "partition": collection.collection_partition_key(slug, month),
                "started": started,
            },
        ).scalar_one()
        for arena, task_status, collected, error in tasks:
            conn.execute(
                sa.text(
                    """
                    INSERT INTO collection_tasks (collection_run_id, arena, platform, status, records_collected,
                                                  error_message, started_at, completed_at)
                    VALUES (:r, :a, :a, :s, :n, :e, :t, :t + interval '4 minutes')
                    """
                ),
                {"r": run, "a": arena, "s": task_status, "n": collected, "e": error, "t": started},
            )
    return run


def add_many_corpora(engine: sa.Engine, first: uuid.UUID) -> None:
    """Nine more designs beside ``first``, and all ten with 24 months each (2026-02 .. 2028-01) of a
    collection run (one arena completed, one failed) and one record: 240 corpora."""
    designs = [first, *(make_design(engine, slug=f"aeroe-{n}", terms=("ærø",)) for n in range(2, 11))]
    months = [f"{2026 + (i + 1) // 12}-{(i + 1) % 12 + 1:02d}" for i in range(24)]
    rows = []
    for design in designs:
        for number, month in enumerate(months):
            add_run(
                engine,
                design,
                month,
                datetime.fromisoformat(f"{month}-01T08:00:00+00:00"),
                (("rss_feeds", "completed", 1, None), ("file_import", "failed", 0, "fil mangler: data.ndjson")),
            )
            rows.append(
                record(design, f"{month}-{number}", datetime.fromisoformat(f"{month}-10T12:00:00+00:00"), terms=["ærø"])
            )
    ingest.write_batch(engine, rows)
