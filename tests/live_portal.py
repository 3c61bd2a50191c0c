"""The portal served for real: uvicorn in a background thread on a free 127.0.0.1 port.

Used by tests/test_portal_browser.py and scripts/screenshots.py::

    with live_portal(engine, store, config) as url:
        ...  # http://127.0.0.1:PORT, answering /healthz

Leaving the block stops the server (and waits for its thread), whatever happened inside.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import sqlalchemy as sa

from observatory_pipelines.core.platform.storage import ObjectStore
from observatory_pipelines.portal.app import create_app
from observatory_pipelines.portal.security import PortalConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_portal(
    engine: sa.Engine, store: ObjectStore, config: PortalConfig | None = None, *, timeout: float = 30
) -> Iterator[str]:
    """The portal's URL while it answers; ``config`` defaults to a throwaway secret and this URL."""
    import uvicorn

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = config or PortalConfig(secret=b"live-portal-secret-for-tests-only", base_url=url)
    app = create_app(engine, store, config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)
    )
    # uvicorn leaves signal handlers alone outside the main thread: stopping is should_exit's job.
    thread = threading.Thread(target=server.run, name=f"live-portal-{port}", daemon=True)
    thread.start()
    try:
        _wait_until_healthy(url, thread, timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


def _wait_until_healthy(url: str, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"the portal on {url} stopped before answering /healthz")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.05)
    raise RuntimeError(f"the portal on {url} did not answer /healthz within {timeout:.0f} s: {last}")
