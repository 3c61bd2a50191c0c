"""The README's main command without the UI, and `observatory run`, as a user runs them."""

import csv
import os
import subprocess
import sys

import sqlalchemy as sa

from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.platform import database


def run_cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "observatory_pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_demo_collects_the_bundled_month_once_and_run_reports_failures(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DAGSTER", "PSEUDONYMIZATION", "OBSERVATORY"))
    }
    env["OBSERVATORY_HOME"] = str(tmp_path / "state")
    try:
        first = run_cli("demo", "--no-ui", env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        lines = {
            line.split()[0]: line.split()[1:]
            for line in first.stdout.splitlines()
            if line.strip().startswith("collect_")
        }
        assert lines["collect_gdelt"][0] == "skipped:"
        rss_new, file_new = int(lines["collect_rss_feeds"][0]), int(lines["collect_file_import"][0])
        assert rss_new > 20 and file_new > 30
        assert lines["collect_file_import"][3] == "1"  # the one truncated line in the X export

        # The demo ends with where each export is and the command that fetches it; that command works.
        tail = first.stdout.split("exports of 'klimadebat' 2026-03, in local folder ")[1].splitlines()
        files = [line.split()[0] for line in tail[1:] if line.startswith("  ") and "file://" in line]
        assert files == [f.filename for f in export_layout.all_files()]
        fetch = [line.split() for line in tail if line.strip().startswith("observatory exports download")]
        assert [cmd[cmd.index("--format") + 1] for cmd in fetch] == [
            "csv",
            "xlsx",
            "ndjson",
            "parquet",
            "gexf",
            "manifest",
        ]
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        fetched = run_cli(*fetch[0][1:], "--to", str(downloads), env=env)
        assert fetched.returncode == 0, fetched.stderr
        with open(downloads / "klimadebat_2026-03_content.csv", encoding="utf-8-sig", newline="") as f:
            exported = list(csv.DictReader(f))
        assert len(exported) == int(tail[1].split()[1]) > 20  # the rows the listing announced
        assert any("ø" in row["text_content"] or "æ" in row["text_content"] for row in exported)

        again = run_cli("demo", "--no-ui", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        lines_again = {
            line.split()[0]: line.split()[1:]
            for line in again.stdout.splitlines()
            if line.strip().startswith("collect_")
        }
        assert lines_again["collect_rss_feeds"][:3] == ["0", "0", str(rss_new)]
        assert lines_again["collect_file_import"][:3] == ["0", "0", str(file_new)]

        url = run_cli("db", "url", env=env).stdout.strip()
        engine = database.make_engine(url)
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT count(*) FROM content_records")).scalar_one()
            linked = conn.execute(
                sa.text(
                    "SELECT count(*) FROM content_records c JOIN actors a ON a.id = c.author_id "
                    "WHERE a.is_public_figure AND c.author_platform_id = 'hdalsgaard'"
                )
            ).scalar_one()
            runs = conn.execute(sa.text("SELECT count(*), bool_and(status = 'completed') FROM collection_runs")).one()
            danish = conn.execute(
                sa.text("SELECT count(*) FROM content_records WHERE text_content ~ '[æøåÆØÅ]'")
            ).scalar_one()
        engine.dispose()
        assert total == rss_new + file_new
        assert linked >= 1, "the minister's posts should point at his actor"
        assert runs == (2, True)
        assert danish > 10

        # `observatory run` for a design that does not exist: the assets fail, each says why.
        missing = run_cli("run", "--month", "2026-03", "--design", "findes-ikke", env=env)
        assert missing.returncode == 1
        assert "no query design with slug 'findes-ikke'" in missing.stdout
        assert "asset(s) failed" in missing.stderr and "Traceback" not in missing.stderr.split("observatory: error")[-1]

        # The README's next step after the demo: `observatory run` uses the salt the demo kept,
        # says so in one line, and re-collects the same items under the same pseudonyms.
        kept = run_cli("run", "--month", "2026-03", "--design", "klimadebat", "--arena", "rss_feeds", env=env)
        assert kept.returncode == 0, kept.stderr[-3000:]
        (said,) = [line for line in kept.stderr.splitlines() if "salt" in line]
        assert said.startswith("observatory: PSEUDONYMIZATION_SALT is unset; pseudonymising with the salt kept in ")
        rss_line = next(line.split() for line in kept.stdout.splitlines() if line.strip().startswith("collect_rss"))
        assert rss_line[1:4] == ["0", "0", str(rss_new)]

        # Where no salt exists anywhere, a run refuses to collect, in one line per arena.
        (tmp_path / "state" / "demo_salt").unlink()
        no_salt = run_cli("run", "--month", "2026-03", "--design", "klimadebat", "--arena", "rss_feeds", env=env)
        assert no_salt.returncode == 1
        assert "PSEUDONYMIZATION_SALT is not set" in no_salt.stdout
    finally:
        run_cli("db", "down", env=env)
