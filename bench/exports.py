"""Export benchmark: each content format of one month against the database's own COPY of the rows.

    .venv/bin/python -m bench.exports [--sizes 100000 1000000] [--repeats 3]

For each size, one month of synthetic X posts (``common.synthetic_rows``: 45 Danish words, given
punctuation, quotes, line breaks, ``&``, hashtags and emoji as posts have; 3% marked as duplicates
in ``raw_metadata``, which the default export leaves out) is loaded into the real content_records
(raw COPY, untimed, then VACUUM ANALYZE). Then, interleaved so every path sees the same load on the
shared machine, and the fastest of ``--repeats`` runs kept:

- limit: ``COPY (<the CSV export's SELECT>) TO STDOUT WITH (FORMAT csv, HEADER true)``, every
  chunk read and written to /dev/null: the same rows, expressions, filter and order as the CSV
  export, built by ``exports._select``;
- ours: the real writers (``write_csv``, ``write_ndjson``, ``write_parquet``, ``write_xlsx``) into
  a temporary folder. Their time includes the SHA-256 of the finished file (part of the real path,
  timed separately as well) and excludes imports and the first connection.

Every run happens in a fresh Python process, which reports its peak resident memory (``VmHWM``
of /proc/self/status; ``ru_maxrss`` would not do: Linux carries the parent's high-water mark over
fork and exec, so every child would report at least this process's size). A process that only
imports the modules and connects gives the baseline. The PostgreSQL backend's memory (the sort) is
not in these figures.

Targets (issue 5): CSV, NDJSON and Parquet ≥ 0.5 × the limit; XLSX ≥ 20,000 rows/s;
peak memory < 600 MB for any format.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from bench import common
from bench.rss import peak_rss_mb
from observatory_pipelines.core.collection.designs import Corpus, find_corpus
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.core.platform import database, months

# ``common`` and ``ingest`` (migrations, the text helpers) are imported where they are used, so the
# processes that measure one export hold only what a real export process holds.

MONTH = "2026-03"
MONTH_START = datetime(2026, 3, 1, tzinfo=timezone.utc)
SLUG = "bench"
DUPLICATE_SHARE = 0.03
FORMATS = ("csv", "ndjson", "parquet", "xlsx")
TARGET_RATIO = 0.5
TARGET_XLSX_ROWS_PER_S = 20_000
TARGET_PEAK_MB = 600
WARM_UP_ROWS = 5_000
SMALL, SMALL_REPEATS = 200_000, 5
_URL_VARIABLE = "BENCH_EXPORTS_DATABASE_URL"


# --- the corpus --------------------------------------------------------------------------------


def post_text(words: str, rng: random.Random) -> str:
    """The 45 words as a post: sentences, commas, and sometimes the characters that make CSV quote
    and XML escape (quotes, line breaks, ``&``, ``<``), hashtags and emoji."""
    tokens = words.split()
    out, sentence_start = [], True
    for i, token in enumerate(tokens):
        out.append(token.capitalize() if sentence_start else token)
        sentence_start = False
        if i < len(tokens) - 1:
            if rng.random() < 0.08:
                out[-1] += "."
                sentence_start = True
            elif rng.random() < 0.06:
                out[-1] += ","
    body = " ".join(out) + "."
    if rng.random() < 0.10:
        body += ' "Det er helt urimeligt," siger ministeren.'
    if rng.random() < 0.05:
        body = body.replace(". ", ".\n", 1)
    if rng.random() < 0.03:
        body += " Klima & miljø <3"
    if rng.random() < 0.20:
        body += " #dkpol #klima"
    if rng.random() < 0.10:
        body += " 🌍💚"
    return body


def corpus_rows(n: int, design_id: uuid.UUID, run_id: uuid.UUID, seed: int = 7) -> list[tuple]:
    from bench import common

    rows = common.synthetic_rows(n, design_id, run_id, MONTH_START, seed=seed)
    rng = random.Random(seed)
    for i, row in enumerate(rows):
        metadata = json.loads(row[23])
        if rng.random() < DUPLICATE_SHARE:
            metadata["duplicate_of"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        rows[i] = (*row[:6], post_text(row[6], rng), *row[7:23], json.dumps(metadata), *row[24:])
    return rows


def load(engine: sa.Engine, rows: list[tuple]) -> dict:
    from bench import common
    from bench.ingest import raw_copy

    common.truncate_content(engine)
    raw_copy(engine, rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE content_records"))
        return dict(
            conn.execute(
                sa.text(
                    "SELECT count(*) AS records, count(*) FILTER (WHERE raw_metadata ? 'duplicate_of') AS duplicates, "
                    "round(avg(length(text_content))) AS avg_text_chars, "
                    "pg_total_relation_size(CAST(:partition AS regclass)) AS partition_bytes FROM content_records"
                ),
                {"partition": months.partition_name(MONTH)},
            )
            .mappings()
            .one()
        )


# --- one measured run, in a fresh process ------------------------------------------------------


def limit_statement(corpus: Corpus) -> tuple[str, tuple]:
    options = exports.ExportOptions()
    sql, params = exports._select(corpus, options, [f"{c.sql} AS {c.name}" for c in options.columns()])
    return f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", params


def child(task: str, url: str, folder: str) -> dict:
    """Run ``task`` (baseline, limit or a format) once in this process; its figures."""
    import openpyxl  # noqa: F401  (write_xlsx imports it lazily; load it before the clock starts)

    engine = database.make_engine(url)
    with engine.connect() as conn:  # also opens the pooled connection
        corpus = find_corpus(conn, SLUG, MONTH)
    result: dict = {"task": task}
    if task == "limit":
        statement, params = limit_statement(corpus)
        size = 0
        start = time.perf_counter()
        with exports._cursor(engine) as cur, open("/dev/null", "wb") as sink:
            # The same read-only, UTC transaction as the writers' COPY.
            with cur.copy(statement, params) as copy:
                for chunk in copy:
                    sink.write(chunk)
                    size += len(chunk)
            rows = cur.rowcount
        result.update(seconds=time.perf_counter() - start, rows=rows, bytes=size)
    elif task in exports.WRITERS:
        from observatory_pipelines.core.exports import layout as export_layout

        path = Path(folder) / export_layout.content_file(task).filename
        start = time.perf_counter()
        written = exports.WRITERS[task](engine, corpus, path)
        result.update(
            seconds=time.perf_counter() - start, rows=written.rows, bytes=written.size, details=written.details
        )
        start = time.perf_counter()
        exports.sha256_of(path)  # the file is in the page cache, as it is when the writer hashes it
        result["sha256_s"] = time.perf_counter() - start
        path.unlink()
    engine.dispose()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_child(task: str, url: str, folder: str) -> dict:
    return common.run_child("bench.exports", [task, folder], _URL_VARIABLE, url, f"{task} run")


# --- the benchmark -----------------------------------------------------------------------------


def measure(url: str, folder: str, repeats: int) -> dict:
    tasks = ("limit", *FORMATS)
    runs: dict[str, list[dict]] = {t: [] for t in tasks}
    run_child("limit", url, folder)  # untimed: warms the caches for every path alike
    for _ in range(repeats):
        for task in tasks:
            runs[task].append(run_child(task, url, folder))
    baseline = max(run_child("baseline", url, folder)["peak_rss_mb"] for _ in range(2))
    out: dict = {"baseline_rss_mb": round(baseline, 1)}
    for task, results in runs.items():
        best = min(results, key=lambda r: r["seconds"])
        rows = {r["rows"] for r in results}
        peak = max(r["peak_rss_mb"] for r in results)  # the worst run: the target is a ceiling
        figures = {
            "seconds": round(best["seconds"], 3),
            "all_seconds": [round(r["seconds"], 3) for r in results],
            "all_peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in results],
            "rows": rows.pop() if len(rows) == 1 else sorted(rows),
            "rows_per_s": round(best["rows"] / best["seconds"]),
            "size_mb": round(best["bytes"] / 1e6, 1),
            "peak_rss_mb": round(peak, 1),
            "peak_rss_above_baseline_mb": round(peak - baseline, 1),
        }
        if "sha256_s" in best:
            figures["sha256_s"] = round(min(r["sha256_s"] for r in results), 3)
        if best.get("details"):
            figures["details"] = best["details"]
        out[task] = figures
    limit = out["limit"]["seconds"]
    for fmt in FORMATS:
        out[fmt]["ratio_vs_limit"] = round(limit / out[fmt]["seconds"], 3)
    out["targets"] = {
        **{
            f"{fmt}_ratio_ge_{TARGET_RATIO}": out[fmt]["ratio_vs_limit"] >= TARGET_RATIO
            for fmt in ("csv", "ndjson", "parquet")
        },
        f"xlsx_ge_{TARGET_XLSX_ROWS_PER_S}_rows_per_s": out["xlsx"]["rows_per_s"] >= TARGET_XLSX_ROWS_PER_S,
        **{f"{fmt}_peak_lt_{TARGET_PEAK_MB}_mb": out[fmt]["peak_rss_mb"] < TARGET_PEAK_MB for fmt in FORMATS},
    }
    return out


def print_table(n: int, loaded: dict, f: dict) -> None:
    print(
        f"\n{n:,} records loaded ({loaded['duplicates']:,} duplicates, {f['limit']['rows']:,} exported, "
        f"{loaded['avg_text_chars']} characters of text on average, partition "
        f"{loaded['partition_bytes'] / 1e6:,.0f} MB); baseline process {f['baseline_rss_mb']} MB; fastest of "
        f"{len(f['limit']['all_seconds'])}; load average {f['load_average_before_after'][0]} → "
        f"{f['load_average_before_after'][1]}",
        flush=True,
    )
    print(
        f"{'path':<8} {'seconds':>8} {'rows/s':>9} {'× limit':>8} {'peak MB':>8} {'above base':>10} "
        f"{'file MB':>8} {'sha256 s':>8}"
    )
    for task in ("limit", *FORMATS):
        r = f[task]
        ratio = f"{r['ratio_vs_limit']:.2f}" if "ratio_vs_limit" in r else "1"
        print(
            f"{task:<8} {r['seconds']:>8.2f} {r['rows_per_s']:>9,} {ratio:>8} {r['peak_rss_mb']:>8.0f} "
            f"{r['peak_rss_above_baseline_mb']:>10.0f} {r['size_mb']:>8.1f} {r.get('sha256_s', 0):>8.2f}"
        )
    print("targets: " + ", ".join(f"{k} {'holds' if v else 'FAILS'}" for k, v in f["targets"].items()), flush=True)


def run(sizes: list[int], repeats: int) -> dict:
    from bench import common

    url = common.bench_database()
    engine = database.make_engine(url)
    design_id, run_id = common.make_design(engine)
    with engine.begin() as conn:
        # No export reads it, and maintaining it is most of the load time (see docs/benchmarks.md).
        conn.execute(sa.text("DROP INDEX idx_content_fulltext"))
    report = {"benchmark": "exports", "environment": common.environment(), "repeats": repeats, "sizes": {}}
    started = time.perf_counter()
    base = corpus_rows(max(sizes), design_id, run_id)
    print(f"generated {len(base):,} rows in {time.perf_counter() - started:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as folder:
        load(engine, base[:WARM_UP_ROWS])
        for task in ("limit", *FORMATS):  # one untimed pass: first-use costs of server and files
            run_child(task, url, folder)
        for n in sizes:
            started = time.perf_counter()
            loaded = load(engine, base[:n])
            print(f"loaded {n:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
            load_before = os.getloadavg()
            # Small sizes are cheap to repeat, and their sub-second figures need it most.
            figures = measure(url, folder, repeats if n > SMALL else max(repeats, SMALL_REPEATS))
            figures["loaded"] = loaded
            figures["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
            report["sizes"][n] = figures
            print_table(n, loaded, figures)
    return common.finish("exports", report, engine)


def main() -> None:
    from bench import common

    parser = common.size_parser(__doc__, [100_000, 1_000_000])
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help=f"runs of each path, the fastest kept (at least {SMALL_REPEATS} up to {SMALL:,} rows)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, folder = json.loads(args.child)
        print(json.dumps(child(task, os.environ[_URL_VARIABLE], folder)))
        return
    run(args.sizes, args.repeats)


if __name__ == "__main__":
    main()
