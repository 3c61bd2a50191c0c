"""Dagster's instance storage for this project, named by the repository's ``dagster.yaml``.

Dagster's own ``postgres`` storage needs its URL in the configuration or an environment variable
that must be set, so ``dg check defs`` or ``dg dev`` in a fresh shell at the repository root would
fail. This storage asks ``core.platform.dagster_home.storage_url`` instead: ``DAGSTER_POSTGRES_URL``
when set (Docker, production), else the ``dagster`` database beside the content database, starting
the embedded server when nothing else is configured. Everything else is Dagster's PostgreSQL storage.
"""

from dagster._config.config_schema import UserConfigSchema
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from observatory_pipelines.core.platform import dagster_home


class ProjectInstanceStorage(DagsterPostgresStorage):
    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: object
    ) -> "ProjectInstanceStorage":
        return cls(postgres_url=dagster_home.storage_url(), inst_data=inst_data)
