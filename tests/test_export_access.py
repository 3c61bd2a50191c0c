"""Who may list and download which corpus exports, on both storage backends: a local folder and a
real S3 server (SeaweedFS). Objects are put where the export assets put them, with the metadata
they record."""

from __future__ import annotations

import hashlib
import urllib.request
from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.exports import access as export_access
from observatory_pipelines.core.exports.access import AccessRefused, ExportCorrupted, ExportMissing
from observatory_pipelines.core.exports.layout import MANIFEST, ExportFile, ExportMetadata, export_key
from observatory_pipelines.core.platform.storage import S3ObjectStore
from tests.factories import (
    ACTORS_GEXF,
    ADMIN,
    CSV,
    FORMER_OWNER_FOLDER,
    GEXF,
    INACTIVE,
    KAREN,
    KLIMA_CSV,
    PARQUET,
    SOEREN,
    VIND_CSV,
    XLSX,
    People,
    put_export,
    seed_exports,
)


@pytest.fixture
def seeded(engine, store, people) -> People:
    seed_exports(store, people)
    return people


def _viewer(engine, email):
    return export_access.viewer_for(engine, email)


def _refusal(call) -> str:
    with pytest.raises(AccessRefused) as refused:
        call()
    message = str(refused.value)
    assert "\n" not in message
    return message


# --- who is asking -----------------------------------------------------------------------------


def test_viewer_is_found_by_address_in_any_case(engine, people):
    karen = _viewer(engine, "  Karen.Blixen@KU.dk ")
    assert (karen.user_id, karen.email, karen.is_admin) == (people.karen, KAREN, False)
    assert karen.folder == f"user-{people.karen}"  # no e-mail address in keys or links
    soeren = _viewer(engine, SOEREN)
    assert soeren.folder == f"user-{people.soeren}"
    assert _viewer(engine, ADMIN).is_admin


def test_unknown_and_deactivated_users_are_refused_alike(engine, people):
    unknown = _refusal(lambda: _viewer(engine, "ukendt@ku.dk"))
    inactive = _refusal(lambda: _viewer(engine, INACTIVE))
    assert "ask an admin" in unknown
    assert unknown.replace("ukendt@ku.dk", INACTIVE) == inactive
    assert "ask an admin" in _refusal(lambda: _viewer(engine, ""))


# --- listing -----------------------------------------------------------------------------------


def test_researcher_lists_only_their_own_designs(engine, store, seeded, monkeypatch):
    listed_prefixes = []
    real_list = store.list
    monkeypatch.setattr(store, "list", lambda prefix="": listed_prefixes.append(prefix) or real_list(prefix))

    found = export_access.list_exports(engine, store, _viewer(engine, KAREN))

    assert [(e.design, e.month, e.file.filename) for e in found] == [
        ("groen-omstilling", "2026-03", "content.parquet"),
        ("klimadebat", "2026-03", "content.csv"),
        ("klimadebat", "2026-03", "actor_cooccurrence.gexf"),
        ("klimadebat", "2026-03", "manifest.json"),
        ("klimadebat", "2026-04", "content.csv"),
    ]
    csv = found[1]
    assert (csv.owner, csv.size, csv.rows, csv.sha256) == (
        seeded.karen_folder,
        len(KLIMA_CSV),
        2,
        hashlib.sha256(KLIMA_CSV).hexdigest(),
    )
    assert csv.key == f"exports/{seeded.karen_folder}/klimadebat/2026-03/content.csv"
    assert csv.last_modified.tzinfo is not None
    # Other owners' folders are never even listed, not merely filtered out.
    assert listed_prefixes and all(p.startswith(f"exports/{seeded.karen_folder}/") for p in listed_prefixes)

    soeren = export_access.list_exports(engine, store, _viewer(engine, SOEREN))
    assert [(e.design, e.owner, e.rows) for e in soeren] == [("vindmoeller", f"user-{seeded.soeren}", 1)]


def test_admin_lists_every_export_and_nothing_else(engine, store, seeded):
    found = export_access.list_exports(engine, store, _viewer(engine, ADMIN))

    assert [(e.design, e.month, e.file.filename, e.owner) for e in found] == [
        ("groen-omstilling", "2026-03", "content.parquet", seeded.karen_folder),
        ("klimadebat", "2026-02", "content.csv", FORMER_OWNER_FOLDER),
        ("klimadebat", "2026-03", "content.csv", seeded.karen_folder),
        ("klimadebat", "2026-03", "actor_cooccurrence.gexf", seeded.karen_folder),
        ("klimadebat", "2026-03", "manifest.json", seeded.karen_folder),
        ("klimadebat", "2026-04", "content.csv", seeded.karen_folder),
        ("vindmoeller", "2026-03", "content.csv", f"user-{seeded.soeren}"),
    ]


def test_nothing_to_list(engine, store, people):
    assert export_access.list_exports(engine, store, _viewer(engine, KAREN)) == []
    assert export_access.list_exports(engine, store, _viewer(engine, ADMIN)) == []


def test_an_object_without_export_metadata_is_listed_without_rows(engine, store, seeded):
    # Copied into place by hand: listed (it is there) but with nothing vouching for it.
    put_export(store, seeded.karen_folder, "klimadebat", "2026-04", XLSX, b"PK\x03\x04", 0, metadata={})
    found = {
        e.file: e for e in export_access.list_exports(engine, store, _viewer(engine, KAREN)) if e.month == "2026-04"
    }
    assert (found[XLSX].rows, found[XLSX].sha256) == (None, None)
    assert found[CSV].rows == 1


# --- refusals and missing exports --------------------------------------------------------------


def test_someone_elses_design_and_no_design_are_refused_identically(engine, store, seeded):
    soeren = _viewer(engine, SOEREN)
    # Klimadebat is Karen's and its March CSV exists; the April parquet does not.
    for month, file in (("2026-03", CSV), ("2026-04", PARQUET)):
        others = _refusal(partial(export_access.locate, engine, store, soeren, "klimadebat", month, file))
        download = _refusal(partial(export_access.download, engine, store, soeren, "klimadebat", month, file, "."))
        link = _refusal(partial(export_access.link, engine, store, soeren, "klimadebat", month, file))
        assert others == download == link
    assert "observatory exports list" in others

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE query_designs SET slug = 'klimadebat-arkiv' WHERE slug = 'klimadebat'"))
    nonexistent = _refusal(lambda: export_access.locate(engine, store, soeren, "klimadebat", "2026-03", CSV))
    assert nonexistent.encode() == others.encode()


def test_a_slug_that_cannot_exist_is_refused_like_any_other(engine, store, seeded):
    karen = _viewer(engine, KAREN)
    message = _refusal(lambda: export_access.locate(engine, store, karen, "../søren", "2026-03", CSV))
    assert message.startswith("no query design '../søren' of yours;")


def test_missing_export_names_the_export_and_partition(engine, store, seeded):
    karen = _viewer(engine, KAREN)
    with pytest.raises(ExportMissing) as missing:
        export_access.locate(engine, store, karen, "klimadebat", "2026-05", CSV)
    assert str(missing.value) == (
        "no content.csv export of 'klimadebat' for 2026-05 yet: materialize the csv export for partition "
        "klimadebat|2026-05 in the Dagster UI (or run: observatory run --month 2026-05 --design klimadebat)"
    )
    dynamic = ExportFile("gexf", "term_cooccurrence", dynamic=True)
    with pytest.raises(
        ExportMissing, match=r"term_cooccurrence\.dynamic\.gexf .* the gexf export .* klimadebat\|2026-03"
    ):
        export_access.download(engine, store, karen, "klimadebat", "2026-03", dynamic, ".")


def test_the_partition_named_is_the_one_dagster_shows():
    from observatory_pipelines.defs.partitions import corpus_key

    assert str(corpus_key("2026-03", "klimadebat")) == "klimadebat|2026-03"


def test_admin_finds_a_researchers_export_in_the_owners_folder(engine, store, seeded):
    admin = _viewer(engine, ADMIN)
    found = export_access.locate(engine, store, admin, "vindmoeller", "2026-03", CSV)
    assert found.key == f"exports/user-{seeded.soeren}/vindmoeller/2026-03/content.csv"
    assert ExportMetadata.from_object_metadata(found.metadata).rows == 1
    with pytest.raises(ExportMissing):
        export_access.locate(engine, store, admin, "vindmoeller", "2026-04", CSV)
    # An admin may learn a design does not exist; the message says so without "of yours".
    assert _refusal(lambda: export_access.locate(engine, store, admin, "findes-ikke", "2026-03", CSV)).startswith(
        "no query design 'findes-ikke';"
    )


# --- downloads and links -----------------------------------------------------------------------


def test_download_into_a_folder_or_to_a_path(engine, store, seeded, tmp_path):
    karen = _viewer(engine, KAREN)
    folder = tmp_path / "hentet"
    folder.mkdir()

    saved = export_access.download(engine, store, karen, "klimadebat", "2026-03", CSV, folder)
    assert saved == folder / "klimadebat_2026-03_content.csv"  # named for the corpus: months never collide
    assert saved.read_bytes() == KLIMA_CSV

    named = export_access.download(engine, store, karen, "klimadebat", "2026-03", ACTORS_GEXF, folder / "aktører.gexf")
    assert named.read_bytes() == GEXF
    assert sorted(p.name for p in folder.iterdir()) == [
        "aktører.gexf",
        "klimadebat_2026-03_content.csv",
    ]  # no temp files

    admin = export_access.download(
        engine, store, _viewer(engine, ADMIN), "vindmoeller", "2026-03", CSV, folder / "vind.csv"
    )
    assert admin.read_bytes() == VIND_CSV


def test_download_into_a_missing_folder_is_refused(engine, store, seeded, tmp_path):
    karen = _viewer(engine, KAREN)
    with pytest.raises(export_access.ObservatoryError, match="does not exist"):
        export_access.download(engine, store, karen, "klimadebat", "2026-03", CSV, tmp_path / "nej" / "x.csv")


def test_a_tampered_export_is_refused_and_leaves_no_file(engine, store, seeded, tmp_path):
    karen = _viewer(engine, KAREN)
    original = store.stat(export_key(seeded.karen_folder, "klimadebat", "2026-03", CSV))
    tampered = KLIMA_CSV.replace("Ærø".encode(), "Fanø".encode())
    put_export(store, seeded.karen_folder, "klimadebat", "2026-03", CSV, tampered, 2, metadata=dict(original.metadata))
    folder = tmp_path / "hentet"
    folder.mkdir()
    (folder / "earlier.csv").write_bytes(b"an earlier download")

    with pytest.raises(ExportCorrupted) as corrupted:
        export_access.download(engine, store, karen, "klimadebat", "2026-03", CSV, folder)
    assert str(corrupted.value) == (
        f"download of exports/{seeded.karen_folder}/klimadebat/2026-03/content.csv was corrupted (checksum mismatch); try again"
    )
    with pytest.raises(ExportCorrupted):
        export_access.download(engine, store, karen, "klimadebat", "2026-03", CSV, folder / "earlier.csv")
    assert [p.name for p in folder.iterdir()] == ["earlier.csv"]
    assert (folder / "earlier.csv").read_bytes() == b"an earlier download"


def test_an_export_without_a_recorded_checksum_is_not_downloaded(engine, store, seeded, tmp_path):
    put_export(store, seeded.karen_folder, "klimadebat", "2026-04", XLSX, b"PK\x03\x04", 0, metadata={})
    folder = tmp_path / "hentet"
    folder.mkdir()
    with pytest.raises(ExportCorrupted, match="no recorded checksum.*the xlsx export.*klimadebat\\|2026-04"):
        export_access.download(engine, store, _viewer(engine, KAREN), "klimadebat", "2026-04", XLSX, folder)
    assert list(folder.iterdir()) == []


def test_link_fetches_the_same_bytes(engine, store, seeded):
    url = export_access.link(engine, store, _viewer(engine, KAREN), "klimadebat", "2026-03", CSV)
    if isinstance(store, S3ObjectStore):
        assert url.startswith("http://") and "X-Amz-Signature=" in url
        assert "X-Amz-Expires=3600" in url
    else:
        assert url.startswith("file:///")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == KLIMA_CSV

    admin_url = export_access.link(
        engine, store, _viewer(engine, ADMIN), "vindmoeller", "2026-03", CSV, expires=timedelta(minutes=5)
    )
    with urllib.request.urlopen(admin_url, timeout=10) as response:
        assert response.read() == VIND_CSV


def test_link_to_a_missing_export_names_what_to_materialize(engine, store, seeded):
    with pytest.raises(ExportMissing, match="materialize the manifest export for partition klimadebat\\|2026-04"):
        export_access.link(engine, store, _viewer(engine, KAREN), "klimadebat", "2026-04", MANIFEST)


def test_link_lifetime_is_bounded(engine, store, seeded):
    with pytest.raises(ValueError, match="1 second"):
        export_access.link(
            engine, store, _viewer(engine, KAREN), "klimadebat", "2026-03", CSV, expires=timedelta(days=1)
        )
