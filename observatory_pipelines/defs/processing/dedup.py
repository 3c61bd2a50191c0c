"""The dedup pass: one asset per corpus (month × query design), with its WARN check."""

import dagster as dg

from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.designs import load_design
from observatory_pipelines.core.processing import dedup
from observatory_pipelines.defs.partitions import corpus_partitions
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource, content_engine

MARKED_AT_MOST_HALF = "dedup_marked_at_most_half"
MAX_SHARE_MARKED = 0.5

DESCRIPTION = """Marks the duplicate records of one corpus (query design × month) in content_records; deletes nothing.

Two records are linked when:
- url: they have the same normalised URL, as their own url, or one shares the other's url as a
  link (raw_metadata.links): an X post sharing a feed article is a duplicate of that article. Two
  posts sharing a link are not linked unless the linked page is in the corpus. Normalised: scheme
  and host lower-cased, www. dropped, default port dropped, IDN hosts as punycode, percent-encoding
  normalised, tracking parameters (utm_*, fbclid, gclid, ref, source, _ga, ...) dropped, query
  sorted, trailing slash and fragment dropped; the path keeps its case. Front pages never link.
- exact: the same content_hash (text with case, whitespace and URLs folded) on a different
  platform or arena (identical posts on one platform are kept: copypasta is discourse);
- near: SimHashes at most 3 of 64 bits apart, on any platform (found by banding, not all pairs).

A group is every record linked directly or through others. Its canonical record: articles first,
then the earliest published_at, then the smallest id. Every other member gets
raw_metadata.duplicate_of (the canonical id) and raw_metadata.duplicate_kind (the rules that
linked it, e.g. "near+url"); records that are no longer duplicates lose both; other metadata keys
are kept and unchanged rows are not rewritten. Exports choose whether to include duplicates.

Runs by itself after a collection of the corpus updates, also when another arena failed."""


@dg.asset(
    group_name="processing",
    partitions_def=corpus_partitions,
    deps=[dg.AssetKey(f"collect_{name}") for name in registry()],
    # A failed arena must not hold back the dedup of what the others collected; when it
    # succeeds later, that update brings the dedup up to date again.
    automation_condition=dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()),
    pool=CONTENT_DB_POOL,
    kinds={"python", "postgres"},
    description=DESCRIPTION,
    check_specs=[
        dg.AssetCheckSpec(
            MARKED_AT_MOST_HALF,
            asset="dedup_pass",
            description="Warns when the pass marked more than half of the corpus as duplicates: "
            "a rule is probably matching unrelated records (look at the sample groups).",
        )
    ],
)
def dedup_pass(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    with content_engine(postgres) as engine:
        with engine.connect() as conn:
            design = load_design(conn, keys["design"])
        result = dedup.run_dedup(engine, design.id, keys["month"])
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
        description=None if passed else (
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
            "near_buckets_skipped": dg.MetadataValue.int(result.near_buckets_skipped),
            "seconds": dg.MetadataValue.json(result.seconds),
            "sample_groups": dg.MetadataValue.md(result.sample_markdown()),
        },
        check_results=[check],
    )


defs = dg.Definitions(assets=[dedup_pass])
