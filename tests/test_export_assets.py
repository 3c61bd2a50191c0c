"""The export assets, materialized in process on a real database and a real object store."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
from lxml import etree

from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.defs.analysis.networks import corpus_networks
from observatory_pipelines.defs.exports.assets import content_exports, export_gexf, export_manifest
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import MARCH, corpus_of, new_bucket, open_s3_store, read_object

GEXF_XSD = str(Path(__file__).resolve().parent / "fixtures" / "gexf-1.3" / "gexf.xsd")
ALL_EXPORTS = [*content_exports, export_gexf, export_manifest]

pytestmark = pytest.mark.usefixtures("analysis_dir")


def materialize(instance, db_url, storage, assets=None, run_config=None, month=MARCH):
    instance.add_dynamic_partitions(query_design_partitions.name, ["klimadebat"])
    return dg.materialize(
        # Without dedup_pass: the corpus's duplicate is marked as the pass would have marked it.
        assets or [corpus_networks, *ALL_EXPORTS],
        instance=instance,
        partition_key=corpus_key(month, "klimadebat"),
        resources={"postgres": PostgresResource(database_url=db_url), "storage": storage},
        run_config=run_config,
        raise_on_error=False,
    )


def metadata(result, asset: str) -> dict:
    (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_every_export_of_a_corpus_lands_in_the_store_with_a_manifest(
    engine, db_url, export_corpus, instance, local_store
):
    arenas_config = {
        "rss_feeds": {"enabled": True, "options": {"feeds": ["https://www.dr.dk/nyheder/service/feeds/indland"]}},
        "gdelt": {"enabled": False},
        "file_import": {"enabled": True, "options": {"files": ["**/*.ndjson"]}},
    }
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE query_designs SET arenas_config = CAST(:c AS jsonb) WHERE slug = 'klimadebat'"),
            {"c": json.dumps(arenas_config)},
        )
    result = materialize(instance, db_url, StorageResource(local_dir=str(local_store.root)))
    assert result.success

    ref = corpus_of(engine, "klimadebat", MARCH)
    owner = export_layout.owner_folder(ref.owner_id)
    prefix = f"exports/{owner}/klimadebat/2026-03/"
    assert metadata(result, "export_manifest")["uri"] == local_store.uri(prefix + "manifest.json")
    assert sorted(o.key.removeprefix(prefix) for o in local_store.list(prefix)) == sorted(
        f.filename for f in export_layout.all_files()
    )

    manifest = json.loads(read_object(local_store, prefix + "manifest.json"))
    assert manifest["corpus"]["month"] == "2026-03" and manifest["corpus"]["design"]["slug"] == "klimadebat"
    assert {t["term"] for t in manifest["corpus"]["design"]["search_terms"]} == {
        "klima",
        "grøn omstilling",
        "vindmøller",
    }
    arenas = {a["arena"]: a for a in manifest["corpus"]["design"]["arenas"]}
    assert arenas["rss_feeds"]["enabled"] and arenas["rss_feeds"]["tier"] == "free"
    assert arenas["rss_feeds"]["options"]["feeds"] == ["https://www.dr.dk/nyheder/service/feeds/indland"]
    assert not arenas["gdelt"]["enabled"]
    assert manifest["records"] == {"stored": 6, "duplicates": 1, "without_duplicates": 5}
    assert manifest["software"]["postgresql"] and manifest["software"]["observatory_pipelines"]
    assert [c["name"] for c in manifest["columns"]][:3] == ["platform", "arena", "content_type"]
    files = {f["name"]: f for f in manifest["files"]}
    assert len(files) == len(export_layout.all_files()) - 1
    for name, described in files.items():
        body = read_object(local_store, prefix + name)
        assert described["size"] == len(body)
        assert described["sha256"] == hashlib.sha256(body).hexdigest()
    assert files["content.csv"]["rows"] == files["content.parquet"]["rows"] == 5
    assert files["content.csv"]["include_duplicates"] is False

    csv_meta = metadata(result, "export_csv")
    assert csv_meta["rows"] == 5 and csv_meta["size_bytes"] == files["content.csv"]["size"]
    assert csv_meta["sha256"] == files["content.csv"]["sha256"]
    assert csv_meta["uri"] == local_store.uri(prefix + "content.csv")
    assert csv_meta["download_link"].startswith("file://")
    assert metadata(result, "export_xlsx")["sheets"] == 1

    schema = etree.XMLSchema(etree.parse(GEXF_XSD))
    for name in files:
        if name.endswith(".gexf"):
            schema.assertValid(etree.fromstring(read_object(local_store, prefix + name)))
    assert "actor_cooccurrence.dynamic.gexf" in metadata(result, "export_gexf")["files"]


def test_rematerializing_replaces_files_in_place_and_options_reach_the_manifest(
    engine, db_url, export_corpus, instance, local_store
):
    storage = StorageResource(local_dir=str(local_store.root))
    assert materialize(instance, db_url, storage).success
    before = sorted(o.key for o in local_store.list("exports/"))

    config = {"ops": {"export_parquet": {"config": {"include_duplicates": True, "include_raw_metadata": True}}}}
    result = materialize(instance, db_url, storage, [content_exports[3], export_manifest], run_config=config)
    assert result.success
    assert sorted(o.key for o in local_store.list("exports/")) == before
    parquet_key = next(k for k in before if k.endswith("content.parquet"))
    with local_store.open(parquet_key) as stream:
        frame = pl.read_parquet(stream)
    assert frame.height == 6 and frame["duplicate_of"].drop_nulls().len() == 1
    manifest = json.loads(read_object(local_store, parquet_key.replace("content.parquet", "manifest.json")))
    parquet = next(f for f in manifest["files"] if f["name"] == "content.parquet")
    assert parquet["rows"] == 6 and parquet["include_duplicates"] and parquet["include_raw_metadata"]


def test_manifest_refuses_to_describe_missing_files(engine, db_url, export_corpus, instance, tmp_path):
    storage = StorageResource(local_dir=str(tmp_path / "objects"))
    result = materialize(instance, db_url, storage, [export_manifest])
    assert not result.success
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "missing, e.g. content.csv: materialize the csv export" in description and "\n" not in description


def test_gexf_before_the_networks_says_what_to_materialize(engine, db_url, export_corpus, instance, tmp_path):
    result = materialize(instance, db_url, StorageResource(local_dir=str(tmp_path / "objects")), [export_gexf])
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    assert (
        "materialize the corpus's networks for that partition first"
        in failure.step_failure_data.user_failure_data.description
    )


def test_exports_to_s3_with_a_link_that_downloads_the_file_and_no_secret_in_the_run(
    engine, db_url, export_corpus, instance, s3_server, monkeypatch
):
    monkeypatch.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    bucket = new_bucket()
    storage = StorageResource(endpoint=s3_server.endpoint, bucket=bucket)
    result = materialize(instance, db_url, storage, content_exports)
    assert result.success

    store = open_s3_store(s3_server, bucket=bucket)
    for asset in ("export_csv", "export_ndjson", "export_parquet", "export_xlsx"):
        m = metadata(result, asset)
        assert m["uri"].startswith(f"s3://{bucket}/exports/")
        key = m["uri"].removeprefix(f"s3://{bucket}/")
        with urllib.request.urlopen(m["download_link"]) as response:
            body = response.read()
        assert body == read_object(store, key) and hashlib.sha256(body).hexdigest() == m["sha256"]
        assert "X-Amz-Expires=3600" in m["download_link"]

    recorded = dg.serialize_value(instance.all_logs(result.run_id)) + str(instance.get_run_by_id(result.run_id))
    assert s3_server.secret_key not in recorded


def test_an_unreachable_store_fails_the_export_in_one_line(engine, db_url, export_corpus, instance, monkeypatch):
    monkeypatch.setenv("MINIO_ACCESS_KEY", "observatory")
    monkeypatch.setenv("MINIO_SECRET_KEY", "not-a-real-secret")
    storage = StorageResource(endpoint="127.0.0.1:9", bucket="observatory")
    result = materialize(instance, db_url, storage, [content_exports[0]])
    assert not result.success
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "cannot reach S3 at 127.0.0.1:9" in description and "\n" not in description
    assert "not-a-real-secret" not in dg.serialize_value(instance.all_logs(result.run_id))
