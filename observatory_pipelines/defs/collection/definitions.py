import dagster as dg

from observatory_pipelines.defs.collection.assets import build_collection_assets
from observatory_pipelines.defs.collection.automation import (
    collect_corpus_job,
    hourly_latest_collection,
    nightly_collection,
    sync_query_design_partitions,
)
from observatory_pipelines.defs.collection.credentials import api_credential_health
from observatory_pipelines.defs.collection.design_files import apply_design_files

defs = dg.Definitions(
    assets=build_collection_assets(),
    jobs=[collect_corpus_job],
    schedules=[nightly_collection, hourly_latest_collection],
    sensors=[sync_query_design_partitions, apply_design_files, api_credential_health],
)
