"""``observatory users``, ``credits`` and ``credentials`` as an admin runs them (``cli.main`` in
process, and the installed command once, with its secret piped on stdin), on real PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from observatory_pipelines import cli
from observatory_pipelines.core.accounts import credentials, users
from observatory_pipelines.core.platform.settings import Secret
from tests.factories import (
    CREDENTIAL_KEY,
    OBSERVATORY,
    OTHER_CREDENTIAL_KEY,
    cli_environment,
    one_line_error,
)

SECRET = "yt-key-Ærøskøbing-0c5d1e"


@pytest.fixture
def admin_cli(admin_env, capsys):
    """Runs ``observatory ARGS`` in process on the test database; returns (exit code, stdout, stderr)."""
    isolated_settings = admin_env

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            isolated_settings.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = cli.main(list(argv))
        except SystemExit as exit:  # the parser's own refusals
            code = exit.code if isinstance(exit.code, int) else 2
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def refused(result: tuple[int, str, str]) -> str:
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_users_are_added_listed_and_deactivated_never_deleted(admin_cli, engine):
    assert admin_cli("users", "add", "karen.blixen@ku.dk", "--name", "Karen Blixen")[1] == (
        "added researcher karen.blixen@ku.dk (Karen Blixen)\n"
    )
    assert admin_cli("users", "add", "åse@observatoriet.dk", "--admin")[0] == 0
    code, out, _ = admin_cli("users", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["email", "name", "role", "active", "created"]
    assert lines[1].split()[:5] == ["karen.blixen@ku.dk", "Karen", "Blixen", "researcher", "yes"]
    assert lines[2].split()[:4] == ["åse@observatoriet.dk", "-", "admin", "yes"]

    assert admin_cli("users", "deactivate", "KAREN.blixen@ku.dk")[1] == "deactivated karen.blixen@ku.dk\n"
    assert admin_cli("users", "deactivate", "karen.blixen@ku.dk")[1] == "karen.blixen@ku.dk was already deactivated\n"
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT is_active FROM users WHERE email = 'karen.blixen@ku.dk'")).scalar_one()
            is False
        )

    assert refused(admin_cli("users", "add", "Karen.Blixen@ku.dk")) == (
        "observatory: error: user karen.blixen@ku.dk already exists; see: observatory users list"
    )
    assert "is not an email address" in refused(admin_cli("users", "add", "søren ørsted"))
    assert refused(admin_cli("users", "deactivate", "ingen@ku.dk")) == (
        "observatory: error: no user 'ingen@ku.dk'; see: observatory users list"
    )


def test_credits_are_granted_and_read_back_a_page_at_a_time(admin_cli):
    admin_cli("users", "add", "søren.ørsted@au.dk")
    today = date.today()
    code, out, _ = admin_cli("credits", "grant", "søren.ørsted@au.dk", "500")
    assert code == 0 and out.splitlines()[-1] == "available today: 500"
    later = (today + timedelta(days=30)).isoformat()
    assert admin_cli("credits", "grant", "søren.ørsted@au.dk", "200", "--valid-from", later)[0] == 0
    code, out, _ = admin_cli("credits", "balance", "søren.ørsted@au.dk")
    assert code == 0 and "allocated" in out and out.splitlines()[-1].split() == ["available", "500"]

    assert admin_cli("credits", "history", "søren.ørsted@au.dk")[1] == "no ledger entries for søren.ørsted@au.dk\n"

    email = "søren.ørsted@au.dk"
    assert refused(admin_cli("credits", "grant", "ingen@au.dk", "5")).endswith(
        "no user 'ingen@au.dk'; see: observatory users list"
    )
    assert refused(admin_cli("credits", "grant", email, "0")).endswith(
        "cannot grant 0 credits: the amount must be more than 0"
    )
    assert refused(admin_cli("credits", "grant", email, "-5")).endswith(
        "cannot grant -5 credits: the amount must be more than 0"
    )
    assert "'femten' is not a whole number" in refused(admin_cli("credits", "grant", email, "femten"))
    assert "'2026-02-30' is not a date (YYYY-MM-DD)" in refused(
        admin_cli("credits", "grant", email, "5", "--valid-from", "2026-02-30")
    )
    assert refused(
        admin_cli("credits", "grant", email, "5", "--valid-from", "2026-03-10", "--valid-until", "2026-03-01")
    ).endswith("cannot grant credits valid until 2026-03-01: that is before they start (2026-03-10)")
    assert "malformed history cursor" in refused(admin_cli("credits", "history", email, "--cursor", "ikke-en-cursor"))


def test_credit_history_pages_follow_the_printed_cursor(admin_cli, engine):
    from observatory_pipelines.core.collection.credits import CreditService

    admin_cli("users", "add", "karen.blixen@ku.dk")
    with engine.connect() as conn:
        user = conn.execute(sa.text("SELECT id FROM users WHERE email = 'karen.blixen@ku.dk'")).scalar_one()
    service = CreditService(engine)
    for n in range(1, 6):
        service.refund(user, n, description=f"rettelse nr. {n}")
    code, out, _ = admin_cli("credits", "history", "karen.blixen@ku.dk", "--limit", "2")
    lines = out.splitlines()
    assert [line.split()[-1] for line in lines[1:3]] == ["5", "4"]
    more = lines[-1].split()
    assert more[:4] == ["more:", "observatory", "credits", "history"]
    seen = []
    while True:
        rows = [line for line in out.splitlines()[1:] if not line.startswith("more:")]
        seen += [int(line.split()[-1]) for line in rows]
        if not out.splitlines()[-1].startswith("more:"):
            break
        code, out, _ = admin_cli(*out.splitlines()[-1].split()[2:])
    assert seen == [5, 4, 3, 2, 1]


def test_credentials_are_added_from_stdin_listed_without_secrets_and_switched(admin_cli, engine):
    code, out, err = admin_cli(
        "credentials", "add", "youtube", "kanal-ærø", "--daily-quota", "10000", stdin=SECRET + "\n"
    )
    assert (code, err) == (0, "")
    assert out == "added youtube credential kanal-ærø (free tier, daily quota 10000), encrypted\n"
    fields = '{"client_id": "reddit-app-æøå", "client_secret": "' + SECRET + '"}'
    assert admin_cli("credentials", "add", "reddit", "forskning", "--tier", "medium", stdin=fields)[0] == 0

    code, out, _ = admin_cli("credentials", "list")
    assert code == 0 and SECRET not in out and "reddit-app" not in out
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["platform", "name", "tier", "active", "used"]
    assert [row.split()[:5] for row in rows] == [
        ["reddit", "forskning", "medium", "yes", "0/-"],
        ["youtube", "kanal-ærø", "free", "yes", "0/10000"],
    ]

    assert admin_cli("credentials", "disable", "youtube", "kanal-ærø")[1] == "disabled youtube credential kanal-ærø\n"
    assert admin_cli("credentials", "list")[1].splitlines()[2].split()[3] == "no"
    assert admin_cli("credentials", "enable", "youtube", "kanal-ærø")[1] == "enabled youtube credential kanal-ærø\n"

    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT encrypted_payload FROM api_credentials")).scalars().all()
    assert all(SECRET.encode() not in payload for payload in stored)


def test_bad_credentials_input_is_one_line(admin_cli, isolated_settings):
    assert admin_cli("credentials", "add", "youtube", "kanal", stdin=SECRET)[0] == 0
    assert refused(admin_cli("credentials", "add", "youtube", "kanal", stdin="another-key-123")) == (
        "observatory: error: a youtube credential named 'kanal' already exists; choose another name "
        "(or disable the old one: observatory credentials disable)"
    )
    unknown = refused(admin_cli("credentials", "add", "myspace", "kanal", stdin=SECRET))
    assert unknown.startswith("observatory: error: unknown platform 'myspace'; credentials are kept for bluesky, ")
    assert all(f" {name}," in unknown for name in ("event_registry", "google_search", "tiktok", "x_twitter"))
    assert refused(admin_cli("credentials", "add", "youtube", "tom", stdin="  \n")) == (
        "observatory: error: the secret is empty; give the API key (or the JSON of its fields) on stdin"
    )
    broken = '{"client_id": "abc", "client_secret": ' + SECRET
    message = refused(admin_cli("credentials", "add", "reddit", "brudt", stdin=broken))
    assert "is not valid JSON" in message and SECRET not in message
    assert "'guld' is not a tier" in refused(
        admin_cli("credentials", "add", "youtube", "x", "--tier", "guld", stdin=SECRET)
    )
    assert "a daily quota is 0 or more uses, not -1" in refused(
        admin_cli("credentials", "add", "youtube", "x", "--daily-quota", "-1", stdin=SECRET)
    )
    assert refused(admin_cli("credentials", "disable", "youtube", "ukendt")) == (
        "observatory: error: no youtube credential named 'ukendt'; see: observatory credentials list"
    )
    isolated_settings.delenv("OBSERVATORY_CREDENTIAL_KEY")
    assert refused(admin_cli("credentials", "add", "youtube", "nøgleløs", stdin=SECRET)).startswith(
        "observatory: error: OBSERVATORY_CREDENTIAL_KEY is not set"
    )


def test_rekey_takes_the_new_key_on_stdin_all_or_nothing(admin_cli, engine, isolated_settings):
    admin_cli("credentials", "add", "youtube", "første", stdin=SECRET)
    admin_cli(
        "credentials", "add", "bluesky", "anden", stdin='{"handle": "forsker.bsky.social", "app_password": "abcd-efgh"}'
    )

    assert refused(admin_cli("credentials", "rekey", stdin="ikke-en-nøgle")).startswith(
        "observatory: error: the new key on stdin is not a credential key"
    )
    assert "the new key is the one in OBSERVATORY_CREDENTIAL_KEY" in refused(
        admin_cli("credentials", "rekey", stdin=CREDENTIAL_KEY + "\n")
    )
    code, out, _ = admin_cli("credentials", "rekey", stdin=OTHER_CREDENTIAL_KEY + "\n")
    assert code == 0 and out.startswith("re-encrypted 2 credential(s) under the new key")

    new = credentials.CredentialKey.parse(Secret(OTHER_CREDENTIAL_KEY))
    with engine.connect() as conn:
        found = credentials.find_credential(conn, "youtube", "første")
        payload = conn.execute(
            sa.text("SELECT encrypted_payload FROM api_credentials WHERE id = :id"), {"id": found.id}
        ).scalar_one()
    assert credentials.unseal(new, found.id, "youtube", "første", payload).reveal() == SECRET

    # The old key is now the wrong one: re-keying with it changes nothing, in one line.
    assert "does not decrypt" in refused(admin_cli("credentials", "rekey", stdin=credentials.new_key()))
    isolated_settings.setenv("OBSERVATORY_CREDENTIAL_KEY", OTHER_CREDENTIAL_KEY)
    assert admin_cli("credentials", "rekey", stdin=CREDENTIAL_KEY)[0] == 0


def test_new_key_prints_a_usable_key(admin_cli):
    code, out, _ = admin_cli("credentials", "new-key")
    assert code == 0
    credentials.CredentialKey.parse(Secret(out.strip()))
    assert admin_cli("credentials", "new-key")[1] != out


def test_the_installed_command_reads_a_piped_secret_and_never_echoes_it(db_url, tmp_path):
    env = cli_environment(tmp_path / "home", DATABASE_URL=db_url, OBSERVATORY_CREDENTIAL_KEY=CREDENTIAL_KEY)

    def piped(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([OBSERVATORY, *argv], input=SECRET, capture_output=True, text=True, env=env, timeout=120)

    added = piped("credentials", "add", "youtube", "kanal")
    assert added.returncode == 0 and SECRET not in added.stdout + added.stderr, added.stderr
    again = piped("credentials", "add", "youtube", "kanal")
    assert "already exists" in one_line_error(again) and SECRET not in again.stderr
    listed = piped("credentials", "list")
    assert listed.returncode == 0 and "kanal" in listed.stdout and SECRET not in listed.stdout


def test_two_admins_adding_one_address_at_once_add_it_once(engine):
    # Without the lock both see no user; with exact case one INSERT would then fail with a traceback,
    # with different case both would succeed and the address would have two accounts.
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def add(address: str) -> None:
        start.wait(timeout=30)
        try:
            users.add_user(engine, address)
            outcomes.append("added")
        except users.UserError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=add, args=(a,)) for a in ("søren.ørsted@ku.dk", "Søren.Ørsted@ku.dk")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes)[0] == "added" and "already exists" in sorted(outcomes)[1]
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM users WHERE lower(email) = 'søren.ørsted@ku.dk'"))
        assert count.scalar_one() == 1


def test_an_invitation_link_is_printed_once_and_sets_the_password_it_was_for(admin_cli, engine, isolated_settings):
    from observatory_pipelines.core.accounts import signin

    isolated_settings.setenv("OBSERVATORY_PORTAL_URL", "https://portal.observatoriet.dk/")
    admin_cli("users", "add", "søren.ørsted@au.dk")
    code, out, _ = admin_cli("users", "invite", "Søren.Ørsted@au.dk", "--valid-days", "2")
    assert code == 0
    heading, link = out.splitlines()
    assert heading.startswith("invitation for søren.ørsted@au.dk, valid until ") and heading.endswith("UTC (once):")
    assert link.startswith("https://portal.observatoriet.dk/invitation/")
    token = link.rsplit("/", 1)[1]
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash, expires_at - created_at AS valid FROM invitations")).one()
    assert token not in stored.token_hash and stored.valid == timedelta(days=2)
    assert signin.accept_invitation(engine, token, "Kodeord med æøå og tal 7") == "søren.ørsted@au.dk"
    with pytest.raises(signin.InvitationInvalid):
        signin.accept_invitation(engine, token, "Et andet kodeord 8")

    assert "is not between 1 and 90 days" in refused(
        admin_cli("users", "invite", "søren.ørsted@au.dk", "--valid-days", "0")
    )
    assert refused(admin_cli("users", "invite", "ingen@ku.dk")) == (
        "observatory: error: no user 'ingen@ku.dk'; see: observatory users list"
    )
    isolated_settings.setenv("OBSERVATORY_PORTAL_URL", "portal.observatoriet.dk")
    assert "OBSERVATORY_PORTAL_URL must be an http:// or https:// address" in refused(
        admin_cli("users", "invite", "søren.ørsted@au.dk")
    )


def test_a_password_is_set_from_stdin_hashed_and_never_printed(admin_cli, engine):
    from observatory_pipelines.core.accounts import signin

    admin_cli("users", "add", "karen.blixen@ku.dk")
    password = "Rødgrød med fløde og æbler"
    code, out, err = admin_cli("users", "set-password", "karen.blixen@ku.dk", stdin=password + "\n")
    assert code == 0 and password not in out + err
    assert out == "password set for karen.blixen@ku.dk; their other sessions and open invitations have ended\n"
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM users")).scalar_one()
    assert stored.startswith("$argon2id$") and password not in stored
    assert signin.sign_in(engine, "karen.blixen@ku.dk", password, "127.0.0.1", secret=b"k")

    assert refused(admin_cli("users", "set-password", "karen.blixen@ku.dk", stdin="kort\n")) == (
        "observatory: error: the password must have at least 12 characters"
    )
    admin_cli("users", "deactivate", "karen.blixen@ku.dk")
    assert "is deactivated; reactivate the account first" in refused(
        admin_cli("users", "set-password", "karen.blixen@ku.dk", stdin=password)
    )
