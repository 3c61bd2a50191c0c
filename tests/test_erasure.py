"""Erasing one actor on a real PostgreSQL: their records in every partition, presences, aliases and
everything that names them, in core and through the ``erase_actor`` job; exports afterwards."""

import json
import uuid
from datetime import timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.core.collection import ingest
from observatory_pipelines.core.exports import access
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.core.exports.access import Viewer
from observatory_pipelines.core.exports.identity import IDENTIFIED as IDENTIFIED_LEVEL
from observatory_pipelines.core.exports.identity import Identity
from observatory_pipelines.core.maintenance import erasure
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.processing import entities
from observatory_pipelines.defs.analysis.networks import corpus_networks
from observatory_pipelines.defs.exports.assets import content_exports, export_gexf, export_manifest
from observatory_pipelines.defs.maintenance import erasure as erasure_defs
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource, StorageResource
from tests.factories import (
    LEGAL_BASIS,
    at,
    corpus_of,
    make_actor,
    make_design,
    owner_of,
    put_export,
    read_export,
    record,
    record_identified_basis,
)

#: What identifies Sofie Kjær in the corpus (casefolded): her name, alias, X user id, Bluesky handle and
#: her own texts. Her old X handle is not here: Mads posts under it now, and his posts stay.
HERS = (
    "sofie kjær",
    "s. kjær",
    "1450001",
    "sofiekjaer.bsky.social",
    "grøn omstilling på fyn",
    "april: klima igen",
    "vindmøller på land",
)


def post(design, platform_id, published, account, *, actor=None, name=None, platform="x_twitter", **kwargs):
    """A record matching klima; ``actor`` is the author_id entity resolution linked."""
    arena = {"x_twitter": "file_import"}.get(platform, platform)
    return record(
        design,
        platform_id,
        published,
        author=account,
        display_name=name,
        author_id=actor,
        platform=platform,
        arena=arena,
        terms=["klima"],
        **kwargs,
    )


def _suggestion(conn, left: dict, right: dict, kind: str = "exact_name") -> None:
    def side(prefix, s):
        return {
            f"{prefix}_actor_id": s.get("actor"),
            f"{prefix}_platform": s.get("platform"),
            f"{prefix}_account": s.get("account"),
            f"{prefix}_name": s["name"],
        }

    conn.execute(
        sa.text(
            """
            INSERT INTO actor_match_suggestions (month, kind, pair_key, left_actor_id, left_platform, left_account,
                left_name, right_actor_id, right_platform, right_account, right_name, score, reason)
            VALUES ('2026-03', :kind, :key, :left_actor_id, :left_platform, :left_account, :left_name,
                :right_actor_id, :right_platform, :right_account, :right_name, 1, :reason)
            """
        ),
        {
            "kind": kind,
            "key": uuid.uuid4().hex,
            "reason": f"same name '{left['name']}'",
            **side("left", left),
            **side("right", right),
        },
    )


@pytest.fixture
def corpus(engine):
    """Sofie Kjær (X and Bluesky) in two designs and two months, one unlinked X post of hers, and
    others: Mads Ørsted (whose recycled handle equals Sofie's X username), anna, bo."""
    klima = make_design(engine, slug="klimadebat", terms=("klima", "grøn omstilling"))
    energi = make_design(engine, slug="energi", terms=("klima",))
    with engine.begin() as conn:
        sofie = make_actor(
            conn, "Sofie Kjær", ("x_twitter", "Sofie_Kjaer", "1450001"), ("bluesky", "sofiekjaer.bsky.social")
        ).id
        mads = make_actor(conn, "Mads Ørsted", ("x_twitter", "mads_oersted", "1450002")).id
        conn.execute(
            sa.text("INSERT INTO actor_aliases (actor_id, alias, source) VALUES (:a, 'S. Kjær', 'manual')"),
            {"a": sofie},
        )
        actor_list = conn.execute(
            sa.text("INSERT INTO actor_lists (query_design_id, name) VALUES (:d, 'Klimadebattører') RETURNING id"),
            {"d": klima},
        ).scalar_one()
        conn.execute(
            sa.text("INSERT INTO actor_list_members (actor_list_id, actor_id) VALUES (:l, :a), (:l, :m)"),
            {"l": actor_list, "a": sofie, "m": mads},
        )
        _suggestion(
            conn,
            {"actor": sofie, "name": "Sofie Kjær"},
            {"platform": "instagram", "account": "sofiek", "name": "Sofie Kjær"},
        )
        # Her X account on one side, before it was claimed: the account names her too.
        _suggestion(
            conn,
            {"platform": "x_twitter", "account": "SOFIE_KJAER", "name": "Sofie Kjær"},
            {"actor": mads, "name": "Mads Ørsted"},
            kind="fuzzy_name",
        )
        _suggestion(
            conn,
            {"platform": "x_twitter", "account": "anna", "name": "Anna Ærø"},
            {"platform": "bluesky", "account": "bo.bsky.social", "name": "Anna Ærø"},
        )
    ingest.write_batch(
        engine,
        [
            post(
                klima,
                "s1",
                at(2, month=3),
                "1450001",
                actor=sofie,
                name="Sofie Kjær",
                text="Klima kræver mod, skriver jeg",
            ),
            post(
                klima,
                "s2",
                at(5, month=3),
                "sofiekjaer.bsky.social",
                actor=sofie,
                name="Sofie Kjær",
                platform="bluesky",
                text="Grøn omstilling på Fyn",
            ),
            post(klima, "s3", at(1, 0, month=4), "1450001", actor=sofie, name="Sofie Kjær", text="April: klima igen"),
            post(
                energi,
                "s4",
                at(9, month=3),
                "sofiekjaer.bsky.social",
                actor=sofie,
                name="Sofie Kjær",
                platform="bluesky",
            ),
            # Collected before her X username was known: not linked, but hers (the case differs).
            post(
                klima, "s5", at(12, month=3), "SOFIE_KJAER", name="Sofie Kjær", text="Vindmøller på land? Ja tak, klima"
            ),
            # Mads now posts under the handle Sofie once had: linked to him, so his.
            post(klima, "m1", at(3, month=3), "sofie_kjaer", actor=mads, name="Mads Ørsted", text="Klima og kvæg"),
            # The same handle on another platform is another account.
            post(klima, "b1", at(4, month=3), "sofie_kjaer", name="Bo Ærenpris", platform="bluesky", text="klima"),
            post(klima, "a1", at(6, month=3), "anna", name="Anna Ærø", text="Grøn omstilling nu"),
            post(klima, "a2", at(2, month=4), "anna", name="Anna Ærø", text="klima i april"),
            # bo's copy of Sofie's post: dedup marked it as her post's duplicate.
            post(klima, "bo1", at(2, 13, month=3), "bo", name="Bo Ærenpris", text="Klima kræver mod, skriver jeg"),
            post(energi, "e1", at(9, month=3), "anna", name="Anna Ærø"),
        ],
    )
    with engine.begin() as conn:
        original = conn.execute(sa.text("SELECT id FROM content_records WHERE platform_id = 's1'")).scalar_one()
        conn.execute(
            sa.text(
                "UPDATE content_records SET raw_metadata = raw_metadata || CAST(:m AS jsonb) WHERE platform_id = 'bo1'"
            ),
            {"m": json.dumps({"duplicate_of": str(original), "duplicate_kind": "exact"})},
        )
    return {"sofie": sofie, "mads": mads, "klima": klima, "energi": energi}


def _platform_ids(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT platform_id FROM content_records")).scalars())


def _count(engine, table: str, where: str = "true", **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()


def _dump(engine, table: str) -> str:
    with engine.connect() as conn:
        return json.dumps(
            [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings()],
            default=str,
            ensure_ascii=False,
        ).casefold()


#: An identified export, so every name the corpus holds would show.
IDENTIFIED = exports.ExportOptions(identity=Identity(IDENTIFIED_LEVEL, LEGAL_BASIS))


def _export(engine, tmp_path, name: str) -> tuple[str, int]:
    path = tmp_path / name
    written = exports.write_csv(engine, corpus_of(engine, "klimadebat", "2026-03"), path, IDENTIFIED)
    return path.read_text(encoding="utf-8-sig"), written.rows


def test_erasure_removes_the_actors_records_everywhere_and_keeps_everyone_elses(engine, corpus, tmp_path):
    sofie, mads = corpus["sofie"], corpus["mads"]
    before_csv, before_rows = _export(engine, tmp_path, "before.csv")
    assert "Sofie Kjær" in before_csv and "bo1" not in before_csv  # bo's copy is left out as a duplicate
    assert before_rows == 6  # s1 s2 s5 m1 b1 a1

    result = erasure.erase_actor(
        engine, str(sofie), performed_by="dpo@observatoriet.dk", reason="anmodning om sletning, sag 2026-117"
    )

    assert result.records_deleted == {"content_records_2026_03": 4, "content_records_2026_04": 1}
    assert result.records_total == 5
    assert result.corpora == {"klimadebat 2026-03": 3, "klimadebat 2026-04": 1, "energi 2026-03": 1}
    assert (result.presences_deleted, result.aliases_deleted, result.list_memberships_deleted) == (2, 1, 1)
    assert result.suggestions_deleted == 2 and result.duplicates_unmarked == 1
    assert not result.already_erased
    assert _platform_ids(engine) == {"m1", "b1", "a1", "a2", "bo1", "e1"}
    with engine.connect() as conn:  # her posts' ids are gone from the item registry too
        registered = conn.execute(sa.text("SELECT platform_id FROM content_items")).scalars().all()
    assert sorted(registered) == sorted(_platform_ids(engine))
    for table in ("actors", "actor_platform_presences", "actor_aliases", "actor_list_members"):
        assert _count(engine, table, "actor_id = :a" if table != "actors" else "id = :a", a=sofie) == 0, table
    assert _count(engine, "actor_platform_presences", "actor_id = :a", a=mads) == 1
    assert _count(engine, "actor_list_members", "actor_id = :a", a=mads) == 1
    assert _count(engine, "actor_match_suggestions") == 1
    for table in ("content_records", "actor_match_suggestions", "actor_aliases", "actor_audit_log", "actors"):
        dumped = _dump(engine, table)
        assert not any(hers in dumped for hers in HERS), table

    with engine.connect() as conn:
        audit = (
            conn.execute(
                sa.text("SELECT * FROM actor_audit_log WHERE action = 'erase' AND actor_id = :a"), {"a": sofie}
            )
            .mappings()
            .one()
        )
    assert audit["id"] == result.audit_id and audit["performed_by"] == "dpo@observatoriet.dk"
    assert audit["details"]["records_deleted"] == 5
    assert audit["details"]["records_by_partition"] == result.records_deleted
    assert audit["details"]["presences_deleted"] == 2
    assert audit["details"]["reason"] == "anmodning om sletning, sag 2026-117"

    after_csv, after_rows = _export(engine, tmp_path, "after.csv")
    assert any(hers in before_csv.casefold() for hers in HERS)
    assert not any(hers in after_csv.casefold() for hers in HERS)
    # m1, b1, a1, and bo's copy, which lost its erased original and is a record of its own again.
    assert after_rows == 4 and "Klima kræver mod, skriver jeg" in after_csv
    assert "Mads Ørsted" in after_csv and "Anna Ærø" in after_csv


def test_erasing_twice_says_it_is_gone_and_changes_nothing(engine, corpus):
    first = erasure.erase_actor(engine, corpus["sofie"], performed_by="dpo", reason="sag 117")
    records_left = _platform_ids(engine)

    again = erasure.erase_actor(engine, corpus["sofie"], performed_by="someone else", reason="sag 117")

    assert again.already_erased and again.audit_id == first.audit_id and again.records_total == 0
    assert again.summary() == (
        f"actor {corpus['sofie']} was already erased at {first.erased_at.astimezone(timezone.utc):%Y-%m-%d %H:%M}Z "
        "by dpo; "
        "nothing left to erase"
    )
    assert _platform_ids(engine) == records_left
    assert _count(engine, "actor_audit_log", "action = 'erase'") == 1


@pytest.mark.parametrize(
    "actor, performed_by, reason, message",
    [
        ("not-a-uuid", "dpo", "sag 117", "'not-a-uuid' is not a valid actor id; ids are UUIDs"),
        (
            "3f0b5d64-6c3e-4d55-9d0e-2d0c5f3f9a10",
            "dpo",
            "sag 117",
            "no actor with id 3f0b5d64-6c3e-4d55-9d0e-2d0c5f3f9a10; nothing was erased",
        ),
        (None, " ", "sag 117", "performed_by is empty; an erasure records who did it and why"),
        (None, "dpo", "", "reason is empty; an erasure records who did it and why"),
    ],
)
def test_refused_erasures_change_nothing(engine, corpus, actor, performed_by, reason, message):
    before = (_platform_ids(engine), _count(engine, "actors"), _count(engine, "actor_audit_log"))
    with pytest.raises(ConfigError) as err:
        erasure.erase_actor(engine, actor or corpus["sofie"], performed_by=performed_by, reason=reason)
    assert str(err.value) == message
    assert (_platform_ids(engine), _count(engine, "actors"), _count(engine, "actor_audit_log")) == before


def test_earlier_merge_and_split_audit_rows_lose_the_erased_names(engine):
    make_design(engine, slug="klimadebat")
    with engine.begin() as conn:
        sofie = make_actor(conn, "Sofie Kjær", ("x_twitter", "Sofie_Kjaer", "1450001")).id
        twin = make_actor(conn, "Sofie Kjaer", ("instagram", "sofiekjaer")).id
        mads = make_actor(conn, "Mads Ørsted", ("x_twitter", "mads_oersted", "1450002"), ("bluesky", "soren.bsky")).id
    entities.merge_actors(engine, sofie, [twin], performed_by="kurator")
    with engine.connect() as conn:
        soren_presence = conn.execute(
            sa.text("SELECT id FROM actor_platform_presences WHERE platform_username = 'soren.bsky'")
        ).scalar_one()
    soren = entities.split_actor(engine, mads, [soren_presence], "Søren Ærø", performed_by="kurator").new_actor_id

    erasure.erase_actor(engine, sofie, performed_by="dpo", reason="sag 117")
    result = erasure.erase_actor(engine, soren, performed_by="dpo", reason="sag 118")

    assert result.audit_rows_redacted == 1 and result.aliases_deleted == 1  # the split alias on Mads
    audit = _dump(engine, "actor_audit_log")
    for name in ("sofie", "kjær", "kjaer", "søren", "ærø", "soren"):
        assert name not in audit and name not in _dump(engine, "actor_aliases"), name
    with engine.connect() as conn:
        merge, split = (
            conn.execute(sa.text("SELECT details FROM actor_audit_log WHERE action = :a"), {"a": a}).scalar_one()
            for a in ("merge", "split")
        )
    assert merge["duplicate_names"] == [erasure.ERASED] and merge["duplicate_actor_ids"] == [str(twin)]
    assert split["new_canonical_name"] == erasure.ERASED and split["new_actor_id"] == str(soren)
    assert _count(engine, "actors", "id = :m AND canonical_name = 'Mads Ørsted'", m=mads) == 1


# --- Dagster -------------------------------------------------------------------------------------


def _job(db_url, storage_dir) -> dg.JobDefinition:
    resources = {"postgres": PostgresResource(database_url=db_url), "storage": StorageResource(local_dir=storage_dir)}
    return dg.Definitions.merge(erasure_defs.defs, dg.Definitions(resources=resources)).resolve_job_def("erase_actor")


def _run(db_url, instance, storage_dir, **config) -> dg.ExecuteInProcessResult:
    return _job(db_url, str(storage_dir)).execute_in_process(
        run_config={
            "ops": {"erase": {"config": {"performed_by": "dpo@observatoriet.dk", "reason": "sag 117", **config}}}
        },
        instance=instance,
        raise_on_error=False,
    )


def test_the_job_erases_and_shows_counts_only(engine, db_url, corpus, instance, tmp_path):
    result = _run(db_url, instance, tmp_path / "objects", actor_id=f"  {corpus['sofie']}  ")

    assert result.success
    (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert metadata["records_deleted"] == 5 and metadata["presences_deleted"] == 2
    assert metadata["records_by_partition"] == {"content_records_2026_03": 4, "content_records_2026_04": 1}
    assert metadata["corpora_to_re_export"] == {"energi 2026-03": 1, "klimadebat 2026-03": 3, "klimadebat 2026-04": 1}
    logs = json.dumps([str(e.message) for e in instance.all_logs(result.run_id)], ensure_ascii=False)
    shown = (json.dumps(metadata, ensure_ascii=False, default=str) + result.output_for_node("erase") + logs).casefold()
    assert not any(hers in shown for hers in HERS) and "sag 117" not in shown
    assert _count(engine, "content_records", "author_id = :a", a=corpus["sofie"]) == 0

    again = _run(db_url, instance, tmp_path / "objects", actor_id=str(corpus["sofie"]))
    assert again.success and "was already erased" in again.output_for_node("erase")


def test_the_job_fails_in_one_line_on_a_wrong_id(engine, db_url, corpus, instance, tmp_path):
    for actor_id, message in (
        (
            "3f0b5d64-6c3e-4d55-9d0e-2d0c5f3f9a10",
            "no actor with id 3f0b5d64-6c3e-4d55-9d0e-2d0c5f3f9a10; nothing was erased",
        ),
        ("Sofie Kjær", "'Sofie Kjær' is not a valid actor id; ids are UUIDs"),
    ):
        result = _run(db_url, instance, tmp_path / "objects", actor_id=actor_id)
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert failure.step_failure_data.user_failure_data.description == message
    assert _count(engine, "actors", "id = :a", a=corpus["sofie"]) == 1


# --- exports of the affected corpora ------------------------------------------------------------------

EXPORT_ASSETS = [corpus_networks, *content_exports, export_gexf, export_manifest]


def _export_corpus(db_url, instance, storage_dir, slug: str, month: str) -> None:
    instance.add_dynamic_partitions(query_design_partitions.name, [slug])
    result = dg.materialize(
        EXPORT_ASSETS,
        instance=instance,
        partition_key=corpus_key(month, slug),
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "storage": StorageResource(local_dir=str(storage_dir)),
        },
        raise_on_error=False,
    )
    assert result.success


def _stored_text(store) -> dict[str, str]:
    """Every stored object's content, casefolded (XLSX and Parquet unpacked into their values)."""
    found = {}
    for stored in store.list("exports/"):
        path = store.root / stored.key
        if stored.key.endswith((".xlsx", ".parquet")):
            text = json.dumps(read_export(path, stored.key.rsplit(".", 1)[1]), ensure_ascii=False, default=str)
        else:
            text = path.read_text(encoding="utf-8-sig")
        found[stored.key] = text.casefold()
    return found


@pytest.mark.usefixtures("analysis_dir")
def test_the_job_withdraws_every_export_holding_the_erased_actor_until_rebuilt(
    engine, db_url, corpus, instance, local_store
):
    record_identified_basis(engine, "klimadebat")  # names everyone: the erased actor is plain to see
    other = make_design(engine, slug="havvind", terms=("klima",))
    ingest.write_batch(engine, [post(other, "h1", at(8, month=3), "anna", name="Anna Ærø")])
    affected = [("klimadebat", "2026-03"), ("klimadebat", "2026-04"), ("energi", "2026-03")]
    for slug, month in [*affected, ("havvind", "2026-03")]:
        _export_corpus(db_url, instance, local_store.root, slug, month)
    before = _stored_text(local_store)
    assert [key for key, text in before.items() if "sofie kjær" in text]
    admin = Viewer(owner_of(engine, corpus["klima"]), "admin@observatoriet.dk", is_admin=True)

    result = _run(db_url, instance, local_store.root, actor_id=str(corpus["sofie"]))
    assert result.success

    after = _stored_text(local_store)
    assert sorted({key.split("/")[2] for key in after}) == ["havvind"]
    assert len(after) == len(export_layout.all_files())  # the unaffected corpus keeps all its files
    for slug, month in affected:
        assert not (analysis_store.base_dir() / slug / month).exists()
        for file in (export_layout.content_file("csv"), export_layout.MANIFEST):
            with pytest.raises(access.ExportMissing):
                access.download(engine, local_store, admin, slug, month, file, local_store.root.parent)
    (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    assert output.step_output_data.metadata["exports_withdrawn"].value == len(before) - len(after)

    for slug, month in affected:  # made again: complete, and without her
        _export_corpus(db_url, instance, local_store.root, slug, month)
    rebuilt = _stored_text(local_store)
    assert len(rebuilt) == len(before)
    assert not [key for key, text in rebuilt.items() if any(hers in text for hers in HERS)]
    assert "anna ærø" in rebuilt[next(k for k in rebuilt if "/klimadebat/2026-03/content.csv" in k)]


def test_erasing_again_withdraws_exports_made_since(engine, db_url, corpus, instance, local_store):
    put_export(
        local_store,
        "user-6b0f3a52-3c1e-4f5e-9a57-0e2d1c4b8a90",
        "energi",
        "2026-03",
        export_layout.content_file("csv"),
        b"Sofie Kj\xc3\xa6r",
        1,
    )
    erasure.erase_actor(engine, corpus["sofie"], performed_by="dpo", reason="sag 117")
    again = erasure.erase_actor(engine, corpus["sofie"], performed_by="dpo", reason="sag 117")
    assert again.already_erased and again.corpora == {
        "energi 2026-03": 1,
        "klimadebat 2026-03": 3,
        "klimadebat 2026-04": 1,
    }
    withdrawn = erasure.withdraw_corpora(local_store, again)
    assert withdrawn.export_keys == ["exports/user-6b0f3a52-3c1e-4f5e-9a57-0e2d1c4b8a90/energi/2026-03/content.csv"]
    assert not list(local_store.list("exports/"))
