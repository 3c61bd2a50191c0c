"""The real stack for live tests and scripts: the CLI and `observatory ui` (Dagster webserver + daemon)
on an embedded PostgreSQL under one OBSERVATORY_HOME, started in its own process group and stopped
by that group.

Used by tests/test_live_ui.py and scripts/screenshots.py. Everything a run needs comes from the
environment built here; nothing of the caller's DATABASE_URL, DAGSTER_*, MINIO_* or OBSERVATORY_*
leaks in, so a live run never touches a developer's own database or bucket.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: The code location and repository that workspace.yaml defines (a Definitions object's repository).
REPOSITORY = {"repositoryLocationName": "observatory_pipelines", "repositoryName": "__repository__"}

_LEAKY = ("DATABASE_URL", "DAGSTER", "MINIO_", "OBSERVATORY_", "PSEUDONYMIZATION_SALT")

# Python leaves SIGINT ignored when its parent ignored it (a shell's background job, some CI
# runners); Dagster maps SIGTERM onto the SIGINT handler, so the UI would then ignore SIGTERM too.
# Restoring the default before exec makes the new interpreter install KeyboardInterrupt again.
_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'observatory_pipelines.cli', *sys.argv[1:]])"
)


class StackError(AssertionError):
    """The stack did not come up or a GraphQL call failed; the message ends with the UI's log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY)}
    env["OBSERVATORY_HOME"] = str(home)
    env["OBSERVATORY_IMPORT_DIR"] = str(home / "imports")
    env["OBSERVATORY_STORAGE_DIR"] = str(home / "objects")
    return env


class LiveStack:
    """One OBSERVATORY_HOME, its CLI, and (after :meth:`start_ui`) the Dagster UI on a free port.

    Use as a context manager: leaving it stops the UI's process group and the embedded PostgreSQL,
    whatever happened inside.
    """

    def __init__(self, home: Path, log_path: Path | None = None):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = clean_env(self.home)
        self.import_dir = Path(self.env["OBSERVATORY_IMPORT_DIR"])
        self.log_path = log_path or self.home / "ui.log"
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # --- CLI -------------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "observatory_pipelines.cli", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise StackError(f"observatory {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def cli_many(self, *commands: tuple[str, ...], timeout: float = 120) -> list[subprocess.CompletedProcess]:
        """Run several CLI commands at once (each is a fresh interpreter; importing dominates)."""
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "observatory_pipelines.cli", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
            )
            for args in commands
        ]
        results = []
        try:
            for args, proc in zip(commands, procs):
                out, err = proc.communicate(timeout=timeout)
                results.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return results

    # --- UI --------------------------------------------------------------------------------------

    def start_ui(self, extra_env: dict[str, str] | None = None, timeout: float = 150) -> None:
        """Start `observatory ui` in a new session (its own process group) and wait until the
        webserver answers and the code location has loaded."""
        self.port = free_port()
        self._log = open(self.log_path, "w")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WITH_SIGINT, "ui", "--port", str(self.port)],
            env={**self.env, **(extra_env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._answers("/server_info"):
            self._check_alive()
            if time.monotonic() > deadline:
                raise StackError(f"the Dagster webserver did not answer within {timeout:.0f} s{self.log_tail()}")
            time.sleep(1)
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        while True:
            entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise StackError(f"the code location did not load within {timeout:.0f} s{self.log_tail()}")
            time.sleep(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise StackError(f"`observatory ui` exited with {self._proc.returncode}{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return "\n--- ui.log (tail) ---\n" + self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST one GraphQL operation; returns its data, raising on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url + "/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            answer = json.load(resp)
        if answer.get("errors"):
            raise StackError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def stop_ui(self, grace: float = 30) -> None:
        """Stop the UI's whole process group: SIGTERM (Dagster shuts its children down), then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not _group_gone(proc, grace):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _group_gone(proc, 15)
        if self._log is not None:
            self._log.close()
            self._log = None

    # --- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.stop_ui()
        finally:
            # Stops the embedded server that `db migrate` / `db url` / the UI started (a no-op if none).
            self.cli("db", "down", check=False, timeout=120)

    def __enter__(self) -> LiveStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until the group's leader is reaped and no live process of the group is left."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies count for kill(); they are dead, just not reaped yet by whoever inherited them.
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
