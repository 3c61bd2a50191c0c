"""Entity resolution in Dagster: the monthly ``actor_match_suggestions`` asset, and the
``merge_actors`` and ``split_actors`` jobs a data engineer launches from the Launchpad."""

import warnings

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.processing import entities
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.collection.automation import AFTER_CORPUS_CHANGED
from observatory_pipelines.defs.partitions import monthly_partitions
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource

TOP_SUGGESTIONS = 25

DESCRIPTION = f"""Suggested actor matches for one month, across every query design (actors are global),
stored in the actor_match_suggestions table (one row per month, kind and pair; re-running a month
refreshes score and reason, keeps a curator's accepted/rejected status, and drops open suggestions
no longer found).

{entities.RULES}

The metadata table shows author display names: it is a curation view for data engineers, who act
on it with the merge_actors and split_actors jobs. The current month materializes itself after each
collection (eager), without waiting for arenas that are disabled or failed."""

# Every design's every arena is not waited for, and a re-collection that changed nothing is not
# matched again (``AFTER_CORPUS_CHANGED``).
AUTOMATION = AFTER_CORPUS_CHANGED

# A month depends on that month's corpus partitions of every design. The mapping is beta in
# Dagster 1.13; tests/test_entities.py pins the behaviour we rely on, so its warning is silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    MONTH_OF_CORPUS = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="month")


@dg.asset(
    key=asset_keys.ACTOR_MATCH_SUGGESTIONS,
    group_name="processing",
    partitions_def=monthly_partitions,
    deps=[dg.AssetDep(key, partition_mapping=MONTH_OF_CORPUS) for key in asset_keys.collections()],
    automation_condition=AUTOMATION,
    pool=CONTENT_DB_POOL,
    kinds={"python", "postgres"},
    description=DESCRIPTION,
)
def actor_match_suggestions(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.engine() as engine:
        result = entities.suggest_matches(engine, context.partition_key)
    context.log.info(
        f"{context.partition_key}: {result.total} suggestions from {result.authors} authors "
        f"({result.inserted} new, {result.updated} updated, {result.removed} removed)"
    )
    return dg.MaterializeResult(
        metadata={
            "authors": dg.MetadataValue.int(result.authors),
            **{kind: dg.MetadataValue.int(count) for kind, count in result.counts.items()},
            "suggestions_new": dg.MetadataValue.int(result.inserted),
            "suggestions_updated": dg.MetadataValue.int(result.updated),
            "suggestions_removed": dg.MetadataValue.int(result.removed),
            "too_common": dg.MetadataValue.int(result.too_common),
            "top_suggestions": dg.MetadataValue.md(entities.suggestions_markdown(result.rows, TOP_SUGGESTIONS)),
        }
    )


class MergeConfig(dg.Config):
    canonical_actor_id: str = Field(description="The actor that remains.")
    duplicate_actor_ids: list[str] = Field(description="Actors folded into it and then deleted.")
    performed_by: str = Field(description="Who decided the merge (name or e-mail), for the audit log.")


class SplitConfig(dg.Config):
    actor_id: str = Field(description="The actor that holds presences of someone else.")
    presence_ids: list[str] = Field(description="The actor_platform_presences ids that belong to the new actor.")
    new_canonical_name: str = Field(description="The new actor's name.")
    performed_by: str = Field(description="Who decided the split (name or e-mail), for the audit log.")


# Op names differ from their jobs' names: Dagster refuses an op and a job (graph) of one name.
@dg.op(
    name="merge",
    description="Fold duplicate actors into a canonical one in one transaction: re-point their content, "
    "move presences and list memberships, keep their names as aliases, write the audit log.",
)
def merge_actors_op(context: dg.OpExecutionContext, config: MergeConfig, postgres: PostgresResource) -> dg.Output:
    with postgres.engine() as engine:
        result = entities.merge_actors(
            engine, config.canonical_actor_id, config.duplicate_actor_ids, config.performed_by
        )
    context.log.info(result.summary())
    return dg.Output(
        result.summary(),
        metadata={
            "canonical_actor_id": str(result.canonical_actor_id),
            "merged_actor_ids": dg.MetadataValue.json([str(a) for a in result.merged_actor_ids]),
            "content_records_repointed": dg.MetadataValue.int(result.content_records_repointed),
            "presences_moved": dg.MetadataValue.int(result.presences_moved),
            "presences_dropped": dg.MetadataValue.json(list(result.presences_dropped)),
            "aliases_added": dg.MetadataValue.json(list(result.aliases_added)),
            "list_memberships_moved": dg.MetadataValue.int(result.list_memberships_moved),
            "audit_id": str(result.audit_id),
        },
    )


@dg.op(
    name="split",
    description="Move some presences of an actor, and the content they posted, to a new actor in one "
    "transaction; the new name becomes an alias of the original; write the audit log.",
)
def split_actor_op(context: dg.OpExecutionContext, config: SplitConfig, postgres: PostgresResource) -> dg.Output:
    with postgres.engine() as engine:
        result = entities.split_actor(
            engine, config.actor_id, config.presence_ids, config.new_canonical_name, config.performed_by
        )
    context.log.info(result.summary())
    return dg.Output(
        result.summary(),
        metadata={
            "actor_id": str(result.actor_id),
            "new_actor_id": str(result.new_actor_id),
            "presences_moved": dg.MetadataValue.int(result.presences_moved),
            "content_records_repointed": dg.MetadataValue.int(result.content_records_repointed),
            "audit_id": str(result.audit_id),
        },
    )


@dg.job(
    name="merge_actors",
    description="Merge duplicate actors into a canonical actor (config: canonical_actor_id, "
    "duplicate_actor_ids, performed_by). A wrong id or a merge into itself fails and changes nothing.",
)
def merge_actors_job():
    merge_actors_op()


@dg.job(
    name="split_actors",
    description="Split presences off an actor into a new actor (config: actor_id, presence_ids, "
    "new_canonical_name, performed_by). A wrong id fails and changes nothing.",
)
def split_actors_job():
    split_actor_op()


defs = dg.Definitions(assets=[actor_match_suggestions], jobs=[merge_actors_job, split_actors_job])
