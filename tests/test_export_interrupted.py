"""An export killed while it writes (SIGKILL, in a process of its own): no download serves a partial
file, and the manifest never lists an object that is missing, partial or since replaced."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.exports import access, manifest
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.core.exports.access import Viewer
from observatory_pipelines.core.exports.layout import ExportMetadata
from tests.factories import MARCH, corpus_of, make_design, owner_of, put_export, read_object

#: Records in the corpus: enough that writing its XLSX takes seconds, a window to kill it in.
RECORDS = 50_000

#: The export, as the export assets make it, in a process of its own: each content format in turn,
#: then the manifest.
EXPORT = """
import sys
from observatory_pipelines.core.collection.designs import find_corpus
from observatory_pipelines.core.exports import manifest, writers
from observatory_pipelines.core.platform import database
from observatory_pipelines.core.platform.storage import LocalObjectStore

engine = database.make_engine(sys.argv[1])
store = LocalObjectStore(sys.argv[2])
with engine.connect() as conn:
    corpus = find_corpus(conn, "klimadebat", "2026-03")
for fmt in sys.argv[3].split(","):
    writers.export_content(engine, store, corpus, fmt)
manifest.export_manifest(engine, store, corpus)
"""


def _add_records(engine, design, first: int, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO content_records (published_at, platform, arena, platform_id, content_type, url,
                    text_content, author_platform_id, author_display_name, pseudonymized_author_id,
                    query_design_id, search_terms_matched, likes_count)
                SELECT TIMESTAMPTZ '2026-03-01 00:00:00+00' + i * INTERVAL '10 seconds', 'x_twitter', 'file_import',
                       'p' || i, 'post', 'https://x.com/bruger' || i % 500 || '/status/' || i,
                       repeat('Grøn omstilling på Ærø kræver vindmøller og klima. ', 6) || i,
                       'bruger' || i % 500, 'Bruger Ærø ' || i % 500, md5('bruger' || i % 500),
                       :design, ARRAY['klima'], i % 100
                FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS i
                """
            ),
            {"design": design, "first": first, "last": first + count - 1},
        )


@pytest.fixture
def big_corpus(engine):
    design = make_design(engine, terms=("klima",))
    _add_records(engine, design, 1, RECORDS)
    return design


def _put_networks(engine, store) -> None:
    """GEXF files where the GEXF export puts them (this corpus's networks are not the point here)."""
    corpus = corpus_of(engine, "klimadebat", MARCH)
    owner = export_layout.owner_folder(corpus.owner_id)
    for file in export_layout.gexf_files():
        put_export(store, owner, "klimadebat", MARCH, file, b'<?xml version="1.0"?><gexf/>', 0)


def _kill_while_writing(db_url, store, tmp_path, formats: str, victim: str) -> None:
    """Run the export in a process of its own and SIGKILL it once it has begun writing ``victim``."""
    temporary = tmp_path / "tmp"
    temporary.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", EXPORT, db_url, str(store.root), formats],
        env={**os.environ, "TMPDIR": str(temporary)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            writing = [p for p in temporary.glob(f"observatory-export-*/{victim}") if p.stat().st_size > 0]
            if writing:
                process.send_signal(signal.SIGKILL)
                break
            if process.poll() is not None:
                pytest.fail(f"the export ended before it wrote {victim}: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
        else:
            pytest.fail(f"the export did not begin writing {victim}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _check_store(engine, store, tmp_path) -> dict:
    """Every export object is whole (its bytes match the SHA-256 recorded with it, and it downloads);
    the manifest, where there is one, lists only those, with their SHA-256. Returns the manifest or {}."""
    corpus = corpus_of(engine, "klimadebat", MARCH)
    admin = Viewer(owner_of(engine, corpus.design_id), "admin@observatoriet.dk", is_admin=True)
    stored = {o.key: o for o in store.list("exports/")}
    for key in stored:
        recorded = ExportMetadata.from_object_metadata(store.stat(key).metadata)
        assert recorded is not None, key
        assert hashlib.sha256(read_object(store, key)).hexdigest() == recorded.sha256, f"{key} is partial"
        file = export_layout.parse_key(key).file
        downloaded = access.download(engine, store, admin, "klimadebat", MARCH, file, tmp_path / "downloads")
        assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == recorded.sha256
    key = export_layout.corpus_export_key(corpus, export_layout.MANIFEST)
    if key not in stored:
        return {}
    document = json.loads(read_object(store, key))
    for described in document["files"]:
        assert described["key"] in stored, f"the manifest lists {described['name']}, which is not stored"
        body = read_object(store, described["key"])
        assert hashlib.sha256(body).hexdigest() == described["sha256"], (
            f"the manifest lists {described['name']} with a SHA-256 the stored file does not have"
        )
        assert len(body) == described["size"]
    return document


def test_a_first_export_killed_mid_write_leaves_no_partial_object(engine, db_url, big_corpus, local_store, tmp_path):
    (tmp_path / "downloads").mkdir()
    _kill_while_writing(db_url, local_store, tmp_path, "csv,xlsx,ndjson", "content.xlsx")

    corpus = corpus_of(engine, "klimadebat", MARCH)
    keys = {o.key.rsplit("/", 1)[1] for o in local_store.list("exports/")}
    assert keys == {"content.csv"}  # the CSV was done; the XLSX never appears half-written
    assert _check_store(engine, local_store, tmp_path) == {}
    admin = Viewer(owner_of(engine, corpus.design_id), "admin@observatoriet.dk", is_admin=True)
    with pytest.raises(access.ExportMissing):
        access.download(engine, local_store, admin, "klimadebat", MARCH, export_layout.content_file("xlsx"), tmp_path)


def test_a_re_export_killed_mid_write_leaves_no_manifest_describing_other_files(
    engine, db_url, big_corpus, local_store, tmp_path
):
    (tmp_path / "downloads").mkdir()
    corpus = corpus_of(engine, "klimadebat", MARCH)
    for fmt in export_layout.CONTENT_FORMATS:
        exports.export_content(engine, local_store, corpus, fmt)
    _put_networks(engine, local_store)
    manifest.export_manifest(engine, local_store, corpus)
    assert len(_check_store(engine, local_store, tmp_path)["files"]) == len(export_layout.all_files()) - 1

    _add_records(engine, big_corpus, RECORDS + 1, 1_000)  # collected since: every file changes
    _kill_while_writing(db_url, local_store, tmp_path, "csv,xlsx", "content.xlsx")

    # The CSV was replaced before the kill: a manifest still listing the old one would be a lie.
    document = _check_store(engine, local_store, tmp_path)
    assert document == {}
    csv_key = export_layout.corpus_export_key(corpus, export_layout.content_file("csv"))
    assert ExportMetadata.from_object_metadata(local_store.stat(csv_key).metadata).rows == RECORDS + 1_000
