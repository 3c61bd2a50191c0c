"""Dagster's own commands work at the repository root in a fresh shell: no DAGSTER_HOME, no
DAGSTER_POSTGRES_URL, no DATABASE_URL. The root's dagster.yaml points Dagster at the project's
instance storage, which falls back to the embedded server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live_stack import clean_env, free_port

ROOT = Path(__file__).resolve().parents[1]
DG = str(Path(sys.executable).parent / "dg")


@pytest.fixture(scope="module")
def fresh_shell(tmp_path_factory):
    """The environment of a new shell at the root, with the state kept out of the checkout; the
    embedded server it starts is stopped afterwards."""
    home = tmp_path_factory.mktemp("root-commands")
    env = clean_env(home)
    for name in ("OBSERVATORY_IMPORT_DIR", "OBSERVATORY_STORAGE_DIR"):
        env.pop(name)
    assert not any(name.startswith(("DAGSTER", "DATABASE_URL")) for name in env)
    yield env
    subprocess.run(
        [sys.executable, "-m", "observatory_pipelines.cli", "db", "down"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )


def _dg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DG, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_dg_check_defs_at_the_root(fresh_shell):
    result = _dg(fresh_shell, "check", "defs")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_list_defs_at_the_root_names_the_graph(fresh_shell):
    result = _dg(fresh_shell, "list", "defs", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("collect_rss_feeds", "dedup_pass", "export_manifest", "backup_database_nightly", "erase_actor"):
        assert name in result.stdout


@pytest.mark.live
def test_dg_dev_at_the_root_serves_the_ui_from_the_project_storage(fresh_shell, tmp_path):
    port = free_port()
    log = (tmp_path / "dg-dev.log").open("w")
    process = subprocess.Popen(
        [DG, "dev", "--host", "127.0.0.1", "--port", str(port)],
        env=fresh_shell,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None, (tmp_path / "dg-dev.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "dg dev did not answer in 180 s"
                time.sleep(1)
        # The instance keeps its runs in the project's PostgreSQL, not in dg's temporary SQLite.
        query = json.dumps({"query": "{ instance { info } }"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            info = json.load(response)["data"]["instance"]["info"]
        assert "run_storage: PostgresRunStorage" in info and "sqlite" not in info.lower(), info
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
