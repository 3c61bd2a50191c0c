"""The shared partitions definitions.

Monthly keys are ``YYYY-MM``, the same months as the PostgreSQL partitions
(``content_records_YYYY_MM``; see ``core.months``). ``end_offset=1`` includes the current,
unfinished month, because researchers collect the month they are in.

A corpus is one query design's data for one month: per-corpus assets are partitioned by
month × design, where the design dimension holds the slugs of query designs and is kept in
step with the database by the ``sync_query_design_partitions`` sensor.
"""

import dagster as dg
import sqlalchemy as sa

from observatory_pipelines.core.collection.designs import Corpus, find_corpus
from observatory_pipelines.core.platform import months

monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=months.FIRST_MONTH,
    fmt="%Y-%m",
    timezone="UTC",
    end_offset=1,
)

# The name as a plain ``str``: the definition's ``.name`` is typed ``str | None``.
QUERY_DESIGN_PARTITIONS = "query_design"

query_design_partitions = dg.DynamicPartitionsDefinition(name=QUERY_DESIGN_PARTITIONS)

corpus_partitions = dg.MultiPartitionsDefinition({"month": monthly_partitions, "design": query_design_partitions})


def corpus_key(month: str, design_slug: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"month": month, "design": design_slug})


def corpus_partition(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """``(design slug, month)`` of the month × design partition this run materializes."""
    keys = context.partition_key.keys_by_dimension
    return keys["design"], keys["month"]


def corpus_of(context: dg.AssetExecutionContext, engine: sa.Engine) -> Corpus:
    """The corpus (query design × month) whose partition this run materializes."""
    with engine.connect() as conn:
        return find_corpus(conn, *corpus_partition(context))
