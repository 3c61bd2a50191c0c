"""The shared partitions definitions.

Monthly keys are ``YYYY-MM``, the same months as the PostgreSQL partitions
(``content_records_YYYY_MM``; see ``core.months``). ``end_offset=1`` includes the current,
unfinished month, because researchers collect the month they are in.
"""

import dagster as dg

from ..core import months

monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=months.FIRST_MONTH,
    fmt="%Y-%m",
    timezone="UTC",
    end_offset=1,
)
