"""Who is asking: the one place every page and endpoint learns its viewer and its corpus.

A request is authenticated by an API token (``Authorization: Bearer obs_...``) or by the session
cookie. Authorization is ``core.exports.access``: a corpus is looked up only through
``visible_corpus``, and a corpus the viewer may not see is answered exactly as one that does not
exist, with a 404 — never a 403, which would say it exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import Request

from observatory_pipelines.core.accounts import api_tokens, signin
from observatory_pipelines.core.collection.designs import Corpus
from observatory_pipelines.core.exports import access
from observatory_pipelines.core.exports.access import Viewer
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.portal import security


class PortalError(Exception):
    """An answer other than the page asked for, with a one-line message for the person."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class SignInNeeded(PortalError):
    def __init__(self, message: str = "sign in to see this page") -> None:
        super().__init__(401, message)


NOT_FOUND = "there is nothing here, or nothing you may see; your corpora are listed at /corpora"


def not_found() -> PortalError:
    # One message for "does not exist" and "is someone else's": the answer must not tell them apart.
    return PortalError(404, NOT_FOUND)


@dataclass(frozen=True)
class Caller:
    viewer: Viewer
    #: Set when the request came with an API token, for the download audit.
    api_token_id: uuid.UUID | None = None

    @property
    def via(self) -> str:
        return "token" if self.api_token_id else "session"


def engine_of(request: Request) -> sa.Engine:
    return request.app.state.engine


def _authenticate(request: Request) -> Caller | None:
    engine = engine_of(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SignInNeeded("send the API token as: Authorization: Bearer obs_...")
        found = api_tokens.token_viewer(engine, token.strip())
        if found is None:
            raise SignInNeeded("this API token is revoked or unknown; create a new one on the portal's Tokens page")
        return Caller(viewer=found[0], api_token_id=found[1])
    config: security.PortalConfig = request.app.state.config
    cookie = request.cookies.get(security.SESSION_COOKIE)
    if cookie is None:
        return None
    signed = security.unsign(config.secret, "session", cookie)
    viewer = signin.session_viewer(engine, signed) if signed else None
    return None if viewer is None else Caller(viewer=viewer)


def optional_caller(request: Request) -> Caller | None:
    """The caller, or ``None`` when nobody is signed in (computed once per request)."""
    if not hasattr(request.state, "caller"):
        request.state.caller = _authenticate(request)
    return request.state.caller


def caller(request: Request) -> Caller:
    found = optional_caller(request)
    if found is None:
        had_cookie = security.SESSION_COOKIE in request.cookies
        raise SignInNeeded("your session has ended; sign in again" if had_cookie else "sign in to see this page")
    return found


def admin(request: Request) -> Caller:
    """An admin; anyone else gets the 404 an unknown page gets."""
    found = caller(request)
    if not found.viewer.is_admin:
        raise not_found()
    return found


def corpus(request: Request, who: Caller, slug: str, month: str) -> Corpus:
    """The corpus, if the caller may see it; a 404 otherwise (and for a malformed month or slug)."""
    try:
        with engine_of(request).connect() as conn:
            return access.visible_corpus(conn, who.viewer, slug, month)
    except (access.AccessRefused, ObservatoryError, ValueError):
        raise not_found() from None
