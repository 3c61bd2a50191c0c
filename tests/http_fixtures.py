"""A local HTTP server that replays canned responses, so arena tests never touch the internet.

A test registers, per path, a queue of ``Canned`` responses; each request to that path takes the
next one, and the last one repeats once the queue is down to it (so "503 forever" is one entry).
A queue may be kept for requests carrying one header value (``header=("x-api-key", key)``), so
each API key meets its own answers. Every request is recorded (path, query, headers) for
assertions. Unknown paths answer 404.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_bytes(relative: str) -> bytes:
    """The bytes of a file under ``tests/fixtures``."""
    return (FIXTURES / relative).read_bytes()


@dataclass(frozen=True)
class Canned:
    """One response. ``truncate`` promises more bytes in Content-Length than it sends, then hangs up."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    #: A POST's body (APIs whose query is a JSON body: TikTok, Event Registry); empty for a GET.
    body: bytes = b""


class ArenaServer:
    def __init__(self) -> None:
        self._routes: dict[str | tuple[str, str, str], list[Canned]] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll keeps shutdown (once per test) quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, *responses: Canned, header: tuple[str, str] | None = None) -> str:
        """Queue ``responses`` for ``path`` (no query string), or for the requests to it that carry
        ``header`` (name, value); returns the full URL."""
        if not responses:
            raise ValueError("give at least one canned response")
        key = path if header is None else (path, header[0].lower(), header[1])
        with self._lock:
            self._routes.setdefault(key, []).extend(responses)
        return self.url(path)

    def requests_to(self, path: str, header: tuple[str, str] | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.path == path and (header is None or r.headers.get(header[0].lower()) == header[1])
        ]

    def json_bodies(self, path: str) -> list[Any]:
        """The JSON bodies POSTed to ``path``, in order."""
        return [json.loads(r.body) for r in self.requests_to(path)]

    def reset_routes(self) -> None:
        """Forget the queued responses (the recorded requests stay)."""
        with self._lock:
            self._routes.clear()

    def _next_response(self, path: str, headers: dict[str, str]) -> Canned:
        with self._lock:
            keyed = [k for k in self._routes if isinstance(k, tuple) and k[0] == path and headers.get(k[1]) == k[2]]
            queue = self._routes.get(keyed[0] if keyed else path)
            if not queue:
                return Canned(404, f"no canned response for {path}".encode())
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self, body: bytes = b"") -> None:
                parts = urlsplit(self.path)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with server._lock:
                    server.requests.append(RecordedRequest(parts.path, parse_qs(parts.query), headers, body))
                canned = server._next_response(parts.path, headers)
                if canned.delay:
                    time.sleep(canned.delay)
                try:
                    self.send_response(canned.status)
                    for name, value in canned.headers.items():
                        self.send_header(name, value)
                    declared = len(canned.body) + (1000 if canned.truncate else 0)
                    self.send_header("Content-Length", str(declared))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(canned.body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (timeout tests); nothing left to tell it
                self.close_connection = True

            def do_POST(self) -> None:
                # Token and login endpoints (Reddit's OAuth, Bluesky's createSession) and JSON
                # queries answer from the same queues; the body is kept with the request.
                self.do_GET(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean; requests are recorded instead

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def arena_server():
    server = ArenaServer()
    server.start()
    yield server
    server.stop()
