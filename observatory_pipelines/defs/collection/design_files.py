"""Applying the design files when they change, with the same code and checks as ``observatory designs apply``."""

import dagster as dg

from observatory_pipelines.core.collection import design_files
from observatory_pipelines.core.platform import paths
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.defs.collection.automation import design_partition_requests
from observatory_pipelines.defs.partitions import QUERY_DESIGN_PARTITIONS
from observatory_pipelines.defs.resources import PostgresResource

SENSOR_NAME = "apply_design_files"


@dg.sensor(name=SENSOR_NAME, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def apply_design_files(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    """Applies the designs folder (OBSERVATORY_DESIGNS_DIR) when its files change, then adds the
    design partitions of new designs. A file with an error applies nothing; the tick says why in
    one line, and the next tick tries again. The cursor is the hash of the folder's files.
    """
    folder = paths.designs_dir()
    try:
        fingerprint = design_files.folder_fingerprint(folder)
    except ConfigError as err:
        return dg.SkipReason(f"design files not applied: {err}")
    if fingerprint == context.cursor:
        return dg.SkipReason(f"the design files in {folder} are unchanged since they were applied")
    known = set(context.instance.get_dynamic_partitions(QUERY_DESIGN_PARTITIONS))
    try:
        with postgres.engine() as engine:
            result = design_files.apply_design_files(engine, folder, design_files.sensor_actor(SENSOR_NAME))
            with engine.connect() as conn:
                requests = design_partition_requests(conn, known)
    except dg.Failure as failure:
        # Not a failed tick: the UI shows a skip reason as the one line it is, a failure with a trace.
        return dg.SkipReason(f"design files not applied: {failure.description}")
    for change in result.changes:
        context.log.info(f"{change.slug} ({change.source_file}): {change.change}")
    applied = ", ".join(f"{c.slug} {c.change}" for c in result.changes) or "no design changed"
    return dg.SensorResult(
        skip_reason=f"applied {result.designs} design file(s): {applied}",
        cursor=fingerprint,
        dynamic_partitions_requests=requests,
    )
