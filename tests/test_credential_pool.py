"""The credential pool on real PostgreSQL (15 and 18): encryption bound to its row, least-used
choice, quotas counted atomically under real concurrency, the UTC day, and what 401 and 429 do;
then end to end, a keyed arena collecting through the pool against the local HTTP server."""

from __future__ import annotations

import gzip
import io
import json
import logging
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines import cli
from observatory_pipelines.core.accounts import credentials
from observatory_pipelines.core.accounts.pool import CredentialPool, Lease, describe_time, next_utc_midnight
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.collection.arenas.errors import CredentialError, QuotaExceeded
from observatory_pipelines.core.maintenance import backup
from observatory_pipelines.core.platform import database, months
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.http import HttpClient
from observatory_pipelines.core.platform.settings import Secret
from observatory_pipelines.defs.collection.assets import build_collection_assets
from observatory_pipelines.defs.collection.credentials import api_credential_health
from observatory_pipelines.defs.local_run import materialize_corpus
from observatory_pipelines.defs.resources import (
    RETRIES_AT_A_TIME,
    CollectionResource,
    PostgresResource,
    one_line_failures,
)
from tests.factories import (
    CREDENTIAL_KEY,
    FEED_A,
    KEYED_PATH,
    KEYED_PLATFORM,
    MARCH,
    OTHER_CREDENTIAL_KEY,
    SALT,
    add_api_credential,
    api_credential,
    content_rows,
    keyed_items,
    make_design,
    read_object,
    task,
)
from tests.http_fixtures import Canned

KEY = credentials.CredentialKey.parse(Secret(CREDENTIAL_KEY))
EVENING = datetime(2026, 3, 16, 23, 59, 30, tzinfo=timezone.utc)
MIDNIGHT = datetime(2026, 3, 17, tzinfo=timezone.utc)


def pool(engine, when: datetime = EVENING) -> CredentialPool:
    return CredentialPool(engine, KEY, clock=lambda: when)


def lease(engine, when: datetime = EVENING, **kwargs) -> Lease:
    return pool(engine, when).acquire(KEYED_PLATFORM, "free", arena=KEYED_PLATFORM, **kwargs)


# --- encryption ------------------------------------------------------------------------------------------


def test_a_secret_is_stored_encrypted_and_decrypts_only_on_its_own_row(engine, keyed_arena):
    first = add_api_credential(engine, "kanal-ærø", '{"client_id": "ærø-id", "client_secret": "hemmelig-ÆØÅ-1"}')
    stored = api_credential(engine, "kanal-ærø")["encrypted_payload"]
    assert b"hemmelig" not in stored and "ærø-id".encode() not in stored
    assert len(stored) > credentials.NONCE_BYTES + 16

    got = lease(engine)
    assert got.name == "kanal-ærø" and got.field("client_secret").reveal() == "hemmelig-ÆØÅ-1"
    assert "hemmelig" not in repr(got) and "hemmelig" not in str(got.secret)
    add_api_credential(engine, "kanal-fanø", "nøgle-fanø-2")

    # The payload copied onto the other row fails to decrypt there, in one line.
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE api_credentials SET encrypted_payload = :p WHERE credential_name = 'kanal-fanø'"),
            {"p": stored},
        )
        conn.execute(sa.text("UPDATE api_credentials SET is_active = false WHERE id = :id"), {"id": first})
    with pytest.raises(credentials.CredentialProblem) as refused:
        lease(engine)
    assert str(refused.value) == (
        f"credential {KEYED_PLATFORM}/kanal-fanø does not decrypt: OBSERVATORY_CREDENTIAL_KEY is not the key it "
        "was added with, or its payload was copied from another row; re-add it"
    )


def test_keys_are_checked_and_never_print(engine):
    made = credentials.new_key()
    key = credentials.CredentialKey.parse(Secret(made))
    assert made not in repr(key) and made not in str(key)
    for bad in (None, Secret(""), Secret("kort"), Secret(made[:-8])):
        with pytest.raises(ConfigError) as err:
            credentials.CredentialKey.parse(bad)
        assert "OBSERVATORY_CREDENTIAL_KEY" in str(err.value) and "\n" not in str(err.value)
    # Padding is optional.
    credentials.CredentialKey.parse(Secret(made.rstrip("=")))


def test_rekey_re_encrypts_everything_or_nothing(engine, keyed_arena):
    add_api_credential(engine, "én", "nøgle-én-111")
    add_api_credential(engine, "to", "nøgle-to-222")
    new = credentials.CredentialKey.parse(Secret(OTHER_CREDENTIAL_KEY))
    before = {n: api_credential(engine, n)["encrypted_payload"] for n in ("én", "to")}

    # A wrong old key: nothing changes.
    with pytest.raises(credentials.CredentialProblem):
        credentials.rekey(engine, new, KEY)
    assert {n: api_credential(engine, n)["encrypted_payload"] for n in ("én", "to")} == before

    assert credentials.rekey(engine, KEY, new) == 2
    got = CredentialPool(engine, new, clock=lambda: EVENING).acquire(KEYED_PLATFORM, "free", arena="x")
    assert got.secret.reveal() in ("nøgle-én-111", "nøgle-to-222")
    with pytest.raises(credentials.CredentialProblem):
        lease(engine)  # the old key no longer reads them


# --- choosing, counting, resting ---------------------------------------------------------------------------


def test_the_least_used_credential_is_handed_out_and_each_use_counted(engine, keyed_arena):
    for name in ("a", "b", "c"):
        add_api_credential(engine, name, f"nøgle-{name}-0000", quota=2)
    names = [lease(engine).name for _ in range(6)]
    assert sorted(names[:3]) == ["a", "b", "c"] and sorted(names[3:]) == ["a", "b", "c"]
    assert {api_credential(engine, n)["quota_used_today"] for n in "abc"} == {2}

    with pytest.raises(QuotaExceeded) as spent:
        lease(engine)
    assert str(spent.value) == (
        f"{KEYED_PLATFORM}: all 3 {KEYED_PLATFORM} credentials (free tier) are spent until 00:00 UTC; "
        "the collection can be retried then"
    )
    assert spent.value.retry_at == MIDNIGHT and spent.value.retryable


def test_use_starts_again_at_midnight_utc(engine, keyed_arena):
    add_api_credential(engine, "døgn", "nøgle-døgn-1234", quota=1)
    assert lease(engine, EVENING).name == "døgn"
    with pytest.raises(QuotaExceeded):
        lease(engine, MIDNIGHT - timedelta(microseconds=1))
    assert lease(engine, MIDNIGHT).name == "døgn"
    row = api_credential(engine, "døgn")
    assert (row["quota_used_today"], row["quota_date"]) == (1, MIDNIGHT.date())


def test_a_credential_at_rest_is_skipped_until_then_and_a_refused_one_for_good(engine, keyed_arena):
    add_api_credential(engine, "hvile", "nøgle-hvile-1")
    add_api_credential(engine, "arbejde", "nøgle-arbejde-2")
    resting = lease(engine)
    resting.rate_limited("HTTP 429 from api/v1/search", retry_after=90)
    assert api_credential(engine, resting.name)["exhausted_until"] == EVENING + timedelta(seconds=90)
    other = lease(engine)
    assert other.name != resting.name
    other.refused("HTTP 401 from api/v1/search: access refused")
    flagged = api_credential(engine, other.name)
    assert flagged["is_active"] is False and flagged["last_error"] == (
        "2026-03-16 23:59 UTC: HTTP 401 from api/v1/search: access refused"
    )
    with pytest.raises(QuotaExceeded) as spent:
        lease(engine)
    assert f"the only {KEYED_PLATFORM} credential (free tier) is spent until 00:01 UTC;" in str(spent.value)
    assert lease(engine, EVENING + timedelta(seconds=90)).name == resting.name
    with pytest.raises(QuotaExceeded):
        lease(engine, EVENING + timedelta(seconds=90), skip=[resting.id])


def test_no_active_credential_is_a_credential_error_that_says_what_to_do(engine, keyed_arena):
    with pytest.raises(CredentialError) as none:
        lease(engine)
    assert str(none.value) == (
        f"{KEYED_PLATFORM}: no active {KEYED_PLATFORM} credential for the free tier; add one with: "
        f"observatory credentials add {KEYED_PLATFORM} NAME --tier free"
    )
    assert not none.value.retryable


def test_concurrent_leases_never_take_a_credential_past_its_quota(engine, db_url, keyed_arena):
    quotas = {"første": 7, "anden": 5, "tredje": 3}
    for name, quota in quotas.items():
        add_api_credential(engine, name, f"nøgle-{name}-9999", quota=quota)
    taken: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        # Each thread its own engine: separate sessions racing on the same rows.
        own = database.make_engine(db_url, poolclass=sa.NullPool)
        try:
            start.wait()
            while True:
                try:
                    taken.append(lease(own).name)
                except QuotaExceeded:
                    return
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)
        finally:
            own.dispose()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert {name: taken.count(name) for name in quotas} == quotas
    assert {name: api_credential(engine, name)["quota_used_today"] for name in quotas} == quotas


def test_times_are_described_in_utc():
    assert next_utc_midnight(EVENING) == MIDNIGHT
    assert describe_time(MIDNIGHT, EVENING) == "00:00 UTC"
    assert describe_time(EVENING + timedelta(seconds=45), EVENING) == "00:00:15 UTC"
    assert describe_time(MIDNIGHT + timedelta(days=2), EVENING) == "2026-03-19 00:00 UTC"


# --- end to end: a keyed arena collecting through the pool ---------------------------------------------------


def keyed_design(engine, arena_server, slug: str = "klimadebat", pages: int = 1):
    return make_design(
        engine,
        slug=slug,
        arenas_config={KEYED_PLATFORM: {"options": {"base_url": arena_server.base_url, "pages": pages}}},
    )


def collect(engine, slug: str = "klimadebat", now: datetime = EVENING, key: str | None = CREDENTIAL_KEY, run="r1"):
    return collection.collect_arena(
        engine,
        design_slug=slug,
        month=MARCH,
        arena_name=KEYED_PLATFORM,
        dagster_run_id=run,
        salt=SALT,
        http_factory=lambda log: HttpClient(max_attempts=1, log=log),
        now=now,
        credential_key=key,
    )


def test_a_429_rotates_to_the_next_credential_and_a_401_is_switched_off_after_one_call(
    engine, arena_server, keyed_arena
):
    design = keyed_design(engine, arena_server, pages=3)
    add_api_credential(engine, "a-afvist", "api-key-afvist-401", quota=10)
    add_api_credential(engine, "b-travl", "api-key-travl-429", quota=10)
    add_api_credential(engine, "c-god", "api-key-god-200", quota=10)
    arena_server.route(KEYED_PATH, Canned(401, b'{"error": "invalid key"}'), header=("x-api-key", "api-key-afvist-401"))
    arena_server.route(
        KEYED_PATH, Canned(429, b"slow down", {"Retry-After": "120"}), header=("x-api-key", "api-key-travl-429")
    )
    arena_server.route(
        KEYED_PATH,
        Canned(200, keyed_items("p1")),
        Canned(200, keyed_items("p2")),
        Canned(200, keyed_items("p3")),
        header=("x-api-key", "api-key-god-200"),
    )

    outcome = collect(engine)

    assert outcome.status == "completed" and outcome.written.new == 3
    assert len(content_rows(engine, design)) == 3
    assert len(arena_server.requests_to(KEYED_PATH, ("x-api-key", "api-key-afvist-401"))) == 1  # never retried
    assert len(arena_server.requests_to(KEYED_PATH, ("x-api-key", "api-key-travl-429"))) == 1  # rested after its 429
    assert len(arena_server.requests_to(KEYED_PATH, ("x-api-key", "api-key-god-200"))) == 3
    refused, busy = api_credential(engine, "a-afvist"), api_credential(engine, "b-travl")
    assert refused["is_active"] is False and "HTTP 401" in refused["last_error"]
    assert busy["is_active"] and busy["exhausted_until"] == EVENING + timedelta(seconds=120)
    assert api_credential(engine, "c-god")["quota_used_today"] == 3


def test_an_exhausted_pool_fails_the_task_in_one_line_naming_the_reset(engine, arena_server, keyed_arena):
    design = keyed_design(engine, arena_server, pages=5)
    for name in ("en", "to", "tre"):
        add_api_credential(engine, name, f"api-key-{name}-abcd", quota=1)
    arena_server.route(KEYED_PATH, Canned(200, keyed_items("x")))

    with pytest.raises(QuotaExceeded) as spent:
        collect(engine)
    message = f"{KEYED_PLATFORM}: all 3 {KEYED_PLATFORM} credentials (free tier) are spent until 00:00 UTC; the collection can be retried then"
    assert str(spent.value) == message and spent.value.retry_at == MIDNIGHT
    failed = task(engine, design, KEYED_PLATFORM)
    assert failed["status"] == "failed" and failed["error_message"] == message
    assert len(arena_server.requests_to(KEYED_PATH)) == 3  # one use each, and no more

    # After midnight UTC the quota is fresh: the re-run gets three more calls, then meets the next reset.
    with pytest.raises(QuotaExceeded) as tomorrow:
        collect(engine, now=MIDNIGHT + timedelta(minutes=1), run="r2")
    assert tomorrow.value.retry_at == MIDNIGHT + timedelta(days=1)
    assert len(arena_server.requests_to(KEYED_PATH)) == 6


def test_concurrent_runs_share_the_quota_and_never_exceed_it(engine, db_url, arena_server, keyed_arena):
    for slug in ("klimadebat", "vindmoeller"):
        keyed_design(engine, arena_server, slug=slug, pages=4)
    add_api_credential(engine, "delt-1", "api-key-delt-1", quota=3)
    add_api_credential(engine, "delt-2", "api-key-delt-2", quota=2)
    arena_server.route(KEYED_PATH, Canned(200, keyed_items("z"), delay=0.02))
    outcomes: dict[str, object] = {}

    def run(slug: str) -> None:
        own = database.make_engine(db_url, poolclass=sa.NullPool)
        try:
            outcomes[slug] = collect(own, slug=slug, run=f"run-{slug}")
        except Exception as err:  # the run that meets the empty pool fails; that is the point
            outcomes[slug] = err
        finally:
            own.dispose()

    threads = [threading.Thread(target=run, args=(slug,)) for slug in ("klimadebat", "vindmoeller")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert len(arena_server.requests_to(KEYED_PATH)) == 5  # the pool's whole quota, not one call more
    assert (
        api_credential(engine, "delt-1")["quota_used_today"],
        api_credential(engine, "delt-2")["quota_used_today"],
    ) == (3, 2)
    assert any(isinstance(o, QuotaExceeded) for o in outcomes.values())


def test_without_the_key_a_keyed_arena_refuses_to_start_and_free_arenas_carry_on(
    engine, arena_server, keyed_arena, monkeypatch
):
    monkeypatch.delenv("OBSERVATORY_CREDENTIAL_KEY", raising=False)
    feed = arena_server.route("/a.xml", Canned(200, FEED_A))
    design = make_design(
        engine,
        arenas_config={
            KEYED_PLATFORM: {"options": {"base_url": arena_server.base_url}},
            "rss_feeds": {"options": {"feeds": [feed], "min_interval_seconds": 0}},
        },
    )
    with pytest.raises(ConfigError) as refused:
        collect(engine, key=None)
    assert str(refused.value) == (
        f"{KEYED_PLATFORM} calls a keyed API and cannot start: OBSERVATORY_CREDENTIAL_KEY is not set, so API "
        "credentials cannot be encrypted or read; set it to the key they were added with (a new one: "
        "observatory credentials new-key)"
    )
    assert arena_server.requests_to(KEYED_PATH) == []
    rss = collection.collect_arena(
        engine, design_slug="klimadebat", month=MARCH, arena_name="rss_feeds", dagster_run_id="r1", salt=SALT
    )
    assert rss.status == "completed" and rss.written.new == 2
    assert len(content_rows(engine, design)) == 2


# --- secrets are never seen ----------------------------------------------------------------------------------


def test_a_planted_secret_appears_in_no_log_event_error_listing_or_file(
    engine, db_url, arena_server, keyed_arena, instance, tmp_path, caplog, capfd, admin_env
):
    refused_key, busy_key = f"sk-live-{uuid.uuid4().hex}", f"sk-live-{uuid.uuid4().hex}"
    planted = (refused_key, busy_key)
    keyed_design(engine, arena_server, pages=2)
    # Both added through the command, the secret piped on stdin.
    for name, secret in (("afvist", refused_key), ("travl", busy_key)):
        admin_env.setattr(sys, "stdin", io.StringIO(secret + "\n"))
        assert cli.main(["credentials", "add", KEYED_PLATFORM, name, "--daily-quota", "100"]) == 0
    # The platform echoes the key it was sent, as some do, in a 401 and a 429.
    arena_server.route(
        KEYED_PATH, Canned(401, f"invalid api key {refused_key}".encode()), header=("x-api-key", refused_key)
    )
    arena_server.route(
        KEYED_PATH,
        Canned(429, f"quota of {busy_key} exceeded".encode(), {"Retry-After": "3600"}),
        header=("x-api-key", busy_key),
    )
    caplog.set_level(logging.DEBUG)
    defs = dg.Definitions(
        assets=build_collection_assets(retry_policy=dg.RetryPolicy(max_retries=0)),
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "collector": CollectionResource(
                salt=SALT, credential_key=CREDENTIAL_KEY, http_max_attempts=1, http_backoff_seconds=0.0
            ),
        },
    )

    report = materialize_corpus(MARCH, "klimadebat", instance=instance, defs=defs, arenas=[KEYED_PLATFORM])

    (failed,) = report.failed
    assert failed.error.startswith(
        f"{KEYED_PLATFORM}: the only {KEYED_PLATFORM} credential (free tier) is spent until "
    )
    assert len(arena_server.requests_to(KEYED_PATH, ("x-api-key", refused_key))) == 1
    rows = {name: api_credential(engine, name) for name in ("afvist", "travl")}
    assert rows["afvist"]["is_active"] is False and "HTTP 401" in rows["afvist"]["last_error"]
    assert rows["travl"]["exhausted_until"] is not None

    admin_env.setattr(sys, "stdin", io.StringIO(refused_key))
    assert cli.main(["credentials", "add", KEYED_PLATFORM, "afvist"]) == 2  # a duplicate: fails in one line
    assert cli.main(["credentials", "list"]) == 0
    printed = capfd.readouterr()
    assert "HTTP 401" in printed.out and "afvist" in printed.out and "already exists" in printed.err

    events = dg.serialize_value(instance.all_logs(report.run_ids[0]))
    assert "credential afvist was refused" in events  # the refusal is told, without its key
    with engine.connect() as conn:
        database_text = json.dumps(
            [dict(r) for r in conn.execute(sa.text("SELECT * FROM collection_tasks")).mappings()]
            + [{k: str(v) for k, v in r.items()} for r in rows.values()],
            default=str,
        )
    stored_files = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in planted:
        for where, text in (
            ("captured logs", caplog.text),
            ("stdout", printed.out),
            ("stderr", printed.err),
            ("Dagster events and metadata", events),
            ("the asset's error", failed.error + str(failed.metadata)),
            ("the tasks and credentials tables", database_text),
        ):
            assert secret not in text, f"the secret leaked into {where}"
        assert secret.encode() not in stored_files, "the secret leaked into a file of the Dagster instance"


def test_a_backup_holds_a_credential_only_as_ciphertext(
    engine, db_url, keyed_arena, local_store, admin_env, capfd, tmp_path
):
    secret = f"sk-live-{uuid.uuid4().hex}"
    add_api_credential(engine, "kanal-ærø", secret, quota=10)
    ciphertext = api_credential(engine, "kanal-ærø")["encrypted_payload"]

    result = backup.run_backup(db_url, local_store)

    dump = gzip.decompress(read_object(local_store, result.key))
    assert "kanal-ærø".encode() in dump  # the credentials table was dumped ...
    assert secret.encode() not in dump  # ... without its secret in clear
    assert ciphertext.hex().encode() in dump  # bytea in the dump's hex form: the ciphertext, as stored
    admin_env.setenv("OBSERVATORY_STORAGE_DIR", str(tmp_path / "objects"))  # where local_store keeps its objects
    capfd.readouterr()
    assert cli.main(["restore", "--list"]) == 0
    listed = capfd.readouterr()
    assert result.key in listed.out
    assert secret not in listed.out + listed.err


# --- in the Dagster UI ---------------------------------------------------------------------------------------


def test_the_health_sensor_names_switched_off_and_spent_credentials(engine, db_url, keyed_arena, instance):
    context = dg.build_sensor_context(instance=instance, resources={"postgres": PostgresResource(database_url=db_url)})
    assert api_credential_health(context).skip_message.startswith("no API credentials yet")

    add_api_credential(engine, "afvist", "api-key-afvist-1")
    add_api_credential(engine, "brugt", "api-key-brugt-2", quota=1)
    add_api_credential(engine, "fri", "api-key-fri-3")
    assert api_credential_health(context).skip_message == "all 3 API credentials usable (or disabled by an admin)"

    now = datetime.now(timezone.utc)
    live = CredentialPool(engine, KEY, clock=lambda: now)
    for _ in range(3):
        got = live.acquire(KEYED_PLATFORM, "free", arena=KEYED_PLATFORM)
        if got.name == "afvist":
            got.refused("HTTP 401 from api.example.dk/v1/search: access refused")
    message = api_credential_health(context).skip_message
    assert message.startswith("2 of 3 API credentials need attention: ")
    assert f"{KEYED_PLATFORM}/afvist (free) switched off: " in message and "HTTP 401" in message
    assert f"{KEYED_PLATFORM}/brugt (free) spent until 00:00 UTC" in message
    assert "api-key" not in message


def test_a_spent_pool_is_retried_when_it_frees_up_soon_and_otherwise_fails_now_saying_when():
    soon = QuotaExceeded(
        KEYED_PLATFORM, "all 2 credentials are spent for 5 minutes", months.utc() + timedelta(minutes=5)
    )
    with pytest.raises(dg.RetryRequested) as retry, one_line_failures():
        raise soon
    assert 290 <= retry.value.seconds_to_wait <= 300 and retry.value.max_retries == RETRIES_AT_A_TIME

    tonight = QuotaExceeded(
        KEYED_PLATFORM, "all 2 credentials are spent until 00:00 UTC", months.utc() + timedelta(hours=5)
    )
    with pytest.raises(dg.Failure) as failure, one_line_failures():
        raise tonight
    assert failure.value.description == str(tonight) and failure.value.allow_retries is False
