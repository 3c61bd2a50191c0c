"""The whole stack, live: `observatory ui` (Dagster webserver + daemon, PostgreSQL instance storage)
on a fresh embedded database holding the offline demo, driven only through GraphQL and the CLI.

It lets the sensor give the demo design its partition, collects one corpus (klimadebat × 2026-03)
as a run of the `collect_corpus` job submitted twice at once (the one-run-per-partition limit must
be seen holding the second run QUEUED while the first runs; it then completes and changes no row),
backfills dedup, statistics, networks and exports over three months while that collection is still
running, dry-runs every schedule's tick, then lists and downloads the exports as the demo
researcher. The UI runs in its own process group, stopped by that group whatever happens.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.maintenance import partitions
from observatory_pipelines.core.platform import database
from observatory_pipelines.demo import seed as demo
from tests.live_stack import REPOSITORY, LiveStack, StackError

pytestmark = pytest.mark.live

DESIGN = demo.DESIGN_SLUG
MONTH = demo.DEMO_MONTH
MONTHS = ("2026-02", "2026-03", "2026-04")  # the demo's data is all in March: the others stay empty
DANISH = set("æøåÆØÅ")

#: Schedules other than the nightly collection, and the job each must request.
SCHEDULED_JOBS = {
    "ensure_partitions_daily": "ensure_partitions",
    "backup_database_nightly": "backup_database",
    "check_database_backup_daily": "check_database_backup",
    "content_retention_daily": "apply_content_retention",
    "settle_stale_collections_every_6_hours": "settle_stale_collections",
}

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def corpus_key(month: str) -> str:
    # Dagster joins a multi-partition key's dimensions in sorted name order: design, then month.
    return f"{DESIGN}|{month}"


def partition_tags(month: str) -> list[dict]:
    return [
        {"key": "dagster/partition", "value": corpus_key(month)},
        {"key": "dagster/partition/design", "value": DESIGN},
        {"key": "dagster/partition/month", "value": month},
    ]


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}"""

RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    ... on Run {
      status startTime endTime
      tags { key value }
      assetMaterializations {
        assetKey { path } partition
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
      }
    }
  }
}"""

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""

BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions error { message } runs(limit: 20) { runId status } }
  }
}"""

SCHEDULE_DRY_RUN = """
mutation($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult {
        skipReason
        error { message }
        runRequests { runKey jobName runConfigYaml tags { key value } }
      }
    }
    ... on PythonError { message }
    ... on ScheduleNotFoundError { message }
  }
}"""


def launch_run(stack: LiveStack, job: str, tags: list[dict] | None = None, run_config: dict | None = None) -> str:
    params = {"selector": {**REPOSITORY, "pipelineName": job}, "executionMetadata": {"tags": tags or []}}
    if run_config:
        params["runConfigData"] = run_config
    result = stack.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def get_run(stack: LiveStack, run_id: str) -> dict:
    return stack.graphql(RUN, {"id": run_id})["runOrError"]


def wait_for_run(stack: LiveStack, run_id: str, until: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = get_run(stack, run_id)
        if run["status"] in until | TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise StackError(f"run {run_id} still {run['status']} after {timeout:.0f} s{stack.log_tail()}")
        time.sleep(1)


def metadata(materialization: dict) -> dict:
    return {e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]}


def dry_run(stack: LiveStack, schedule: str, when: datetime) -> dict:
    selector = {**REPOSITORY, "scheduleName": schedule}
    result = stack.graphql(SCHEDULE_DRY_RUN, {"selector": selector, "timestamp": when.timestamp()})["scheduleDryRun"]
    assert result["__typename"] == "DryRunInstigationTick", result
    evaluation = result["evaluationResult"]
    assert evaluation["error"] is None, f"{schedule}: {evaluation['error']['message']}"
    return evaluation


def tags_of(request_or_run: dict) -> dict:
    return {t["key"]: t["value"] for t in request_or_run["tags"]}


def test_demo_corpus_through_the_live_ui(tmp_path):
    with LiveStack(tmp_path / "state", log_path=tmp_path / "ui.log") as stack:
        # --- the demo in the content database; the collection itself is left to Dagster --------
        stack.cli("db", "migrate")
        content_url = stack.cli("db", "url").stdout.strip()
        engine = database.make_engine(content_url)
        try:
            partitions.ensure_partitions(engine)
            demo.seed(engine, stack.import_dir)
        finally:
            engine.dispose()
        stack.start_ui(extra_env={"PSEUDONYMIZATION_SALT": secrets.token_hex(32)})

        # --- the sensor gives the demo design its partition -----------------------------------
        wait_for_design_partition(stack, timeout=120)

        # --- the same partition's collection submitted twice at once: the second is QUEUED ------
        collect_id = launch_run(stack, "collect_corpus", partition_tags(MONTH))
        double_id = launch_run(stack, "collect_corpus", partition_tags(MONTH))
        maintenance_id = launch_run(stack, "ensure_partitions")
        see_queued_while_running(stack, running=collect_id, queued=double_id, timeout=120)
        selection = backfill_selection(stack)
        backfill_id = launch_backfill(stack, selection)

        collection = wait_for_run(stack, collect_id, until=set(), timeout=240)
        assert collection["status"] == "SUCCESS", stack.log_tail()
        rows = collected_rows(content_url)
        collected = {m["assetKey"]["path"][0]: metadata(m) for m in collection["assetMaterializations"]}
        for arena in ("collect_rss_feeds", "collect_file_import"):
            assert collected[arena]["status"] == "completed", collected[arena]
            assert collected[arena]["records_new"] > 0, collected[arena]
        assert {m["partition"] for m in collection["assetMaterializations"]} == {corpus_key(MONTH)}
        assert wait_for_run(stack, maintenance_id, until=set(), timeout=60)["status"] == "SUCCESS"

        double = wait_for_run(stack, double_id, until=set(), timeout=240)
        assert double["status"] == "SUCCESS", stack.log_tail()
        assert double["startTime"] >= collection["endTime"]
        again = {m["assetKey"]["path"][0]: metadata(m) for m in double["assetMaterializations"]}
        for arena in ("collect_rss_feeds", "collect_file_import"):
            counts = (again[arena]["records_new"], again[arena]["records_updated"], again[arena]["records_unchanged"])
            assert counts == (0, 0, collected[arena]["records_new"]), again[arena]
        assert collected_rows(content_url) == rows

        runs = wait_for_backfill(stack, backfill_id, timeout=300)
        by_partition = {tags_of(run)["dagster/partition"]: run for run in runs}
        assert set(by_partition) == {corpus_key(m) for m in MONTHS}
        selected = {key["path"][0] for key in selection}
        for key, run in by_partition.items():
            assert run["status"] == "SUCCESS", (key, stack.log_tail())
            assert {m["assetKey"]["path"][0] for m in run["assetMaterializations"]} == selected, key
            assert {m["partition"] for m in run["assetMaterializations"]} == {key}

        # --- every schedule's tick, evaluated at fixed times ----------------------------------
        check_schedules(stack)

        # --- what the UI shows of the March CSV export ----------------------------------------
        shown = metadata(latest_materialization(stack, "export_csv", corpus_key(MONTH)))

        # --- the exports, listed and downloaded as the demo researcher ------------------------
        check_exports(stack, tmp_path / "downloads", shown)

        stack.stop_ui()
        check_run_storage(content_url, collect_id)


def see_queued_while_running(stack: LiveStack, running: str, queued: str, timeout: float) -> None:
    """Watch two runs of one partition until the first is seen STARTED while the second is QUEUED.

    The daemon dequeues every run that fits in one pass, and a run is STARTED only once its worker
    process is up, seconds after that pass: a second run still QUEUED then was held back by the
    one-run-per-partition limit, not merely not reached yet."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        now = (get_run(stack, running)["status"], get_run(stack, queued)["status"])
        if not seen or seen[-1] != now:
            seen.append(now)
        if now == ("STARTED", "QUEUED"):
            return
        if now[0] in TERMINAL or now[1] not in ("QUEUED", "NOT_STARTED"):
            break
        time.sleep(0.25)
    raise StackError(
        f"never saw the second run QUEUED while the first ran; (first, second) went {seen}{stack.log_tail()}"
    )


def collected_rows(content_url: str) -> str:
    """A digest of what collection wrote to the content records (not what dedup adds to them)."""
    engine = database.make_engine(content_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    """
                    SELECT count(*) || ':' || md5(coalesce(string_agg(
                        concat_ws('|', id, platform, platform_id, published_at, text_content, url,
                                  pseudonymized_author_id, collected_at, collection_run_id, views_count,
                                  likes_count, shares_count, comments_count, search_terms_matched),
                        E'\\n' ORDER BY id), ''))
                    FROM content_records
                    """
                )
            ).scalar_one()
    finally:
        engine.dispose()


def wait_for_design_partition(stack: LiveStack, timeout: float) -> None:
    query = """{
      assetNodeOrError(assetKey: {path: ["collect_rss_feeds"]}) {
        ... on AssetNode { partitionKeysByDimension { name partitionKeys } }
      }
    }"""
    deadline = time.monotonic() + timeout
    while True:
        dimensions = stack.graphql(query)["assetNodeOrError"]["partitionKeysByDimension"]
        keys = {d["name"]: d["partitionKeys"] for d in dimensions}
        if DESIGN in keys["design"]:
            break
        if time.monotonic() > deadline:
            raise StackError(
                f"no '{DESIGN}' design partition after {timeout:.0f} s: {keys['design']}{stack.log_tail()}"
            )
        time.sleep(2)
    assert set(MONTHS) <= set(keys["month"])
    # The design file's sensor applies the demo design and adds its partition; the database's
    # sensor adds it when the design came another way. Either one's tick shows the request.
    added = [
        result
        for sensor in ("apply_design_files", "sync_query_design_partitions")
        for tick in stack.graphql(
            """query($selector: SensorSelector!) {
              sensorOrError(sensorSelector: $selector) {
                ... on Sensor { sensorState { ticks(limit: 20) {
                  dynamicPartitionsRequestResults { partitionsDefName partitionKeys type }
                } } }
              }
            }""",
            {"selector": {**REPOSITORY, "sensorName": sensor}},
        )["sensorOrError"]["sensorState"]["ticks"]
        for result in tick["dynamicPartitionsRequestResults"]
        if result["type"] == "ADD_PARTITIONS" and result["partitionsDefName"] == "query_design"
    ]
    assert any(DESIGN in r["partitionKeys"] for r in added), added


def backfill_selection(stack: LiveStack) -> list[dict]:
    """dedup_pass and everything in the analysis and exports groups."""
    nodes = stack.graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    selection = [
        {"path": n["assetKey"]["path"]}
        for n in nodes
        if n["groupName"] in ("analysis", "exports") or n["assetKey"]["path"] == ["dedup_pass"]
    ]
    names = {key["path"][0] for key in selection}
    assert {"dedup_pass", "corpus_statistics", "export_csv", "export_parquet", "export_manifest"} <= names
    return selection


def launch_backfill(stack: LiveStack, selection: list[dict]) -> str:
    params = {
        "partitionNames": [corpus_key(m) for m in MONTHS],
        "assetSelection": selection,
        "title": "live test: three months of statistics and exports",
    }
    result = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_for_backfill(stack: LiveStack, backfill_id: str, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        backfill = stack.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill["status"] != "REQUESTED":
            break
        if time.monotonic() > deadline:
            states = [r["status"] for r in backfill["runs"]]
            raise StackError(f"backfill {backfill_id} still running after {timeout:.0f} s: {states}{stack.log_tail()}")
        time.sleep(2)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, stack.log_tail())
    assert backfill["numPartitions"] == len(MONTHS)
    return [get_run(stack, r["runId"]) for r in backfill["runs"]]


def check_schedules(stack: LiveStack) -> None:
    schedules = stack.graphql(
        """query($selector: RepositorySelector!) {
          schedulesOrError(repositorySelector: $selector) {
            ... on Schedules { results { name pipelineName cronSchedule executionTimezone } }
          }
        }""",
        {"selector": REPOSITORY},
    )["schedulesOrError"]["results"]
    by_name = {s["name"]: s for s in schedules}
    assert {"nightly_collection", "ensure_partitions_daily"} <= set(by_name)

    first_of_month = datetime(2026, 4, 1, tzinfo=timezone.utc)
    mid_month = datetime(2026, 3, 15, 12, tzinfo=timezone.utc)

    nightly = by_name["nightly_collection"]
    assert (nightly["cronSchedule"], nightly["executionTimezone"]) == ("0 1 * * *", "UTC")
    # The tick at 01:00 on the 1st collects the month just ended one last time, and the new month.
    requests = dry_run(stack, "nightly_collection", first_of_month)["runRequests"]
    assert sorted(r["runKey"] for r in requests) == [
        f"nightly|{DESIGN}|2026-03|2026-04-01T01:00",
        f"nightly|{DESIGN}|2026-04|2026-04-01T01:00",
    ]
    for request in requests:
        month = tags_of(request)["dagster/partition/month"]
        assert tags_of(request)["dagster/partition"] == corpus_key(month)
        assert request["jobName"] in (None, nightly["pipelineName"])
    assert nightly["pipelineName"] == "collect_corpus"
    # Any other night: the current month only (the tick at or after noon on the 15th is the 16th's).
    requests = dry_run(stack, "nightly_collection", mid_month)["runRequests"]
    assert [r["runKey"] for r in requests] == [f"nightly|{DESIGN}|2026-03|2026-03-16T01:00"]

    for name, schedule in by_name.items():
        if name == "nightly_collection":
            continue
        evaluation = dry_run(stack, name, first_of_month)
        if name not in SCHEDULED_JOBS:
            # A schedule this test does not know yet: its tick must at least evaluate.
            assert evaluation["runRequests"] is not None or evaluation["skipReason"], (name, evaluation)
            continue
        assert schedule["pipelineName"] == SCHEDULED_JOBS[name]
        assert schedule["executionTimezone"] == "UTC"
        [request] = evaluation["runRequests"]
        assert request["jobName"] in (None, SCHEDULED_JOBS[name])
        assert "dagster/partition" not in tags_of(request)
        if name == "content_retention_daily":
            # Launched by hand the retention job only previews; its schedule really drops.
            assert re.search(r"dry_run:\s*false", request["runConfigYaml"]), request["runConfigYaml"]


def latest_materialization(stack: LiveStack, asset: str, partition: str) -> dict:
    data = stack.graphql(
        """query($key: AssetKeyInput!, $partitions: [String!]) {
          assetOrError(assetKey: $key) {
            ... on Asset { assetMaterializations(partitions: $partitions, limit: 1) {
              partition
              metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
            } }
          }
        }""",
        {"key": {"path": [asset]}, "partitions": [partition]},
    )
    [materialization] = data["assetOrError"]["assetMaterializations"]
    assert materialization["partition"] == partition
    return materialization


def check_exports(stack: LiveStack, downloads: Path, shown_in_ui: dict) -> None:
    user = ("--user", demo.DEMO_EMAIL)
    commands = [("exports", "list", *user)]
    for month in MONTHS:
        (downloads / month).mkdir(parents=True)
        commands.append(
            (
                "exports",
                "download",
                *user,
                "--design",
                DESIGN,
                "--month",
                month,
                "--format",
                "csv",
                "--to",
                str(downloads / month),
            )
        )
    for fmt in ("parquet", "manifest"):
        commands.append(
            (
                "exports",
                "download",
                *user,
                "--design",
                DESIGN,
                "--month",
                MONTH,
                "--format",
                fmt,
                "--to",
                str(downloads / MONTH),
            )
        )
    listing, *fetched = stack.cli_many(*commands)
    for result in (listing, *fetched):
        assert result.returncode == 0, (result.args, result.stderr)
    paths = {}
    for result in fetched:
        match = re.fullmatch(r"(.+) \(.+, checksum verified\)", result.stdout.strip())
        assert match, result.stdout
        paths[(result.args[result.args.index("--month") + 1], result.args[result.args.index("--format") + 1])] = Path(
            match[1]
        )

    listed = {}
    for line in listing.stdout.splitlines()[1:]:
        design, month, filename, rows = line.split()[:4]
        listed[(design, month, filename)] = rows
    for month in MONTHS:
        for filename in ("content.csv", "content.parquet", "content.xlsx", "manifest.json"):
            assert (DESIGN, month, filename) in listed, (month, filename, listing.stdout)

    manifest = json.loads(paths[(MONTH, "manifest")].read_text(encoding="utf-8"))
    files = {f["name"]: f for f in manifest["files"]}
    for fmt, name in (("csv", "content.csv"), ("parquet", "content.parquet")):
        body = paths[(MONTH, fmt)].read_bytes()
        assert hashlib.sha256(body).hexdigest() == files[name]["sha256"], name
        assert len(body) == files[name]["size"], name

    with paths[(MONTH, "csv")].open(encoding="utf-8-sig", newline="") as f:
        header, *records = list(csv.reader(f))
    assert len(records) > 20
    assert len(records) == files["content.csv"]["rows"] == manifest["records"]["without_duplicates"]
    assert DANISH & set("".join(cell for record in records for cell in record))
    assert listed[(DESIGN, MONTH, "content.csv")] == str(len(records))
    assert (shown_in_ui["rows"], shown_in_ui["sha256"]) == (len(records), files["content.csv"]["sha256"])

    import pyarrow.parquet as pq

    table = pq.read_table(paths[(MONTH, "parquet")])
    assert table.num_rows == len(records)
    assert DANISH & set("".join(str(v) for v in table.column("text_content").to_pylist()))

    for month in set(MONTHS) - {MONTH}:
        with paths[(month, "csv")].open(encoding="utf-8-sig", newline="") as f:
            assert list(csv.reader(f)) == [header], month
        assert listed[(DESIGN, month, "content.csv")] == "0"


def check_run_storage(content_url: str, run_id: str) -> None:
    """Runs are recorded in Dagster's own database, never in the content database."""
    dagster_engine = database.make_engine(database.with_database(content_url, database.DAGSTER_DATABASE))
    content_engine = database.make_engine(content_url)
    try:
        with dagster_engine.connect() as conn:
            found = conn.execute(sa.text("SELECT count(*) FROM runs WHERE run_id = :r"), {"r": run_id}).scalar_one()
            assert found == 1
        with content_engine.connect() as conn:
            assert "runs" not in sa.inspect(conn).get_table_names()
    finally:
        dagster_engine.dispose()
        content_engine.dispose()
