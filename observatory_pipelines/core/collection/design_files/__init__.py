"""Query designs as YAML files, reviewed like code: one file per design in the designs folder
(``paths.designs_dir()``), checked (``document``), compared with the database (``plan``), applied
in one transaction with an audit row per changed design (``apply``) and written back (``export``).
The format and the guarantees are described in docs/designs.md.
"""

from observatory_pipelines.core.collection.design_files.apply import (
    ApplyResult,
    apply_design_files,
    cli_actor,
    plan_design_files,
    sensor_actor,
)
from observatory_pipelines.core.collection.design_files.document import (
    DesignFileError,
    DesignFilesInvalid,
    folder_fingerprint,
    read_design_files,
    schema_json,
)
from observatory_pipelines.core.collection.design_files.export import export_design
from observatory_pipelines.core.collection.design_files.plan import PlannedChange, describe

__all__ = [
    "ApplyResult",
    "DesignFileError",
    "DesignFilesInvalid",
    "PlannedChange",
    "apply_design_files",
    "cli_actor",
    "describe",
    "export_design",
    "folder_fingerprint",
    "plan_design_files",
    "read_design_files",
    "schema_json",
    "sensor_actor",
]
