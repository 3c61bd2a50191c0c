"""The JSON API: the same corpora and exports as the pages, under the same access rule.

Scripts authenticate with a personal token (``Authorization: Bearer obs_...``); a signed-in
browser's session works too. Errors are ``{"error": "one line"}``; another researcher's corpus is
a 404, exactly as a corpus that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from observatory_pipelines.core import corpora
from observatory_pipelines.core.corpora import ArenaStatus
from observatory_pipelines.core.exports import access
from observatory_pipelines.portal import auth, downloads
from observatory_pipelines.portal.auth import Caller, engine_of

router = APIRouter(prefix="/api/v1", tags=["corpora"])

Signed = Annotated[Caller, Depends(auth.caller)]

_ERRORS: dict[int | str, dict] = {
    401: {"description": "No token, or a revoked or unknown one", "model": None},
    404: {"description": "No such corpus or export, or none you may see", "model": None},
}


class CorpusOut(BaseModel):
    design: str
    name: str
    month: str
    records: int
    last_run_status: str | None
    last_run_completed_at: datetime | None
    failures: list[str]
    arenas: list[ArenaStatus]
    exports_url: str


class ExportOut(BaseModel):
    file: str
    format: str
    network: str | None
    dynamic: bool
    rows: int | None
    size: int
    sha256: str | None
    created_at: datetime
    download_url: str


@router.get("/corpora", response_model=list[CorpusOut], responses=_ERRORS, summary="Your corpora")
def list_corpora(request: Request, who: Signed) -> list[CorpusOut]:
    """Every design × month you may see (admins: all), newest month first, with each arena's status."""
    with engine_of(request).connect() as conn:
        found = corpora.list_corpora(conn, who.viewer)
    return [
        CorpusOut(
            design=item.slug,
            name=item.design_name,
            month=item.month,
            records=item.records,
            last_run_status=item.last_run.status if item.last_run else None,
            last_run_completed_at=item.last_run.completed_at if item.last_run else None,
            failures=list(item.failures),
            arenas=list(item.arenas),
            exports_url=f"/api/v1/corpora/{item.slug}/{item.month}/exports",
        )
        for item in found
    ]


@router.get(
    "/corpora/{design}/{month}/exports",
    response_model=list[ExportOut],
    responses=_ERRORS,
    summary="A corpus month's exports",
)
def list_exports(request: Request, who: Signed, design: str, month: str) -> list[ExportOut]:
    """The exports made of one corpus month, with their size, rows and SHA-256."""
    corpus = auth.corpus(request, who, design, month)
    found = access.corpus_exports(request.app.state.store, corpus)
    return [
        ExportOut(
            file=item.file.filename,
            format=item.file.format,
            network=item.file.network,
            dynamic=item.file.dynamic,
            rows=item.rows,
            size=item.size,
            sha256=item.sha256,
            created_at=item.last_modified,
            download_url=f"/api/v1/corpora/{corpus.slug}/{corpus.month}/exports/{item.file.filename}",
        )
        for item in found
    ]


@router.get(
    "/corpora/{design}/{month}/exports/{file}",
    responses={
        **_ERRORS,
        200: {"description": "The file, streamed from local storage"},
        303: {"description": "A redirect to a presigned object-storage URL valid for five minutes"},
    },
    response_class=Response,
    summary="Download one export",
)
def fetch_export(request: Request, who: Signed, design: str, month: str, file: str) -> Response:
    """The export file (``file`` as listed, e.g. ``records.csv``). Each download is recorded."""
    return downloads.answer(request, who, design, month, file)
