"""The researcher portal as researchers, admins and strangers use it: FastAPI's TestClient in front
of the real app, on real PostgreSQL and a real object store.

Isolation is tested as a matrix: every page and API endpoint that names a corpus, an export or a
token is asked for with another researcher's session and with their token, and must answer exactly
what it answers for something that does not exist (404, same body) — never the data, never a 403.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from observatory_pipelines.core.accounts import api_tokens, signin
from observatory_pipelines.core.accounts import users as users_module
from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.exports.access import Viewer
from observatory_pipelines.core.platform.storage import LocalObjectStore
from observatory_pipelines.portal import security
from observatory_pipelines.portal.app import MAX_BODY_BYTES, create_app
from tests.factories import (
    ADMIN,
    KAREN,
    KLIMA_CSV,
    SOEREN,
    People,
    at,
    corpus_of,
    record,
    seed_exports,
    seed_people,
)

PASSWORD = "Rødgrød med fløde 2026"
SECRET = b"portal-test-secret-not-for-production"


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "store")


@pytest.fixture
def people(engine, store) -> People:
    found = seed_people(engine)
    seed_exports(store, found)
    for email in (KAREN, SOEREN, ADMIN):
        signin.set_password(engine, email, PASSWORD)
    return found


@pytest.fixture
def app(engine, store, people, isolated_settings):
    return create_app(engine, store, security.PortalConfig(secret=SECRET, base_url="http://testserver"))


def client_for(app) -> TestClient:
    return TestClient(app, follow_redirects=False)


def csrf_of(client: TestClient, path: str = "/sign-in") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, f"no form on {path}"
    return found.group(1)


def signed_in(app, email: str, password: str = PASSWORD) -> TestClient:
    client = client_for(app)
    answer = client.post(
        "/sign-in", data={"email": email, "password": password, "csrf_token": csrf_of(client), "next": "/corpora"}
    )
    assert answer.status_code == 303, answer.text
    return client


def viewer(engine, email: str) -> Viewer:
    from observatory_pipelines.core.exports.access import viewer_for

    return viewer_for(engine, email)


def bearer(engine, email: str) -> dict[str, str]:
    _, token = api_tokens.create_token(engine, viewer(engine, email), "test script")
    return {"authorization": f"Bearer {token}"}


# --- signing in ------------------------------------------------------------------------------------


def test_signing_in_sets_a_signed_httponly_samesite_cookie_and_sign_out_ends_the_session(app, engine):
    client = client_for(app)
    assert client.get("/corpora").headers["location"] == "/sign-in?next=/corpora"
    answer = client.post(
        "/sign-in", data={"email": "KAREN.Blixen@ku.dk", "password": PASSWORD, "csrf_token": csrf_of(client)}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/corpora"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(security.SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    stolen = client.cookies[security.SESSION_COOKIE]
    assert client.get("/corpora").status_code == 200

    assert client.post("/sign-out", data={"csrf_token": csrf_of(client, "/corpora")}).status_code == 303
    replay = client_for(app)
    replay.cookies.set(security.SESSION_COOKIE, stolen)
    assert replay.get("/corpora").headers["location"].startswith("/sign-in")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM portal_sessions WHERE ended_at IS NULL")).scalar() == 0


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(app):
    client = client_for(app)
    token = csrf_of(client)
    wrong = client.post("/sign-in", data={"email": KAREN, "password": "forkert kodeord!", "csrf_token": token})
    unknown = client.post("/sign-in", data={"email": "ingen@ku.dk", "password": PASSWORD, "csrf_token": token})
    inactive = client.post(
        "/sign-in", data={"email": "tidligere.forsker@ku.dk", "password": PASSWORD, "csrf_token": token}
    )
    assert wrong.status_code == unknown.status_code == inactive.status_code == 401
    message = "wrong e-mail address or password"
    assert message in wrong.text and message in unknown.text and message in inactive.text
    assert security.SESSION_COOKIE not in client.cookies


def test_repeated_failures_are_slowed_per_account_whether_or_not_it_exists(app):
    client = client_for(app)
    token = csrf_of(client)
    for email in (KAREN, "ingen@ku.dk"):
        for _ in range(signin.MAX_FAILURES_PER_ACCOUNT):
            client.post("/sign-in", data={"email": email, "password": "forkert kodeord!", "csrf_token": token})
        throttled = client.post("/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert throttled.status_code == 429, email
        assert "too many failed sign-ins; wait 15 minutes" in throttled.text
        assert int(throttled.headers["retry-after"]) > 800
    # Another account from the same address is not locked out by these.
    other = client.post("/sign-in", data={"email": SOEREN, "password": PASSWORD, "csrf_token": token})
    assert other.status_code == 303


def test_repeated_failures_are_slowed_per_address(engine, people):
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    for number in range(signin.MAX_FAILURES_PER_ADDRESS):
        with pytest.raises(signin.SignInRefused):
            signin.sign_in(engine, f"gæt{number}@ku.dk", "forkert", "10.0.0.7", secret=SECRET, now=now)
    with pytest.raises(signin.SignInThrottled):
        signin.sign_in(engine, KAREN, PASSWORD, "10.0.0.7", secret=SECRET, now=now)
    assert signin.sign_in(engine, KAREN, PASSWORD, "10.0.0.8", secret=SECRET, now=now)
    later = now + signin.FAILURE_WINDOW + timedelta(seconds=1)
    assert signin.sign_in(engine, KAREN, PASSWORD, "10.0.0.7", secret=SECRET, now=later)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT account_hash, address_hash FROM sign_in_failures")).all()
    assert all("10.0.0.7" not in value and "@" not in value for row in stored for value in row)


def test_a_tampered_or_expired_session_cookie_signs_nobody_in(app, engine):
    client = signed_in(app, KAREN)
    good = client.cookies[security.SESSION_COOKIE]
    token, _, mac = good.rpartition(".")
    for forged in (f"{token}x.{mac}", f"{token}.{mac[:-2]}AA", "garbage", ""):
        other = client_for(app)
        other.cookies.set(security.SESSION_COOKIE, forged)
        answer = other.get("/corpora")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in"), forged
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE portal_sessions SET expires_at = now() - interval '1 second'"))
    # The API says so in JSON; a page sends the browser to sign in, and forgets the dead cookie.
    answer = client.get("/api/v1/corpora")
    assert answer.status_code == 401 and answer.json() == {"error": "your session has ended; sign in again"}
    assert client.get("/corpora").headers["location"].startswith("/sign-in")
    assert security.SESSION_COOKIE not in client.cookies


def test_every_changing_form_needs_its_csrf_token(app, engine):
    client = signed_in(app, KAREN)
    for path, data in (
        ("/sign-out", {}),
        ("/tokens", {"name": "laptop"}),
        ("/sign-in", {"email": KAREN, "password": PASSWORD}),
    ):
        for token in (None, "forged-token"):
            sent = dict(data, **({"csrf_token": token} if token else {}))
            answer = client.post(path, data=sent)
            assert answer.status_code == 403, (path, token)
            assert "this form has expired or did not come from this portal" in answer.text
            assert "Traceback" not in answer.text
    assert api_tokens.list_tokens(engine, viewer(engine, KAREN)) == []
    assert client.get("/corpora").status_code == 200  # still signed in


def test_an_oversized_form_is_refused_in_one_line(app):
    client = client_for(app)
    token = csrf_of(client)
    answer = client.post("/sign-in", data={"email": "x" * (MAX_BODY_BYTES + 1), "password": "y", "csrf_token": token})
    assert answer.status_code == 413 and "larger than 16 KiB; nothing was changed" in answer.text
    api = client.post("/api/v1/corpora", content=b"{" + b" " * (MAX_BODY_BYTES + 1))
    assert api.status_code == 413 and api.json()["error"].startswith("the form was larger than")


def test_invitation_links_work_once_and_expire(app, engine, people):
    invitation = signin.invite(engine, SOEREN, "cli:test")
    client = client_for(app)
    page = client.get(f"/invitation/{invitation.token}")
    assert page.status_code == 200 and "søren.ørsted@au.dk" in page.text
    token = csrf_of(client, f"/invitation/{invitation.token}")
    short = client.post(
        f"/invitation/{invitation.token}", data={"password": "kort", "password_again": "kort", "csrf_token": token}
    )
    assert short.status_code == 422 and "at least 12 characters" in short.text
    new = "Æbleskiver i december!"
    done = client.post(
        f"/invitation/{invitation.token}", data={"password": new, "password_again": new, "csrf_token": token}
    )
    assert done.status_code == 303 and done.headers["location"] == "/sign-in?password_set=1"
    assert signed_in(app, SOEREN, new).get("/corpora").status_code == 200
    used = client.get(f"/invitation/{invitation.token}")
    assert used.status_code == 410 and "expired or was already used; ask an admin for a new one" in used.text

    expired = signin.invite(
        engine, KAREN, "cli:test", lifetime=timedelta(days=1), now=datetime.now(UTC) - timedelta(days=2)
    )
    answer = client.get(f"/invitation/{expired.token}")
    assert answer.status_code == 410 and "expired or was already used" in answer.text
    assert client.get("/invitation/made-up-token").status_code == 410


def test_a_new_password_ends_every_session(app, engine):
    client = signed_in(app, KAREN)
    signin.set_password(engine, KAREN, "Et helt nyt kodeord")
    assert client.get("/corpora").headers["location"].startswith("/sign-in")


# --- API tokens ------------------------------------------------------------------------------------


def test_a_token_is_shown_once_stored_hashed_records_its_use_and_can_be_revoked(app, engine):
    client = signed_in(app, KAREN)
    made = client.post("/tokens", data={"name": "Analyse på laptop", "csrf_token": csrf_of(client, "/tokens")})
    assert made.status_code == 201
    token = re.search(r'value="(obs_[A-Za-z0-9_-]+)"', made.text).group(1)
    listing = client.get("/tokens").text
    assert token not in listing and "Analyse på laptop" in listing and "never" in listing
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash, prefix FROM api_tokens")).one()
    assert token not in stored.token_hash and token.startswith(stored.prefix)

    api = client_for(app)
    answer = api.get("/api/v1/corpora", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert "never" not in client.get("/tokens").text

    token_id = api_tokens.list_tokens(engine, viewer(engine, KAREN))[0].id
    assert client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(client, "/tokens")}).status_code == 303
    refused = api.get("/api/v1/corpora", headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "this API token is revoked or unknown; create a new one on the portal's Tokens page"
    }
    assert "revoked" in client.get("/tokens").text


def test_a_token_needs_a_name(app):
    client = signed_in(app, KAREN)
    answer = client.post("/tokens", data={"name": "   ", "csrf_token": csrf_of(client, "/tokens")})
    assert answer.status_code == 422 and "give the token a name" in answer.text


def test_a_malformed_authorization_header_is_one_json_line(app):
    answer = client_for(app).get("/api/v1/corpora", headers={"authorization": "Basic a2FyZW46aGVtbWVsaWc="})
    assert answer.status_code == 401 and answer.json() == {
        "error": "send the API token as: Authorization: Bearer obs_..."
    }


# --- corpora and downloads -------------------------------------------------------------------------


def test_a_researcher_sees_their_corpora_with_status_records_and_failures(app, engine):
    design = corpus_of(engine, "klimadebat", "2026-03").design_id
    ingest.write_batch(engine, [record(design, f"k{n}", at(n + 1), text="Grøn omstilling på Ærø") for n in range(3)])
    page = signed_in(app, KAREN).get("/corpora")
    assert page.status_code == 200
    assert "klimadebat" in page.text and "2026-03" in page.text and "vindmoeller" not in page.text
    api = client_for(app).get("/api/v1/corpora", headers=bearer(engine, KAREN)).json()
    klima = next(item for item in api if (item["design"], item["month"]) == ("klimadebat", "2026-03"))
    assert klima["records"] == 3
    assert all(item["design"] != "vindmoeller" for item in api)


def test_the_corpus_page_shows_its_exports_and_downloads_them_byte_for_byte_with_an_audit_row(app, engine, store):
    client = signed_in(app, KAREN)
    page = client.get("/corpora/klimadebat/2026-03")
    assert page.status_code == 200
    assert "content.csv" in page.text and "manifest.json" in page.text
    # The manifest is shown for reading: æøå as themselves, not JSON's \\u00e6 escapes.
    assert "&#34;note&#34;: &#34;æøå&#34;" in page.text and "\\u00e6" not in page.text
    download = client.get("/corpora/klimadebat/2026-03/exports/content.csv")
    assert download.status_code == 200 and download.content == KLIMA_CSV
    assert download.headers["content-disposition"] == 'attachment; filename="klimadebat_2026-03_content.csv"'
    via_api = client_for(app).get(
        "/api/v1/corpora/klimadebat/2026-03/exports/content.csv", headers=bearer(engine, KAREN)
    )
    assert via_api.content == KLIMA_CSV
    with engine.connect() as conn:
        audit = conn.execute(
            sa.text(
                "SELECT u.email, d.slug, e.month, e.file, e.via, e.api_token_id IS NOT NULL AS with_token "
                "FROM export_downloads e JOIN users u ON u.id = e.user_id JOIN query_designs d ON d.id = e.query_design_id "
                "ORDER BY e.downloaded_at"
            )
        ).all()
    assert [tuple(row) for row in audit] == [
        (KAREN, "klimadebat", "2026-03", "content.csv", "session", False),
        (KAREN, "klimadebat", "2026-03", "content.csv", "token", True),
    ]


def test_a_missing_export_tells_its_owner_what_to_materialize(app, engine):
    answer = client_for(app).get(
        "/api/v1/corpora/klimadebat/2026-03/exports/content.xlsx", headers=bearer(engine, KAREN)
    )
    assert answer.status_code == 404
    assert "materialize the xlsx export for partition klimadebat|2026-03" in answer.json()["error"]


def test_on_s3_a_download_is_a_redirect_to_a_fresh_presigned_url(engine, people, s3_server, isolated_settings):
    from tests.factories import open_s3_store

    s3 = open_s3_store(s3_server)
    seed_exports(s3, people)
    app = create_app(engine, s3, security.PortalConfig(secret=SECRET, base_url="http://testserver"))
    answer = signed_in(app, KAREN).get("/corpora/klimadebat/2026-03/exports/content.csv")
    assert answer.status_code == 303
    link = answer.headers["location"]
    assert link.startswith("http") and "X-Amz-Expires=300" in link and "ku.dk" not in link
    import httpx

    assert httpx.get(link).content == KLIMA_CSV


ISOLATION_PATHS = [
    "/corpora/{slug}/2026-03",
    "/corpora/{slug}/2026-03/exports/content.csv",
    "/corpora/{slug}/2026-03/exports/manifest.json",
    "/corpora/{slug}/2026-03/exports/content.xlsx",
    "/api/v1/corpora/{slug}/2026-03/exports",
    "/api/v1/corpora/{slug}/2026-03/exports/content.csv",
    "/api/v1/corpora/{slug}/2026-03/exports/actor_cooccurrence.gexf",
]


@pytest.mark.parametrize("credential", ["session", "token"])
def test_another_researchers_corpus_is_exactly_a_corpus_that_does_not_exist(app, engine, credential):
    if credential == "session":
        client, headers = signed_in(app, SOEREN), {}
    else:
        client, headers = client_for(app), bearer(engine, SOEREN)
    for path in ISOLATION_PATHS:
        theirs = client.get(path.format(slug="klimadebat"), headers=headers)
        nobodys = client.get(path.format(slug="findes-ikke"), headers=headers)
        assert theirs.status_code == nobodys.status_code == 404, path
        assert theirs.content == nobodys.content, path
        assert b"klimadebat" not in theirs.content and b"Blixen" not in theirs.content
    # Guessing keys, owner folders and paths outside the corpus gets the same nothing.
    for guess in (
        "/corpora/klimadebat/2026-03/exports/..%2F..%2Fvindmoeller%2F2026-03%2Fcontent.csv",
        "/corpora/klimadebat/2026-03/exports/noter.txt",
        "/corpora/klimadebat/..%2F2026-03/exports/content.csv",
        "/corpora/klimadebat/2026-13/exports/content.csv",
        "/api/v1/corpora/klimadebat/marts/exports",
        "/admin/users",
    ):
        answer = client.get(guess, headers=headers)
        assert answer.status_code == 404, guess
        assert b"Traceback" not in answer.content
    # Their own corpus answers.
    assert client.get("/api/v1/corpora/vindmoeller/2026-03/exports", headers=headers).status_code == 200


def test_another_researchers_token_cannot_be_revoked_and_looks_like_none(app, engine):
    _ = bearer(engine, KAREN)
    karens = api_tokens.list_tokens(engine, viewer(engine, KAREN))[0].id
    client = signed_in(app, SOEREN)
    token = csrf_of(client, "/tokens")
    theirs = client.post(f"/tokens/{karens}/revoke", data={"csrf_token": token})
    nobodys = client.post(f"/tokens/{uuid.uuid4()}/revoke", data={"csrf_token": token})
    assert theirs.status_code == nobodys.status_code == 404 and theirs.content == nobodys.content
    assert api_tokens.list_tokens(engine, viewer(engine, KAREN))[0].active


def test_an_admin_sees_every_corpus_and_the_users_page(app, engine):
    client = signed_in(app, ADMIN)
    assert client.get("/corpora/vindmoeller/2026-03").status_code == 200
    assert client.get("/corpora/klimadebat/2026-03/exports/content.csv").content == KLIMA_CSV
    users = client.get("/admin/users")
    assert users.status_code == 200 and "søren.ørsted@au.dk" in users.text and "tidligere.forsker@ku.dk" in users.text


def test_no_page_reveals_a_stack_trace_and_every_page_sends_the_security_headers(app, monkeypatch):
    import observatory_pipelines.core.corpora as corpora

    def broken(*args, **kwargs):
        raise RuntimeError("database exploded with secret detail")

    monkeypatch.setattr(corpora, "list_corpora", broken)
    # As a real server answers: the error handler's page, not the exception re-raised into the test.
    client = TestClient(
        app, follow_redirects=False, raise_server_exceptions=False, cookies=signed_in(app, KAREN).cookies
    )
    answer = client.get("/corpora")
    assert answer.status_code == 500 and "something went wrong on our side" in answer.text
    assert "secret detail" not in answer.text and "Traceback" not in answer.text
    assert "script-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"


def test_the_openapi_page_describes_the_json_api(app):
    spec = client_for(app).get("/api/openapi.json").json()
    assert set(spec["paths"]) == {
        "/api/v1/corpora",
        "/api/v1/corpora/{design}/{month}/exports",
        "/api/v1/corpora/{design}/{month}/exports/{file}",
    }
    page = signed_in(app, KAREN).get("/api")
    assert page.status_code == 200 and "/api/v1/corpora/{design}/{month}/exports/{file}" in page.text


# --- pages stay fast as corpora grow ---------------------------------------------------------------


def statements_for(app, client: TestClient, paths: list[str]) -> dict[str, int]:
    """How many SQL statements each page issues (the session lookup included)."""
    engine = app.state.engine
    seen: list[str] = []

    def counted(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    counts = {}
    sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        for path in paths:
            seen.clear()
            assert client.get(path).status_code == 200, path
            counts[path] = len(seen)
    finally:
        sa.event.remove(engine, "before_cursor_execute", counted)
    return counts


LIST_PAGES = ["/corpora", "/api/v1/corpora", "/tokens", "/credits", "/admin/users"]


def test_list_pages_run_as_many_queries_for_240_corpora_as_for_one(app, engine):
    from tests.factories import add_many_corpora, add_run, make_design

    admin = signed_in(app, ADMIN)
    first = make_design(engine, slug="aeroe-1", terms=("ærø",))
    add_run(engine, first, "2026-03", at(1), (("rss_feeds", "failed", 0, "ingen forbindelse til feedet"),), "failed")
    ingest.write_batch(engine, [record(first, "x1", at(2), terms=["ærø"])])
    small = statements_for(app, admin, LIST_PAGES)

    add_many_corpora(engine, first)
    for number in range(30):
        api_tokens.create_token(engine, viewer(engine, ADMIN), f"script {number}")
    for number in range(40):
        users_module.add_user(engine, f"forsker{number}@ruc.dk", name=f"Forsker Ø{number}")
    large = statements_for(app, admin, LIST_PAGES)

    page = admin.get("/corpora").text
    assert page.count("fil mangler: data.ndjson") == 240
    assert large == small


def test_an_unreachable_database_is_a_503_in_one_line_not_a_stack_trace(store, isolated_settings):
    from observatory_pipelines.core.platform import database

    unreachable = database.make_engine(
        "postgresql://postgres@127.0.0.1:9/observatory", connect_args={"connect_timeout": 2}
    )
    app = create_app(unreachable, store, security.PortalConfig(secret=SECRET, base_url="http://testserver"))
    client = client_for(app)
    token = csrf_of(client)
    for answer in (
        client.post("/sign-in", data={"email": KAREN, "password": PASSWORD, "csrf_token": token}),
        client.get("/healthz"),
        client.get("/api/v1/corpora", headers={"authorization": "Bearer obs_anything"}),
    ):
        assert answer.status_code == 503 and answer.headers["retry-after"] == "60"
        assert "the database is not answering; try again in a few minutes" in answer.text
        assert "Traceback" not in answer.text and "127.0.0.1:9" not in answer.text
    unreachable.dispose()


def test_the_credits_page_shows_the_balance_and_each_charge_with_its_arena_and_run(app, engine, people):
    from observatory_pipelines.core.collection.credits import CreditService
    from tests.factories import add_run

    service = CreditService(engine)
    before = service.available(people.karen)
    service.grant(people.karen, 1_200)
    design = corpus_of(engine, "klimadebat", "2026-03").design_id
    run = add_run(engine, design, "2026-03", at(1))
    service.reserve(people.karen, run, 300, arena="google_search", description="Søgning: grøn omstilling")
    service.settle(run, 120, arena="google_search")
    page = signed_in(app, KAREN).get("/credits")
    assert page.status_code == 200
    assert f"{before + 1_200 - 120:,} credits available" in page.text
    assert re.search(r"Spent</th><td class=\"num\">120<", page.text)
    assert page.text.count("google_search") >= 2 and str(run)[:8] in page.text
    assert "Søgning: grøn omstilling" in page.text
    # Someone else's ledger is not on anyone else's page.
    assert "google_search" not in signed_in(app, SOEREN).get("/credits").text


def test_the_cli_downloads_through_the_portal_with_a_token_and_checks_the_bytes(
    engine, store, people, isolated_settings, tmp_path_factory, capsys
):
    from observatory_pipelines import cli
    from tests.live_portal import live_portal

    tmp_path = tmp_path_factory.mktemp("laptop")

    def download(*extra: str) -> tuple[int, str, str]:
        argv = ["exports", "download", "--design", "klimadebat", "--month", "2026-03", "--to", str(tmp_path), *extra]
        code = cli.main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    _, token = api_tokens.create_token(engine, viewer(engine, KAREN), "laptop")
    isolated_settings.setenv("OBSERVATORY_TOKEN", token)
    with live_portal(engine, store) as url:
        code, out, err = download("--portal", url, "--format", "csv")
        assert code == 0, err
        saved = tmp_path / "klimadebat_2026-03_content.csv"
        assert out.startswith(f"{saved} (") and out.rstrip().endswith("checksum verified)")
        assert saved.read_bytes() == KLIMA_CSV

        code, _, err = download("--portal", url, "--format", "xlsx")
        assert code == 2 and err.count("\n") == 1
        assert err == (
            "observatory: error: no content.xlsx export of 'klimadebat' for 2026-03 yet (made so far: content.csv, "
            "actor_cooccurrence.gexf, manifest.json); ask the observatory's data engineers to make it\n"
        )

        isolated_settings.setenv("OBSERVATORY_TOKEN", bearer(engine, SOEREN)["authorization"].split()[1])
        code, _, err = download("--portal", url, "--format", "csv")
        assert code == 2 and "answered 404: there is nothing here, or nothing you may see" in err

        api_tokens.revoke_token(
            engine, viewer(engine, KAREN), api_tokens.list_tokens(engine, viewer(engine, KAREN))[0].id
        )
        code, _, err = download("--portal", url, "--format", "csv", "--token", token)
        assert code == 2 and err == (
            "observatory: error: the portal refused the token: this API token is revoked or unknown; "
            "create a new one on the portal's Tokens page\n"
        )
    code, _, err = download("--portal", url, "--format", "csv")
    assert code == 2 and err.startswith(f"observatory: error: cannot reach the portal at {url} (ConnectError)")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["klimadebat_2026-03_content.csv"]
