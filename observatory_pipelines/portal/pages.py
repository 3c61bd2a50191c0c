"""The portal's pages: signing in and out, invitations, corpora, downloads, credits, tokens, users."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from observatory_pipelines.core import corpora
from observatory_pipelines.core.accounts import api_tokens, signin, users
from observatory_pipelines.core.exports import access
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.portal import auth, downloads, security
from observatory_pipelines.portal.app import optional_caller_quiet, render
from observatory_pipelines.portal.auth import Caller, PortalError, engine_of

router = APIRouter(include_in_schema=False)

Signed = Annotated[Caller, Depends(auth.caller)]
Admin = Annotated[Caller, Depends(auth.admin)]


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted form, after checking its CSRF token against the signed cookie."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    config: security.PortalConfig = request.app.state.config
    if not security.csrf_matches(config.secret, request.cookies.get(security.CSRF_COOKIE), fields.get("csrf_token")):
        raise PortalError(
            403, "this form has expired or did not come from this portal; reload the page and submit it again"
        )
    return fields


Form = Annotated[dict[str, str], Depends(form_fields)]


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only, so the link cannot send anyone away."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/corpora"
    parts = urlsplit(value)
    return "/corpora" if parts.scheme or parts.netloc else value


@router.get("/healthz")
def healthz(request: Request) -> dict[str, str]:
    database.ping(engine_of(request))
    return {"status": "ok"}


@router.get("/")
def home(request: Request) -> Response:
    return _see_other("/corpora" if optional_caller_quiet(request) else "/sign-in")


# --- signing in ------------------------------------------------------------------------------------


@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:
    return render(request, "sign_in.html", next=_safe_next(next), email="")


@router.post("/sign-in")
def sign_in(request: Request, fields: Form) -> Response:
    config: security.PortalConfig = request.app.state.config
    email, next_path = fields.get("email", ""), _safe_next(fields.get("next"))
    address = request.client.host if request.client else ""
    try:
        token = signin.sign_in(engine_of(request), email, fields.get("password", ""), address, secret=config.secret)
    except signin.SignInThrottled as refused:
        seconds = str(max(1, int(refused.retry_after.total_seconds())))
        page = render(request, "sign_in.html", status=429, error=str(refused), next=next_path, email=email)
        page.headers["retry-after"] = seconds
        return page
    except signin.SignInRefused as refused:
        return render(request, "sign_in.html", status=401, error=str(refused), next=next_path, email=email)
    response = _see_other(next_path)
    response.set_cookie(
        security.SESSION_COOKIE,
        security.sign(config.secret, "session", token),
        max_age=int(signin.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=config.secure_cookies,
        path="/",
    )
    # A new CSRF token for the signed-in browser: one planted before sign-in is worth nothing after.
    response.delete_cookie(security.CSRF_COOKIE, path="/")
    return response


@router.post("/sign-out")
def sign_out(request: Request, fields: Form) -> Response:
    config: security.PortalConfig = request.app.state.config
    token = security.unsign(config.secret, "session", request.cookies.get(security.SESSION_COOKIE))
    if token:
        signin.end_session(engine_of(request), token)
    response = _see_other("/sign-in?signed_out=1")
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    response.delete_cookie(security.CSRF_COOKIE, path="/")
    return response


@router.get("/invitation/{token}")
def invitation_page(request: Request, token: str) -> Response:
    try:
        email = signin.invitation_email(engine_of(request), token)
    except signin.InvitationInvalid as invalid:
        return render(request, "error.html", status=410, message=str(invalid))
    return render(request, "invitation.html", email=email, token=token)


@router.post("/invitation/{token}")
def accept_invitation(request: Request, token: str, fields: Form) -> Response:
    password, again = fields.get("password", ""), fields.get("password_again", "")
    engine = engine_of(request)
    try:
        email = signin.invitation_email(engine, token)
        if password != again:
            raise signin.PasswordRejected("the two passwords differ")
        signin.accept_invitation(engine, token, password)
    except signin.InvitationInvalid as invalid:
        return render(request, "error.html", status=410, message=str(invalid))
    except signin.PasswordRejected as rejected:
        return render(request, "invitation.html", status=422, email=email, token=token, error=str(rejected))
    return _see_other("/sign-in?password_set=1")


# --- corpora ---------------------------------------------------------------------------------------


@router.get("/corpora")
def corpora_page(request: Request, who: Signed) -> Response:
    with engine_of(request).connect() as conn:
        found = corpora.list_corpora(conn, who.viewer)
    return render(request, "corpora.html", corpora=found)


@router.get("/corpora/{slug}/{month}")
def corpus_page(request: Request, who: Signed, slug: str, month: str) -> Response:
    try:
        detail = corpora.corpus_month(engine_of(request), request.app.state.store, who.viewer, slug, month)
    except (access.AccessRefused, ObservatoryError, ValueError):
        raise auth.not_found() from None
    return render(request, "corpus.html", corpus=detail, chart=volume_chart(detail.volume_daily))


@router.get("/corpora/{slug}/{month}/exports/{filename}")
def download(request: Request, who: Signed, slug: str, month: str, filename: str) -> Response:
    return downloads.answer(request, who, slug, month, filename)


# --- credits, tokens, users ------------------------------------------------------------------------


@router.get("/credits")
def credits_page(request: Request, who: Signed, before: str | None = None) -> Response:
    try:
        overview = corpora.credit_overview(engine_of(request), who.viewer, before=before)
    except ValueError:
        raise PortalError(400, "that page of the credit history does not exist; start again at /credits") from None
    return render(request, "credits.html", overview=overview)


@router.get("/tokens")
def tokens_page(request: Request, who: Signed) -> Response:
    return render(request, "tokens.html", tokens=api_tokens.list_tokens(engine_of(request), who.viewer))


@router.post("/tokens")
def create_token(request: Request, who: Signed, fields: Form) -> Response:
    engine = engine_of(request)
    try:
        info, token = api_tokens.create_token(engine, who.viewer, fields.get("name", ""))
    except api_tokens.TokenNameRejected as rejected:
        tokens = api_tokens.list_tokens(engine, who.viewer)
        return render(request, "tokens.html", status=422, tokens=tokens, error=str(rejected))
    tokens = api_tokens.list_tokens(engine, who.viewer)
    return render(request, "tokens.html", status=201, tokens=tokens, created=info, new_token=token)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, who: Signed, token_id: str, fields: Form) -> Response:
    try:
        found = api_tokens.revoke_token(engine_of(request), who.viewer, uuid.UUID(token_id))
    except ValueError:
        found = False
    if not found:
        raise auth.not_found()
    return _see_other("/tokens")


@router.get("/api")
def api_page(request: Request, who: Signed) -> Response:
    return render(request, "api.html", spec=request.app.openapi())


@router.get("/admin/users")
def users_page(request: Request, who: Admin) -> Response:
    return render(request, "users.html", users=users.list_users(engine_of(request)))


# --- the volume chart ------------------------------------------------------------------------------

CHART_HEIGHT = 120


def volume_chart(volume_daily: list[dict]) -> dict | None:
    """Bars for an inline SVG: records per day over every arena (no script, no image request)."""
    per_day: dict[date, int] = {}
    for row in volume_daily:
        day = row["day"]
        per_day[day] = per_day.get(day, 0) + int(row["records"])
    if not per_day:
        return None
    days = sorted(per_day)
    first = days[0].replace(day=1)
    span = max((day - first).days for day in days) + 1
    peak = max(per_day.values())
    bars = [
        {
            "x": (day - first).days,
            "height": max(1.0, CHART_HEIGHT * count / peak),
            "day": day,
            "records": count,
        }
        for day, count in sorted(per_day.items())
    ]
    return {"bars": bars, "width": max(span, 28), "height": CHART_HEIGHT, "peak": peak, "total": sum(per_day.values())}
