"""The dedup pass: one asset per corpus (month × query design), with its WARN check."""

import dagster as dg

from observatory_pipelines.core.processing import dedup
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.collection.automation import AFTER_CORPUS_CHANGED
from observatory_pipelines.defs.partitions import corpus_of, corpus_partitions
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource

MARKED_AT_MOST_HALF = "dedup_marked_at_most_half"
MAX_SHARE_MARKED = 0.5

DESCRIPTION = f"""Marks the duplicate records of one corpus (query design × month) in content_records.

{dedup.RULES} Exports choose whether to include duplicates.

Runs by itself after a collection of the corpus updates, also when another arena failed."""


@dg.asset(
    key=asset_keys.DEDUP,
    group_name="processing",
    partitions_def=corpus_partitions,
    deps=asset_keys.collections(),
    # A failed arena must not hold back the dedup of what the others collected; when it
    # succeeds later, that update brings the dedup up to date again.
    automation_condition=AFTER_CORPUS_CHANGED,
    pool=CONTENT_DB_POOL,
    kinds={"python", "postgres"},
    description=DESCRIPTION,
    check_specs=[
        dg.AssetCheckSpec(
            MARKED_AT_MOST_HALF,
            asset=asset_keys.DEDUP,
            description="Warns when the pass marked more than half of the corpus as duplicates: "
            "a rule is probably matching unrelated records (look at the sample groups).",
        )
    ],
)
def dedup_pass(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.engine() as engine:
        corpus = corpus_of(context, engine)
        result = dedup.run_dedup(engine, corpus.design_id, corpus.month)
    context.log.info(
        f"{result.duplicates} of {result.records} records marked as duplicates in {result.groups} groups "
        f"({result.marked} rows written, {result.unmarked} unmarked)"
    )
    share = round(result.share_marked, 4)
    passed = result.share_marked <= MAX_SHARE_MARKED
    check = dg.AssetCheckResult(
        check_name=MARKED_AT_MOST_HALF,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if passed
        else (
            f"{result.duplicates} of {result.records} records ({share:.0%}) were marked as duplicates; "
            "check the sample groups before exporting without duplicates"
        ),
        metadata={"share_marked": dg.MetadataValue.float(share), "records_marked": result.duplicates},
    )
    return dg.MaterializeResult(
        metadata={
            "records": dg.MetadataValue.int(result.records),
            "groups": dg.MetadataValue.int(result.groups),
            **{f"groups_{kind}": dg.MetadataValue.int(n) for kind, n in result.groups_by_kind.items()},
            "records_in_groups": dg.MetadataValue.int(result.records_in_groups),
            "records_marked": dg.MetadataValue.int(result.duplicates),
            "share_marked": dg.MetadataValue.float(share),
            "rows_written": dg.MetadataValue.int(result.marked),
            "rows_unmarked": dg.MetadataValue.int(result.unmarked),
            "near_candidates_checked": dg.MetadataValue.int(result.near_scan.candidates),
            "near_buckets_skipped": dg.MetadataValue.int(result.near_scan.buckets_skipped),
            "near_candidates_skipped": dg.MetadataValue.int(result.near_scan.candidates_skipped),
            "seconds": dg.MetadataValue.json(result.seconds),
            "sample_groups": dg.MetadataValue.md(result.sample_markdown()),
        },
        check_results=[check],
    )


defs = dg.Definitions(assets=[dedup_pass])
