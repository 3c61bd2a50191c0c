"""Screenshots of the Dagster UI on the offline demo, for the README.

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--home DIR] [--keep]

Runs ``observatory demo --no-ui`` in a fresh OBSERVATORY_HOME (embedded PostgreSQL, local object
store), starts ``observatory ui`` in its own process group, and drives headless Chromium over the
DevTools protocol, so each page is captured once it has rendered rather than after a guessed delay:

  asset-graph.png    the global asset lineage, every group expanded, laid out top to bottom
  export-asset.png   export_csv's partition klimadebat|2026-03: the object's URI, size, rows,
                     SHA-256 and download link as the export recorded them

and the researcher portal, served in this process (``tests/live_portal.py``) on the same database,
object store and analysis store, signed in as the demo researcher with a fresh password:

  portal-corpus.png     klimadebat 2026-03's page: its downloads, the volume chart, top actors and terms
  portal-downloads.png  that page's downloads table, each export with its rows, size and SHA-256

``--only dagster`` or ``--only portal`` takes one half (the portal's needs no Dagster UI).

Everything started here (the UI's process group, Chromium's, the embedded PostgreSQL) is stopped
at the end, whatever happens. Needs Chromium (``--chromium``, default: found on PATH).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_stack import LiveStack  # noqa: E402

DESIGN = "klimadebat"
MONTH = "2026-03"
WIDTH, HEIGHT = 1600, 1000
MAX_BYTES = 400_000


class Chromium:
    """Headless Chromium in its own process group, one page, spoken to over the DevTools protocol."""

    def __init__(self, binary: str, width: int, height: int):
        from websockets.sync.client import connect  # ships with dagster-webserver (uvicorn[standard])

        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="screenshots-chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--no-first-run",
                f"--window-size={width},{height}",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.ws = None
        self._exit = contextlib.ExitStack()
        try:
            port = self._devtools_port(timeout=30)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                page = next(t for t in json.load(resp) if t["type"] == "page")
            self.ws = self._exit.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
            self._id = 0
            self.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float) -> int:
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            text = active.read_text() if active.exists() else ""
            if text.strip():
                return int(text.split()[0])
            time.sleep(0.2)
        raise RuntimeError(f"chromium opened no DevTools port within {timeout:.0f} s")

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, predicate: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(f"!!({predicate})"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the page did not show {what} within {timeout:.0f} s")
            time.sleep(0.5)

    def click(self, element: str) -> None:
        """A real mouse click in the middle of the element (React ignores some synthetic clicks)."""
        box = self.eval(
            f"(() => {{ const e = {element}; if (!e) return null; const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if box is None:
            raise RuntimeError(f"nothing to click: {element}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def double_click_at(self, point) -> None:
        if point is None:
            raise RuntimeError("found no empty spot on the graph to double-click")
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.call(
                    "Input.dispatchMouseEvent", type=kind, x=point[0], y=point[1], button="left", clickCount=count
                )

    def screenshot(self, path: Path, height: int | None = None) -> int:
        clip = {"x": 0, "y": 0, "width": self.width, "height": height or self.height, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png", clip=clip)["data"])
        path.write_bytes(data)
        return len(data)

    def close(self) -> None:
        try:
            self._exit.close()
        except Exception:
            pass  # the browser is killed next anyway
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


#: A point on the graph's empty background: the element hit there holds the graph's nodes.
BLANK_CANVAS_POINT = """(() => {
  for (let y = 150; y < innerHeight - 20; y += 20)
    for (let x = innerWidth - 100; x > 100; x -= 20) {
      const hit = document.elementFromPoint(x, y);
      if (hit && !hit.closest('svg') && hit.querySelector('foreignObject')) return [x, y];
    }
  return null;
})()"""


def texts_present(*texts: str) -> str:
    return " && ".join(f"(document.body?.innerText ?? '').includes({json.dumps(t)})" for t in texts)


def asset_graph(browser: Chromium, stack: LiveStack, out: Path) -> int:
    nodes = stack.graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    groups = sorted({n["groupName"] for n in nodes})
    # Settings the UI keeps in localStorage: the navigation folded away, the graph top to bottom
    # (the groups then fit side by side in a landscape window).
    browser.goto(stack.url + "/server_info")
    browser.wait_for("document.readyState === 'complete'", "the server info")
    browser.eval(
        "localStorage.setItem('dagster-nav-collapsed', 'true');"
        "localStorage.setItem('asset-graph-direction', JSON.stringify('vertical')); true"
    )
    expanded = ",".join(f"global@global:{g}" for g in groups)
    browser.goto(f"{stack.url}/asset-groups?expanded={urllib.parse.quote(expanded, safe='@:,')}")
    sidebar_toggle = "document.querySelector('[aria-label=panel_show_right]')?.closest('button')"
    browser.wait_for(f"{sidebar_toggle} && {texts_present('export_manifest', *groups)}", "the asset graph")
    # Fold the asset sidebar away, then let the graph re-fit the wider canvas (as a double-click does).
    browser.click(sidebar_toggle)
    time.sleep(1)
    browser.double_click_at(browser.eval(BLANK_CANVAS_POINT))
    time.sleep(2)  # the re-fit is animated
    return browser.screenshot(out)


def export_asset(browser: Chromium, stack: LiveStack, out: Path) -> int:
    partition = f"{DESIGN}|{MONTH}"
    browser.goto(f"{stack.url}/assets/export_csv?view=partitions&partition={urllib.parse.quote(partition, safe='')}")
    browser.wait_for(
        texts_present(partition, "sha256", "download_link", "size_bytes", "rows"),
        "export_csv's materialization metadata",
    )
    time.sleep(1)
    # Down to just below the metadata table: the rest of the page is empty.
    bottom = browser.eval(
        "Math.max(...[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().bottom))"
    )
    return browser.screenshot(out, height=_clip_height(bottom, margin=120))


# --- the portal ---------------------------------------------------------------------------------


def portal_sign_in(browser: Chromium, url: str, email: str, password: str) -> None:
    """Fill the sign-in form and submit it as the button would (the page itself runs no script)."""
    browser.goto(f"{url}/sign-in?next=/corpora/{DESIGN}/{MONTH}")
    browser.wait_for("document.querySelector('#password')", "the sign-in form")
    browser.eval(
        f"document.querySelector('#email').value = {json.dumps(email)};"
        f"document.querySelector('#password').value = {json.dumps(password)};"
        "document.querySelector('form.stack').requestSubmit(); true"
    )
    browser.wait_for(f"location.pathname === '/corpora/{DESIGN}/{MONTH}'", "the corpus page after signing in")


def _region(browser: Chromium, selector: str, margin: int = 16) -> dict:
    box = browser.eval(
        f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
        " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
    )
    return {
        "x": max(0, box["x"] - margin),
        "y": max(0, box["y"] - margin),
        "width": box["width"] + 2 * margin,
        "height": box["height"] + 2 * margin,
        "scale": 1,
    }


def _capture(browser: Chromium, path: Path, clip: dict) -> int:
    shot = browser.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
    data = base64.b64decode(shot["data"])
    path.write_bytes(data)
    return len(data)


def portal_corpus(browser: Chromium, url: str, out: Path) -> int:
    browser.goto(f"{url}/corpora/{DESIGN}/{MONTH}")
    browser.wait_for(
        f"document.querySelector('svg.chart rect') && {texts_present('Downloads', 'Top terms', 'Top actors')}",
        "the corpus page with its chart",
    )
    # From the header down to the end of the top actors and terms, as wide as the page's column.
    top = _region(browser, "header", margin=0)
    main = _region(browser, "main", margin=0)
    bottom = _region(browser, "main .columns", margin=0)
    clip = {"x": main["x"], "y": 0, "width": main["width"], "height": bottom["y"] + bottom["height"], "scale": 1}
    clip["height"] = max(clip["height"], top["height"])
    return _capture(browser, out, clip)


def portal_downloads(browser: Chromium, url: str, out: Path) -> int:
    browser.goto(f"{url}/corpora/{DESIGN}/{MONTH}")
    browser.wait_for(texts_present("Downloads", "content.csv"), "the downloads table")
    return _capture(browser, out, _region(browser, "section[aria-labelledby=exports-heading]"))


@contextlib.contextmanager
def portal_on(stack: LiveStack):
    """The portal on the demo's database and stores, and the demo researcher's fresh password."""
    # This process takes the stack's environment, as the CLI it started did: same home, same stores.
    os.environ.clear()
    os.environ.update(stack.env)
    from observatory_pipelines.core.platform import storage
    from observatory_pipelines.core.platform.database import migrated_engine
    from observatory_pipelines.demo import seed
    from tests.live_portal import live_portal

    with migrated_engine() as engine:
        password = seed.set_portal_password(engine)
        with live_portal(engine, storage.store_from_env()) as url:
            yield url, seed.DEMO_EMAIL, password


def _take(browser: Chromium, out: Path, shots) -> None:
    for name, take in shots:
        try:
            size = take(out / name)
        except Exception:
            seen = Path(tempfile.gettempdir()) / f"screenshots-failed-{name}"
            browser.screenshot(seen)
            print(f"failed on {name}; the page as it was: {seen}", file=sys.stderr, flush=True)
            raise
        note = "" if size <= MAX_BYTES else f" (over {MAX_BYTES // 1000} KB)"
        print(f"{out / name}: {size // 1024} KiB{note}", flush=True)


def _clip_height(bottom, margin: int) -> int:
    """The window's height, or less when the content ends higher up (never a sliver)."""
    if not isinstance(bottom, (int, float)) or bottom <= 0:
        return HEIGHT
    return max(HEIGHT // 2, min(HEIGHT, int(bottom) + margin))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go (default docs/images)"
    )
    parser.add_argument("--home", type=Path, help="OBSERVATORY_HOME to use (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary OBSERVATORY_HOME")
    parser.add_argument(
        "--chromium",
        default=next(
            (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), "chromium"
        ),
    )
    parser.add_argument("--only", choices=("dagster", "portal"), help="take only the Dagster UI's or the portal's")
    args = parser.parse_args(argv)

    started = time.monotonic()
    home = args.home or Path(tempfile.mkdtemp(prefix="obs-"))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with LiveStack(home) as stack:
            print(f"observatory demo --no-ui in {home} ...", flush=True)
            stack.cli("demo", "--no-ui", timeout=900)
            browser = Chromium(args.chromium, WIDTH, HEIGHT)
            try:
                if args.only in (None, "dagster"):
                    salt_file = home / "demo_salt"
                    extra = {"PSEUDONYMIZATION_SALT": salt_file.read_text().strip()} if salt_file.exists() else {}
                    stack.start_ui(extra_env=extra)
                    print(f"Dagster UI on {stack.url}", flush=True)
                    stack.graphql("mutation { setNuxSeen }")  # no "join the community" dialog over the pages
                    _take(
                        browser,
                        args.out,
                        [
                            ("asset-graph.png", lambda path: asset_graph(browser, stack, path)),
                            ("export-asset.png", lambda path: export_asset(browser, stack, path)),
                        ],
                    )
                    stack.stop_ui()
                if args.only in (None, "portal"):
                    with portal_on(stack) as (url, email, password):
                        print(f"portal on {url}, signed in as {email}", flush=True)
                        portal_sign_in(browser, url, email, password)
                        _take(
                            browser,
                            args.out,
                            [
                                ("portal-corpus.png", lambda path: portal_corpus(browser, url, path)),
                                ("portal-downloads.png", lambda path: portal_downloads(browser, url, path)),
                            ],
                        )
            finally:
                browser.close()
    finally:
        if not args.home and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
