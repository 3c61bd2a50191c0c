"""Descriptive statistics of one corpus (query design × month), and the corpus as analysis sees it.

Analysis reads the corpus once, columnar (``core.corpus.corpus_blocks``), and works in polars:

- **Records** are the corpus's rows minus those marked as duplicates (``raw_metadata.duplicate_of``,
  set by the dedup pass): a story copied across arenas counts once.
- **Actors.** An actor is the resolved actor (``author_id``) when entity resolution has linked the
  account, else the account's pseudonymised id (which is per platform). A record without an author
  has no actor. Labels follow the pseudonymisation rule (docs/collection.md): the actor's canonical
  name only for actors flagged as public figures, otherwise the first 12 hex characters of the
  pseudonymised id (for a resolved actor with several accounts, the smallest of them).
- **Engagement** of a record is likes + shares + comments, missing counts taken as 0; a record with
  none of the three (news articles, most feeds) has no engagement and is left out of the
  distribution rather than counted as 0.

Tables (Parquet in the analysis store, ``core.analysis_store``):

- ``volume_daily``: day, arena, records (days without records are absent);
- ``volume_weekly``: week_start (the ISO week's Monday; the month's first and last weeks hold only
  the days inside the month), arena, records;
- ``top_actors``: rank, actor_id, label, is_public_figure, resolved, platforms, records, engagement
  (sum), first_seen, last_seen; the ``TOP_ACTORS`` most active actors (records, then engagement);
- ``top_terms``: rank, term, records, share (of all records), actors;
- ``engagement``: arena (and ``all``), records, records_with_counts, median, p95, mean, max; the
  quantiles interpolate linearly, like PostgreSQL's ``percentile_cont``;
- ``run_summary``: arena (and ``all``), runs, tasks, tasks_completed, tasks_failed, tasks_skipped,
  tasks_open, last_status, last_error, records_stored, duplicates, records_analysed; runs are the
  collection runs of the design whose window starts in the month.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import sqlalchemy as sa

from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.core.analysis.corpus import corpus_blocks, empty_corpus
from observatory_pipelines.core.collection.designs import Corpus
from observatory_pipelines.core.platform import markdown, months

if TYPE_CHECKING:  # polars keeps its type aliases in a private module
    from polars._typing import PolarsDataType

CORPUS_COLUMNS = [
    "id",
    "published_at",
    "platform",
    "arena",
    "author_id",
    "pseudonymized_author_id",
    "likes_count",
    "shares_count",
    "comments_count",
    "search_terms_matched",
    "duplicate_of",
    "is_public_figure",
]
TOP_ACTORS = 100
ALL_ARENAS = "all"
LABEL_HEX_CHARS = 12
TABLES = ("volume_daily", "volume_weekly", "top_actors", "top_terms", "engagement", "run_summary")
VOLUME_CHART = "volume_chart"

_ACTOR_SCHEMA: dict[str, PolarsDataType] = {
    "actor_id": pl.Utf8,
    "label": pl.Utf8,
    "is_public_figure": pl.Boolean,
    "resolved": pl.Boolean,
    "platforms": pl.List(pl.Utf8),
    "accounts": pl.Int64,
    "records": pl.Int64,
    "engagement": pl.Int64,
    "first_seen": pl.Date,
    "last_seen": pl.Date,
}
#: What the statistics are, as users read them (the asset's description and docs/analysis.md).
RULES = f"""Records marked as duplicates by the dedup pass (raw_metadata.duplicate_of) are left out, so a story
copied across arenas counts once. An actor is the resolved actor (author_id) when entity resolution
has linked the account, else the pseudonymised account id; actors are shown by name only when flagged
as public figures, otherwise by the first {LABEL_HEX_CHARS} hex characters of the pseudonymised id.

Tables:
- volume_daily (day, arena, records) and volume_weekly (week_start = the ISO week's Monday, arena,
  records); days and weeks without records are absent; the month's first and last weeks are partial.
- top_actors: the {TOP_ACTORS} most active actors (rank, actor_id, label, is_public_figure, resolved,
  platforms, records, engagement, first_seen, last_seen), by records, then engagement.
- top_terms: every matched term (rank, term, records, share of all records, actors using it).
- engagement, per arena and for all arenas: records, records_with_counts, median, p95, mean, max of
  likes + shares + comments per record (missing counts as 0; records with none of the three, such as
  news articles, are left out of the distribution); quantiles interpolate linearly (percentile_cont).
- run_summary, per arena and for all: collection runs and tasks of the design whose window starts in
  the month (by status: completed, failed, skipped, open; the last status and error), and the
  corpus's records stored, marked as duplicates, and analysed.
- volume_chart.png: records per day (stacked by arena) and per week."""

_TASK_SCHEMA: dict[str, PolarsDataType] = {
    "arena": pl.Utf8,
    "run_id": pl.Utf8,
    "status": pl.Utf8,
    "error_message": pl.Utf8,
    "started_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class AnalysisCorpus:
    """One corpus's records, ready for analysis: duplicates removed, actors and days assigned."""

    slug: str
    month: str
    #: One row per record: id, published_at, day, platform, arena, actor, account, resolved,
    #: is_public_figure, likes_count, shares_count, comments_count, engagement, terms.
    records: pl.DataFrame
    #: arena, duplicates: rows of the corpus marked as duplicates and left out.
    duplicates_by_arena: pl.DataFrame
    #: actor id → canonical name, for the actors flagged as public figures.
    public_names: dict[str, str]

    @property
    def first_day(self) -> date:
        return months.parse_month(self.month)

    @property
    def days_in_month(self) -> int:
        start, end = months.month_bounds(self.month)
        return (end - start).days

    @property
    def duplicates(self) -> int:
        return int(self.duplicates_by_arena["duplicates"].sum())


def load_analysis_corpus(
    engine: sa.Engine, corpus: Corpus, block_bytes: int | None = None, keep: list[str] | None = None
) -> AnalysisCorpus:
    """The corpus as analysis sees it, read in blocks (``corpus.corpus_blocks``; ``block_bytes``
    defaults to ``corpus.COPY_BLOCK_BYTES``): each block is prepared as it arrives, so the read
    columns of the whole month (``duplicate_of`` included) are never held, only the prepared
    records (``keep``: only those of their columns), the duplicates per arena and the public
    figures' ids."""
    prepared: list[AnalysisCorpus] = []
    public_ids: set[str] = set()

    def prepare(block: pl.DataFrame) -> AnalysisCorpus:
        ready = prepare_corpus(block, corpus.slug, corpus.month, {})
        return ready if keep is None else replace(ready, records=ready.records.select(keep))

    for block in corpus_blocks(engine, corpus.design_id, corpus.month, CORPUS_COLUMNS, block_bytes=block_bytes):
        public_ids.update(_public_figure_ids(block))
        prepared.append(prepare(block))
    if not prepared:
        return prepare(empty_corpus(CORPUS_COLUMNS))
    duplicates = (
        pl.concat([p.duplicates_by_arena for p in prepared])
        .group_by("arena")
        .agg(pl.col("duplicates").sum().cast(pl.Int64))
        .sort("arena")
    )
    return AnalysisCorpus(
        slug=corpus.slug,
        month=corpus.month,
        records=pl.concat([p.records for p in prepared], rechunk=False),
        duplicates_by_arena=duplicates,
        public_names=_public_names(engine, sorted(public_ids)),
    )


def _public_figure_ids(frame: pl.DataFrame) -> list[str]:
    return frame.filter(pl.col("is_public_figure"))["author_id"].unique().drop_nulls().to_list()


def public_figure_names(engine: sa.Engine, frame: pl.DataFrame) -> dict[str, str]:
    """Canonical names of the public-figure actors among ``frame``'s authors."""
    return _public_names(engine, _public_figure_ids(frame))


def _public_names(engine: sa.Engine, actor_ids: list[str]) -> dict[str, str]:
    if not actor_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id::text, canonical_name FROM actors WHERE is_public_figure AND id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": actor_ids},
        ).all()
    return dict(rows)


def prepare_corpus(frame: pl.DataFrame, slug: str, month: str, public_names: dict[str, str]) -> AnalysisCorpus:
    """``frame`` holds ``CORPUS_COLUMNS`` as ``load_corpus`` returns them."""
    is_duplicate = pl.col("duplicate_of").is_not_null()
    duplicates = frame.filter(is_duplicate).group_by("arena").agg(duplicates=pl.len().cast(pl.Int64)).sort("arena")
    counts = ["likes_count", "shares_count", "comments_count"]
    records = frame.filter(~is_duplicate).select(
        "id",
        "published_at",
        pl.col("published_at").dt.date().alias("day"),
        "platform",
        "arena",
        pl.coalesce("author_id", "pseudonymized_author_id").alias("actor"),
        pl.col("pseudonymized_author_id").alias("account"),
        pl.col("author_id").is_not_null().alias("resolved"),
        "is_public_figure",
        *counts,
        pl.when(pl.any_horizontal([pl.col(c).is_not_null() for c in counts]))
        .then(pl.sum_horizontal([pl.col(c).fill_null(0) for c in counts]))
        .alias("engagement"),
        pl.col("search_terms_matched").list.unique().list.sort().alias("terms"),
    )
    return AnalysisCorpus(
        slug=slug, month=month, records=records, duplicates_by_arena=duplicates, public_names=public_names
    )


def actor_table(corpus: AnalysisCorpus) -> pl.DataFrame:
    """One row per actor (``_ACTOR_SCHEMA``), most active first (records, engagement, id)."""
    by_actor = corpus.records.filter(pl.col("actor").is_not_null())
    if by_actor.is_empty():
        return pl.DataFrame(schema=_ACTOR_SCHEMA)
    names = pl.DataFrame(
        {"actor_id": list(corpus.public_names), "public_name": list(corpus.public_names.values())},
        schema={"actor_id": pl.Utf8, "public_name": pl.Utf8},
    )
    actors = (
        by_actor.group_by("actor")
        .agg(
            is_public_figure=pl.col("is_public_figure").any(),
            resolved=pl.col("resolved").any(),
            platforms=pl.col("platform").unique().sort(),
            accounts=pl.col("account").n_unique(),
            first_account=pl.col("account").min(),
            records=pl.len(),
            engagement=pl.col("engagement").sum(),
            first_seen=pl.col("day").min(),
            last_seen=pl.col("day").max(),
        )
        .rename({"actor": "actor_id"})
        .join(names, on="actor_id", how="left")
    )
    pseudonym = pl.col("first_account").str.slice(0, LABEL_HEX_CHARS)
    named = pl.col("is_public_figure") & pl.col("public_name").is_not_null()
    label = pl.when(named).then("public_name").otherwise(pseudonym)
    return (
        actors.with_columns(label=label)
        .select(list(_ACTOR_SCHEMA))
        .cast(_ACTOR_SCHEMA)  # type: ignore[arg-type]  # polars types cast()'s keys invariantly (pola-rs/polars#14468)
        .sort(["records", "engagement", "actor_id"], descending=[True, True, False], nulls_last=True)
    )


@dataclass(frozen=True)
class Statistics:
    volume_daily: pl.DataFrame
    volume_weekly: pl.DataFrame
    top_actors: pl.DataFrame
    top_terms: pl.DataFrame
    engagement: pl.DataFrame
    run_summary: pl.DataFrame
    records: int
    duplicates: int
    actors: int

    def tables(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}


def load_collection_tasks(engine: sa.Engine, corpus: Corpus) -> pl.DataFrame:
    """The collection tasks of the design's runs whose window starts in the corpus's month (``_TASK_SCHEMA``)."""
    start, end = months.month_bounds(corpus.month)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                SELECT t.arena, t.collection_run_id::text, t.status, t.error_message, t.started_at
                FROM collection_tasks t
                JOIN collection_runs r ON r.id = t.collection_run_id
                WHERE r.query_design_id = :design AND r.date_from >= :start AND r.date_from < :end
                """
            ),
            {"design": corpus.design_id, "start": start, "end": end},
        ).all()
    return pl.DataFrame(rows, schema=_TASK_SCHEMA, orient="row")


def compute_statistics(corpus: AnalysisCorpus, tasks: pl.DataFrame) -> Statistics:
    records = corpus.records
    volume_daily = records.group_by("day", "arena").agg(records=pl.len().cast(pl.Int64)).sort("day", "arena")
    volume_weekly = (
        records.group_by(pl.col("day").dt.truncate("1w").alias("week_start"), "arena")
        .agg(records=pl.len().cast(pl.Int64))
        .sort("week_start", "arena")
    )
    actors = actor_table(corpus)
    return Statistics(
        volume_daily=volume_daily,
        volume_weekly=volume_weekly,
        top_actors=_ranked(actors.head(TOP_ACTORS).drop("accounts")),
        top_terms=_top_terms(records),
        engagement=_engagement(records),
        run_summary=_run_summary(records, corpus.duplicates_by_arena, tasks),
        records=records.height,
        duplicates=corpus.duplicates,
        actors=actors.height,
    )


def _ranked(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_row_index("rank", offset=1).with_columns(pl.col("rank").cast(pl.Int64))


def _top_terms(records: pl.DataFrame) -> pl.DataFrame:
    total = records.height
    terms = (
        records.select("terms", "actor")
        .explode("terms")
        .drop_nulls("terms")
        .group_by("terms")
        .agg(records=pl.len().cast(pl.Int64), actors=pl.col("actor").drop_nulls().n_unique().cast(pl.Int64))
        .rename({"terms": "term"})
        .with_columns(share=pl.col("records") / max(total, 1))
        .sort(["records", "term"], descending=[True, False])
    )
    return _ranked(terms.select("term", "records", "share", "actors"))


def _engagement_figures() -> list[pl.Expr]:
    value = pl.col("engagement")
    return [
        pl.len().cast(pl.Int64).alias("records"),
        value.count().cast(pl.Int64).alias("records_with_counts"),
        value.quantile(0.5, "linear").alias("median"),
        value.quantile(0.95, "linear").alias("p95"),
        value.mean().alias("mean"),
        value.max().cast(pl.Int64).alias("max"),
    ]


def _engagement(records: pl.DataFrame) -> pl.DataFrame:
    per_arena = records.group_by("arena").agg(_engagement_figures()).sort("arena")
    overall = records.select(pl.lit(ALL_ARENAS).alias("arena"), *_engagement_figures())
    return pl.concat([per_arena, overall.cast(per_arena.schema)])


_TASK_COUNTERS = ["runs", "tasks", "tasks_completed", "tasks_failed", "tasks_skipped", "tasks_open"]
_RECORD_COUNTERS = ["records_stored", "duplicates", "records_analysed"]


def _run_summary(records: pl.DataFrame, duplicates: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    status = pl.col("status")
    # Sorted by start, so the last task of each arena is its latest.
    per_arena_tasks = (
        tasks.sort("started_at", nulls_last=False)
        .group_by("arena")
        .agg(
            runs=pl.col("run_id").n_unique(),
            tasks=pl.len(),
            tasks_completed=(status == "completed").sum(),
            tasks_failed=(status == "failed").sum(),
            tasks_skipped=(status == "skipped").sum(),
            tasks_open=status.is_in(["pending", "running"]).sum(),
            last_status=status.last(),
            last_error=pl.col("error_message").last(),
        )
    )
    analysed = records.group_by("arena").agg(records_analysed=pl.len())
    arenas = pl.concat([tasks.select("arena"), analysed.select("arena"), duplicates.select("arena")]).unique()
    summary = (
        arenas.join(per_arena_tasks, on="arena", how="left")
        .join(duplicates, on="arena", how="left")
        .join(analysed, on="arena", how="left")
        .with_columns(pl.col(*_TASK_COUNTERS, "duplicates", "records_analysed").fill_null(0).cast(pl.Int64))
        .with_columns(records_stored=pl.col("records_analysed") + pl.col("duplicates"))
        .select("arena", *_TASK_COUNTERS, "last_status", "last_error", *_RECORD_COUNTERS)
        .sort("arena")
    )
    overall = summary.select(
        pl.lit(ALL_ARENAS).alias("arena"),
        pl.lit(tasks["run_id"].n_unique()).alias("runs"),  # a run has tasks on several arenas
        pl.col(*_TASK_COUNTERS[1:]).sum(),
        pl.lit(None, pl.Utf8).alias("last_status"),
        pl.lit(None, pl.Utf8).alias("last_error"),
        pl.col(*_RECORD_COUNTERS).sum(),
    )
    return pl.concat([summary, overall.cast(summary.schema)])


def partition_row_count(engine: sa.Engine, corpus: Corpus) -> int:
    """Rows of the corpus in ``content_records``, duplicates included, counted by the database."""
    start, end = months.month_bounds(corpus.month)
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                """
                SELECT count(*) FROM content_records
                WHERE query_design_id = :design AND published_at >= :start AND published_at < :end
                """
            ),
            {"design": corpus.design_id, "start": start, "end": end},
        ).scalar_one()


def write_statistics(figures: Statistics, slug: str, month: str) -> dict[str, Path]:
    return {name: analysis_store.write_table(slug, month, name, frame) for name, frame in figures.tables().items()}


def volume_chart_png(figures: Statistics, month: str) -> bytes:
    """Daily records per arena (stacked bars, every day of the month) over weekly records per arena."""
    # Imported here: only the statistics step draws, and matplotlib costs a second to import.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    start, end = months.month_bounds(month)
    days = [start.date() + timedelta(days=i) for i in range((end - start).days)]
    arenas = sorted(set(figures.volume_daily["arena"]) | set(figures.volume_weekly["arena"]))
    daily = {(r["day"], r["arena"]): r["records"] for r in figures.volume_daily.iter_rows(named=True)}
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 4.8), dpi=80, height_ratios=[3, 2], sharex=True, layout="constrained"
    )
    base = [0] * len(days)
    for arena in arenas:
        heights = [daily.get((day, arena), 0) for day in days]
        top.bar(days, heights, bottom=base, width=0.85, label=arena)
        base = [b + h for b, h in zip(base, heights)]
    top.set_title(f"Records per day by arena, {month}")
    for arena in arenas:
        weekly = figures.volume_weekly.filter(pl.col("arena") == arena)
        bottom.plot(weekly["week_start"].to_list(), weekly["records"].to_list(), marker="o", label=arena)
    bottom.set_title("Records per week, plotted at the week's Monday (first and last weeks are partial)")
    if arenas:
        figure.legend(
            *top.get_legend_handles_labels(), loc="outside upper right", fontsize="small", ncols=min(len(arenas), 4)
        )
    for axis in (top, bottom):
        axis.set_ylabel("records")
        axis.tick_params(labelsize="small")
        axis.grid(axis="y", alpha=0.3)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


#: The columns of ``AnalysisCorpus.records`` the statistics read; the rest (id, times, the split
#: counts) are dropped block by block, a third of what the records would hold.
STATISTICS_COLUMNS = [
    "day",
    "platform",
    "arena",
    "actor",
    "account",
    "resolved",
    "is_public_figure",
    "engagement",
    "terms",
]


def build_statistics(engine: sa.Engine, corpus: Corpus) -> Statistics:
    analysed = load_analysis_corpus(engine, corpus, keep=STATISTICS_COLUMNS)
    return compute_statistics(analysed, load_collection_tasks(engine, corpus))


def markdown_table(frame: pl.DataFrame, columns: list[str] | None = None) -> str:
    """A markdown table of ``frame`` (lists joined with commas, floats to two decimals)."""
    columns = columns or frame.columns
    return markdown.table(columns, frame.select(columns).iter_rows())
