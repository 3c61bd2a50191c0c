"""Handing out one export: checked, recorded, then redirected to object storage or streamed.

On S3 the answer is a redirect to a presigned URL that works for a few minutes, so the file never
passes through the portal; on a local store the portal streams it. Either way the download is
recorded first (``export_downloads``): who, which export of which corpus, when, and how.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from observatory_pipelines.core.exports import access
from observatory_pipelines.core.exports.layout import ExportFile, ExportMetadata
from observatory_pipelines.core.platform.storage import ObjectNotFound, ObjectStore
from observatory_pipelines.portal import auth
from observatory_pipelines.portal.auth import Caller, PortalError

#: Long enough to start a large download, short enough that a leaked link is soon useless.
LINK_LIFETIME = timedelta(minutes=5)
_CHUNK = 1024 * 1024


def export_file(filename: str) -> ExportFile:
    file = ExportFile.from_filename(filename)
    if file is None:
        raise auth.not_found()
    return file


def answer(request: Request, who: Caller, slug: str, month: str, filename: str) -> Response:
    file = export_file(filename)
    corpus = auth.corpus(request, who, slug, month)
    engine, store = auth.engine_of(request), request.app.state.store
    try:
        stored = access.stored_export(store, corpus, file)
    except access.ExportMissing as missing:
        # Only the owner (or an admin) gets here, so saying it is not made yet reveals nothing.
        raise PortalError(404, str(missing)) from None
    access.record_download(engine, who.viewer, corpus, file, via=who.via, api_token_id=who.api_token_id)
    link = store.url(stored.key, LINK_LIFETIME)
    if link.startswith(("http://", "https://")):
        return RedirectResponse(link, status_code=303)
    recorded = ExportMetadata.from_object_metadata(stored.metadata)
    headers = {
        "content-disposition": f'attachment; filename="{corpus.slug}_{corpus.month}_{file.filename}"',
        "content-length": str(stored.size),
    }
    if recorded is not None:
        headers["x-checksum-sha256"] = recorded.sha256
    return StreamingResponse(_chunks(store, stored.key), media_type=file.content_type, headers=headers)


def _chunks(store: ObjectStore, key: str):
    try:
        source = store.open(key)
    except ObjectNotFound:
        return
    with source:
        while chunk := source.read(_CHUNK):
            yield chunk
