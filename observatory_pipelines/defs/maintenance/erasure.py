"""The ``erase_actor`` job: a person's right to erasure, launched by a data engineer from the Launchpad."""

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.maintenance import erasure
from observatory_pipelines.core.platform.storage import StorageError
from observatory_pipelines.defs.resources import CONTENT_DB_POOL, PostgresResource, StorageResource


# Checked by erasure.erase_actor before anything is read, so a malformed id or an empty field fails
# the run with one line; a pydantic validator here would fail it with a multi-line trace, no earlier.
class EraseActorConfig(dg.Config):
    actor_id: str = Field(description="The id (UUID) of the actor to erase.")
    performed_by: str = Field(description="Who carries out the erasure (name or e-mail), for the audit log.")
    reason: str = Field(
        description="Why, for the audit log: a request or case reference. Do not write the person's name here."
    )


@dg.op(
    name="erase",
    pool=CONTENT_DB_POOL,
    description="Delete one actor's content records in every partition, their presences, aliases, list "
    "memberships and match suggestions, and the actor, in one transaction; write an 'erase' audit row "
    "with counts only. Then withdraw the stored exports (manifest first) and analysis tables of every "
    "corpus that held their records.",
)
def erase_actor_op(
    context: dg.OpExecutionContext, config: EraseActorConfig, postgres: PostgresResource, storage: StorageResource
) -> dg.Output:
    with postgres.engine() as engine:
        result = erasure.erase_actor(engine, config.actor_id, performed_by=config.performed_by, reason=config.reason)
        # The summary and metadata hold ids and counts only: run logs are read by everyone with UI access.
        context.log.info(result.summary())
        try:
            withdrawn = erasure.withdraw_corpora(storage.store(), result)
        except StorageError as err:
            raise dg.Failure(
                description=f"actor {result.actor_id} is erased, but the exports of {len(result.corpora)} corpora "
                f"could not be withdrawn ({err}); run the job again to withdraw them"
            ) from None
    context.log.info(
        f"withdrew {len(withdrawn.export_keys)} export file(s) and the analysis of "
        f"{len(withdrawn.analysis_removed)} corpora until they are made again"
    )
    counts = result.counts()
    return dg.Output(
        result.summary(),
        metadata={
            "actor_id": str(result.actor_id),
            "already_erased": result.already_erased,
            "records_deleted": dg.MetadataValue.int(counts["records_deleted"]),
            "records_by_partition": dg.MetadataValue.json(counts["records_by_partition"]),
            "corpora_to_re_export": dg.MetadataValue.json(counts["records_by_corpus"]),
            "exports_withdrawn": dg.MetadataValue.int(len(withdrawn.export_keys)),
            "analysis_withdrawn": dg.MetadataValue.json(withdrawn.analysis_removed),
            **{
                key: dg.MetadataValue.int(counts[key])
                for key in (
                    "duplicates_unmarked",
                    "presences_deleted",
                    "aliases_deleted",
                    "list_memberships_deleted",
                    "suggestions_deleted",
                    "audit_rows_redacted",
                )
            },
            "audit_id": str(result.audit_id),
        },
    )


@dg.job(
    name="erase_actor",
    description="Erase one actor (config: actor_id, performed_by, reason): their content records in every "
    "partition, presences, aliases, list memberships and match suggestions, in one transaction, with an "
    "audit row of counts (never the name). The stored exports and analysis tables of the corpora that held "
    "their records are then withdrawn (downloads say they have not been made), until the analysis and "
    "export assets of the corpora listed in the metadata are run again. An unknown id fails and changes "
    "nothing; an id erased before succeeds, says so, and withdraws those corpora's exports again.",
)
def erase_actor_job():
    erase_actor_op()


defs = dg.Definitions(jobs=[erase_actor_job])
