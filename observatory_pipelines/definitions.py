"""The Dagster entry point that ``workspace.yaml``, ``dagster dev`` and ``dg`` load.

Resources bind their secrets to the environment variables that are set when the code location
loads (``defs.resources.from_environment``); everything else is resolved when a run starts.
"""

import dagster as dg

from observatory_pipelines.defs import resources
from observatory_pipelines.defs.analysis import networks, statistics
from observatory_pipelines.defs.collection import definitions as collection
from observatory_pipelines.defs.exports import assets as exports
from observatory_pipelines.defs.maintenance import backup as maintenance_backup
from observatory_pipelines.defs.maintenance import erasure as maintenance_erasure
from observatory_pipelines.defs.maintenance import partitions as maintenance_partitions
from observatory_pipelines.defs.maintenance import retention as maintenance_retention
from observatory_pipelines.defs.maintenance import settlement as maintenance_settlement
from observatory_pipelines.defs.processing import dedup, entities

defs = dg.Definitions.merge(
    collection.defs,
    dedup.defs,
    entities.defs,
    statistics.defs,
    networks.defs,
    exports.defs,
    maintenance_partitions.defs,
    maintenance_backup.defs,
    maintenance_retention.defs,
    maintenance_erasure.defs,
    maintenance_settlement.defs,
    dg.Definitions(
        # Each step of the default multiprocess executor spends about 15 s importing on two cores,
        # more than most steps take; collection, which waits on remote APIs, opts back in.
        executor=dg.in_process_executor,
        sensors=[
            # On from the start: processing, analysis and exports follow each collection by themselves.
            dg.AutomationConditionSensorDefinition(
                "corpus_automation",
                target=dg.AssetSelection.groups("processing", "analysis", "exports"),
                default_status=dg.DefaultSensorStatus.RUNNING,
            )
        ],
        resources=resources.from_environment(),
    ),
)
