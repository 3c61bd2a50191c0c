"""The first load of an empty month in bulk (``ingest.FirstLoad``): the same month as the normal
path gives, row for row and index for index, whoever else writes meanwhile and however it ends."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.collection import run as collection
from observatory_pipelines.core.maintenance import partitions
from observatory_pipelines.core.platform import database
from tests.factories import (
    MARCH,
    SALT,
    at,
    content_rows,
    create_database,
    drop_database,
    make_design,
    record,
    wait_for,
)

NOW = datetime(2026, 4, 2, 12, tzinfo=timezone.utc)
PARTITION = "content_records_2026_03"


def _post(post_id: str, text: str, when: datetime, likes: int) -> str:
    data = {
        "__typename": "Tweet",
        "rest_id": post_id,
        "core": {"user_results": {"result": {"rest_id": f"7{int(post_id) % 5}", "core": {"screen_name": "søren_å"}}}},
        "legacy": {
            "full_text": text,
            "created_at": when.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "favorite_count": likes,
            "retweet_count": 1,
            "reply_count": 0,
            "lang": "da",
        },
    }
    envelope = {"item_id": post_id, "source_platform": "twitter.com", "timestamp_collected": 1775000000000}
    return json.dumps({**envelope, "data": data}, ensure_ascii=False)


def _import_folder(tmp_path, slug: str):
    """An export of 40 posts, one of them (post 5) captured again further on with more likes, and
    post 39 also known from February (``_february_copy``)."""
    folder = tmp_path / "imports" / slug
    folder.mkdir(parents=True)
    lines = [
        _post(str(i), f"Klima og grøn omstilling på Ærø, indlæg {i} – æblegrød", at(1 + i % 28, i % 24), i)
        for i in range(40)
    ]
    lines.append(_post("5", "Klima og grøn omstilling på Ærø, indlæg 5 – æblegrød", at(6, 5), 500))
    (folder / "zeeschuimer-export-twitter.com.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(tmp_path / "imports")


def _february_copy(design) -> tuple:
    return record(design, "39", at(20, month=2), text="Klima i februar", likes=1)


def _collect(engine, slug: str, imports: str, log=lambda message: None):
    return collection.collect_arena(
        engine,
        design_slug=slug,
        month=MARCH,
        arena_name="file_import",
        dagster_run_id="bulk",
        salt=SALT,
        import_dir=imports,
        now=NOW,
        log=log,
    )


_INDEXES = """
SELECT c.relname, pg_get_indexdef(c.oid) AS definition, parent.relname AS parent
FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class parent ON parent.oid = i.inhparent
WHERE x.indrelid = CAST(:t AS regclass) ORDER BY 1
"""
_CONSTRAINTS = """
SELECT c.conname, c.contype, pg_get_constraintdef(c.oid) AS definition, parent.conname AS parent
FROM pg_constraint c LEFT JOIN pg_constraint parent ON parent.oid = c.conparentid
WHERE c.conrelid = CAST(:t AS regclass) ORDER BY 1, 2
"""
# The foreign keys' internal triggers are named after their OIDs: compared by what they run.
_TRIGGERS = (
    "SELECT tgfoid::regproc::text, tgtype, tgisinternal, tgenabled FROM pg_trigger "
    "WHERE tgrelid = CAST(:t AS regclass) ORDER BY 1, 2"
)
_PARTITION = (
    "SELECT pg_get_expr(c.relpartbound, c.oid), c.relkind, c.relpersistence FROM pg_class c WHERE c.relname = :t"
)
_LOAD_TABLES = "SELECT relname FROM pg_class WHERE relname LIKE '%\\_load%'"


def _catalog(engine) -> dict:
    with engine.connect() as conn:
        return {
            query: [tuple(row) for row in conn.execute(sa.text(query), {"t": PARTITION})]
            for query in (_INDEXES, _CONSTRAINTS, _TRIGGERS, _PARTITION, _LOAD_TABLES)
        }


def _stored(engine, design) -> list[dict]:
    # Everything but what differs by design between the two databases: ids are generated.
    return [
        {k: v for k, v in row.items() if k not in ("id", "query_design_id", "collection_run_id")}
        for row in content_rows(engine, design)
    ]


def test_a_first_load_in_bulk_stores_the_rows_constraints_and_indexes_of_the_normal_path(
    engine, pg_server_url, _migrated_template, tmp_path, monkeypatch
):
    monkeypatch.setattr(collection, "BATCH_SIZE", 7)
    imports = _import_folder(tmp_path, "bulkimport")
    other_url = create_database(pg_server_url, template=_migrated_template)
    bulk_engine = database.make_engine(other_url)
    try:
        designs, logs = {}, {}
        for path, db in (("normal", engine), ("bulk", bulk_engine)):
            monkeypatch.setattr(ingest, "FIRST_LOAD_MIN_BYTES", 0 if path == "bulk" else 10**12)
            designs[path] = make_design(db, "bulkimport", arenas_config={"file_import": {"enabled": True}})
            ingest.write_batch(db, [_february_copy(designs[path])])
            logs[path] = []
            outcome = _collect(db, "bulkimport", imports, logs[path].append)
            assert (outcome.status, outcome.written.new, outcome.written.updated) == ("completed", 39, 2), path

        assert any("loaded in bulk" in line and "attached" in line for line in logs["bulk"])
        assert not any("loaded in bulk" in line for line in logs["normal"])
        normal, bulk = _stored(engine, designs["normal"]), _stored(bulk_engine, designs["bulk"])
        assert bulk == normal and len(bulk) == 40
        by_id = {row["platform_id"]: row for row in bulk}
        assert by_id["5"]["likes_count"] == 500 and by_id["5"]["partition"] == PARTITION
        # Post 39 was registered in February first: its one row stays there and notes March's date.
        assert by_id["39"]["partition"] == "content_records_2026_02"
        assert "reported_published_at" in json.loads(json.dumps(by_id["39"]["raw_metadata"]))

        expected, found = _catalog(engine), _catalog(bulk_engine)
        assert found == expected
        assert len(found[_INDEXES]) == 11 and all(parent for _, _, parent in found[_INDEXES])
        assert found[_LOAD_TABLES] == []
        for db in (engine, bulk_engine):
            with db.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM content_items")).scalar_one() == 40
    finally:
        bulk_engine.dispose()
        drop_database(other_url)


def _rows(design, ids, day: int, likes: int = 1) -> list[tuple]:
    return [record(design, str(i), at(day), text=f"Vindmøller ved Æbelø {i}", likes=likes) for i in ids]


def _advisory_waits(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar_one()


def test_other_designs_write_the_month_during_a_first_load_and_the_same_design_waits_for_it(engine):
    loading, other = make_design(engine, "indlaesning"), make_design(engine, "anden")
    load = ingest.FirstLoad.open(engine, MARCH, loading)
    assert isinstance(load, ingest.FirstLoad)
    load.submit(_rows(loading, range(10), day=3))
    load.flush()

    # Another design collects the same month meanwhile: into the partition as it is, at once.
    assert ingest.write_batch(engine, _rows(other, range(5), day=4)).new == 5
    # The loading design's own writes wait for the load, then meet its rows.
    same = {}
    writer = threading.Thread(
        target=lambda: same.update(counts=ingest.write_batch(engine, _rows(loading, [3, 42], day=3, likes=9)))
    )
    writer.start()
    wait_for(lambda: _advisory_waits(engine) == 1, timeout=10, what="the design's write to wait for the load")
    assert content_rows(engine, loading) == []  # the load shows nothing before it is whole

    load.close()
    writer.join(timeout=10)
    assert load.swap == "attached" and not writer.is_alive()
    assert (same["counts"].new, same["counts"].updated) == (1, 1)
    rows = content_rows(engine, loading)
    assert sorted(int(r["platform_id"]) for r in rows) == [*range(10), 42]
    assert {r["platform_id"]: r["likes_count"] for r in rows}["3"] == 9
    assert {r["partition"] for r in rows + content_rows(engine, other)} == {PARTITION}
    assert len(content_rows(engine, other)) == 5
    # The month is no longer empty: the next collection writes the normal way.
    assert type(ingest.FirstLoad.open(engine, MARCH, loading)) is ingest.BatchWriter


def test_a_first_load_that_dies_leaves_the_month_as_it_was(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "FIRST_LOAD_MIN_BYTES", 0)
    design = make_design(engine, "afbrudt", arenas_config={"file_import": {"enabled": True}})
    load = ingest.FirstLoad.open(engine, MARCH, design)
    load.submit(_rows(design, range(6), day=9))
    load.flush()
    # The connection is lost half-way (a restarted server, a killed worker).
    backend = load._connection.connection.driver_connection.info.backend_pid
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    with pytest.raises(sa.exc.OperationalError):
        load.close()

    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM content_items")).scalar_one() == 0
    assert _catalog(engine)[_LOAD_TABLES] == []
    with engine.connect() as conn:
        assert partitions.is_empty(conn, MARCH)

    imports = _import_folder(tmp_path, "afbrudt")
    again = _collect(engine, "afbrudt", imports)
    assert (again.status, again.written.new) == ("completed", 40)
    assert len(content_rows(engine, design)) == 40


def test_a_first_load_goes_into_the_partition_as_it_is_when_the_table_stays_busy(engine, monkeypatch):
    monkeypatch.setattr(partitions, "SWAP_LOCK_TIMEOUT", "100ms")
    monkeypatch.setattr(partitions, "SWAP_ATTEMPTS", 2)
    design = make_design(engine, "travl")
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT CAST(:t AS regclass)::oid"), {"t": PARTITION}).scalar_one()
    logs: list[str] = []
    load = ingest.FirstLoad.open(engine, MARCH, design, log=logs.append)
    load.submit(_rows(design, range(8), day=12))
    with engine.connect() as reader:
        # A long export holds the table: the swap must not wait for it, nor stall others behind it.
        reader.execute(sa.text("SELECT count(*) FROM content_records"))
        load.close()
        reader.rollback()

    assert load.swap == "inserted"
    assert sum("busy" in line for line in logs) == 2
    rows = content_rows(engine, design)
    assert len(rows) == 8 and {r["partition"] for r in rows} == {PARTITION}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT CAST(:t AS regclass)::oid"), {"t": PARTITION}).scalar_one() == before
    assert _catalog(engine)[_LOAD_TABLES] == []


def test_an_index_added_to_the_table_during_a_first_load_is_on_the_month_after_it(engine):
    design = make_design(engine, "nyt-indeks")
    load = ingest.FirstLoad.open(engine, MARCH, design)
    load.submit(_rows(design, range(5), day=14))
    load.flush()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE INDEX idx_content_language ON content_records (language)"))
    load.close()

    assert load.swap == "attached" and len(content_rows(engine, design)) == 5
    indexes = {name: parent for name, _, parent in _catalog(engine)[_INDEXES]}
    assert indexes["content_records_2026_03_language_idx"] == "idx_content_language"
    assert len(indexes) == 12 and all(indexes.values())
