"""Query designs as YAML files: every error reported as FILE:LINE: FIELD, apply in one transaction
(idempotent, audited, all or nothing), removed files deactivating, export round trips, the
sensor, and the ``observatory designs`` commands through ``cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from observatory_pipelines import cli
from observatory_pipelines.core.collection import design_files, ingest
from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.designs import load_design
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.defs.collection.design_files import apply_design_files as design_files_sensor
from observatory_pipelines.defs.partitions import QUERY_DESIGN_PARTITIONS
from observatory_pipelines.defs.resources import PostgresResource
from observatory_pipelines.demo import seed as demo
from tests.factories import (
    at,
    design_changes,
    make_actor,
    make_design,
    make_user,
    record,
    write_design_file,
)

# Every arena is named, so a new arena changes no expectation here.
KNOWN_ARENAS = ", ".join(registry())

ROOT = Path(__file__).resolve().parents[1]
APPLIED_BY = "cli:test"

#: Malformed files, each with the lines validation must print for it (``{file}`` is its path).
MALFORMED = {
    "bad-yaml.yaml": (
        "slug: bad-yaml\nname: [unclosed\nowner: x\n",
        ["{file}:3: (yaml): not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence)"],
    ),
    "types.yaml": (
        "slug: types\nname: Typer\nowner: forsker@example.dk\nactive: ja\nterms: klima\nlanguage: 42\ncolour: blå\n",
        [
            "{file}:4: active: 'ja' is not of type 'boolean'",
            "{file}:5: terms: 'klima' is not of type 'array'",
            "{file}:6: language: 42 is not of type 'string'",
            "{file}:7: colour: unknown field; allowed: slug, name, owner, description, default_tier, language, "
            "country, active, export_identity, identity_legal_basis, terms, actor_lists, arenas",
        ],
    ),
    "arenas.yaml": (
        "slug: arenas\nname: Arenaer\nowner: forsker@example.dk\narenas:\n  tiktok_live: {}\n  gdelt:\n"
        "    enabled: ja\n  rss_feeds:\n    options:\n      feeds:\n      - package:demo/data/feeds/findes-ikke.xml\n"
        "  file_import:\n    options:\n      files: ['../udenfor/*.ndjson']\n",
        [
            "{file}:5: arenas.tiktok_live: unknown arena 'tiktok_live'; known arenas: " + KNOWN_ARENAS,
            "{file}:7: arenas.gdelt.enabled: must be true or false, not 'ja'",
            "{file}:11: arenas.rss_feeds.options.feeds[0]: 'package:demo/data/feeds/findes-ikke.xml' names no "
            "file in the observatory_pipelines package",
            "{file}:13: arenas.file_import.options: option 'files': pattern '../udenfor/*.ndjson' must stay "
            "inside the design's folder",
        ],
    ),
    "identified.yaml": (
        "slug: identified\nname: Identificeret\nowner: forsker@example.dk\nexport_identity: identified\n",
        ["{file}:1: identity_legal_basis: missing; this field is required"],
    ),
    "blank-basis.yaml": (
        "slug: blank-basis\nname: Tom\nowner: forsker@example.dk\nexport_identity: identified\n"
        "identity_legal_basis: '  '\n",
        ["{file}:5: identity_legal_basis: must say why identified exports are lawful (it is empty)"],
    ),
    "wrong-name.yaml": (
        "slug: andet-navn\nname: Forkert\nowner: forsker@example.dk\n",
        ["{file}:1: slug: 'andet-navn' must be the file's name without .yaml ('wrong-name')"],
    ),
    "missing.yaml": (
        "name: Uden slug\nname: igen\n",
        [
            "{file}:1: owner: missing; this field is required",
            "{file}:1: slug: missing; this field is required",
            "{file}:2: name: written twice; YAML keeps only the last one",
        ],
    ),
    "actors.yaml": (
        "slug: actors\nname: Aktører\nowner: forsker@example.dk\nactor_lists:\n- name: Liste\n  actors:\n"
        "  - name: Ingen konti\n  - name: Uden id\n    accounts:\n    - platform: x_twitter\n",
        [
            "{file}:7: actor_lists[0].actors[0].accounts: missing; this field is required",
            "{file}:10: actor_lists[0].actors[1].accounts[0]: an account needs a handle or a user_id",
        ],
    ),
    "empty.yaml": ("", ["{file}:1: (file): the file is empty; a design file is a mapping (slug: ..., name: ...)"]),
}


@pytest.fixture
def designs_folder(tmp_path, isolated_settings, db_url) -> Path:
    """The designs folder of the test (OBSERVATORY_DESIGNS_DIR), the CLI and the sensor pointed at ``db_url``."""
    folder = tmp_path / "designs"
    folder.mkdir()
    isolated_settings.setenv("OBSERVATORY_DESIGNS_DIR", str(folder))
    isolated_settings.setenv("DATABASE_URL", db_url)
    return folder


def invalid(path: Path) -> list[str]:
    with pytest.raises(design_files.DesignFilesInvalid) as raised:
        design_files.read_design_files(path)
    return [str(error) for error in raised.value.errors]


def counts(engine) -> dict[str, int]:
    tables = ("query_designs", "search_terms", "actor_lists", "actor_list_members", "actors", "design_changes")
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def design_row(engine, slug: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM query_designs WHERE slug = :s"), {"s": slug}).mappings().one())


def active_terms(engine, slug: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT t.term, t.term_type FROM search_terms t JOIN query_designs d ON d.id = t.query_design_id "
                "WHERE d.slug = :s AND t.is_active"
            ),
            {"s": slug},
        )
        return dict(rows.all())


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_each_malformed_file_reports_every_error_with_file_line_and_field(tmp_path, name):
    text, expected = MALFORMED[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert invalid(path) == [line.format(file=path) for line in expected]


def test_a_folder_reports_the_errors_of_every_file_and_duplicate_slugs(tmp_path):
    for name, (text, _) in MALFORMED.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "dup.yaml").write_text("slug: dup\nname: En\nowner: a@b.dk\n", encoding="utf-8")
    (tmp_path / "dup.yml").write_text("slug: dup\nname: To\nowner: a@b.dk\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("not a design", encoding="utf-8")
    expected = sorted(
        [line.format(file=tmp_path / name) for name, (_, lines) in MALFORMED.items() for line in lines]
        + [f"{tmp_path / 'dup.yml'}:1: slug: 'dup' is also the slug in {tmp_path / 'dup.yaml'}"]
    )
    assert sorted(invalid(tmp_path)) == expected


def test_a_term_the_grammar_refuses_is_named_with_its_line(tmp_path):
    path = write_design_file(
        tmp_path, "terms", text="slug: terms\nname: T\nowner: a@b.dk\nterms:\n- klima\n- '\"grøn omstilling'\n- klima\n"
    )
    errors = invalid(path)
    assert errors[0] == (
        f"{path}:6: terms[1]: '\"grøn omstilling': the quote at column 1 is never closed; end the phrase with \""
    )
    assert errors[1:] == [f"{path}:7: terms[2]: 'klima' is already terms[0]"]


def test_a_missing_designs_folder_is_an_error_not_an_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        design_files.read_design_files(tmp_path / "findes-ikke")


def test_the_schema_file_beside_the_designs_is_the_generated_one_and_accepts_the_demo():
    import jsonschema
    import yaml

    shipped = (ROOT / "designs" / "schema.json").read_text(encoding="utf-8")
    assert shipped == design_files.schema_json(), "regenerate: observatory designs schema > designs/schema.json"
    demo_file = (ROOT / "designs" / "klimadebat.yaml").read_text(encoding="utf-8")
    assert demo_file.startswith("# yaml-language-server: $schema=schema.json\n")
    jsonschema.validate(yaml.safe_load(demo_file), json.loads(shipped))


# --- apply ---------------------------------------------------------------------------------------------


def test_apply_creates_then_changes_nothing_and_writes_no_second_audit_row(engine, tmp_path):
    make_user(engine)
    write_design_file(tmp_path, "aero")
    first = design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    assert [(c.slug, c.change) for c in first.changes] == [("aero", "created")]
    after_first = counts(engine)
    again = design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    assert again.changes == [] and counts(engine) == after_first

    (audit,) = design_changes(engine)
    assert (audit["slug"], audit["change"], audit["source_file"], audit["applied_by"]) == (
        "aero",
        "created",
        "aero.yaml",
        APPLIED_BY,
    )
    assert audit["diff"]["name"] == {"before": None, "after": "Grøn omstilling på Ærø (aero)"}
    row = design_row(engine, "aero")
    assert (row["name"], row["description"], row["source_file"]) == (
        "Grøn omstilling på Ærø (aero)",
        "Øer, færger og vindmøller",
        "aero.yaml",
    )
    assert active_terms(engine, "aero") == {
        "klima": "keyword",
        '"grøn omstilling"': "phrase",
        "#dkpol": "hashtag",
        "vindmøller": "keyword",
    }


def test_a_removed_term_is_kept_inactive_and_comes_back_when_re_added(engine, tmp_path):
    make_user(engine)
    write_design_file(tmp_path, "aero")
    design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    write_design_file(tmp_path, "aero", terms=["klima", "havvind"])
    (change,) = design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes
    assert change.diff["terms"] == {"added": ["havvind"], "removed": ['"grøn omstilling"', "#dkpol", "vindmøller"]}
    assert "- term vindmøller (kept inactive)" in design_files.describe(change.diff)
    assert set(active_terms(engine, "aero")) == {"klima", "havvind"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM search_terms")).scalar_one() == 5
    write_design_file(tmp_path, "aero")
    design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    assert set(active_terms(engine, "aero")) == {"klima", '"grøn omstilling"', "#dkpol", "vindmøller"}
    assert [c["change"] for c in design_changes(engine)] == ["created", "updated", "updated"]


def test_a_removed_file_deactivates_its_design_and_keeps_its_records(engine, tmp_path):
    make_user(engine)
    made_elsewhere = make_design(engine, "andet")
    write_design_file(tmp_path, "aero")
    gone = write_design_file(tmp_path, "fjernes")
    design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    fjernes = design_row(engine, "fjernes")["id"]
    ingest.write_batch(engine, [record(fjernes, "x1", at(1), terms=["klima"]), record(made_elsewhere, "x2", at(2))])

    gone.unlink()
    (change,) = design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes
    assert (change.slug, change.change, change.diff) == (
        "fjernes",
        "deactivated",
        {"active": {"before": True, "after": False}},
    )
    assert design_row(engine, "fjernes")["is_active"] is False
    assert design_row(engine, "andet")["is_active"] is True  # not made from a file: left alone
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM content_records")).scalar_one() == 2
    assert set(active_terms(engine, "fjernes")) == {"klima", '"grøn omstilling"', "#dkpol", "vindmøller"}
    assert design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes == []

    # Applying one file never deactivates the others; the file coming back reactivates its design.
    write_design_file(tmp_path, "fjernes")
    (back,) = design_files.apply_design_files(engine, tmp_path / "fjernes.yaml", APPLIED_BY).changes
    assert (back.change, back.diff) == ("updated", {"active": {"before": False, "after": True}})


def test_one_bad_file_applies_nothing_and_names_every_error(engine, tmp_path):
    make_user(engine)
    write_design_file(tmp_path, "aero")
    write_design_file(tmp_path, "ukendt", owner="ingen@example.dk")
    write_design_file(tmp_path, "ukendt-to", owner="heller.ikke@example.dk")
    before = counts(engine)
    with pytest.raises(design_files.DesignFilesInvalid) as raised:
        design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    assert [str(e) for e in raised.value.errors] == [
        f"{tmp_path / name}.yaml:{line}: owner: no user has the email '{email}'; add it with: "
        f"observatory users add {email}"
        for name, email, line in [
            ("ukendt-to", "heller.ikke@example.dk", 3),
            ("ukendt", "ingen@example.dk", 3),
        ]
    ]
    assert counts(engine) == before


def test_actors_are_found_by_account_created_when_new_and_only_leave_the_list(engine, tmp_path):
    make_user(engine)
    known = make_actor(engine, "Ida Holm", ("bluesky", "idaholm.bsky.social", "did:plc:ida"))
    lists = [
        {
            "name": "Klimaforskere",
            "description": "Forskere på Ærø",
            "actors": [
                {"name": "Ida Holm", "accounts": [{"platform": "bluesky", "user_id": "did:plc:ida"}]},
                {
                    "name": "Søren Ærø",
                    "type": "person",
                    "public_figure": True,
                    "accounts": [{"platform": "x_twitter", "handle": "soerenaeroe", "user_id": 4711}],
                },
            ],
        }
    ]
    write_design_file(tmp_path, "aero", actor_lists=lists)
    (created,) = design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes
    assert created.diff["actor_lists"]["Klimaforskere"]["added"] == [
        "Ida Holm (bluesky:did:plc:ida)",
        "Søren Ærø (x_twitter:soerenaeroe)",
    ]
    design = load_design(engine.connect(), "aero")
    assert {(a.platform, a.username, a.user_id) for a in design.actors} == {
        ("bluesky", "idaholm.bsky.social", "did:plc:ida"),
        ("x_twitter", "soerenaeroe", "4711"),
    }
    assert counts(engine)["actors"] == 2  # Ida was found, not made again

    lists[0]["actors"] = lists[0]["actors"][1:]
    write_design_file(tmp_path, "aero", actor_lists=lists)
    (removed,) = design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes
    assert removed.diff == {"actor_lists": {"Klimaforskere": {"removed": ["Ida Holm (bluesky:idaholm.bsky.social)"]}}}
    assert counts(engine)["actors"] == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM actors WHERE id = :a"), {"a": known.id}).scalar_one() == 1


def test_export_writes_the_design_back_and_applying_it_changes_nothing(engine, tmp_path):
    make_user(engine)
    lists = [
        {
            "name": "Øens stemmer",
            "actors": [{"name": "Åse Æbelø", "accounts": [{"platform": "x_twitter", "handle": "aase"}]}],
        }
    ]
    write_design_file(tmp_path / "source", "aero", actor_lists=lists, default_tier="medium")
    design_files.apply_design_files(engine, tmp_path / "source", APPLIED_BY)
    with engine.connect() as conn:
        exported = design_files.export_design(conn, "aero")
    assert "Grøn omstilling på Ærø (aero)" in exported and "Åse Æbelø" in exported  # not escaped
    target = write_design_file(tmp_path / "exported", "aero", text=exported)
    before = counts(engine)
    assert design_files.plan_design_files(engine, target) == []
    assert design_files.apply_design_files(engine, target, APPLIED_BY).changes == []
    assert counts(engine) == before


def test_the_demo_design_file_is_the_design_the_demo_seeded_and_round_trips(engine, tmp_path):
    demo.seed(engine, tmp_path / "imports")
    design = load_design(engine.connect(), demo.DESIGN_SLUG)
    assert [t.strip('"') for t in design.terms] == list(demo.TERMS)
    assert design.arenas_config == {
        "rss_feeds": {"enabled": True, "options": {"feeds": demo.feed_urls()}},
        "gdelt": {"enabled": False},
        "file_import": {"enabled": True},
    }
    figure = demo.PUBLIC_FIGURE
    assert [(a.platform, a.username) for a in design.actors] == [(figure["platform"], figure["username"])]
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT is_public_figure FROM actors WHERE canonical_name = :n"), {"n": figure["name"]}
        ).scalar_one()
        exported = design_files.export_design(conn, demo.DESIGN_SLUG)
    # The file is what the database holds, down to the byte, feeds in their package: form.
    assert exported == demo.design_file().read_text(encoding="utf-8")
    demo.seed(engine, tmp_path / "imports")
    assert [c["change"] for c in design_changes(engine)] == ["created"]


# --- the sensor -----------------------------------------------------------------------------------------


def test_the_sensor_applies_changed_files_and_reports_a_bad_file_in_one_line(engine, db_url, designs_folder, instance):
    make_user(engine)
    resources = {"postgres": PostgresResource(database_url=db_url)}
    write_design_file(designs_folder, "aero")

    result = design_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SensorResult)
    assert result.skip_reason and result.skip_reason.skip_message == "applied 1 design file(s): aero created"
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["aero"]]
    instance.add_dynamic_partitions(QUERY_DESIGN_PARTITIONS, ["aero"])

    unchanged = design_files_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    )
    assert isinstance(unchanged, dg.SkipReason) and "unchanged" in (unchanged.skip_message or "")

    write_design_file(designs_folder, "aero", terms=["klima"])
    write_design_file(designs_folder, "ukendt", owner="ingen@example.dk")
    before = counts(engine)
    bad = design_files_sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert isinstance(bad, dg.SkipReason)
    message = bad.skip_message or ""
    assert "\n" not in message
    assert message.startswith("design files not applied: design files have 1 error(s), nothing applied: ")
    assert f"{designs_folder / 'ukendt.yaml'}:3: owner: no user has the email 'ingen@example.dk'" in message
    assert counts(engine) == before and len(active_terms(engine, "aero")) == 4


def test_the_sensor_says_when_the_designs_folder_is_missing(tmp_path, db_url, isolated_settings, instance):
    isolated_settings.setenv("OBSERVATORY_DESIGNS_DIR", str(tmp_path / "findes-ikke"))
    resources = {"postgres": PostgresResource(database_url=db_url)}
    skipped = design_files_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(skipped, dg.SkipReason)
    assert (skipped.skip_message or "").startswith("design files not applied: the designs folder ")


# --- the command line -------------------------------------------------------------------------------------


def test_the_designs_commands_exit_codes_and_output(engine, designs_folder, capsys, tmp_path):
    make_user(engine)
    write_design_file(designs_folder, "aero")

    assert cli.main(["designs", "validate"]) == 0
    assert "1 design file(s)" in capsys.readouterr().out
    assert cli.main(["designs", "diff"]) == 0
    out = capsys.readouterr().out
    assert "aero (aero.yaml): created" in out and "  + term #dkpol" in out
    assert cli.main(["designs", "apply"]) == 0
    assert "1 design(s) changed" in capsys.readouterr().out
    assert cli.main(["designs", "diff"]) == 0
    assert capsys.readouterr().out.startswith("no changes")

    assert cli.main(["designs", "list"]) == 0
    assert "aero  active  aero.yaml  forsker@example.dk  4" in capsys.readouterr().out
    assert cli.main(["designs", "show", "aero"]) == 0
    shown = capsys.readouterr().out
    assert "name: Grøn omstilling på Ærø (aero)" in shown and "created" in shown
    exported = tmp_path / "aero.yaml"
    assert cli.main(["designs", "export", "aero", "--to", str(exported)]) == 0
    capsys.readouterr()
    assert cli.main(["designs", "apply", str(exported)]) == 0
    assert "0 design(s) changed" in capsys.readouterr().out

    assert cli.main(["designs", "export", "findes-ikke"]) == 2
    assert capsys.readouterr().err.strip() == (
        "observatory: error: there is no query design with slug 'findes-ikke'; check the design partition key"
    )

    write_design_file(designs_folder, "ukendt", owner="ingen@example.dk")
    (designs_folder / "forkert.yaml").write_text("slug: forkert\nname: F\nowner: forsker@example.dk\nactive: ja\n")
    for command in ("validate", "diff", "apply"):
        assert cli.main(["designs", command]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"{designs_folder / 'forkert.yaml'}:4: active: 'ja' is not of type 'boolean'",
            "observatory: error: 1 error(s) in the design files",
        ]
    (designs_folder / "forkert.yaml").unlink()
    assert cli.main(["designs", "apply"]) == 1
    assert (
        capsys.readouterr()
        .err.splitlines()[0]
        .endswith(
            "owner: no user has the email 'ingen@example.dk'; add it with: observatory users add ingen@example.dk"
        )
    )
    assert cli.main(["designs", "validate", "--no-database"]) == 0
    capsys.readouterr()

    assert cli.main(["designs", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Query design"
    assert cli.main(["designs", "validate", str(tmp_path / "findes-ikke")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_designs_commands_refuse_a_bad_slug_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["designs", "show", "Ikke En Slug"])
    assert exited.value.code == 2
    assert "is not a query design slug" in capsys.readouterr().err


def test_the_format_documentation_shows_the_demo_file_as_it_is():
    documented = (ROOT / "docs" / "designs.md").read_text(encoding="utf-8")
    assert "```yaml\n" + (ROOT / "designs" / "klimadebat.yaml").read_text(encoding="utf-8") + "```" in documented


def test_a_file_takes_over_a_design_made_another_way_and_retypes_its_terms(engine, tmp_path):
    make_design(engine, "aero", terms=("klima", "#dkpol"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE search_terms SET term_type = 'keyword'"))
        email = conn.execute(sa.text("SELECT email FROM users")).scalar_one()
    write_design_file(tmp_path, "aero", owner=email)
    (change,) = design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes
    assert change.change == "updated"
    assert change.diff["source_file"] == {"before": None, "after": "aero.yaml"}
    assert change.diff["terms"] == {
        "added": ['"grøn omstilling"', "vindmøller"],
        "retyped": {"#dkpol": {"before": "keyword", "after": "hashtag"}},
    }
    assert active_terms(engine, "aero")["#dkpol"] == "hashtag"
    assert design_files.apply_design_files(engine, tmp_path, APPLIED_BY).changes == []


def test_two_files_describing_one_actor_differently_are_an_error(engine, tmp_path):
    make_user(engine)
    for slug, public in (("en", True), ("to", False)):
        actor = {"name": "Åse", "public_figure": public, "accounts": [{"platform": "x_twitter", "handle": "aase"}]}
        write_design_file(tmp_path, slug, actor_lists=[{"name": "Liste", "actors": [actor]}])
    with pytest.raises(design_files.DesignFilesInvalid) as raised:
        design_files.apply_design_files(engine, tmp_path, APPLIED_BY)
    (error,) = [str(e) for e in raised.value.errors]
    assert error.startswith(f"{tmp_path / 'to.yaml'}:")
    assert error.endswith(
        f"actor_lists[0].actors[0].public_figure: x_twitter:aase is described with another public_figure "
        f"in {tmp_path / 'en.yaml'}"
    )
    assert counts(engine)["query_designs"] == 0
