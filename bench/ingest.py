"""Ingest benchmark: the real write path against the machine's limit.

    .venv/bin/python -m bench.ingest [--sizes 100000 1000000] [--shape x|social]

``--shape x`` (the default): X posts of 45 Danish words with little metadata. ``--shape social``:
posts of the social arenas (Bluesky, Mastodon, Reddit, YouTube, Telegram mixed), shorter text and
richer ``raw_metadata`` (interactions, platform fields) and media URLs, built by ``records.prepare``.

For each size, the same synthetic rows go into the same indexed, partitioned content_records:
- limit: raw ``COPY content_records (...) FROM STDIN``;
- ours: ``core.ingest.write_batch`` in collection-sized batches (COPY to staging, register the
  items, INSERT ... ON CONFLICT), then again over the same rows (the idempotent re-run: nothing
  changes), then again with every date moved an hour (each row notes the reported date; still one
  row per item);
- baselines, on a sample: row-by-row ``INSERT`` (one statement per row) in one transaction, and
  committed per row (what a naive per-record collector does).
Targets (issue 3): ours ≥ 0.8 × raw COPY; ours ≥ 10 × row-by-row.

A warm-up load runs first, so neither path pays for cold caches.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from bench import common
from observatory_pipelines.core.collection import ingest, records
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.platform import database

ROW_BY_ROW_SAMPLE = 20_000
AUTOCOMMIT_SAMPLE = 5_000
WARM_UP_ROWS = 20_000


def raw_copy(engine: sa.Engine, rows: list[tuple]) -> None:
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY content_records ({common.COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def our_ingest(engine: sa.Engine, rows: list[tuple]) -> ingest.WriteCounts:
    counts = ingest.WriteCounts()
    for start in range(0, len(rows), collection.BATCH_SIZE):
        counts += ingest.write_batch(engine, rows[start : start + collection.BATCH_SIZE])
    return counts


def row_by_row(engine: sa.Engine, rows: list[tuple], commit_each: bool = False) -> None:
    placeholders = ", ".join(["%s"] * len(records.COLUMNS))
    sql = f"INSERT INTO content_records ({common.COLUMN_LIST}) VALUES ({placeholders})"
    with database.driver_connection(engine, commit=True) as conn, conn.cursor() as cur:
        for row in rows:
            cur.execute(sql, row)
            if commit_each:
                conn.commit()


def run(sizes: list[int], shape: str = "x") -> dict:
    url = common.bench_database()
    engine = database.make_engine(url)
    design, run_id = common.make_design(engine)
    report = {"benchmark": "ingest", "shape": shape, "environment": common.environment(), "sizes": {}}
    month = datetime(2026, 3, 1, tzinfo=timezone.utc)
    warm = common.synthetic_rows(WARM_UP_ROWS, design, run_id, month, seed=1, shape=shape)
    raw_copy(engine, warm)
    our_ingest(engine, warm)
    for n in sizes:
        rows = common.synthetic_rows(n, design, run_id, month, shape=shape)
        t: dict = {}
        common.truncate_content(engine)
        with common.timed(t, "raw_copy_s"):
            raw_copy(engine, rows)
        common.truncate_content(engine)
        with common.timed(t, "ingest_s"):
            first = our_ingest(engine, rows)
        with common.timed(t, "ingest_rerun_s"):
            rerun = our_ingest(engine, rows)
        moved = [(row[0] + timedelta(hours=1), *row[1:]) for row in rows]
        with common.timed(t, "ingest_rerun_moved_dates_s"):
            moved_rerun = our_ingest(engine, moved)
        del moved
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM content_records")).scalar_one()
        sample = rows[: min(ROW_BY_ROW_SAMPLE, n)]
        common.truncate_content(engine)
        with common.timed(t, "row_by_row_sample_s"):
            row_by_row(engine, sample)
        row_by_row_rate = len(sample) / t["row_by_row_sample_s"]
        committed_sample = rows[: min(AUTOCOMMIT_SAMPLE, n)]
        common.truncate_content(engine)
        with common.timed(t, "row_by_row_committed_sample_s"):
            row_by_row(engine, committed_sample, commit_each=True)
        committed_rate = len(committed_sample) / t["row_by_row_committed_sample_s"]
        ingest_rate = n / t["ingest_s"]
        figures = {
            **t,
            "rows": n,
            "shape": shape,
            "mean_text_chars": round(sum(len(row[6] or "") for row in rows) / n),
            "mean_metadata_bytes": round(sum(len(row[23].encode()) for row in rows) / n),
            "stored_after_three_runs": stored,
            "first_run": vars(first),
            "rerun": vars(rerun),
            "rerun_moved_dates": vars(moved_rerun),
            "ingest_rows_per_s": round(ingest_rate),
            "raw_copy_rows_per_s": round(n / t["raw_copy_s"]),
            "row_by_row_rows_per_s": round(row_by_row_rate),
            "row_by_row_committed_rows_per_s": round(committed_rate),
            "ratio_vs_raw_copy": round(t["raw_copy_s"] / t["ingest_s"], 3),
            "ratio_rerun_vs_raw_copy": round(t["raw_copy_s"] / t["ingest_rerun_s"], 3),
            "ratio_rerun_moved_dates_vs_raw_copy": round(t["raw_copy_s"] / t["ingest_rerun_moved_dates_s"], 3),
            "speedup_vs_row_by_row": round(ingest_rate / row_by_row_rate, 1),
            "speedup_vs_row_by_row_committed": round(ingest_rate / committed_rate, 1),
        }
        report["sizes"][n] = figures
        print(
            f"{n:>9} {shape} rows: ingest {figures['ratio_vs_raw_copy']:.2f} × raw COPY "
            f"({figures['ingest_rows_per_s']:,} vs {figures['raw_copy_rows_per_s']:,} rows/s), "
            f"re-run {figures['ratio_rerun_vs_raw_copy']:.2f} × raw COPY, "
            f"re-run with every date moved {figures['ratio_rerun_moved_dates_vs_raw_copy']:.2f} × raw COPY, "
            f"{figures['speedup_vs_row_by_row']:.1f} × row-by-row in one transaction "
            f"({figures['row_by_row_rows_per_s']:,} rows/s), {figures['speedup_vs_row_by_row_committed']:.1f} × "
            f"committed per row ({figures['row_by_row_committed_rows_per_s']:,} rows/s); "
            f"stored {stored:,} after three runs",
            flush=True,
        )
    return common.finish("ingest" if shape == "x" else f"ingest-{shape}", report, engine)


def main() -> None:
    parser = common.size_parser(__doc__, [100_000, 1_000_000])
    parser.add_argument("--shape", choices=common.SHAPES, default="x")
    args = parser.parse_args()
    run(args.sizes, args.shape)


if __name__ == "__main__":
    main()
