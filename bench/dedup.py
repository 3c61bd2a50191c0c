"""Dedup benchmark: the real pass over one month's corpus against the machine's read limit.

    .venv/bin/python -m bench.dedup [--sizes 100000 300000 1000000] [--template]

For each size, a synthetic corpus of one month goes into content_records (raw COPY, untimed):
20% RSS articles and 80% X posts with Danish-like text (stop words first, then a Zipf-distributed
vocabulary: SimHash bits are biased as on real text, which the uniform-random texts of
``common.synthetic_rows`` are not), plus planted duplicates of earlier records, 3% of the rows
each: exact copies on TikTok, near copies on X (one word replaced; only copies that really land
within 3 bits count as planted), and X posts sharing an article's link with ``www.``, tracking
parameters or a trailing slash added.

Timed, in the same run and on the same rows:
- limit: ``core.corpus.load_corpus`` of the columns dedup reads (the read limit);
- ours: ``core.dedup.run_dedup`` (load, group, mark), then again (the idempotent re-run: no row
  changes);
- write limit: one plain ``UPDATE ... SET raw_metadata = raw_metadata || ...`` of the rows the
  pass marked, the least any marking of those rows costs (raw_metadata is GIN-indexed, so every
  update rewrites all the row's index entries, the Danish full-text one included).
Reported: seconds, rows/s, the ratios to both limits, the growth between sizes (time ratio over
size ratio: 1.0 is linear) in total and per phase, and how many planted pairs ended in one group.
Target (issue 4): 1M rows within 60 s on 2 cores, growing no faster than linearly.

``--template``: every post is 45 words drawn from one small vocabulary, as a bot campaign's are
(SimHashes crowd together). The pass must finish with its peak memory under 2 GB and report what
its bounds left out (issue 16). The peak is the pass's own: it runs in a child process, which reads
its VmHWM (ru_maxrss would report this process too, as Linux keeps it across exec).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import sqlalchemy as sa

from bench import common
from bench.ingest import raw_copy
from bench.rss import peak_rss_mb
from observatory_pipelines.core.analysis import corpus
from observatory_pipelines.core.collection import privacy, text
from observatory_pipelines.core.platform import database, months
from observatory_pipelines.core.processing import dedup

MONTH = "2026-03"
MONTH_START = datetime(2026, 3, 1, tzinfo=timezone.utc)
PLANTED_SHARE = 0.03  # of the rows, for each kind
ARTICLE_SHARE = 0.2
STOP_WORDS = (
    "og i at det en den til er som på de med han af for ikke der var mig sig men et har om vi min havde "
    "ham hun nu over da fra du ud sin dem os op man hans hvor eller hvad skal selv her alle vil blev kunne "
    "ind når være dog noget ville jo deres efter ned skulle denne end dette mit også under have dig anden"
).split()
VOCABULARY_SIZE = 50_000
#: A bot campaign's vocabulary (``--template``).
TEMPLATE_WORDS = tuple(
    dict.fromkeys(
        "klima grøn omstilling vindmøller havvind landbruget regeringen skal nu handle for vores børn og "
        "fremtid det er på tide at vi tager ansvar stem på os ved næste valg danmark kan gå forrest med "
        "afgift ny energi til alle".split()
    )
)
ZIPF_EXPONENT = 0.9  # measured: gives the bit bias and pair distances of the demo's Danish texts


class Corpus:
    """Synthetic rows in ``records.COLUMNS`` order, and the planted pairs (platform ids)."""

    def __init__(self, n: int, design_id: uuid.UUID, run_id: uuid.UUID, seed: int = 7, template: bool = False):
        self.rng = np.random.default_rng(seed)
        self.design_id, self.run_id = design_id, run_id
        vocabulary = (
            list(TEMPLATE_WORDS)
            if template
            else STOP_WORDS + common.WORDS + [f"ord{i}" for i in range(VOCABULARY_SIZE)]
        )
        weights = np.ones(len(vocabulary)) if template else 1 / np.arange(1, len(vocabulary) + 1) ** ZIPF_EXPONENT
        self.vocabulary = np.array(vocabulary, dtype=object)
        self.weights = weights / weights.sum()
        self._drawn: list[str] = []
        self._next = 0
        self.rows: list[tuple] = []
        self.planted: dict[str, list[tuple[str, str]]] = {"exact": [], "near": [], "url": []}
        self._build(n)

    def _words(self, count: int) -> list[str]:
        if self._next + count > len(self._drawn):  # weighted draws in bulk: one at a time is far slower
            self._drawn = list(self.vocabulary[self.rng.choice(len(self.vocabulary), size=1_000_000, p=self.weights)])
            self._next = 0
        self._next += count
        return self._drawn[self._next - count : self._next]

    def _row(
        self, i: int, platform: str, body: str, *, url: str, title: str | None = None, links: list[str] | None = None
    ) -> tuple:
        kinds = {
            "rss": ("rss_feeds", "article"),
            "x_twitter": ("file_import", "post"),
            "tiktok": ("file_import", "video"),
        }
        arena, content_type = kinds[platform]
        author = f"user{int(self.rng.integers(max(1, len(self.rows) // 20 + 1)))}"
        published = MONTH_START + timedelta(seconds=int(self.rng.integers(28 * 86400)))
        metadata = {"line": i, **({"links": links} if links else {})}
        return (
            published,
            platform,
            arena,
            f"{platform}-{i}",
            content_type,
            url,
            body,
            title,
            "da",
            MONTH_START + timedelta(days=31),
            author,
            f"Bruger {author}",
            None,
            privacy.pseudonymise(platform, author, b"benchmark-salt-not-secret"),
            None,
            None,
            None,
            None,
            None,
            self.run_id,
            self.design_id,
            [],
            "free",
            json.dumps(metadata),
            [],
            text.content_hash(body),
            text.simhash(body),
        )

    def _build(self, n: int) -> None:
        planted = int(n * PLANTED_SHARE)
        plan = ["exact"] * planted + ["near"] * planted + ["url"] * planted
        plan += ["base"] * (n - len(plan))
        # Plants come after the first 10% so they always have earlier records to copy.
        head = max(1, n // 10)
        order = ["base"] * head + list(self.rng.permutation(np.array(plan[: n - head], dtype=object)))
        articles: list[int] = []
        for i, kind in enumerate(order):
            if kind == "base" or not self.rows:
                if self.rng.random() < ARTICLE_SHARE:
                    url = f"https://nyheder{i % 40}.example.dk/indland/2026/03/artikel-{i}"
                    self.rows.append(
                        self._row(
                            i,
                            "rss",
                            " ".join(self._words(int(self.rng.integers(20, 70)))),
                            url=url,
                            title=f"Overskrift {i}",
                        )
                    )
                    articles.append(len(self.rows) - 1)
                else:
                    self.rows.append(
                        self._row(
                            i,
                            "x_twitter",
                            " ".join(self._words(int(self.rng.integers(20, 70)))),
                            url=f"https://x.com/u/status/{i}",
                        )
                    )
                continue
            source = self.rows[int(self.rng.integers(len(self.rows)))]
            if kind == "exact":
                row = self._row(i, "tiktok", source[6], url=f"https://www.tiktok.com/@u/video/{i}")
            elif kind == "near":
                words = source[6].split()
                position = int(self.rng.integers(len(words)))
                replacement = words[position]
                while replacement == words[position]:  # the same word would make an exact copy
                    replacement = self._words(1)[0]
                words[position] = replacement
                row = self._row(i, "x_twitter", " ".join(words), url=f"https://x.com/u/status/{i}")
                if text.hamming(row[26], source[26]) > dedup.NEAR_MAX_BITS:
                    self.rows.append(row)  # a real edit that moved SimHash too far: not a planted pair
                    continue
            else:
                source = self.rows[articles[int(self.rng.integers(len(articles)))]] if articles else source
                variant = source[5].replace("https://", "https://www.")
                variant += "/?utm_source=twitter&utm_medium=social" if i % 2 else "?fbclid=abc"
                row = self._row(
                    i, "x_twitter", " ".join(self._words(30)), url=f"https://x.com/u/status/{i}", links=[variant]
                )
            self.rows.append(row)
            self.planted[kind].append((source[3], row[3]))


def recall(engine: sa.Engine, design_id: uuid.UUID, planted: dict[str, list[tuple[str, str]]]) -> dict:
    """Per kind: the share of planted pairs whose two records ended in one group."""
    frame = corpus.load_corpus(engine, design_id, MONTH, ["id", "platform_id", "duplicate_of"])
    group_of = dict(
        zip(frame["platform_id"].to_list(), frame.select(pl.coalesce("duplicate_of", "id"))["duplicate_of"].to_list())
    )
    return {
        kind: round(sum(group_of[a] == group_of[b] for a, b in pairs) / len(pairs), 4) if pairs else None
        for kind, pairs in planted.items()
    }


def touch_marked_rows(engine: sa.Engine, design_id: uuid.UUID) -> int:
    start, end = months.month_bounds(MONTH)
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "UPDATE content_records SET raw_metadata = raw_metadata || '{\"bench_touched\": true}' "
                "WHERE query_design_id = :d AND published_at >= :s AND published_at < :e "
                "AND raw_metadata ? 'duplicate_of'"
            ),
            {"d": design_id, "s": start, "e": end},
        ).rowcount


def _growth(now: float, before: float, size_ratio: float) -> float:
    return round(now / before / size_ratio, 2)


def _dedup_in_child(url: str, design: uuid.UUID, queue) -> None:
    import time

    engine = database.make_engine(url)
    started = time.perf_counter()
    result = dedup.run_dedup(engine, design, MONTH)
    elapsed = time.perf_counter() - started
    engine.dispose()
    queue.put((result, int(peak_rss_mb() * 2**20), elapsed))


def dedup_peak(url: str, design: uuid.UUID) -> tuple[dedup.DedupResult, int, float]:
    """``run_dedup`` in a fresh process: its result, that process's own peak RSS in bytes, and
    the seconds the pass took there (the process's start-up is not the pass's)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_dedup_in_child, args=(url, design, queue))
    child.start()
    result, peak, elapsed = queue.get()
    child.join()
    return result, peak, elapsed


def run(sizes: list[int], template: bool = False) -> dict:
    url = common.bench_database(os.environ.get("BENCH_DATABASE") or "observatory_bench_dedup")
    engine = database.make_engine(url)
    design, run_id = common.make_design(engine)
    report = {"benchmark": "dedup", "template": template, "environment": common.environment(), "sizes": {}}
    previous: dict | None = None
    for n in sizes:
        synthetic = Corpus(n, design, run_id, template=template)
        common.truncate_content(engine)
        raw_copy(engine, synthetic.rows)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE content_records"))
        t: dict = {}
        corpus.load_corpus(engine, design, MONTH, dedup.CORPUS_COLUMNS)  # warm the cache for both
        with common.timed(t, "load_corpus_s"):
            corpus.load_corpus(engine, design, MONTH, dedup.CORPUS_COLUMNS)
        first, peak, elapsed = dedup_peak(url, design)
        t["dedup_s"] = round(elapsed, 3)
        with common.timed(t, "dedup_rerun_s"):
            rerun = dedup.run_dedup(engine, design, MONTH)
        with common.timed(t, "write_limit_s"):
            touched = touch_marked_rows(engine, design)
        figures = {
            **t,
            "rows": n,
            "phases_s": first.seconds,
            "rerun_phases_s": rerun.seconds,
            "dedup_rows_per_s": round(n / t["dedup_s"]),
            "ratio_vs_load_corpus": round(t["dedup_s"] / t["load_corpus_s"], 2),
            "rerun_ratio_vs_load_corpus": round(t["dedup_rerun_s"] / t["load_corpus_s"], 2),
            "write_limit_rows": touched,
            "mark_ratio_vs_write_limit": round(first.seconds["mark"] / t["write_limit_s"], 2),
            "planted_pairs": {k: len(v) for k, v in synthetic.planted.items()},
            "planted_pairs_grouped": recall(engine, design, synthetic.planted),
            "groups": first.groups,
            "groups_by_kind": first.groups_by_kind,
            "records_marked": first.duplicates,
            "rows_written": first.marked,
            "rerun_rows_written": rerun.marked + rerun.unmarked,
            "near_buckets_skipped": first.near_scan.buckets_skipped,
            "near_candidates_checked": first.near_scan.candidates,
            "near_candidates_skipped": first.near_scan.candidates_skipped,
            "dedup_peak_rss_mb": round(peak / 2**20),
        }
        if previous:
            size_ratio = n / previous["rows"]
            figures["growth_per_size_vs_previous"] = {
                "total": _growth(t["dedup_s"], previous["dedup_s"], size_ratio),
                **{
                    phase: _growth(first.seconds[phase], previous["phases_s"][phase], size_ratio)
                    for phase in first.seconds
                },
                "write_limit": _growth(t["write_limit_s"], previous["write_limit_s"], size_ratio),
            }
        previous = figures
        report["sizes"][n] = figures
        growth = figures.get("growth_per_size_vs_previous")
        print(
            f"{n:>9} rows: dedup {t['dedup_s']:.1f} s ({figures['dedup_rows_per_s']:,} rows/s; "
            f"load {first.seconds['load']:.1f} + group {first.seconds['group']:.1f} + mark {first.seconds['mark']:.1f}), "
            f"{figures['ratio_vs_load_corpus']:.1f} × load_corpus ({t['load_corpus_s']:.2f} s); "
            f"re-run {t['dedup_rerun_s']:.1f} s writing {figures['rerun_rows_written']} rows; "
            f"{first.duplicates:,} marked, mark {figures['mark_ratio_vs_write_limit']:.2f} × plain UPDATE of those rows "
            f"({t['write_limit_s']:.1f} s); planted pairs grouped {figures['planted_pairs_grouped']}; "
            f"peak RSS {figures['dedup_peak_rss_mb']} MB; near candidates checked {first.near_scan.candidates:,}, "
            f"left out {first.near_scan.candidates_skipped:,} (+{first.near_scan.buckets_skipped:,} buckets)"
            + (f"; growth per size {growth}" if growth else ""),
            flush=True,
        )
    return common.finish("dedup", report, engine)


def main() -> None:
    parser = common.size_parser(__doc__, [100_000, 300_000, 1_000_000])
    parser.add_argument("--template", action="store_true", help="posts drawn from one 38-word vocabulary")
    args = parser.parse_args()
    run(args.sizes, template=args.template)


if __name__ == "__main__":
    main()
