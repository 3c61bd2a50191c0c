"""One collection asset per registered arena, partitioned month × query design."""

import dagster as dg

from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection import yields
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.arenas.base import Arena
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.partitions import corpus_partition, corpus_partitions
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, CollectionResource, PostgresResource

#: Our HTTP client already retries quickly; these are the slower retries for 429 storms and outages.
DEFAULT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

_DESCRIPTION = """Collects {arena} ({platform}) for one query design and one month into content_records. {about}

Per design, arenas_config.{arena} may disable it or set its tier and options. Writes are
idempotent (COPY into staging, then INSERT ... ON CONFLICT on the corpus key), so re-running a
partition leaves the same rows; engagement counts are refreshed. Records are pseudonymised
(HMAC-SHA256 of platform and author id with PSEUDONYMIZATION_SALT), fingerprinted (content hash,
64-bit SimHash) and tagged with the design's terms they match. Credits are reserved before the
arena is called and settled afterwards. A failure fails only this arena."""


def outcome_metadata(outcome: collection.CollectionOutcome) -> dict:
    metadata = {
        "status": outcome.status,
        "records_new": dg.MetadataValue.int(outcome.written.new),
        "records_updated": dg.MetadataValue.int(outcome.written.updated),
        "records_unchanged": dg.MetadataValue.int(outcome.written.unchanged),
        "records_rejected": dg.MetadataValue.int(outcome.rejected),
        "records_filtered": dg.MetadataValue.json(outcome.filtered),
        "credits_reserved": dg.MetadataValue.int(outcome.credits_reserved),
        "credits_spent": dg.MetadataValue.int(outcome.credits_spent),
        "api_calls": dg.MetadataValue.int(outcome.api_calls),
        "tier": outcome.tier or "",
        "time_window": f"{outcome.window_start:%Y-%m-%d %H:%M}Z → {outcome.window_end:%Y-%m-%d %H:%M}Z",
        "collection_run_id": str(outcome.collection_run_id or ""),
        "summary": outcome.message,
    }
    if outcome.rejection_samples:
        rows = "\n".join(
            f"| {s['reason'].replace('|', '/')} | {s['source'].replace('|', '/')} |"
            for s in outcome.rejection_samples[:10]
        )
        metadata["rejection_sample"] = dg.MetadataValue.md(f"| reason | where |\n|---|---|\n{rows}")
    return metadata


#: The tag Dagster keeps a materialization's data version in.
DATA_VERSION_TAG = "dagster/data_version"


def corpus_version(context: dg.AssetExecutionContext, outcome: collection.CollectionOutcome) -> dg.DataVersion:
    """A new data version when the collection wrote new or changed records, else the previous one.

    Processing runs only after a new version (``automation.AFTER_CORPUS_CHANGED``), so the hourly
    re-collection of a feed with nothing new costs one collection, not a dedup, analysis and exports.
    """
    if not (outcome.written.new or outcome.written.updated):
        previous = context.instance.get_latest_data_version_record(
            context.asset_key, partition_key=context.partition_key
        )
        version = (
            previous.asset_materialization.tags.get(DATA_VERSION_TAG)
            if previous and previous.asset_materialization
            else None
        )
        if version:
            return dg.DataVersion(version)
    return dg.DataVersion(context.run.run_id)


#: The check on every collection asset that names the sources gone quiet.
SILENT_DROPOUTS_CHECK = "silent_dropouts"


def dropout_check(outcome: collection.CollectionOutcome, dropouts: list[yields.Dropout]) -> dg.AssetCheckResult:
    """WARN, not ERROR: a quiet source may be a broken collector or just a quiet outlet, and
    only a person can tell; the collection itself succeeded either way."""
    metadata: dict = {"sources": dg.MetadataValue.int(outcome.sources)}
    if dropouts:
        rows = "\n".join(
            f"| {d.source.replace('|', '/')} | {d.last_yield_at:%Y-%m-%d %H:%M}Z | {d.last_items} |" for d in dropouts
        )
        metadata["dropouts"] = dg.MetadataValue.md(
            f"| source | last returned items | how many |\n|---|---|---|\n{rows}"
        )
        description = f"{len(dropouts)} source(s) returned nothing this run: " + "; ".join(
            d.describe() for d in dropouts
        )
    else:
        description = f"none of {outcome.sources} source(s) went quiet"
    return dg.AssetCheckResult(
        check_name=SILENT_DROPOUTS_CHECK,
        passed=not dropouts,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def _build_asset(arena_cls: type[Arena], retry_policy: dg.RetryPolicy) -> dg.AssetsDefinition:
    arena_name = arena_cls.name

    @dg.asset(
        key=asset_keys.collection(arena_name),
        group_name="collection",
        partitions_def=corpus_partitions,
        pool=CONTENT_DB_POOL,
        retry_policy=retry_policy,
        kinds={"python", "postgres"},
        tags={"observatory/arena": arena_name},
        description=_DESCRIPTION.format(arena=arena_name, platform=arena_cls.platform, about=arena_cls.description),
        check_specs=[
            dg.AssetCheckSpec(
                SILENT_DROPOUTS_CHECK,
                asset=asset_keys.collection(arena_name),
                description=(
                    f"Warns naming any source that returned items in one of the last {yields.RECENT_TASKS} "
                    "collections of this design and arena and returns none now, with when it last did."
                ),
            )
        ],
    )
    def _collect(
        context: dg.AssetExecutionContext, postgres: PostgresResource, collector: CollectionResource
    ) -> dg.MaterializeResult:
        # collect_arena loads the design itself; the corpus value would only cost a query more.
        slug, month = corpus_partition(context)
        with postgres.engine() as engine:
            outcome = collection.collect_arena(
                engine,
                design_slug=slug,
                month=month,
                arena_name=arena_name,
                dagster_run_id=context.run.run_id,
                salt=collector.salt,
                import_dir=collector.resolved_import_dir(),
                http_factory=collector.http_client,
                log=context.log.info,
                credential_key=collector.credential_key,
            )
            dropouts = []
            if outcome.status == "completed" and outcome.collection_run_id is not None:
                with engine.connect() as conn:
                    dropouts = yields.silent_dropouts(conn, outcome.collection_run_id, arena_name)
        context.log.info(f"{arena_name}: {outcome.message}")
        return dg.MaterializeResult(
            metadata=outcome_metadata(outcome),
            check_results=[dropout_check(outcome, dropouts)],
            data_version=corpus_version(context, outcome),
        )

    return _collect


def build_collection_assets(retry_policy: dg.RetryPolicy = DEFAULT_RETRY_POLICY) -> list[dg.AssetsDefinition]:
    return [_build_asset(cls, retry_policy) for cls in registry().values()]
