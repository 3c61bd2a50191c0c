"""Who the exports name: pseudonymised by default, identified only with the design's recorded legal
basis. Every format is read from the store the way a researcher reads a download (csv, openpyxl,
json, pyarrow, networkx)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import dagster as dg
import networkx as nx
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.exports import identity as export_identity
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.defs import local_run
from observatory_pipelines.defs.analysis.networks import corpus_networks
from observatory_pipelines.defs.exports.assets import content_exports, export_gexf, export_manifest
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import (
    BYLINE,
    LEGAL_BASIS,
    MARCH,
    PRIVATE,
    PUBLIC_NAME,
    X_STATUS,
    corpus_of,
    read_export,
    read_object,
    record_identified_basis,
)

pytestmark = pytest.mark.usefixtures("analysis_dir")

ASSETS = [corpus_networks, *content_exports, export_gexf, export_manifest]
EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[a-z]{2,}", re.I)
# The actor networks that hold every actor of the people corpus: its actors share no (term, day),
# so its actor co-occurrence network has no edge and no node (labels there follow the same code).
ACTOR_NETWORKS = ("actor_term",)


def _config(identity: str | None, raw: bool = True) -> dict:
    content = {"include_raw_metadata": raw, **({"identity": identity} if identity else {})}
    ops = {f"export_{fmt}": {"config": content} for fmt in export_layout.CONTENT_FORMATS}
    if identity:
        ops["export_gexf"] = {"config": {"identity": identity}}
    return {"ops": ops}


def _materialize(instance, db_url, store_dir, identity: str | None = None, assets=None):
    instance.add_dynamic_partitions(query_design_partitions.name, ["klimadebat"])
    assets = assets or ASSETS
    config = _config(identity)
    ops = {asset.op.name for asset in assets}
    config["ops"] = {name: op for name, op in config["ops"].items() if name in ops}
    return dg.materialize(
        assets,
        instance=instance,
        partition_key=corpus_key(MARCH, "klimadebat"),
        resources={"postgres": PostgresResource(database_url=db_url), "storage": StorageResource(local_dir=store_dir)},
        run_config=config,
        raise_on_error=False,
    )


def _key(engine, file: export_layout.ExportFile) -> str:
    return export_layout.corpus_export_key(corpus_of(engine, "klimadebat", MARCH), file)


def _rows(engine, local_store, fmt: str) -> list[dict]:
    return read_export(local_store.root / _key(engine, export_layout.content_file(fmt)), fmt)


def _gexf_labels(engine, local_store, network: str, dynamic: bool = False) -> dict[str, str]:
    path = local_store.root / _key(engine, export_layout.ExportFile("gexf", network, dynamic))
    graph = nx.read_gexf(path)
    return {node: data.get("label", "") for node, data in graph.nodes(data=True) if data.get("type") == "actor"}


def _by_url_kind(rows: list[dict]) -> dict[str, dict]:
    """Each row by who wrote it, recognised by text (names may be gone)."""
    marks = {
        "mette": "valgtema",
        "soeren": "Ærø?",
        "aase": "klima-dans",
        "bjoern": "Solceller",
        "fjordposten": "Thyborøn",
        "lokalavisen": "Sønderå",
    }
    found = {}
    for who, mark in marks.items():
        (row,) = [r for r in rows if mark in ((r["text_content"] or "") + (r["title"] or ""))]
        found[who] = row
    return found


def _raw(row: dict) -> dict:
    """raw_metadata: JSON text in CSV, XLSX and Parquet, an object in NDJSON."""
    value = row["raw_metadata"]
    return json.loads(value) if isinstance(value, str) else value


# --- the default export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", export_layout.CONTENT_FORMATS)
def test_default_export_names_only_public_figures_and_drops_handles(
    engine, db_url, people_corpus, instance, local_store, fmt
):
    asset = content_exports[export_layout.CONTENT_FORMATS.index(fmt)]
    result = _materialize(instance, db_url, str(local_store.root), assets=[asset])
    assert result.success

    path = local_store.root / _key(engine, export_layout.content_file(fmt))
    rows = read_export(path, fmt)
    assert len(rows) == 6
    every_value = json.dumps(rows, ensure_ascii=False, default=str)
    for private in PRIVATE:
        assert private not in every_value, private
    if fmt in ("csv", "ndjson"):  # and not in the bytes either, whatever a parser makes of them
        text = path.read_text(encoding="utf-8-sig")
        assert not [private for private in PRIVATE if private in text]

    by = _by_url_kind(rows)
    assert {who: row["author_display_name"] for who, row in by.items()} == {
        "mette": PUBLIC_NAME,
        "soeren": None,
        "aase": None,
        "bjoern": None,
        "fjordposten": "Hanne Krog",  # the outlet is a public figure; the byline's address is gone
        "lokalavisen": None,
    }
    assert all(row["pseudonymized_author_id"] for row in rows)
    assert not [row["author_display_name"] for row in rows if EMAIL.search(row["author_display_name"] or "")]
    assert {who: row["url"] for who, row in by.items()} == {
        "mette": f"https://x.com/i/status/{X_STATUS['mette']}",
        "soeren": f"https://x.com/i/status/{X_STATUS['soeren']}",
        "aase": None,  # TikTok has no id-only form: the URL is left out
        "bjoern": "https://www.instagram.com/p/C4xYz_12ab/",
        "fjordposten": "https://fjordposten.example.dk/klima/2026/03/havvind",
        "lokalavisen": "https://lokalavisen.example.dk/artikel/borgermoede",
    }
    # The platform's object, the user id and the profile page are gone; the rest is kept.
    assert _raw(by["soeren"]) == {"hashtags": ["klima"]}
    assert _raw(by["fjordposten"]) == {"feed_url": "https://fjordposten.example.dk/rss", "categories": ["Klima"]}


def test_default_gexf_labels_and_manifest_name_only_public_figures(
    engine, db_url, people_corpus, instance, local_store
):
    with engine.begin() as conn:
        actor_list = conn.execute(
            sa.text(
                "INSERT INTO actor_lists (query_design_id, name) SELECT id, 'Debattører' FROM query_designs "
                "WHERE slug = 'klimadebat' RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO actor_list_members (actor_list_id, actor_id) SELECT :l, id FROM actors "
                "WHERE canonical_name IN ('Mette Frederiksen', 'Søren Ærø')"
            ),
            {"l": actor_list},
        )
    result = _materialize(instance, db_url, str(local_store.root))
    assert result.success

    for network in ACTOR_NETWORKS:
        for dynamic in (False, True):
            labels = _gexf_labels(engine, local_store, network, dynamic)
            assert PUBLIC_NAME in labels.values() and "Fjordposten" in labels.values()
            others = [label for label in labels.values() if label not in (PUBLIC_NAME, "Fjordposten")]
            assert len(others) == 4 and all(re.fullmatch("[0-9a-f]{12}", label) for label in others), others
            text = (local_store.root / _key(engine, export_layout.ExportFile("gexf", network, dynamic))).read_text()
            assert not [private for private in PRIVATE if private in text]

    manifest = json.loads(read_object(local_store, _key(engine, export_layout.MANIFEST)))
    assert manifest["identity"] == {"level": "pseudonymised", "legal_basis": None}
    assert {f["identity"] for f in manifest["files"]} == {"pseudonymised"}
    (listed,) = manifest["corpus"]["design"]["actor_lists"]
    assert [a.get("name") for a in listed["actors"]] == [PUBLIC_NAME, None]
    assert not [private for private in PRIVATE if private in json.dumps(manifest, ensure_ascii=False)]


# --- identified exports ---------------------------------------------------------------------------------


def test_identified_export_with_a_recorded_basis_names_everyone(engine, db_url, people_corpus, instance, local_store):
    record_identified_basis(engine, "klimadebat")
    result = _materialize(instance, db_url, str(local_store.root))  # the design's level: identified
    assert result.success

    for fmt in export_layout.CONTENT_FORMATS:
        by = _by_url_kind(_rows(engine, local_store, fmt))
        assert {who: row["author_display_name"] for who, row in by.items()} == {
            "mette": PUBLIC_NAME,
            "soeren": "Søren Ærø",
            "aase": "Åse Kløft",
            "bjoern": "Bjørn Ågård",
            "fjordposten": "Hanne Krog",  # no e-mail address leaves, identified or not
            "lokalavisen": "Jens Ærtebjerg",
        }, fmt
        assert by["soeren"]["url"] == f"https://x.com/soeren_aeroe/status/{X_STATUS['soeren']}"
        assert by["aase"]["url"] == "https://www.tiktok.com/@aase.kloeft/video/7345000000000000003"
        raw = _raw(by["soeren"])
        assert raw["author_user_id"] == "1450001" and raw["source_platform_url"] == "https://x.com/soeren_aeroe"

    labels = _gexf_labels(engine, local_store, "actor_term")
    assert {PUBLIC_NAME, "Fjordposten", "Søren Ærø", "Åse Kløft", "Bjørn Ågård", "Jens Ærtebjerg"} <= set(
        labels.values()
    )
    assert not [label for label in labels.values() if EMAIL.search(label)]

    manifest = json.loads(read_object(local_store, _key(engine, export_layout.MANIFEST)))
    assert manifest["identity"] == {"level": "identified", "legal_basis": LEGAL_BASIS}
    assert {f["identity"] for f in manifest["files"]} == {"identified"}


def test_identified_export_without_a_basis_is_refused_in_one_line(engine, db_url, people_corpus, instance, local_store):
    for asset in (content_exports[0], export_gexf):
        result = _materialize(instance, db_url, str(local_store.root), identity="identified", assets=[asset])
        assert not result.success
        (failure,) = result.get_step_failure_events()
        description = failure.step_failure_data.user_failure_data.description
        assert description == (
            "query design 'klimadebat' records no legal basis for identified exports, so none is made; record one "
            "(query_designs.export_identity = 'identified', identity_legal_basis = '...') or export pseudonymised"
        )
    assert not list(local_store.list("exports/"))
    assert BYLINE not in json.dumps([str(e.message) for e in instance.all_logs(result.run_id)], ensure_ascii=False)


@pytest.mark.parametrize("basis", [None, "", "   "])
def test_the_database_refuses_an_identified_design_without_a_basis(engine, people_corpus, basis):
    with pytest.raises(sa.exc.IntegrityError, match="ck_query_designs_identity_legal_basis"):
        record_identified_basis(engine, "klimadebat", basis)


def test_a_pseudonymised_export_can_be_asked_for_when_the_design_is_identified(engine, people_corpus, tmp_path):
    record_identified_basis(engine, "klimadebat")
    corpus = corpus_of(engine, "klimadebat", MARCH)
    with engine.connect() as conn:
        assert export_identity.for_corpus(conn, corpus).identified
        chosen = export_identity.for_corpus(conn, corpus, "pseudonymised")
    written = exports.write_csv(engine, corpus, tmp_path / "content.csv", exports.ExportOptions(identity=chosen))
    assert not [p for p in PRIVATE if p in written.path.read_text(encoding="utf-8-sig")]


@pytest.mark.parametrize(
    "shown, exported",
    [
        ("redaktion@fjordposten.example.dk (Hanne Krog)", "Hanne Krog"),
        ("Jens Ærtebjerg <jens@lokalavisen.example.dk>", "Jens Ærtebjerg"),
        ("Hanne Krog (hanne@fjordposten.example.dk)", "Hanne Krog"),
        ("mailto:nyheder@dr.dk", None),
        ("nyheder@dr.dk", None),
        ("Æbelø Lokalråd", "Æbelø Lokalråd"),
        ("@soeren_aeroe", "@soeren_aeroe"),
    ],
)
def test_no_email_address_leaves_in_an_author_field(engine, shown, exported):
    with engine.connect() as conn:
        value = conn.execute(
            sa.text(
                f"SELECT {export_identity.EMAIL_FREE_NAME_SQL} "
                "FROM (SELECT CAST(:shown AS text) AS author_display_name) AS content_records"
            ),
            {"shown": shown},
        ).scalar_one()
    assert value == exported


def test_the_docs_table_of_url_rules_is_the_codes(repo_root):
    text = (repo_root / "docs" / "exports.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^  \| `([a-z0-9_]+)` \| (.+?) \|$", text, re.M))
    assert documented == {platform: rule.rule for platform, rule in export_identity.URL_RULES.items()}
    assert re.search(rf"^  \| any other \(.*\) \| {re.escape(export_identity.NO_URL)} \|$", text, re.M)


def test_the_cli_refuses_an_identified_run_without_a_basis_before_anything_runs(engine, db_url, people_corpus):
    command = [sys.executable, "-m", "observatory_pipelines.cli", "run", "--month", MARCH, "--design", "klimadebat"]
    proc = subprocess.run(
        [*command, "--identity", "identified"],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": db_url},
        timeout=120,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "observatory: error: query design 'klimadebat' records no legal basis for identified exports, so none is "
        "made; record one (query_designs.export_identity = 'identified', identity_legal_basis = '...') or export "
        "pseudonymised"
    ]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM collection_runs")).scalar_one() == 0


def test_observatory_run_asks_every_export_for_the_identity_it_was_given(
    engine, db_url, people_corpus, instance, local_store
):
    record_identified_basis(engine, "klimadebat")
    report = local_run.materialize_corpus(
        MARCH,
        "klimadebat",
        instance=instance,
        defs=dg.Definitions(assets=ASSETS),  # the analysis and export stages, without collection
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "storage": StorageResource(local_dir=str(local_store.root)),
        },
        export_identity="pseudonymised",
    )
    assert not report.failed, [a.error for a in report.failed]
    manifest = json.loads(read_object(local_store, _key(engine, export_layout.MANIFEST)))
    assert manifest["identity"]["level"] == "pseudonymised"  # asked for, though the design allows identified
    assert {f["identity"] for f in manifest["files"]} == {"pseudonymised"}
