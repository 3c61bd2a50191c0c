import socket
from email.utils import formatdate

import pytest

from observatory_pipelines.core.collection.arenas.errors import (
    ArenaError,
    CredentialError,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from observatory_pipelines.core.platform.http import HttpClient, parse_retry_after, user_agent, validate_min_interval
from tests.factories import FakeClock
from tests.http_fixtures import Canned

SECRET = "s3cr3t-api-key-value"


@pytest.fixture
def fake_time():
    """A wall clock that only moves when the client sleeps, so every wait is recorded, none is real."""
    return FakeClock()


@pytest.fixture
def client(fake_time):
    # random=1.0 makes full jitter deterministic: the backoff is its upper bound 1, 2, 4 ... s.
    with HttpClient(sleep=fake_time.sleep, clock=fake_time.clock, random=lambda: 1.0) as c:
        yield c


def assert_one_line_without_secrets(err: Exception) -> None:
    message = str(err)
    assert "\n" not in message
    assert SECRET not in message
    assert "?" not in message, "no query string in messages"


def test_sends_a_descriptive_user_agent(arena_server, client):
    url = arena_server.route("/ok", Canned(200, b"fine"))
    assert client.get(url, arena="test").text == "fine"
    sent = arena_server.requests_to("/ok")[0].headers["user-agent"]
    assert sent == user_agent()
    assert sent.startswith("observatory-pipelines/") and "+research" in sent
    assert "mailto:team@example.org" in user_agent("mailto:team@example.org")


def test_429_with_retry_after_seconds_is_honoured_then_succeeds(arena_server, client, fake_time):
    url = arena_server.route("/limited", Canned(429, b"slow down", {"Retry-After": "2"}), Canned(200, b"ok"))
    assert client.get(url, arena="test").text == "ok"
    assert fake_time.waits == [2.0]
    assert client.api_calls == 2


def test_429_with_retry_after_http_date_is_honoured(arena_server, client, fake_time):
    when = formatdate(fake_time.now + 30, usegmt=True)
    url = arena_server.route("/limited", Canned(429, b"", {"Retry-After": when}), Canned(200, b"ok"))
    assert client.get(url, arena="test").text == "ok"
    assert fake_time.waits == [30.0]


def test_429_asking_longer_than_max_wait_raises_at_once_without_sleeping(arena_server, client, fake_time):
    url = arena_server.route("/limited", Canned(429, b"", {"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as caught:
        client.get(url, params={"api_key": SECRET}, arena="test")
    assert caught.value.retry_after == 3600
    assert caught.value.retryable
    assert fake_time.waits == []
    assert len(arena_server.requests_to("/limited")) == 1
    assert_one_line_without_secrets(caught.value)


def test_429_without_retry_after_backs_off_then_raises_rate_limited(arena_server, client, fake_time):
    url = arena_server.route("/limited", Canned(429, b"Please limit requests to one every 5 seconds."))
    with pytest.raises(RateLimited, match="on all 4 attempts") as caught:
        client.get(url, arena="test")
    assert caught.value.retry_after is None
    assert fake_time.waits == [1.0, 2.0, 4.0]


def test_5xx_is_retried_with_backoff_then_succeeds(arena_server, client, fake_time):
    url = arena_server.route("/flaky", Canned(500), Canned(500), Canned(200, b"ok"))
    assert client.get(url, arena="test").text == "ok"
    assert fake_time.waits == [1.0, 2.0]
    assert client.api_calls == 3


def test_backoff_is_jittered_and_capped(arena_server, fake_time):
    draws = iter([0.5, 0.25, 1.0])
    client = HttpClient(
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        random=lambda: next(draws),
        backoff_base_seconds=10,
        backoff_cap_seconds=15,
    )
    url = arena_server.route("/flaky", Canned(502), Canned(502), Canned(502), Canned(200))
    client.get(url, arena="test")
    assert fake_time.waits == [5.0, 3.75, 15.0]  # 0.5*10, 0.25*min(15, 20), 1.0*min(15, 40)


def test_persistent_503_raises_server_error_with_a_one_line_secret_free_message(arena_server, client):
    url = arena_server.route("/api/v1/search", Canned(503, f"down; you sent key={SECRET}".encode()))
    with pytest.raises(ServerError) as caught:
        client.get(url, params={"q": "klima", "api_key": SECRET}, headers={"X-Api-Key": SECRET}, arena="youtube")
    message = str(caught.value)
    assert message.startswith("youtube: HTTP 503 from 127.0.0.1/api/v1/search on all 4 attempts")
    assert "retry later" in message
    assert caught.value.retryable
    assert_one_line_without_secrets(caught.value)
    assert len(arena_server.requests_to("/api/v1/search")) == 4


def test_read_timeout_is_retried(arena_server, fake_time):
    client = HttpClient(read_timeout=0.2, sleep=fake_time.sleep, clock=fake_time.clock, random=lambda: 1.0)
    url = arena_server.route("/slow", Canned(200, b"late", delay=1.0), Canned(200, b"on time"))
    assert client.get(url, arena="test").text == "on time"
    assert fake_time.waits == [1.0]


def test_persistent_timeout_raises_transport_error(arena_server, fake_time):
    client = HttpClient(read_timeout=0.1, max_attempts=2, sleep=fake_time.sleep, clock=fake_time.clock)
    url = arena_server.route("/slow", Canned(200, b"late", delay=0.5))
    with pytest.raises(TransportError, match="timed out") as caught:
        client.get(url, params={"token": SECRET}, arena="test")
    assert caught.value.retryable
    assert_one_line_without_secrets(caught.value)


def test_truncated_body_is_retried_then_succeeds(arena_server, client, fake_time):
    url = arena_server.route("/feed", Canned(200, b"<rss>half", truncate=True), Canned(200, b"<rss>whole</rss>"))
    assert client.get(url, arena="test").content == b"<rss>whole</rss>"
    assert fake_time.waits == [1.0]


def test_persistently_truncated_body_raises_transport_error(arena_server, client):
    url = arena_server.route("/feed", Canned(200, b"<rss>half", truncate=True))
    with pytest.raises(TransportError, match="truncated") as caught:
        client.get(url, arena="rss_feeds")
    assert "127.0.0.1/feed" in str(caught.value)
    assert len(arena_server.requests_to("/feed")) == 4


def test_refused_connection_raises_transport_error(fake_time):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HttpClient(max_attempts=2, sleep=fake_time.sleep, clock=fake_time.clock)
    with pytest.raises(TransportError, match="connection failed"):
        client.get(f"http://127.0.0.1:{port}/nothing", arena="test")
    assert client.api_calls == 2


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credential_raises_without_retrying(arena_server, client, fake_time, status):
    url = arena_server.route("/private", Canned(status, b"token expired"))
    with pytest.raises(CredentialError, match="check or renew the credential") as caught:
        client.get(url, headers={"Authorization": f"Bearer {SECRET}"}, arena="bluesky")
    assert not caught.value.retryable
    assert fake_time.waits == []
    assert len(arena_server.requests_to("/private")) == 1
    assert_one_line_without_secrets(caught.value)


def test_other_4xx_raises_with_a_scrubbed_body_excerpt(arena_server, client):
    bearer = "tok-0123456789"
    body = f"<html><body><h1>Not found</h1>\n<p>No page for key {SECRET} and token {bearer}</p></body></html>"
    url = arena_server.route("/gone", Canned(404, body.encode()))
    with pytest.raises(ArenaError) as caught:
        client.get(url + f"?apikey={SECRET}", headers={"Authorization": f"Bearer {bearer}"}, arena="test")
    assert type(caught.value) is ArenaError
    message = str(caught.value)
    assert "HTTP 404 from 127.0.0.1/gone" in message and "No page for key *** and token ***" in message
    assert_one_line_without_secrets(caught.value)
    assert len(arena_server.requests_to("/gone")) == 1


def test_long_error_bodies_are_cut_short(arena_server, client):
    url = arena_server.route("/gone", Canned(410, b"x" * 5000))
    with pytest.raises(ArenaError) as caught:
        client.get(url, arena="test")
    assert len(str(caught.value)) < 300


def test_min_interval_spaces_requests(arena_server, fake_time):
    client = HttpClient(min_interval_seconds=5.0, sleep=fake_time.sleep, clock=fake_time.clock)
    url = arena_server.route("/paced", Canned(200))
    client.get(url, arena="gdelt")
    fake_time.now += 1.5  # work done between requests counts towards the interval
    client.get(url, arena="gdelt")
    client.get(url, arena="gdelt", min_interval_seconds=8.0)  # an arena may ask for more
    assert fake_time.waits == [3.5, 8.0]
    assert client.api_calls == 3


def test_retries_respect_the_min_interval(arena_server, fake_time):
    client = HttpClient(sleep=fake_time.sleep, clock=fake_time.clock, random=lambda: 1.0)
    url = arena_server.route("/gdelt", Canned(429, b"Please limit requests"), Canned(200))
    client.get(url, arena="gdelt", min_interval_seconds=5.0)
    assert fake_time.waits == [1.0, 4.0]  # backoff, then the rest of the 5 s spacing


def test_retries_are_logged_without_query_strings(arena_server, fake_time):
    lines: list[str] = []
    client = HttpClient(sleep=fake_time.sleep, clock=fake_time.clock, random=lambda: 0.5, log=lines.append)
    url = arena_server.route("/flaky", Canned(503), Canned(200))
    client.get(url, params={"token": SECRET}, arena="test")
    assert lines == ["test: HTTP 503 from 127.0.0.1/flaky; retrying in 0.5 s (attempt 2 of 4)"]


def test_get_json_decodes_or_raises_malformed_response(arena_server, client):
    html = Canned(200, b"<html>oops</html>", {"Content-Type": "text/html"})
    url = arena_server.route("/json", Canned(200, b'{"a": [1, 2]}'), html)
    assert client.get_json(url, arena="test") == {"a": [1, 2]}
    with pytest.raises(MalformedResponse, match="text/html that is not JSON"):
        client.get_json(url, arena="test")


@pytest.mark.parametrize("url", ["ftp://example.org/feed.xml", "http://[::1/feed", "https://"])
def test_unusable_urls_fail_at_once(client, url):
    with pytest.raises(ArenaError, match="check the URL"):
        client.get(url, arena="test")
    assert client.api_calls == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("2", 2.0),
        (" 7 ", 7.0),
        ("-5", 0.0),
        ("soon", None),
        ("nan", None),
        (formatdate(1_741_000_060, usegmt=True), 60.0),
        (formatdate(1_740_000_000, usegmt=True), 0.0),  # already past
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=1_741_000_000.0) == expected


@pytest.mark.parametrize("bad", [-1, "5", True, float("inf"), None])
def test_validate_min_interval_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="min_interval_seconds"):
        validate_min_interval(bad)
