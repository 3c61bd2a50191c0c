"""End-to-end benchmark: one month imported from a Zeeschuimer export and run as ``observatory run`` runs it.

    .venv/bin/python -m bench.e2e [--sizes 100000 300000 1000000] [--template]

For each size:

1. a Zeeschuimer X export of N posts in March 2026 is written to the design's import folder, as a
   researcher's browser would save it (one envelope per line, the platform's GraphQL object in
   ``data``, about 1 KB a line): 45 words each (stop words first, then a Zipf-distributed
   vocabulary, one or two of the design's 8 search terms, an author's favourite one most often), N/20 authors with a Zipf-distributed
   activity and Danish names (which repeat across authors), 3% re-posted texts, 2% one-word edits. ``--template``: every post from one ~50-word
   vocabulary, as a bot campaign's are;
2. a design with those 8 terms and the file import as its only arena is applied from a design
   file, as any design is;
3. a child process runs ``local_run.materialize_corpus`` (what ``observatory run`` calls) with the
   CLI's resources: collection, then processing, analysis and exports, then the month's
   suggestions, each stage a Dagster run recorded in its instance. Each step's time comes from
   Dagster's own step statistics; the child samples its RSS every 50 ms, so each step's peak is
   known too, and the run's peak is the child's own high-water mark (``VmHWM``);
4. the limits, on the same rows and the same server, in the same run:
   - raw indexed COPY: the stored rows dumped with ``COPY TO STDOUT``, the content tables
     truncated, and the dump streamed back with ``COPY content_records FROM STDIN`` (the least
     any load of these rows into the indexed, partitioned table costs);
   - ``COPY (SELECT ...) TO STDOUT`` of the corpus (the read limit every export and analysis pays).

Reported: each step's seconds and peak RSS, the total, the run's peak RSS, every export's size,
the import's ratio to raw COPY (target ≥ 0.8) and the growth between sizes (time ratio over size
ratio: 1.0 is linear). Targets at 1M on 2 cores (issue 16): total under 10 minutes, peak RSS
under 1.5 GB, every network file under 50 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench import common
from bench.dedup import STOP_WORDS, TEMPLATE_WORDS, VOCABULARY_SIZE, ZIPF_EXPONENT
from bench.rss import peak_rss_mb
from observatory_pipelines.core.collection import records
from observatory_pipelines.core.platform import database

MONTH = "2026-03"
MONTH_START = datetime(2026, 3, 1, tzinfo=timezone.utc)
MONTH_SECONDS = 31 * 86400
DESIGN = "e2e-bench"
TERMS = ("klima", "klimaet", "grøn omstilling", "CO2-afgift", "vindmøller", "havvind", "landbruget", "regeringen")
WORDS_PER_POST = 45
REPOST_SHARE = 0.03
EDIT_SHARE = 0.02
AUTHORS_PER_POST = 1 / 20
FAVOURITE_SHARE = 0.7
SALT = "e2e-benchmark-salt-not-secret"
RSS_SAMPLE_SECONDS = 0.05
FIRST_NAMES = (
    "Anne Mette Søren Jens Kirsten Lars Hanne Peter Maja Rasmus Ida Mads Freja Jørgen Birthe Niels Sofie "
    "Henrik Signe Bjørn Åse Ole Karen Emil Lærke Thomas Louise Morten Camilla Anders"
).split()
LAST_NAMES = (
    "Jensen Nielsen Hansen Pedersen Andersen Christensen Larsen Sørensen Rasmussen Jørgensen Petersen "
    "Madsen Kristensen Olsen Thomsen Møller Poulsen Knudsen Mortensen Østergaard Ærø Kjær Bækgaard Højgaard "
    "Lindholm Dalsgaard Skovgaard Bruun Vestergaard Friis"
).split()
COPY_CHUNK = 1 << 20


class PostText:
    """Post texts drawn in bulk (one weighted draw at a time is far slower)."""

    def __init__(self, rng: np.random.Generator, template: bool):
        vocabulary = (
            list(TEMPLATE_WORDS)
            if template
            else STOP_WORDS + common.WORDS + [f"ord{i}" for i in range(VOCABULARY_SIZE)]
        )
        weights = np.ones(len(vocabulary)) if template else 1 / np.arange(1, len(vocabulary) + 1) ** ZIPF_EXPONENT
        self.rng = rng
        self.vocabulary = np.array(vocabulary, dtype=object)
        self.p = weights / weights.sum()
        self._drawn: list[str] = []
        self._next = 0

    def words(self, count: int) -> list[str]:
        if self._next + count > len(self._drawn):
            self._drawn = list(self.vocabulary[self.rng.choice(len(self.vocabulary), size=1_000_000, p=self.p)])
            self._next = 0
        self._next += count
        return self._drawn[self._next - count : self._next]

    def post(self, favourite: int) -> str:
        """45 words with one or two terms; accounts have topics: the author's favourite term comes
        first with probability ``FAVOURITE_SHARE``, else any term."""
        words = self.words(WORDS_PER_POST)
        chosen = {favourite if self.rng.random() < FAVOURITE_SHARE else int(self.rng.integers(len(TERMS)))}
        if self.rng.random() < 0.5:
            chosen.add(int(self.rng.integers(len(TERMS))))
        for term in chosen:
            words[int(self.rng.integers(len(words)))] = TERMS[term]
        return " ".join(words)


def _envelope(i: int, post_id: str, author: int, when: datetime, text: str, rng: np.random.Generator) -> dict:
    user_id = str(1_480_000_000_000_000_000 + author)
    # Names repeat across authors as they do in Denmark (18,900 combinations, a middle name or
    # none), handles do not.
    first = FIRST_NAMES[author % len(FIRST_NAMES)]
    last = LAST_NAMES[author // len(FIRST_NAMES) % len(LAST_NAMES)]
    middle = ("", *LAST_NAMES[:20])[author // (len(FIRST_NAMES) * len(LAST_NAMES)) % 21]
    name = " ".join(part for part in (first, middle, last) if part)
    handle = f"{first.lower()}{author}"
    data = {
        "__typename": "Tweet",
        "rest_id": post_id,
        "core": {
            "user_results": {
                "result": {
                    "__typename": "User",
                    "rest_id": user_id,
                    "is_blue_verified": False,
                    "legacy": {"followers_count": int(rng.integers(5000)), "description": ""},
                    "core": {"name": name, "screen_name": handle},
                }
            }
        },
        "views": {"count": str(int(rng.integers(20000))), "state": "EnabledWithCount"},
        "source": '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
        "legacy": {
            "created_at": when.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "conversation_id_str": post_id,
            "full_text": text,
            "id_str": post_id,
            "user_id_str": user_id,
            "lang": "da",
            "favorite_count": int(rng.integers(200)),
            "retweet_count": int(rng.integers(30)),
            "reply_count": int(rng.integers(10)),
            "quote_count": int(rng.integers(3)),
            "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
        },
    }
    return {
        "id": i + 1,
        "nav_index": f"1:1:{i}",
        "item_id": post_id,
        "timestamp_collected": 1_775_000_000_000 + i,
        "source_platform": "twitter.com",
        "source_platform_url": "https://x.com/search?q=klima&src=typed_query&f=live",
        "data": data,
    }


def write_export(path: Path, n: int, template: bool, seed: int = 16) -> int:
    """The Zeeschuimer export of ``n`` posts, streamed to ``path``; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    texts = PostText(rng, template)
    authors = max(1, int(n * AUTHORS_PER_POST))
    activity = 1 / np.arange(1, authors + 1) ** 1.0
    author_of = rng.choice(authors, size=n, p=activity / activity.sum())
    seconds = np.sort(rng.integers(MONTH_SECONDS, size=n))
    kinds = rng.random(n)
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            if recent and kinds[i] < REPOST_SHARE:
                text = recent[int(rng.integers(len(recent)))]
            elif recent and kinds[i] < REPOST_SHARE + EDIT_SHARE:
                words = recent[int(rng.integers(len(recent)))].split()
                words[int(rng.integers(len(words)))] = texts.words(1)[0]
                text = " ".join(words)
            else:
                text = texts.post(favourite=int(author_of[i]) % len(TERMS))
                if len(recent) < 10_000:
                    recent.append(text)
                else:
                    recent[i % 10_000] = text
            when = MONTH_START + timedelta(seconds=int(seconds[i]))
            envelope = _envelope(i, str(2_040_000_000_000_000_000 + i), int(author_of[i]), when, text, rng)
            out.write(json.dumps(envelope, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path.stat().st_size


def design_file(folder: Path) -> Path:
    path = folder / f"{DESIGN}.yaml"
    terms = "\n".join(f"- '{json.dumps(t, ensure_ascii=False)}'" if " " in t else f"- {t}" for t in TERMS)
    path.write_text(
        f"slug: {DESIGN}\nname: Benchmark\nowner: bench@example.dk\ndefault_tier: free\nlanguage: da\n"
        f"country: dk\nactive: true\nterms:\n{terms}\narenas:\n  file_import:\n    enabled: true\n",
        encoding="utf-8",
    )
    return path


# --- the child: the run, as observatory run runs it ---------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(output: Path) -> None:
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), _rss_mb()))
            time.sleep(RSS_SAMPLE_SECONDS)

    threading.Thread(target=sample, daemon=True).start()
    from observatory_pipelines.definitions import defs
    from observatory_pipelines.defs import local_run
    from observatory_pipelines.defs.resources import for_this_process

    url = database.resolve_url()
    instance = local_run.project_instance(url)
    resources = for_this_process(url, SALT)
    started = time.time()
    report = local_run.materialize_corpus(
        MONTH, DESIGN, instance=instance, defs=defs, resources=resources, arenas=["file_import"]
    )
    total = time.time() - started
    done.set()
    steps = []
    for run_id in report.run_ids:
        for stat in instance.get_run_step_stats(run_id):
            if stat.start_time is None or stat.end_time is None:
                continue
            window = [rss for at, rss in samples if stat.start_time <= at <= stat.end_time]
            steps.append(
                {
                    "step": stat.step_key,
                    "status": stat.status.value if stat.status else None,
                    "start": stat.start_time,
                    "seconds": round(stat.end_time - stat.start_time, 2),
                    "peak_rss_mb": round(max(window), 1) if window else None,
                }
            )
    output.write_text(
        json.dumps(
            {
                "total_s": round(total, 2),
                "steps": sorted(steps, key=lambda s: s["start"]),
                "failed": [{"asset": a.asset, "error": a.error} for a in report.failed],
                "metadata": {a.asset: {k: str(v)[:200] for k, v in a.metadata.items()} for a in report.assets},
                "peak_rss_mb": round(peak_rss_mb(), 1),
            },
            default=str,
        )
    )


def run_child(env: dict[str, str], output: Path) -> dict:
    """The run in a fresh process, and what it reported."""
    returncode = subprocess.run([sys.executable, "-m", "bench.e2e", "--child", str(output)], env=env).returncode
    if returncode != 0:
        raise SystemExit(f"the run's process exited with {returncode}")
    return json.loads(output.read_text())


# --- the limits ------------------------------------------------------------------------------------------------


def copy_limits(engine: sa.Engine, dump: Path) -> dict:
    """Raw indexed COPY of the stored rows, and ``COPY TO STDOUT`` of them, on this server now."""
    columns = ", ".join(records.COLUMNS)
    t: dict = {}
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        with common.timed(t, "copy_to_stdout_s"), open(dump, "wb") as out:
            with cur.copy(f"COPY (SELECT {columns} FROM content_records) TO STDOUT") as copy:
                for chunk in copy:
                    out.write(chunk)
    t["rows"] = _count(engine)
    common.truncate_content(engine)
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        with common.timed(t, "raw_copy_s"), open(dump, "rb") as source:
            with cur.copy(f"COPY content_records ({columns}) FROM STDIN") as copy:
                while chunk := source.read(COPY_CHUNK):
                    copy.write(chunk)
    if _count(engine) != t["rows"]:
        raise SystemExit("raw COPY did not load the rows it was given")
    dump.unlink()
    return t


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM content_records")).scalar_one()


def export_sizes(home: Path) -> dict[str, int]:
    return {
        path.name: path.stat().st_size
        for path in sorted(home.rglob("*"))
        if path.is_file() and "exports" in path.parts and DESIGN in path.parts
    }


def _step_kind(step: str) -> str:
    return step.split(".")[-1]


def measure(n: int, template: bool, scratch: Path) -> dict:
    name = os.environ.get("BENCH_DATABASE") or "observatory_bench_e2e"
    url = common.bench_database(name)
    # Dagster's runs and events in a database of their own beside it, fresh each time.
    dagster_url = database.psycopg2_url(common.bench_database(f"{name}_dagster", migrated=False))
    home = scratch / f"home-{n}"
    shutil.rmtree(home, ignore_errors=True)
    imports = home / "imports" / DESIGN
    imports.mkdir(parents=True)
    generated = time.perf_counter()
    size = write_export(imports / "zeeschuimer-export-twitter.com-2026-03-31.ndjson", n, template)
    generated = time.perf_counter() - generated
    engine = database.make_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (email, display_name) VALUES ('bench@example.dk', 'Bench')"))
    from observatory_pipelines.core.collection.design_files import apply

    apply.apply_design_files(engine, design_file(home), "bench")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DAGSTER_POSTGRES_URL": dagster_url,
        "OBSERVATORY_HOME": str(home),
        "OBSERVATORY_IMPORT_DIR": str(home / "imports"),
        "PSEUDONYMIZATION_SALT": SALT,
    }
    for variable in ("DAGSTER_HOME", "MINIO_ENDPOINT", "OBSERVATORY_STORAGE_DIR", "OBSERVATORY_ANALYSIS_DIR"):
        env.pop(variable, None)
    result = run_child(env, scratch / f"run-{n}.json")
    limits = copy_limits(engine, scratch / f"dump-{n}.copy")
    engine.dispose()
    steps = result["steps"]
    collection = next(s for s in steps if "file_import" in s["step"])
    figures = {
        "records": n,
        "template": template,
        "input_bytes": size,
        "generate_s": round(generated, 1),
        "total_s": result["total_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "steps": steps,
        "failed": result["failed"],
        "metadata": result["metadata"],
        "exports": export_sizes(home),
        **limits,
        "import_s": collection["seconds"],
        "import_vs_raw_copy": round(limits["raw_copy_s"] / collection["seconds"], 3),
    }
    shutil.rmtree(home, ignore_errors=True)
    return figures


def print_size(f: dict) -> None:
    n = f["records"]
    print(f"\n{n:,} records ({f['input_bytes'] / 2**20:,.0f} MB input{', templated' if f['template'] else ''})")
    for step in f["steps"]:
        print(f"  {_step_kind(step['step']):<45} {step['seconds']:>8.1f} s  peak {step['peak_rss_mb'] or 0:>7.0f} MB")
    print(f"  {'total':<45} {f['total_s']:>8.1f} s  peak {f['peak_rss_mb']:>7.0f} MB (the run's process)")
    print(
        f"  import {f['import_s']:.1f} s vs raw indexed COPY {f['raw_copy_s']:.1f} s: "
        f"{f['import_vs_raw_copy']:.2f} × raw COPY; COPY TO STDOUT {f['copy_to_stdout_s']:.1f} s"
    )
    for name, size in f["exports"].items():
        over = "  (over the 50 MB a network file may have)" if name.endswith(".gexf") and size > 50 * 2**20 else ""
        print(f"  export {name:<40} {size / 2**20:>9.1f} MB{over}")
    for failure in f["failed"]:
        print(f"  FAILED {failure['asset']}: {failure['error']}")


def run(sizes: list[int], template: bool) -> dict:
    report: dict = {"environment": common.environment(), "template": template, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:
        previous = None
        for n in sizes:
            figures = measure(n, template, Path(scratch))
            if previous:
                ratio = n / previous["records"]
                figures["growth_total"] = round(figures["total_s"] / previous["total_s"] / ratio, 2)
                figures["growth_peak_rss"] = round(figures["peak_rss_mb"] / previous["peak_rss_mb"], 2)
            report["sizes"][n] = figures
            print_size(figures)
            if "growth_total" in figures:
                print(
                    f"  growth from {previous['records']:,}: total {figures['growth_total']:.2f} "
                    f"(time ratio / size ratio), peak RSS × {figures['growth_peak_rss']:.2f}"
                )
            previous = figures
    print(f"saved {common.save('e2e-template' if template else 'e2e', report)}")
    return report


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]))
        return
    parser = common.size_parser(__doc__, [100_000, 300_000, 1_000_000])
    parser.add_argument("--template", action="store_true", help="every post from one ~50-word vocabulary")
    args = parser.parse_args()
    run(args.sizes, args.template)


if __name__ == "__main__":
    main()
