"""The code location's Dagster surface, pinned by snapshots: every asset (key, upstream assets, group,
partitions, automation condition, kinds, tags, pool, retry policy, owners, resources, checks), every
job's assets, checks or ops, every schedule and every sensor.

Modules may move and rename freely: nothing here names a Python module or function, only what
Dagster shows and stores (asset keys, job, op, schedule and sensor names). Descriptions are prose and
are left out. A change to the graph fails these tests with a diff against
``tests/__snapshots__/test_defs_snapshot/``; when the change is meant, regenerate the files with

    .venv/bin/python -m pytest tests/test_defs_snapshot.py --snapshot-update

and review their diff like code.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from syrupy.extensions.json import JSONSnapshotExtension


@pytest.fixture
def snapshot(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.fixture(scope="module", autouse=True)
def _own_instance(tmp_path_factory):
    """Resolving definitions reads the current Dagster instance; this module uses its own, never
    one an earlier test module left behind."""
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path_factory.mktemp("snapshot-instance"))) as instance:
        yield instance


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from observatory_pipelines.definitions import defs

    return defs


@pytest.fixture(scope="module")
def asset_graph(defs):
    return defs.resolve_asset_graph()


def key_names(keys) -> list[str]:
    return sorted(key.to_user_string() for key in keys)


def check_names(check_keys) -> list[str]:
    return sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in check_keys)


def partitions(definition) -> dict | None:
    if definition is None:
        return None
    described: dict = {"type": type(definition).__name__}
    if isinstance(definition, dg.MultiPartitionsDefinition):
        described["dimensions"] = {d.name: partitions(d.partitions_def) for d in definition.partitions_defs}
    elif isinstance(definition, dg.TimeWindowPartitionsDefinition):
        described |= {
            "start": definition.start.isoformat(),
            "end": definition.end.isoformat() if definition.end else None,
            "fmt": definition.fmt,
            "timezone": definition.timezone,
            "end_offset": definition.end_offset,
            "cron_schedule": definition.cron_schedule,
        }
    elif isinstance(definition, dg.DynamicPartitionsDefinition):
        described["name"] = definition.name
    elif isinstance(definition, dg.StaticPartitionsDefinition):
        described["keys"] = definition.get_partition_keys()
    return described


def partition_mapping(dep: dg.AssetDep) -> str | None:
    """Dagster's own mappings print their settings; anything printing an address, only its type."""
    if dep.partition_mapping is None:
        return None
    shown = repr(dep.partition_mapping)
    return type(dep.partition_mapping).__name__ if " at 0x" in shown else shown


def automation(condition: dg.AutomationCondition | None, top: bool = True) -> str | None:
    """The condition's label, then the operators under it down to the labelled parts (``eager``
    and ``eager().without(...)`` share a label, not a meaning)."""
    if condition is None:
        return None
    label = condition.get_label()
    if label and not top:
        return label
    inner = condition.name
    if condition.children:
        inner += "(" + ", ".join(automation(child, top=False) for child in condition.children) + ")"
    return f"{label}: {inner}" if label else inner


def retry(policy: dg.RetryPolicy | None) -> dict | None:
    if policy is None:
        return None
    return {
        "max_retries": policy.max_retries,
        "delay": policy.delay,
        "backoff": policy.backoff.value if policy.backoff else None,
        "jitter": policy.jitter.value if policy.jitter else None,
    }


def plain(data):
    """Asserts that the snapshot holds nothing of the machine or the module layout, and returns it."""
    text = json.dumps(data, sort_keys=True)
    machine = (str(Path(__file__).resolve().parents[1]), str(Path.home()))
    assert "observatory_pipelines" not in text and not any(path in text for path in machine)
    return data


def test_assets(asset_graph, snapshot):
    # Checks by the asset they check, whether defined with it or apart (``@asset_check``).
    checks: dict[str, list] = {}
    for assets_def in asset_graph.assets_defs:
        for check in assets_def.check_specs:
            checks.setdefault(check.asset_key.to_user_string(), []).append(
                {"name": check.name, "blocking": check.blocking}
            )
    assets = {}
    for assets_def in asset_graph.assets_defs:
        op = assets_def.node_def if isinstance(assets_def.node_def, dg.OpDefinition) else None
        for spec in assets_def.specs:
            key = spec.key.to_user_string()
            assets[key] = {
                "deps": [
                    {"asset": dep.asset_key.to_user_string(), "partition_mapping": partition_mapping(dep)}
                    for dep in sorted(spec.deps, key=lambda d: d.asset_key.to_user_string())
                ],
                "group": spec.group_name,
                "partitions": partitions(spec.partitions_def),
                "automation_condition": automation(spec.automation_condition),
                "kinds": sorted(spec.kinds),
                "tags": {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
                "owners": sorted(spec.owners),
                "pool": op.pool if op else None,
                "retry_policy": retry(op.retry_policy if op else None),
                "resources": sorted(assets_def.required_resource_keys),
                "materialized_with": key_names(k for k in assets_def.keys if k != spec.key),
                "checks": sorted(checks.get(key, []), key=lambda c: c["name"]),
            }
    assert set(assets) == set(key_names(asset_graph.get_all_asset_keys()))
    assert plain(assets) == snapshot


def test_jobs(defs, asset_graph, snapshot):
    unresolved = {job.name: job for job in defs.jobs}
    jobs = {}
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):  # Dagster's implicit job over every asset
            continue
        selection = getattr(unresolved[job.name], "selection", None)
        jobs[job.name] = {
            "assets": key_names(selection.resolve(asset_graph)) if selection is not None else [],
            "checks": check_names(selection.resolve_checks(asset_graph)) if selection is not None else [],
            # Ops of a job built from ops; an asset job's ops are its assets and checks.
            "ops": sorted(node.name for node in job.nodes) if selection is None else [],
            "partitions": partitions(job.partitions_def),
            "executor": job.executor_def.name,
            "tags": dict(job.tags),
            "run_tags": dict(job.run_tags),
            "op_retry_policy": retry(job.op_retry_policy),
        }
    assert plain(jobs) == snapshot


def test_schedules(defs, snapshot):
    schedules = {}
    for name in (s.name for s in defs.schedules):
        schedule = defs.resolve_schedule_def(name)
        schedules[name] = {
            "cron_schedule": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "job": schedule.job_name,
            "default_status": schedule.default_status.value,
            "tags": dict(schedule.tags),
        }
    assert plain(schedules) == snapshot


def test_sensors(defs, asset_graph, snapshot):
    sensors = {}
    for name in (s.name for s in defs.sensors):
        sensor = defs.resolve_sensor_def(name)
        sensors[name] = {
            "type": sensor.sensor_type.value,
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "target_jobs": sorted(target.job_name for target in sensor.targets),
            "target_assets": (
                key_names(sensor.asset_selection.resolve(asset_graph)) if sensor.asset_selection is not None else None
            ),
            "tags": dict(sensor.tags),
        }
    assert plain(sensors) == snapshot
