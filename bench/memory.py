"""Memory benchmark: the peak resident memory of each step of a corpus's run, one process per step.

    .venv/bin/python -m bench.memory [--sizes 100000 1000000] [--steps STEP ...] [--loaded]

For each size, one month of synthetic records is loaded into the real content_records: the
analysis benchmark's shape (``analysis.shape_rows``: accounts = 5% of the records with long-tailed
activity, five platforms, 1% of the accounts resolved to actors, 0-4 terms per record, 2% marked
as duplicates) over the export benchmark's texts (``exports.corpus_rows``: 45 Danish words with
punctuation, quotes, line breaks, ``&``, hashtags, emoji), and the accounts given Danish names and
handles (``author_names``: common first and last names, so exact and fuzzy name matches happen as
they do in a real month). Then each step's real core function runs in a fresh Python process,
which reports its peak resident memory (``VmHWM``, as ``bench.exports`` measures it):

- ``baseline``: the imports every step makes, and a connection;
- ``load_corpus``: ``corpus.load_corpus`` of the statistics columns (no text);
- ``corpus_statistics``: what the asset does: ``build_statistics``, ``write_statistics``, the chart;
- ``export_csv``, ``export_ndjson``, ``export_parquet``, ``export_xlsx``: the writers, default options;
- ``export_csv_full``: the CSV writer with duplicates and ``raw_metadata`` (the widest rows);
- ``actor_labels``: ``identity.actor_labels``, the GEXF export's labels;
- ``export_manifest``: ``manifest.build_manifest`` against a store holding every file's metadata;
- ``actor_match_suggestions``: ``entities.suggest_matches`` for the month.

The dedup pass and the networks (and the GEXF writer) have their own benchmarks (``bench.dedup``,
``bench.analysis``). Reported per step and size: peak RSS, peak above the baseline, and the growth
of the part above the baseline from the smallest size to each larger one, beside the growth of the
records. PostgreSQL's own memory (sorts, COPY) is not in these figures. ``--loaded`` measures the
corpus an earlier run left in ``BENCH_DATABASE`` again, without loading (after a change to a step).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench import common
from bench.rss import peak_rss_mb
from observatory_pipelines.core.collection.designs import find_corpus
from observatory_pipelines.core.platform import database

MONTH = "2026-03"
SLUG = "bench"
STEPS = (
    "baseline",
    "load_corpus",
    "corpus_statistics",
    "export_csv",
    "export_csv_full",
    "export_ndjson",
    "export_parquet",
    "export_xlsx",
    "actor_labels",
    "export_manifest",
    "actor_match_suggestions",
)
FIRST_NAMES = (
    "Anne Mette Hanne Kirsten Susanne Lene Camilla Ida Sofie Emma Freja Maja Louise Signe Line Julie Marianne "
    "Pia Tina Karen Jens Peter Lars Michael Henrik Søren Thomas Jan Niels Anders Rasmus Mads Mikkel Frederik "
    "Jørgen Ole Bjørn Kåre Æbbe Jesper Morten Martin Christian Kasper Jakob Oliver William Noah Magnus"
).split()
LAST_NAMES = (
    "Jensen Nielsen Hansen Pedersen Andersen Christensen Larsen Sørensen Rasmussen Jørgensen Petersen Madsen "
    "Kristensen Olsen Thomsen Christiansen Poulsen Johansen Møller Mortensen Kjær Kjaer Østergaard Ærø Lund "
    "Holm Bach Dahl Friis Brandt Skov Winther Krog Vestergaard Bøgh Mikkelsen Frandsen Iversen Jakobsen Laursen"
).split()
_URL_VARIABLE = "BENCH_MEMORY_DATABASE_URL"


# --- the corpus --------------------------------------------------------------------------------


def author_names(rows: list[tuple], seed: int = 13) -> list[tuple]:
    """``rows`` with each account's display name a Danish name and, on some platforms, its id a
    handle made of that name (``sofie_kjaer_dk``), the same account keeping the same ones."""
    rng = random.Random(seed)
    named: dict[str, tuple[str, str]] = {}
    out = []
    for row in rows:
        account, platform = row[10], row[1]
        if account not in named:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            name = f"{first} {rng.choice(LAST_NAMES)} {last}" if rng.random() < 0.2 else f"{first} {last}"
            handle = f"{first}_{last}".lower() + rng.choice(("", "", "_dk", str(rng.randrange(100))))
            named[account] = (name, handle if platform in ("x_twitter", "bluesky", "reddit") else account)
        name, handle = named[account]
        out.append((*row[:10], handle, name, *row[12:]))
    return out


def build_rows(n: int, design_id, run_id) -> tuple[list[tuple], list[tuple]]:
    from bench import analysis, exports

    rows, actors = analysis.shape_rows(exports.corpus_rows(n, design_id, run_id), design_id)
    return author_names(rows), actors


def loaded_figures(engine: sa.Engine) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "SELECT count(*) AS records, count(*) FILTER (WHERE raw_metadata ? 'duplicate_of') AS duplicates, "
                    "count(DISTINCT (platform, author_platform_id)) AS accounts, "
                    "round(avg(length(text_content))) AS avg_text_chars FROM content_records"
                )
            )
            .mappings()
            .one()
        )


def stock_store(engine: sa.Engine, folder: str):
    """A local object store holding a tiny file, with real metadata, for every export file of the
    corpus: what ``build_manifest`` reads back."""
    from observatory_pipelines.core.exports import layout as export_layout
    from observatory_pipelines.core.exports import writers as exports
    from observatory_pipelines.core.platform.storage.local import LocalObjectStore

    store = LocalObjectStore(Path(folder) / "objects")
    with engine.connect() as conn:
        corpus = find_corpus(conn, SLUG, MONTH)
    path = Path(folder) / "placeholder"
    path.write_bytes(b"x")
    for file in export_layout.all_files():
        written = exports.WrittenFile(path=path, rows=1, size=1, sha256=exports.sha256_of(path))
        exports.store_file(store, corpus, file, written, exports.ExportOptions())
    return store


# --- one step, in a fresh process --------------------------------------------------------------


def child(step: str, url: str, folder: str) -> dict:
    """Run ``step`` once in this process; its figures."""
    import matplotlib  # noqa: F401  (imported by the statistics step; in the baseline too)
    import openpyxl  # noqa: F401

    from observatory_pipelines.core.analysis import corpus as analysis_corpus
    from observatory_pipelines.core.analysis import statistics as stats
    from observatory_pipelines.core.exports import identity as export_identity
    from observatory_pipelines.core.exports import manifest
    from observatory_pipelines.core.exports import writers as exports
    from observatory_pipelines.core.platform.storage.local import LocalObjectStore
    from observatory_pipelines.core.processing import entities

    os.environ["OBSERVATORY_ANALYSIS_DIR"] = str(Path(folder) / "analysis")
    engine = database.make_engine(url)
    with engine.connect() as conn:
        corpus = find_corpus(conn, SLUG, MONTH)
    result: dict = {"step": step}
    start = time.perf_counter()
    if step == "load_corpus":
        frame = analysis_corpus.load_corpus(engine, corpus.design_id, MONTH, stats.CORPUS_COLUMNS)
        result["rows"] = frame.height
        result["frame_mb"] = round(frame.estimated_size() / 2**20, 1)
    elif step == "corpus_statistics":
        figures = stats.build_statistics(engine, corpus)
        stats.write_statistics(figures, SLUG, MONTH)
        stats.volume_chart_png(figures, MONTH)
        result["rows"] = figures.records
    elif step.startswith("export_") and step != "export_manifest":
        fmt = step.removeprefix("export_").removesuffix("_full")
        options = exports.ExportOptions(include_duplicates=True, include_raw_metadata=True)
        written = exports.WRITERS[fmt](
            engine, corpus, Path(folder) / f"out.{fmt}", options if step.endswith("_full") else exports.ExportOptions()
        )
        result.update(rows=written.rows, file_mb=round(written.size / 1e6, 1))
        written.path.unlink()
    elif step == "actor_labels":
        result["rows"] = export_identity.actor_labels(engine, corpus, export_identity.DEFAULT).height
    elif step == "export_manifest":
        document = manifest.build_manifest(engine, LocalObjectStore(Path(folder) / "objects"), corpus)
        result["rows"] = len(document["files"])
    elif step == "actor_match_suggestions":
        suggested = entities.suggest_matches(engine, MONTH)
        result.update(rows=suggested.authors, suggestions=suggested.total, stored=len(suggested.rows))
    elif step != "baseline":
        raise SystemExit(f"unknown step {step!r}")
    result["seconds"] = round(time.perf_counter() - start, 2)
    engine.dispose()
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def run_child(step: str, url: str, folder: str) -> dict:
    return common.run_child("bench.memory", [step, folder], _URL_VARIABLE, url, step)


# --- the benchmark -----------------------------------------------------------------------------


def measure_steps(url: str, folder: str, steps: list[str], engine: sa.Engine) -> dict:
    """Every step in a process of its own, the baseline first, on the corpus the database holds."""
    loaded = loaded_figures(engine)
    stock_store(engine, folder)
    figures: dict = {"loaded": loaded}
    for step in ("baseline", *[s for s in steps if s != "baseline"]):
        r = figures[step] = run_child(step, url, folder)
        r["above_baseline_mb"] = round(r["peak_rss_mb"] - figures["baseline"]["peak_rss_mb"], 1)
        shown = {k: v for k, v in r.items() if k in ("rows", "file_mb", "frame_mb", "suggestions")}
        print(
            f"  {step:<24} peak {r['peak_rss_mb']:>7.0f} MB, above baseline {r['above_baseline_mb']:>6.0f} MB, "
            f"{r['seconds']:>6.1f} s, {json.dumps(shown)}",
            flush=True,
        )
    return figures


def run(sizes: list[int], steps: list[str], loaded: bool = False) -> dict:
    from bench import analysis, common

    report: dict = {"benchmark": "memory", "environment": common.environment(), "sizes": {}}
    if loaded:  # the corpus a previous run left in BENCH_DATABASE, measured again as it is
        name = os.environ.get("BENCH_DATABASE") or "observatory_bench"
        url = database.with_database(database.resolve_url(), name)
        engine = database.make_engine(url)
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
            figures = measure_steps(url, folder, steps, engine)
        report["sizes"][figures["loaded"]["records"]] = figures
        return common.finish("memory", report, engine)
    url = common.bench_database()
    engine = database.make_engine(url)
    design_id, run_id = common.make_design(engine)
    with engine.begin() as conn:
        # No step here reads it, and maintaining it is most of the load time (see docs/benchmarks.md).
        conn.execute(sa.text("DROP INDEX idx_content_fulltext"))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        for n in sorted(sizes):
            started = time.perf_counter()
            rows, actors = build_rows(n, design_id, run_id)
            analysis.load(engine, rows, actors)
            del rows
            print(f"\n{n:,} records loaded in {time.perf_counter() - started:.0f} s", flush=True)
            report["sizes"][n] = measure_steps(url, folder, steps, engine)
            print(f"  loaded: {report['sizes'][n]['loaded']}", flush=True)
    smallest = min(sizes)
    for n in sizes:
        if n == smallest:
            continue
        growth = {}
        for step in steps:
            if step == "baseline":
                continue
            before = max(report["sizes"][smallest][step]["above_baseline_mb"], 1.0)
            growth[step] = round(report["sizes"][n][step]["above_baseline_mb"] / before, 2)
        report["sizes"][n]["growth_above_baseline_vs_smallest"] = {"records": round(n / smallest, 2), **growth}
        print(f"\ngrowth above baseline {smallest:,} → {n:,} (records × {n / smallest:.0f}):", flush=True)
        for step, ratio in growth.items():
            print(f"  {step:<24} × {ratio}", flush=True)
    return common.finish("memory", report, engine)


def main() -> None:
    from bench import common

    parser = common.size_parser(__doc__, [100_000, 1_000_000])
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS, help="steps to measure")
    parser.add_argument(
        "--loaded", action="store_true", help="measure the corpus BENCH_DATABASE holds from an earlier run, unloaded"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, folder = json.loads(args.child)
        print(json.dumps(child(step, os.environ[_URL_VARIABLE], folder)))
        return
    run(args.sizes, args.steps, args.loaded)


if __name__ == "__main__":
    main()
