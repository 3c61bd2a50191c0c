"""The Dagster entry point that ``workspace.yaml``, ``dagster dev`` and ``dg`` load.

Nothing here reads the environment: resources resolve their settings when a run starts.
"""

import dagster as dg

from .defs.collection import definitions as collection
from .defs.maintenance import partitions as maintenance_partitions
from .defs.resources import CollectionResource, PostgresResource

defs = dg.Definitions.merge(
    collection.defs,
    maintenance_partitions.defs,
    dg.Definitions(resources={"postgres": PostgresResource(), "collector": CollectionResource()}),
)
