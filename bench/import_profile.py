"""Where the file import's time goes: ``collect_arena`` over a Zeeschuimer export under cProfile.

    .venv/bin/python -m bench.import_profile [--sizes 50000]

The export is ``bench.e2e``'s (the same generator, the same design); the collection is the real
one (``core.collection.run.collect_arena``, as the Dagster asset calls it) into the indexed,
partitioned table. Reported: the share of the profiled time in each part of the path, by the
cumulative time of the functions that make it up (a part's callees are inside it, so reading
includes mapping, and preparing includes fingerprints, terms and the metadata JSON). cProfile
inflates many small calls more than few large ones, so the shares say where to look, not what a
change will save: that is what ``bench.e2e`` measures.
"""

from __future__ import annotations

import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench import common, e2e
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.design_files import apply
from observatory_pipelines.core.platform import database

#: Part of the import → (file suffix, function name) whose cumulative time is that part's.
PARTS = {
    "read lines, decode JSON, map (file_import arena)": ("file_import/arena.py", "collect"),
    "  json.loads": ("json/__init__.py", "loads"),
    "  map the X object (from_zeeschuimer)": ("file_import/mappers.py", "from_zeeschuimer"),
    "records.prepare": ("collection/records.py", "prepare"),
    "  fingerprints (content hash, SimHash)": ("collection/text.py", "fingerprints"),
    "  term matching": ("collection/terms.py", "match"),
    "  metadata JSON": ("collection/records.py", "_metadata_json"),
    "  pseudonymise": ("collection/privacy.py", "pseudonymise"),
    "waiting for the writer thread (flush)": ("collection/ingest.py", "flush"),
}


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(
        entry[3]
        for (path, _, function), entry in stats.stats.items()  # type: ignore[attr-defined]
        if function == name and path.endswith(suffix)
    )


def profile(n: int) -> dict:
    url = common.bench_database(None)
    engine = database.make_engine(url)
    scratch = Path(tempfile.mkdtemp(prefix="bench-import-profile-"))
    try:
        folder = scratch / "imports" / e2e.DESIGN
        folder.mkdir(parents=True)
        e2e.write_export(folder / "zeeschuimer-export-twitter.com.ndjson", n, template=False)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO users (email, display_name) VALUES ('bench@example.dk', 'Bench')"))
        apply.apply_design_files(engine, e2e.design_file(scratch), "bench")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        outcome = collection.collect_arena(
            engine,
            design_slug=e2e.DESIGN,
            month=e2e.MONTH,
            arena_name="file_import",
            dagster_run_id="profile",
            salt=e2e.SALT,
            import_dir=str(scratch / "imports"),
        )
        profiler.disable()
        wall = time.perf_counter() - started
    finally:
        engine.dispose()
        shutil.rmtree(scratch, ignore_errors=True)
    stats = pstats.Stats(profiler)
    total = _cumulative(stats, "collection/run.py", "collect_arena")
    parts = {part: round(_cumulative(stats, *where) / total, 3) for part, where in PARTS.items()}
    print(f"{n:,} records: {outcome.message}; {wall:.1f} s under the profiler")
    for part, share in parts.items():
        print(f"  {part:<52} {share:>6.1%}")
    return {"records": n, "profiled_s": round(wall, 1), "shares": parts}


def main() -> None:
    args = common.size_parser(__doc__, [50_000]).parse_args()
    report = {"environment": common.environment(), "sizes": {n: profile(n) for n in args.sizes}}
    print(f"saved {common.save('import-profile', report)}")


if __name__ == "__main__":
    main()
