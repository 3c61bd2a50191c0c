"""The portal in a real browser: Debian's Chromium, driven by Playwright, against the portal served
by uvicorn on a free port (``tests/live_portal.py``), on real PostgreSQL and a local object store.

A researcher signs in by typing into the form, opens her corpus (with its statistics: a volume
chart, top terms and actors in Danish), downloads its CSV by clicking, makes an API token and
revokes it, and signs out; every page is walked with the Tab key alone; another researcher asking
for her corpus sees exactly the page of a corpus that does not exist. The pages have no script
(CSP ``script-src 'none'``): ``page.evaluate`` is the DevTools protocol's, not the page's.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.accounts import signin
from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.platform.storage import LocalObjectStore
from observatory_pipelines.defs.analysis.statistics import corpus_statistics
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import (
    CSV,
    KAREN,
    KLIMA_CSV,
    MARCH,
    SOEREN,
    at,
    make_actor,
    needs_tool,
    read_object,
    record,
    seed_exports,
    seed_people,
)
from tests.live_portal import live_portal

#: Debian's Chromium (``.ci/run`` installs it); Playwright never downloads a browser of its own here.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "Rødgrød med fløde 2026"
DESIGN_NAME = "Klimadebat på X og i nyhederne"
# Debian's Chromium, quiet: nothing fetched from the network, nothing updated, no first-run pages.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    needs_tool("chromium", "chromium"),
    # One server is enough for a browser: the database tests run on both.
    pytest.mark.parametrize("pg_server_url", ["embedded"], indirect=True),
    pytest.mark.usefixtures("analysis_dir", "isolated_settings"),
]

#: What the Tab key can reach, in document order (hidden inputs and closed details' insides are not).
FOCUSABLE = """() => [...document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])'
)].filter(e => !e.disabled && e.getClientRects().length > 0).map(e => window.__describe(e))"""

DESCRIBE = """window.__describe = e => [
  e.tagName.toLowerCase(), e.id || e.getAttribute('href') || e.getAttribute('name') || '',
  (e.innerText || e.value || '').trim().replace(/\\s+/g, ' ').slice(0, 40)
].join('|'); true"""

ACTIVE = """() => { const e = document.activeElement; const r = e.getBoundingClientRect();
  return [window.__describe(e), r.width, r.height, r.left, r.top]; }"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def store(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "store")


@pytest.fixture
def portal(engine, db_url, store, instance) -> Iterator[str]:
    """Karen's klimadebat, March 2026, as the pipeline leaves it: Danish records, their statistics,
    and exports in the store (``seed_exports``); Søren has a corpus of his own. Both have a password."""
    people = seed_people(engine)
    seed_exports(store, people)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE query_designs SET name = :n WHERE slug = 'klimadebat'"), {"n": DESIGN_NAME})
        klima = conn.execute(sa.text("SELECT id FROM query_designs WHERE slug = 'klimadebat'")).scalar_one()
    ingest.write_batch(
        engine,
        [
            record(
                klima,
                f"k{day}-{n}",
                at(day, 8 + n),
                text=text,
                author=author,
                display_name=name,
                terms=terms,
                likes=10 * n,
            )
            for day, posts in DAYS.items()
            for n, (text, author, name, terms) in enumerate(posts)
        ],
    )
    make_actor(engine, "Søren Ærø", ("x_twitter", "soeren_aeroe"), public_figure=True, claim_records=True)
    instance.add_dynamic_partitions(query_design_partitions.name, ["klimadebat"])
    built = dg.materialize(
        [corpus_statistics],
        instance=instance,
        partition_key=corpus_key(MARCH, "klimadebat"),
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "storage": StorageResource(local_dir=str(store.root)),
        },
        raise_on_error=False,
    )
    assert built.success
    for email in (KAREN, SOEREN):
        signin.set_password(engine, email, PASSWORD)
    with live_portal(engine, store) as url:
        yield url


_MOD = ("Vindmøller på Ærø? Klima kræver mod.", "soeren_aeroe", "Søren Ærø", ["klima", "vindmøller"])
_BLY = ("Grøn omstilling i Sønderjylland – æøå ÆØÅ", "bjoern", "Bjørn Ågård", ["grøn omstilling"])
_DR = ("Klimaloven: færre køer, flere træer", "dr.dk", "DR Nyheder", ["klima"])
DAYS = {2: [_MOD, _BLY], 3: [_DR], 9: [_MOD, _BLY, _DR], 15: [_BLY], 22: [_MOD, _DR], 30: [_MOD]}


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}, locale="da-DK")
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def sign_in(page, url: str, email: str = KAREN) -> None:
    page.goto(f"{url}/corpora")
    assert page.url == f"{url}/sign-in?next=/corpora"
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.press("#password", "Enter")
    assert page.url == f"{url}/corpora"


def danish_and_clean(page) -> str:
    """The page's visible text, after checking it was decoded as UTF-8 (no mojibake, no U+FFFD)."""
    assert page.evaluate("document.characterSet") == "UTF-8"
    text = page.inner_text("body")
    assert "\ufffd" not in text and not re.search("Ã[¦¸¥†˜…]", text), text
    return text


def test_a_researcher_signs_in_opens_her_corpus_downloads_its_csv_and_signs_out(page, portal, store, engine, tmp_path):
    sign_in(page, portal)
    assert page.inner_text("h1") == "My corpora"
    listed = danish_and_clean(page)
    assert DESIGN_NAME in listed and "vindmoeller" not in listed  # Søren's corpus is not hers

    page.click(f"a[href='/corpora/klimadebat/{MARCH}']")
    page.wait_for_url(f"{portal}/corpora/klimadebat/{MARCH}")
    assert page.title() == f"{DESIGN_NAME} {MARCH} · Observatory"
    text = danish_and_clean(page)
    assert "10 records" in text
    # The statistics: a bar a day in the inline chart, the terms and the public figure by name.
    assert page.locator("svg.chart rect").count() == len(DAYS)
    assert "at most 3 on one day" in text
    terms = page.inner_text("section[aria-labelledby=terms-heading]")
    assert "vindmøller" in terms and "grøn omstilling" in terms
    assert "Søren Ærø" in page.inner_text("section[aria-labelledby=actors-heading]")
    # The manifest opens in place, æøå intact.
    page.click("text=What this corpus is made of")
    assert '"note": "æøå"' in page.inner_text("section[aria-labelledby=manifest-heading] pre")

    link = page.get_by_role("link", name=f"Download {CSV.filename}")
    with page.expect_download() as pending:
        link.click()
    download = pending.value
    assert download.suggested_filename == f"klimadebat_{MARCH}_{CSV.filename}"
    saved = tmp_path / "downloaded.csv"
    download.save_as(saved)
    key = f"exports/{_karen_folder(engine)}/klimadebat/{MARCH}/{CSV.filename}"
    assert saved.read_bytes() == read_object(store, key) == KLIMA_CSV

    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert page.url == f"{portal}/sign-in?signed_out=1"
    assert "You are signed out." in page.inner_text("main")
    page.goto(f"{portal}/corpora")
    assert page.url == f"{portal}/sign-in?next=/corpora"


def _karen_folder(engine) -> str:
    from observatory_pipelines.core.exports.layout import owner_folder

    with engine.connect() as conn:
        karen = conn.execute(sa.text("SELECT id FROM users WHERE email = :e"), {"e": KAREN}).scalar_one()
    return owner_folder(karen)


def test_a_token_made_on_the_tokens_page_works_until_it_is_revoked_there(page, portal):
    sign_in(page, portal)
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_url(f"{portal}/tokens")
    assert "No tokens yet." in page.inner_text("main")
    page.fill("#name", "Analyse på bærbar")
    with page.expect_navigation():
        page.press("#name", "Enter")
    token = page.input_value("#new-token")
    assert token.startswith("obs_")
    assert "Copy it now: it is shown only once." in page.inner_text("main")

    api = f"{portal}/api/v1/corpora"
    answer = httpx.get(api, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert {(c["design"], c["month"]) for c in answer.json()} == {("klimadebat", MARCH)}

    # Shown once: the list names it, and a reload no longer holds it.
    page.goto(f"{portal}/tokens")
    assert page.locator("#new-token").count() == 0 and token not in page.content()
    assert "Analyse på bærbar" in page.inner_text("table")
    with page.expect_navigation():
        page.get_by_role("button", name="Revoke Analyse på bærbar").click()
    assert page.url == f"{portal}/tokens" and "revoked" in page.inner_text("table")

    refused = httpx.get(api, headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and set(refused.json()) == {"error"}


def test_signing_in_and_every_page_work_with_the_keyboard_alone(page, portal):
    page.goto(f"{portal}/sign-in")
    page.evaluate(DESCRIBE)
    # The address field takes the focus on arrival; the skip link and the brand are just before it.
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(ACTIVE)[0] == "a|#main|Skip to content"
    assert_tab_order(page, ["a|#main|Skip to content", "a|/|Observatory", "input|email|", "input|password|"], focused=0)
    # Signing in with the keys alone: back to the skip link, into the main part, the form.
    page.goto(f"{portal}/sign-in")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # the skip link: the next Tab starts in the main part
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(KAREN)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{portal}/corpora"

    for path in ("/corpora", f"/corpora/klimadebat/{MARCH}", "/tokens", "/credits"):
        page.goto(portal + path)
        page.evaluate(DESCRIBE)
        reached = assert_tab_order(page, ["a|#main|Skip to content", "a|/|Observatory", "a|/corpora|Corpora"])
        assert "button||Sign out" in reached, path
        if path == "/corpora":
            assert f"a|/corpora/klimadebat/{MARCH}|{DESIGN_NAME}" in reached
        if path.startswith("/corpora/"):
            # The downloads, each link named after its file, and the chart's figures.
            for file in (CSV, export_layout.MANIFEST):
                assert f"a|/corpora/klimadebat/{MARCH}/exports/{file.filename}|Download {file.filename}" in reached
            assert "summary||The figures" in reached
        if path == "/tokens":
            assert "input|name|" in reached and "button||Create token" in reached


def assert_tab_order(page, expected_start: list[str], focused: int | None = None) -> list[str]:
    """Press Tab from the top of the page (or from the ``focused``-th focusable element, which has
    the focus) through everything focusable: each element in document order, each one on the screen
    when it has the focus. Returns what was reached."""
    expected = page.evaluate(FOCUSABLE)
    assert expected[: len(expected_start)] == expected_start, expected
    reached = [] if focused is None else [page.evaluate(ACTIVE)[0]]
    for _ in range(len(expected) - len(reached) - (focused or 0)):
        page.keyboard.press("Tab")
        described, width, height, left, top = page.evaluate(ACTIVE)
        assert width > 0 and height > 0 and left >= 0 and top >= 0, f"{page.url}: {described} is focused unseen"
        reached.append(described)
    assert reached == expected[focused or 0 :], page.url
    return reached


def test_another_researcher_sees_her_corpus_exactly_as_one_that_does_not_exist(page, portal):
    sign_in(page, portal, SOEREN)
    hers = page.goto(f"{portal}/corpora/klimadebat/{MARCH}")
    hers_text = danish_and_clean(page)
    missing = page.goto(f"{portal}/corpora/findes-ikke/{MARCH}")
    missing_text = danish_and_clean(page)
    assert hers is not None and missing is not None and hers.status == missing.status == 404
    assert hers_text == missing_text
    assert "there is nothing here, or nothing you may see" in hers_text
    assert DESIGN_NAME not in hers_text and "søren.ørsted@au.dk" in hers_text  # signed in as himself
    # Her download link is the same 404.
    download = page.goto(f"{portal}/corpora/klimadebat/{MARCH}/exports/{CSV.filename}")
    assert download is not None and download.status == 404 and danish_and_clean(page) == missing_text


def test_the_live_portal_stops_when_its_block_ends(engine, store):
    with live_portal(engine, store) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)
