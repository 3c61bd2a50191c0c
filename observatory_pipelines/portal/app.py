"""The portal's FastAPI app: its parts, its limits, and how it answers when something is wrong.

Every failure is one line for the person: a page with the message (or ``{"error": ...}`` under
``/api/``), never a stack trace. Unexpected errors are logged with their trace on the server and
answered with a plain 500.
"""

from __future__ import annotations

import json
import logging
from importlib import resources

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observatory_pipelines.core.platform.errors import DatabaseUnavailable
from observatory_pipelines.core.platform.storage import ObjectStore
from observatory_pipelines.portal import security
from observatory_pipelines.portal.auth import PortalError, SignInNeeded, optional_caller

log = logging.getLogger(__name__)

#: Forms here hold an address, a password or a token name: anything bigger is not one of ours.
MAX_BODY_BYTES = 16 * 1024

_PACKAGE = resources.files("observatory_pipelines.portal")
templates = Jinja2Templates(directory=str(_PACKAGE / "templates"))


def pretty_json(value: object) -> str:
    """JSON for people to read in a page: indented, æøå as themselves (``tojson`` writes \\u00e6),
    and HTML-escaped by the template's autoescaping like any other text."""
    return json.dumps(value, indent=2, ensure_ascii=False)


templates.env.filters["pretty_json"] = pretty_json


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def render(request: Request, template: str, status: int = 200, **context) -> Response:
    """A page, with the signed-in viewer and a CSRF token for its forms."""
    config: security.PortalConfig = request.app.state.config
    # One token per browser until sign-in changes it, so two open tabs' forms both work.
    token = security.unsign(config.secret, "csrf", request.cookies.get(security.CSRF_COOKIE))
    fresh = token is None
    token = token or security.new_csrf_token()
    response = templates.TemplateResponse(
        request,
        template,
        {"caller": optional_caller_quiet(request), "csrf_token": token, **context},
        status_code=status,
    )
    if fresh:
        response.set_cookie(
            security.CSRF_COOKIE,
            security.sign(config.secret, "csrf", token),
            httponly=True,
            samesite="strict",
            secure=config.secure_cookies,
            path="/",
        )
    return response


def optional_caller_quiet(request: Request):
    """The caller for the page's header; a revoked token, an ended session or a database that does
    not answer just shows no one (an error page must render whatever went wrong)."""
    try:
        return optional_caller(request)
    except (PortalError, DatabaseUnavailable, sa.exc.OperationalError):
        return None


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes, whether or not a Content-Length was sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, receive, send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(scope, receive, send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    message = f"the form was larger than {limit // 1024} KiB; nothing was changed"
    if scope["path"].startswith("/api/"):
        response: Response = JSONResponse({"error": message}, status_code=413)
    else:
        response = Response(
            f"<!doctype html><title>Too large</title><main><h1>Too large</h1><p>{message}.</p>"
            '<p><a href="/">Back to the portal</a></p></main>',
            status_code=413,
            media_type="text/html",
        )
    await response(scope, receive, send)


SECURITY_HEADERS = {
    # No scripts at all: the pages are server-rendered, so nothing injected could run.
    "content-security-policy": "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def with_security_headers(request: Request, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("cache-control", "no-store")
    return response


def create_app(engine: sa.Engine, store: ObjectStore, config: security.PortalConfig) -> FastAPI:
    from observatory_pipelines.portal import api, pages

    app = FastAPI(
        title="Observatory portal API",
        version="1",
        description=(
            "Your corpora and their exports, for scripts. Authenticate with a personal token from the "
            "portal's Tokens page: `Authorization: Bearer obs_...`. Another researcher's corpus answers 404, "
            "exactly as one that does not exist."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.engine = engine
    app.state.store = store
    app.state.config = config
    app.mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        return with_security_headers(request, await call_next(request))

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(PortalError)
    async def portal_error(request: Request, exc: PortalError) -> Response:
        return error_response(request, exc.status, exc.message, exc.headers, sign_in=isinstance(exc, SignInNeeded))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "there is nothing here, or nothing you may see", 405: "this address does not take that method"}
        return error_response(request, exc.status_code, message.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return error_response(request, 422, f"{where}: {first.get('msg', 'is not valid')}".lower())

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(sa.exc.OperationalError)
    async def database_down(request: Request, exc: Exception) -> Response:
        log.warning("portal: %s %s: the database did not answer: %s", request.method, request.url.path, exc)
        answer = error_response(request, 503, "the database is not answering; try again in a few minutes")
        answer.headers["retry-after"] = "60"
        return answer

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("portal: %s %s failed", request.method, request.url.path)
        # Answered outside the other middleware (Starlette's outermost layer), so the headers go on here.
        answer = error_response(request, 500, "something went wrong on our side; try again, or tell an admin")
        return with_security_headers(request, answer)

    return app


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None, *, sign_in: bool = False
) -> Response:
    if is_api(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    if sign_in and request.method == "GET":
        # A page asked for while signed out: sign in, then come back to it.
        redirect = RedirectResponse(f"/sign-in?next={_local_path(request)}", status_code=303)
        redirect.delete_cookie(security.SESSION_COOKIE, path="/")
        return redirect
    response = render(request, "error.html", status=status, message=message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _local_path(request: Request) -> str:
    from urllib.parse import quote

    return quote(request.url.path, safe="/")
