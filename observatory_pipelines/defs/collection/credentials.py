"""The arenas' API credentials in the UI: a sensor whose every tick says which credentials were
switched off after the platform refused them, and which are spent and until when."""

from datetime import datetime, timezone

import dagster as dg

from observatory_pipelines.core.accounts import credentials, pool
from observatory_pipelines.defs.resources import PostgresResource


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes: API credentials switched off after a 401/403, and those spent "
    "(daily quota or 429) until when. Starts no runs; read its ticks. Fix with observatory credentials.",
)
def api_credential_health(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    now = datetime.now(timezone.utc)
    try:
        with postgres.engine() as engine:
            found = credentials.list_credentials(engine, now)
    except dg.Failure as failure:
        return dg.SkipReason(f"credentials not checked: {failure.description}")
    problems, summary = pool.health_summary(found, now)
    for line in problems:
        context.log.warning(line)
    return dg.SkipReason(summary)
