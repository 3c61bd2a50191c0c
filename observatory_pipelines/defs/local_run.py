"""Materialize one corpus's assets in this process, for ``observatory run``, the demo and scripts.

Runs are recorded in the project's Dagster instance (the same PostgreSQL storage the UI reads),
so a corpus collected from the command line shows up in the UI's history.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from observatory_pipelines.core.collection.designs import check_slug
from observatory_pipelines.core.platform import dagster_home, months
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.partitions import QUERY_DESIGN_PARTITIONS, corpus_key


@dataclass
class AssetReport:
    asset: str
    succeeded: bool
    metadata: dict = field(default_factory=dict)
    error: str = ""

    @property
    def arena(self) -> str | None:
        """The arena a collection asset collects; ``None`` for every other asset."""
        return asset_keys.arena_of(self.asset)


@dataclass
class CorpusRunReport:
    run_ids: list[str]
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


#: Run one after another, so a failed arena never keeps the rest of the corpus from updating.
STAGES: tuple[tuple[str, ...], ...] = (("collection",), ("processing", "analysis", "exports"))


def _group(asset: dg.AssetsDefinition) -> str:
    return next(iter(asset.group_names_by_key.values()))


def stage_assets(
    defs: dg.Definitions, groups: Sequence[str], arenas: Sequence[str] | None, partitions_type: type
) -> list[dg.AssetsDefinition]:
    selected = []
    for asset in defs.assets or []:
        if not isinstance(asset, dg.AssetsDefinition) or not isinstance(asset.partitions_def, partitions_type):
            continue
        if _group(asset) not in groups:
            continue
        if arenas and _group(asset) == "collection" and asset_keys.arena_of(asset.key) not in arenas:
            continue
        selected.append(asset)
    return selected


def _failure(result, step: str) -> str:
    failures = [e for e in result.all_node_events if e.node_name == step and e.is_step_failure]
    if not failures:
        skipped = any(e.node_name == step and e.is_step_skipped for e in result.all_node_events)
        return "skipped: an upstream step failed" if skipped else "did not run"
    data = failures[-1].step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip().splitlines()[0] if data.error else "failed"


def _takes_identity(asset: dg.AssetsDefinition) -> bool:
    schema = asset.op.config_schema
    return schema is not None and "identity" in getattr(schema.config_type, "fields", {})


def _export_config(assets, identity: str | None) -> dict:
    """Run config asking the export assets among ``assets`` (those with an ``identity`` setting) for ``identity``."""
    if identity is None:
        return {}
    return {"ops": {a.op.name: {"config": {"identity": identity}} for a in assets if _takes_identity(a)}}


def _materialize(assets, partition_key, instance, resources, identity=None) -> tuple[str, list[AssetReport]]:
    result = dg.materialize(
        assets,
        instance=instance,
        partition_key=partition_key,
        resources=resources,
        raise_on_error=False,
        tags={"observatory/launched_by": "cli"},
        # Progress at INFO (each step says what it read and wrote); Dagster's step events are DEBUG.
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}, **_export_config(assets, identity)},
    )
    reports = []
    for asset in assets:
        materialized = {m.asset_key: m for m in result.asset_materializations_for_node(asset.op.name)}
        for key in asset.keys:
            name = key.to_user_string()
            if key in materialized:
                metadata = {k: v.value for k, v in materialized[key].metadata.items()}
                reports.append(AssetReport(name, True, metadata))
            else:
                reports.append(AssetReport(name, False, error=_failure(result, asset.op.name)))
    return result.run_id, reports


def materialize_corpus(
    month: str,
    design: str,
    *,
    instance: dg.DagsterInstance,
    defs: dg.Definitions | None = None,
    resources: Mapping[str, Any] | None = None,
    arenas: Sequence[str] | None = None,
    export_identity: str | None = None,
) -> CorpusRunReport:
    """Collect one corpus, then bring its processing and analysis up to date, then the month's
    entity-resolution suggestions; each stage is its own Dagster run. ``export_identity`` asks the
    exports for that identity level (default: what the design records)."""
    months.parse_month(month)
    check_slug(design)  # before a bad slug could become a Dagster partition
    if defs is None:
        from observatory_pipelines.definitions import defs as project_defs

        defs = project_defs
    resources = resources if resources is not None else defs.resources
    if arenas:
        collection_assets = stage_assets(defs, ("collection",), None, dg.MultiPartitionsDefinition)
        known = {asset_keys.arena_of(a.key) for a in collection_assets}
        unknown = sorted(set(arenas) - known)
        if unknown:
            choices = ", ".join(sorted(name for name in known if name))
            raise ConfigError(f"no collection asset for arena '{unknown[0]}'; choose from {choices}")
    if design not in instance.get_dynamic_partitions(QUERY_DESIGN_PARTITIONS):
        instance.add_dynamic_partitions(QUERY_DESIGN_PARTITIONS, [design])
    run_ids, reports = [], []
    for groups in STAGES:
        assets = stage_assets(defs, groups, arenas, dg.MultiPartitionsDefinition)
        if assets:
            run_id, stage_reports = _materialize(
                assets, corpus_key(month, design), instance, resources, export_identity
            )
            run_ids.append(run_id)
            reports += stage_reports
    monthly = stage_assets(defs, ("processing", "analysis"), None, dg.TimeWindowPartitionsDefinition)
    if monthly:
        run_id, stage_reports = _materialize(monthly, month, instance, resources)
        run_ids.append(run_id)
        reports += stage_reports
    return CorpusRunReport(run_ids=run_ids, month=month, design=design, assets=reports)
