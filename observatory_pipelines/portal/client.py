"""The portal's API from a researcher's laptop: ``observatory exports download --portal URL --token``.

The export's SHA-256 comes from the portal's listing, and the file appears under its final name
only when what arrived matches it. A redirect to object storage is followed without the token:
httpx drops the Authorization header when a redirect leaves the portal's origin.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import httpx

from observatory_pipelines.core.exports import access
from observatory_pipelines.core.exports.layout import ExportFile
from observatory_pipelines.core.platform.errors import ObservatoryError

TIMEOUT = httpx.Timeout(30.0, read=300.0)


def _failure(response: httpx.Response, portal: str) -> ObservatoryError:
    try:
        message = str(response.json().get("error") or response.reason_phrase)
    except ValueError:
        message = f"HTTP {response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        return ObservatoryError(f"the portal refused the token: {message}")
    return ObservatoryError(f"the portal at {portal} answered {response.status_code}: {message}")


def download(
    portal: str, token: str, slug: str, month: str, file: ExportFile, destination: str | os.PathLike[str]
) -> Path:
    """Fetch one export through the portal to ``destination`` (a folder or a file path), verified."""
    portal = portal.rstrip("/")
    base = f"{portal}/api/v1/corpora/{quote(slug, safe='')}/{quote(month, safe='')}/exports"
    target = access.target_path(Path(destination), slug, month, file)
    headers = {"authorization": f"Bearer {token}"}
    try:
        with httpx.Client(timeout=TIMEOUT, headers=headers, follow_redirects=True) as client:
            listing = client.get(base)
            if listing.status_code != 200:
                raise _failure(listing, portal)
            recorded = next((item for item in listing.json() if item.get("file") == file.filename), None)
            if recorded is None:
                made = ", ".join(item["file"] for item in listing.json()) or "none"
                raise ObservatoryError(
                    f"no {file.filename} export of {slug!r} for {month} yet (made so far: {made}); ask the "
                    "observatory's data engineers to make it"
                )
            with client.stream("GET", f"{base}/{quote(file.filename)}") as answer:
                if answer.status_code != 200:
                    answer.read()
                    raise _failure(answer, portal)
                access.save_verified(
                    answer.iter_bytes(1024 * 1024), target, recorded.get("sha256"), f"the download of {file.filename}"
                )
    except httpx.HTTPError as exc:
        raise ObservatoryError(f"cannot reach the portal at {portal} ({type(exc).__name__}); check --portal") from None
    return target
