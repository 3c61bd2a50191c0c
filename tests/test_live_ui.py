"""The README's main command path, live: `observatory ui` on a fresh embedded database.

Starts the real webserver and daemon (PostgreSQL instance storage) in their own process group,
launches the ensure_partitions job through GraphQL and waits for it, then stops the group.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from observatory_pipelines.core import database

pytestmark = pytest.mark.live


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "observatory_pipelines.cli", *args],
                          capture_output=True, text=True, env=env, timeout=180)


def test_ui_serves_and_runs_a_job_on_postgres_storage(tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DAGSTER"))}
    env["OBSERVATORY_HOME"] = str(tmp_path / "state")
    assert _cli("db", "migrate", env=env).returncode == 0
    port = _free_port()
    log = open(tmp_path / "ui.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "observatory_pipelines.cli", "ui", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        answered = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not answered:
            assert proc.poll() is None, Path(tmp_path / "ui.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as resp:
                    answered = resp.status == 200
            except OSError:
                time.sleep(1)
        assert answered, "the Dagster webserver did not answer within 120 s"
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)

        run_id = client.submit_job_execution("ensure_partitions")
        status = None
        while time.monotonic() < deadline + 120:
            status = client.get_run_status(run_id).value
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(1)
        assert status == "SUCCESS", Path(tmp_path / "ui.log").read_text()[-3000:]
    finally:
        # dagster dev ignores SIGTERM when not attached to a terminal: stop its whole group.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()

    # The run is recorded in Dagster's own database, not in the content database.
    url = _cli("db", "url", env=env).stdout.strip()
    dagster_engine = database.make_engine(database.with_database(url, "dagster"))
    content_engine = database.make_engine(url)
    try:
        with dagster_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM runs WHERE run_id = :r"), {"r": run_id}).scalar_one() == 1
        with content_engine.connect() as conn:
            assert "runs" not in sa.inspect(conn).get_table_names()
    finally:
        dagster_engine.dispose()
        content_engine.dispose()
        _cli("db", "down", env=env)
