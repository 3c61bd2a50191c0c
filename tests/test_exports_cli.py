"""``observatory exports list`` and ``observatory exports download``, run in-process as a user
would type them: stdout, one-line stderr, exit codes and the files written."""

from __future__ import annotations

import os
import urllib.request

import pytest

from observatory_pipelines import cli
from observatory_pipelines.core.analysis.networks import NETWORKS
from observatory_pipelines.core.platform.storage import LocalObjectStore, store_from_env
from tests.factories import (
    ADMIN,
    FORMER_OWNER_FOLDER,
    GEXF,
    KAREN,
    KLIMA_CSV,
    SOEREN,
    VIND_CSV,
    new_bucket,
    seed_exports,
)


@pytest.fixture
def env(isolated_settings, tmp_path, db_url):
    """The test database, a local store of the test's own, and no user, S3 or other setting from the
    machine; the current folder is an empty one of the test's own."""
    isolated_settings.delenv("OBSERVATORY_USER", raising=False)
    isolated_settings.setenv("DATABASE_URL", db_url)
    isolated_settings.setenv("OBSERVATORY_STORAGE_DIR", str(tmp_path / "objects"))
    work = tmp_path / "arbejde"
    work.mkdir()
    isolated_settings.chdir(work)
    return isolated_settings


@pytest.fixture
def seeded(env, people):
    seed_exports(store_from_env(), people)
    return people


#: Karen's download of her klimadebat corpus for March; each test adds the format and destination.
KARENS_MARCH_DOWNLOAD = ("exports", "download", "--user", KAREN, "--design", "klimadebat", "--month", "2026-03")


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("observatory: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_researcher_lists_own_exports_as_a_table(capsys, seeded):
    status, out, err = run(capsys, "exports", "list", "--user", KAREN)

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["design", "month", "file", "rows", "size", "modified"]
    body = [line.split() for line in lines[1:]]
    assert [row[:4] for row in body] == [
        ["groen-omstilling", "2026-03", "content.parquet", "0"],
        ["klimadebat", "2026-03", "content.csv", "2"],
        ["klimadebat", "2026-03", "actor_cooccurrence.gexf", "1"],
        ["klimadebat", "2026-03", "manifest.json", "0"],
        ["klimadebat", "2026-04", "content.csv", "1"],
    ]
    assert body[1][4:6] == [str(len(KLIMA_CSV)), "B"]
    assert body[1][-1] == "UTC"
    assert "vindmoeller" not in out and FORMER_OWNER_FOLDER not in out


def test_admin_list_shows_every_owner(capsys, seeded):
    status, out, _ = run(capsys, "exports", "list", "--user", ADMIN)

    assert status == 0
    assert out.splitlines()[0].split()[-1] == "owner"
    assert f"user-{seeded.soeren}" in out and FORMER_OWNER_FOLDER in out
    assert len(out.splitlines()) == 1 + 7


def test_empty_list_says_how_to_make_exports(capsys, env, people):
    status, out, err = run(capsys, "exports", "list", "--user", SOEREN)
    assert (status, err) == (0, "")
    assert out.strip() == (
        f"no exports for {SOEREN} yet; materialize a corpus's export assets in the Dagster UI "
        "(or run: observatory run --month YYYY-MM --design SLUG)"
    )


def test_user_from_the_environment(capsys, seeded, env):
    env.setenv("OBSERVATORY_USER", SOEREN)
    status, out, _ = run(capsys, "exports", "list")
    assert status == 0 and "vindmoeller" in out and "klimadebat" not in out


def test_no_user_is_a_one_line_error(capsys, env):
    for argv in (
        ["exports", "list"],
        ["exports", "download", "--design", "klimadebat", "--month", "2026-03", "--format", "csv"],
    ):
        status, out, err = run(capsys, *argv)
        assert (status, out) == (2, "")
        line = one_line_error(err)
        assert "--user EMAIL" in line and "OBSERVATORY_USER" in line


def test_download_to_the_current_folder(capsys, seeded, tmp_path):
    status, out, err = run(
        capsys,
        *KARENS_MARCH_DOWNLOAD,
        "--format",
        "csv",
    )

    assert (status, err) == (0, "")
    saved = tmp_path / "arbejde" / "klimadebat_2026-03_content.csv"
    assert saved.read_bytes() == KLIMA_CSV
    assert out.strip() == f"{saved} ({len(KLIMA_CSV)} B, checksum verified)"


def test_download_a_network_to_a_path(capsys, seeded, tmp_path):
    target = tmp_path / "netværk.gexf"
    status, out, _ = run(
        capsys,
        "exports",
        "download",
        "--user",
        ADMIN,
        "--design",
        "klimadebat",
        "--month",
        "2026-03",
        "--format",
        "gexf",
        "--to",
        str(target),
    )
    assert status == 0
    assert target.read_bytes() == GEXF

    status, _, err = run(
        capsys,
        *KARENS_MARCH_DOWNLOAD,
        "--format",
        "gexf",
        "--network",
        "actor_term",
        "--dynamic",
    )
    assert status == 2
    assert "actor_term.dynamic.gexf" in one_line_error(err)


def test_link_prints_a_url_that_downloads_the_export(capsys, seeded):
    status, out, err = run(
        capsys,
        "exports",
        "download",
        "--user",
        SOEREN,
        "--design",
        "vindmoeller",
        "--month",
        "2026-03",
        "--format",
        "csv",
        "--link",
    )

    assert (status, err) == (0, "")
    url = out.strip()
    assert url.startswith("file:///") and "\n" not in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == VIND_CSV
    assert not os.listdir(os.getcwd())  # a link, not a download


def test_link_on_s3_is_presigned(capsys, people, env, s3_server, engine):
    env.setenv("MINIO_ENDPOINT", s3_server.endpoint)
    env.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    env.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    env.setenv("MINIO_BUCKET", new_bucket())
    store = store_from_env()
    assert not isinstance(store, LocalObjectStore)
    seed_exports(store, people)

    status, out, err = run(
        capsys,
        *KARENS_MARCH_DOWNLOAD,
        "--format",
        "csv",
        "--link",
    )
    assert (status, err) == (0, "")
    assert out.startswith(f"http://{s3_server.endpoint}/") and "X-Amz-Expires=3600" in out
    with urllib.request.urlopen(out.strip(), timeout=10) as response:
        assert response.read() == KLIMA_CSV

    status, out, _ = run(
        capsys,
        *KARENS_MARCH_DOWNLOAD,
        "--format",
        "csv",
    )
    assert status == 0 and (os.path.join(os.getcwd(), "klimadebat_2026-03_content.csv") in out)


def test_refusal_is_the_same_for_others_designs_and_no_design(capsys, seeded):
    def refused(slug, *extra):
        status, out, err = run(
            capsys,
            "exports",
            "download",
            "--user",
            SOEREN,
            "--design",
            slug,
            "--month",
            "2026-03",
            "--format",
            "csv",
            *extra,
        )
        assert (status, out) == (2, "")
        return one_line_error(err)

    others = refused("klimadebat")
    assert refused("klimadebat", "--link") == others
    assert others.replace("klimadebat", "findes-ikke") == refused("findes-ikke")
    assert "observatory exports list" in others
    assert os.listdir(".") == []


def test_unknown_user_and_missing_export(capsys, seeded):
    status, _, err = run(capsys, "exports", "list", "--user", "ukendt@ku.dk")
    assert status == 2 and "ask an admin" in one_line_error(err)

    status, _, err = run(
        capsys,
        "exports",
        "download",
        "--user",
        KAREN,
        "--design",
        "klimadebat",
        "--month",
        "2026-04",
        "--format",
        "xlsx",
    )
    assert status == 2
    line = one_line_error(err)
    assert "the xlsx export" in line and "klimadebat|2026-04" in line and "observatory run --month 2026-04" in line


def test_bad_format_and_network_are_one_line_errors(capsys, env, people):
    base = ["exports", "download", "--user", KAREN, "--design", "klimadebat", "--month", "2026-03"]
    for extra, expected in (
        (["--format", "docx"], "unknown export format 'docx'"),
        (["--format", "gexf", "--network", "venner"], "unknown network 'venner'"),
        (["--format", "csv", "--network", "actor_term"], "--format gexf only"),
        (["--format", "csv", "--dynamic"], "--format gexf only"),
    ):
        status, out, err = run(capsys, *base, *extra)
        assert (status, out) == (2, "")
        assert expected in one_line_error(err)


def test_bad_month_is_refused_by_the_parser(capsys, env):
    with pytest.raises(SystemExit) as exited:
        cli.main(
            ["exports", "download", "--user", KAREN, "--design", "klimadebat", "--month", "2026-13", "--format", "csv"]
        )
    assert exited.value.code == 2
    assert "YYYY-MM" in capsys.readouterr().err


def test_help_says_who_is_trusted_and_names_every_network(capsys):
    with pytest.raises(SystemExit):
        cli.main(["exports", "download", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "authorization by the stated user" in text and "for operators" in text
    for network in NETWORKS:
        assert network in text
