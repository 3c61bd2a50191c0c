"""Materialize one corpus's assets in this process, for ``observatory run``, the demo and scripts.

Runs are recorded in the project's Dagster instance (the same PostgreSQL storage the UI reads),
so a corpus collected from the command line shows up in the UI's history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import dagster as dg

from .core import dagster_home, months
from .core.errors import ConfigError
from .defs.partitions import corpus_key, query_design_partitions


@dataclass
class AssetReport:
    asset: str
    succeeded: bool
    metadata: dict = field(default_factory=dict)
    error: str = ""


@dataclass
class CorpusRunReport:
    run_id: str
    month: str
    design: str
    assets: list[AssetReport]

    @property
    def failed(self) -> list[AssetReport]:
        return [a for a in self.assets if not a.succeeded]


def project_instance(content_url: str) -> dg.DagsterInstance:
    """The project's Dagster instance (PostgreSQL storage), preparing DAGSTER_HOME if needed."""
    os.environ.update(dagster_home.prepare(content_url))
    return dg.DagsterInstance.get()


def corpus_assets(defs: dg.Definitions, groups: Sequence[str], arenas: Sequence[str] | None) -> list[dg.AssetsDefinition]:
    selected = []
    for asset in defs.assets or []:
        if not isinstance(asset, dg.AssetsDefinition) or asset.partitions_def is None:
            continue
        group = next(iter(asset.group_names_by_key.values()))
        name = asset.key.to_user_string()
        if group not in groups:
            continue
        if arenas and group == "collection" and name.removeprefix("collect_") not in arenas:
            continue
        selected.append(asset)
    return selected


def materialize_corpus(
    month: str,
    design: str,
    *,
    instance: dg.DagsterInstance,
    defs: dg.Definitions | None = None,
    resources: dict | None = None,
    arenas: Sequence[str] | None = None,
    groups: Sequence[str] = ("collection",),
) -> CorpusRunReport:
    months.parse_month(month)
    if defs is None:
        from .definitions import defs as project_defs

        defs = project_defs
    assets = corpus_assets(defs, groups, arenas)
    if arenas:
        known = {a.key.to_user_string().removeprefix("collect_") for a in assets}
        unknown = sorted(set(arenas) - known)
        if unknown:
            raise ConfigError(f"no collection asset for arena '{unknown[0]}'")
    if design not in instance.get_dynamic_partitions(query_design_partitions.name):
        instance.add_dynamic_partitions(query_design_partitions.name, [design])
    result = dg.materialize(
        assets,
        instance=instance,
        partition_key=corpus_key(month, design),
        resources=resources if resources is not None else defs.resources,
        raise_on_error=False,
        tags={"observatory/launched_by": "cli"},
        # Progress at INFO (each arena says what it read and wrote); Dagster's step events are DEBUG.
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    reports = []
    for asset in assets:
        name = asset.key.to_user_string()
        step = asset.op.name
        materializations = result.asset_materializations_for_node(step)
        failures = [e for e in result.all_node_events if e.node_name == step and e.is_step_failure]
        if materializations:
            metadata = {k: v.value for k, v in materializations[-1].metadata.items()}
            reports.append(AssetReport(name, True, metadata))
        else:
            error = ""
            if failures:
                data = failures[-1].step_failure_data
                error = (data.user_failure_data.description if data.user_failure_data else None) or (
                    data.error.message.strip().splitlines()[0] if data.error else "failed"
                )
            reports.append(AssetReport(name, False, error=error or "did not run"))
    return CorpusRunReport(run_id=result.run_id, month=month, design=design, assets=reports)
