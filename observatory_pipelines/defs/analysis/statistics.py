"""The ``corpus_statistics`` asset: descriptive statistics of one corpus, and its check."""

import base64

import dagster as dg

from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.partitions import corpus_of, corpus_partitions
from observatory_pipelines.defs.resources import PostgresResource

TOP_ROWS = 10

DESCRIPTION = f"""Descriptive statistics of one corpus (query design × month), written as Parquet tables to the
analysis store (<OBSERVATORY_HOME>/analysis/<design>/<YYYY-MM>/, or OBSERVATORY_ANALYSIS_DIR).

{stats.RULES}

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
        "top_actors": dg.MetadataValue.md(
            stats.markdown_table(
                figures.top_actors.head(TOP_ROWS), ["rank", "label", "platforms", "records", "engagement"]
            )
        ),
        "top_terms": dg.MetadataValue.md(
            stats.markdown_table(figures.top_terms.head(TOP_ROWS), ["rank", "term", "records", "share", "actors"])
        ),
        "engagement": dg.MetadataValue.md(stats.markdown_table(figures.engagement)),
        "run_summary": dg.MetadataValue.md(
            stats.markdown_table(
                figures.run_summary,
                [
                    "arena",
                    "runs",
                    "tasks",
                    "tasks_completed",
                    "tasks_failed",
                    "tasks_skipped",
                    "last_status",
                    "records_stored",
                    "duplicates",
                    "records_analysed",
                ],
            )
        ),
        "tables": dg.MetadataValue.json({name: frame.height for name, frame in figures.tables().items()}),
        "analysis_dir": dg.MetadataValue.path(str(table_dir)),
    }


@dg.asset(
    key=asset_keys.CORPUS_STATISTICS,
    group_name="analysis",
    partitions_def=corpus_partitions,
    deps=[asset_keys.DEDUP],
    automation_condition=dg.AutomationCondition.eager(),
    kinds={"polars", "parquet"},
    description=DESCRIPTION,
    check_specs=[
        dg.AssetCheckSpec(
            "statistics_total_matches_partition",
            asset=asset_keys.CORPUS_STATISTICS,
            description="Warns when the records counted plus the duplicates left out differ from the "
            "corpus's row count in content_records.",
        )
    ],
)
def corpus_statistics(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.engine() as engine:
        corpus = corpus_of(context, engine)
        figures = stats.build_statistics(engine, corpus)
        partition_rows = stats.partition_row_count(engine, corpus)
    month, slug = corpus.month, corpus.slug
    stats.write_statistics(figures, slug, month)
    chart_png = stats.volume_chart_png(figures, month)
    chart_path = analysis_store.write_image(slug, month, stats.VOLUME_CHART, chart_png)
    counted = figures.records + figures.duplicates
    context.log.info(f"{slug} {month}: {figures.records} records analysed, {figures.duplicates} duplicates left out")
    return dg.MaterializeResult(
        metadata=_metadata(figures, chart_path, analysis_store.corpus_dir(slug, month), chart_png),
        check_results=[
            dg.AssetCheckResult(
                check_name="statistics_total_matches_partition",
                passed=counted == partition_rows,
                severity=dg.AssetCheckSeverity.WARN,
                description=None
                if counted == partition_rows
                else f"statistics count {counted} rows ({figures.records} analysed + {figures.duplicates} duplicates) "
                f"but the corpus holds {partition_rows}; re-materialize corpus_statistics",
                metadata={"counted": counted, "partition_rows": partition_rows},
            )
        ],
    )


defs = dg.Definitions(assets=[corpus_statistics])
