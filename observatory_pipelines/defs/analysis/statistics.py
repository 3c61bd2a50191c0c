"""The ``corpus_statistics`` asset: descriptive statistics of one corpus, and its check."""

import base64

import dagster as dg

from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.defs.partitions import corpus_partitions
from observatory_pipelines.defs.resources import PostgresResource, content_engine

TOP_ROWS = 10

DESCRIPTION = f"""Descriptive statistics of one corpus (query design × month), written as Parquet tables to the
analysis store (<OBSERVATORY_HOME>/analysis/<design>/<YYYY-MM>/, or OBSERVATORY_ANALYSIS_DIR).

Records marked as duplicates by the dedup pass (raw_metadata.duplicate_of) are left out, so a story
copied across arenas counts once. An actor is the resolved actor (author_id) when entity resolution
has linked the account, else the pseudonymised account id; actors are shown by name only when flagged
as public figures, otherwise by the first {stats.LABEL_HEX_CHARS} hex characters of the pseudonymised id.

Tables:
- volume_daily (day, arena, records) and volume_weekly (week_start = the ISO week's Monday, arena,
  records); days and weeks without records are absent; the month's first and last weeks are partial.
- top_actors: the {stats.TOP_ACTORS} most active actors (rank, actor_id, label, is_public_figure, resolved,
  platforms, records, engagement, first_seen, last_seen), by records, then engagement.
- top_terms: every matched term (rank, term, records, share of all records, actors using it).
- engagement, per arena and for all arenas: records, records_with_counts, median, p95, mean, max of
  likes + shares + comments per record (missing counts as 0; records with none of the three, such as
  news articles, are left out of the distribution); quantiles interpolate linearly (percentile_cont).
- run_summary, per arena and for all: collection runs and tasks of the design whose window starts in
  the month (by status: completed, failed, skipped, open; the last status and error), and the
  corpus's records stored, marked as duplicates, and analysed.
- volume_chart.png: records per day (stacked by arena) and per week.

Check statistics_total_matches_partition warns when the records counted plus the duplicates left out
differ from the corpus's row count in content_records (rows written while the statistics ran)."""


def _metadata(figures: stats.Statistics, chart_path, table_dir, chart_png: bytes) -> dict:
    chart = base64.b64encode(chart_png).decode("ascii")
    return {
        "records_analysed": dg.MetadataValue.int(figures.records),
        "duplicates_excluded": dg.MetadataValue.int(figures.duplicates),
        "actors": dg.MetadataValue.int(figures.actors),
        "volume_chart": dg.MetadataValue.md(f"![records per day and week](data:image/png;base64,{chart})"),
        "volume_chart_path": dg.MetadataValue.path(str(chart_path)),
        "top_actors": dg.MetadataValue.md(stats.markdown_table(
            figures.top_actors.head(TOP_ROWS), ["rank", "label", "platforms", "records", "engagement"]
        )),
        "top_terms": dg.MetadataValue.md(stats.markdown_table(
            figures.top_terms.head(TOP_ROWS), ["rank", "term", "records", "share", "actors"]
        )),
        "engagement": dg.MetadataValue.md(stats.markdown_table(figures.engagement)),
        "run_summary": dg.MetadataValue.md(stats.markdown_table(
            figures.run_summary,
            ["arena", "runs", "tasks", "tasks_completed", "tasks_failed", "tasks_skipped", "last_status",
             "records_stored", "duplicates", "records_analysed"],
        )),
        "tables": dg.MetadataValue.json({name: frame.height for name, frame in figures.tables().items()}),
        "analysis_dir": dg.MetadataValue.path(str(table_dir)),
    }


@dg.asset(
    name="corpus_statistics",
    group_name="analysis",
    partitions_def=corpus_partitions,
    deps=[dg.AssetKey("dedup_pass")],
    automation_condition=dg.AutomationCondition.eager(),
    kinds={"polars", "parquet"},
    description=DESCRIPTION,
    check_specs=[
        dg.AssetCheckSpec(
            "statistics_total_matches_partition",
            asset="corpus_statistics",
            description="Warns when the records counted plus the duplicates left out differ from the "
            "corpus's row count in content_records.",
        )
    ],
)
def corpus_statistics(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    month, slug = keys["month"], keys["design"]
    with content_engine(postgres) as engine:
        figures = stats.build_statistics(engine, slug, month)
        partition_rows = stats.partition_row_count(engine, slug, month)
    stats.write_statistics(figures, slug, month)
    chart_png = stats.volume_chart_png(figures, month)
    chart_path = analysis_store.write_image(slug, month, stats.VOLUME_CHART, chart_png)
    counted = figures.records + figures.duplicates
    context.log.info(
        f"{slug} {month}: {figures.records} records analysed, {figures.duplicates} duplicates left out"
    )
    return dg.MaterializeResult(
        metadata=_metadata(figures, chart_path, analysis_store.corpus_dir(slug, month), chart_png),
        check_results=[
            dg.AssetCheckResult(
                check_name="statistics_total_matches_partition",
                passed=counted == partition_rows,
                severity=dg.AssetCheckSeverity.WARN,
                description=None if counted == partition_rows else
                f"statistics count {counted} rows ({figures.records} analysed + {figures.duplicates} duplicates) "
                f"but the corpus holds {partition_rows}; re-materialize corpus_statistics",
                metadata={"counted": counted, "partition_rows": partition_rows},
            )
        ],
    )


defs = dg.Definitions(assets=[corpus_statistics])
