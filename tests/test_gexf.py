"""GEXF files of the four networks: valid against the 1.3 schema, read back by networkx as built."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import networkx as nx
import polars as pl
import pytest
from lxml import etree

from observatory_pipelines.core.analysis import networks
from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.core.analysis.corpus import COLUMN_TYPES
from observatory_pipelines.core.exports import gexf
from tests.factories import MARCH

#: The GEXF 1.3 schema (gephi/gexf, CC-BY 4.0; see its LICENSE.md), kept beside the tests.
SCHEMA_DIR = Path(__file__).resolve().parent / "fixtures" / "gexf-1.3"
EVA, FREDERIK = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    # Parsed from its file, so the schema's relative includes (dynamics.xsd, viz.xsd) resolve.
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "gexf.xsd")))


def account(platform: str, name: str) -> str:
    return hashlib.sha256(f"{platform}:{name}".encode()).hexdigest()


def row(
    day: int,
    author: str,
    terms: list[str],
    *,
    platform: str = "x_twitter",
    actor: str | None = None,
    public: bool = False,
    likes: int | None = None,
    duplicate: bool = False,
) -> dict:
    """A corpus row as ``corpus.load_corpus`` returns ``stats.CORPUS_COLUMNS``."""
    return {
        "id": str(uuid.uuid4()),
        "published_at": datetime(2026, 3, day, 12, tzinfo=timezone.utc),
        "platform": platform,
        "arena": platform,
        "author_id": actor,
        "pseudonymized_author_id": account(platform, author),
        "likes_count": likes,
        "shares_count": None,
        "comments_count": None,
        "search_terms_matched": terms,
        "duplicate_of": str(uuid.uuid4()) if duplicate else None,
        "is_public_figure": public,
    }


@pytest.fixture(scope="module")
def built() -> dict[str, networks.Network]:
    """Anna, Bo and Carl debate klima, havvind and grøn omstilling on X; Eva Ødegård (public figure)
    and Frederik are resolved actors on X and Bluesky."""
    rows = [
        row(2, "anna", ["havvind", "klima"], likes=9),
        row(5, "anna", ["grøn omstilling", "klima"], likes=9),
        row(3, "bo", ["havvind"]),
        row(10, "bo", ["grøn omstilling", "klima"]),
        row(7, "bo", ["havvind"], duplicate=True),
        row(4, "carl", ["klima"]),
        row(11, "eva_x", ["grøn omstilling", "havvind"], actor=EVA, public=True),
        row(15, "eva_x", ["klima"], actor=EVA, public=True),
        row(12, "eva.bsky", ["grøn omstilling"], platform="bluesky", actor=EVA, public=True),
        row(13, "frederik", ["klima"], actor=FREDERIK),
        row(14, "frederik.bsky", ["havvind"], platform="bluesky", actor=FREDERIK),
    ]
    schema = {column: COLUMN_TYPES[column][1] for column in stats.CORPUS_COLUMNS}
    schema["search_terms_matched"] = pl.List(pl.Utf8)
    frame = pl.DataFrame(rows, schema=schema)
    corpus = stats.prepare_corpus(frame, "klimadebat", MARCH, {EVA: "Eva Ødegård"})
    return networks.build_networks(corpus)


def iso(value: date) -> str:
    return value.isoformat()


def assert_read_back(path: Path, network: networks.Network) -> nx.Graph:
    """networkx reads the file as the network: nodes, labels, weights and every attribute."""
    graph = nx.read_gexf(path)
    assert (graph.number_of_nodes(), graph.number_of_edges()) == (network.nodes.height, network.edges.height)
    for node in network.nodes.iter_rows(named=True):
        data = graph.nodes[node["id"]]
        assert (data["label"], data["type"], data["records"], data["degree"]) == (
            node["label"],
            node["type"],
            node["records"],
            node["degree"],
        )
        assert (data["resolved"], data["is_public_figure"]) == (node["resolved"], node["is_public_figure"])
        assert json.loads(data["platforms"]) == node["platforms"]
        assert (data["first_seen"], data["last_seen"]) == (iso(node["first_seen"]), iso(node["last_seen"]))
    for edge in network.edges.iter_rows(named=True):
        data = graph.edges[edge["source"], edge["target"]]
        assert data["weight"] == edge["weight"]
        assert json.loads(data["days"]) == [iso(day) for day in edge["days"]]
        assert (data["first_seen"], data["last_seen"]) == (iso(edge["first_seen"]), iso(edge["last_seen"]))
        if network.name == networks.ACTOR_COOCCURRENCE:
            assert json.loads(data["shared_terms"]) == edge["shared_terms"]
    return graph


@pytest.mark.parametrize("name", networks.NETWORKS)
def test_static_file_validates_and_reads_back_as_built(tmp_path, schema, built, name):
    network = built[name]
    assert network.edges.height > 0  # the corpus gives every network something to write

    summary = gexf.write_gexf(network, tmp_path / f"{name}.gexf", description="Klimadebat, marts 2026: grøn omstilling")

    schema.assertValid(etree.parse(str(summary.path)))
    assert (summary.nodes, summary.edges, summary.spells) == (network.nodes.height, network.edges.height, 0)
    assert summary.size == summary.path.stat().st_size
    graph = assert_read_back(summary.path, network)
    assert graph.graph["mode"] == "static"
    assert not any("spells" in data for _, _, data in graph.edges(data=True))
    meta = etree.parse(str(summary.path)).find(f"{{{gexf.NAMESPACE}}}meta")
    assert meta.findtext(f"{{{gexf.NAMESPACE}}}description") == "Klimadebat, marts 2026: grøn omstilling"
    assert meta.findtext(f"{{{gexf.NAMESPACE}}}creator") == gexf.CREATOR
    date.fromisoformat(meta.get("lastmodifieddate"))


@pytest.mark.parametrize("name", networks.NETWORKS)
def test_dynamic_file_has_a_spell_per_active_day(tmp_path, schema, built, name):
    network = built[name]

    summary = gexf.write_gexf(network, tmp_path / f"{name}.dynamic.gexf", dynamic=True)

    schema.assertValid(etree.parse(str(summary.path)))
    graph = assert_read_back(summary.path, network)
    assert graph.graph["mode"] == "dynamic"
    for edge in network.edges.iter_rows(named=True):
        spells = graph.edges[edge["source"], edge["target"]]["spells"]
        assert spells == [(iso(day), iso(day)) for day in edge["days"]]
    for node in network.nodes.iter_rows(named=True):
        data = graph.nodes[node["id"]]
        assert (data["start"], data["end"]) == (iso(node["first_seen"]), iso(node["last_seen"]))
    assert summary.spells == sum(len(days) for days in network.edges["days"]) > network.edges.height


def test_danish_labels_and_terms_are_written_as_utf8_text(tmp_path, built):
    network = built[networks.ACTOR_COOCCURRENCE]

    path = gexf.write_gexf(network, tmp_path / "actors.gexf").path

    raw = path.read_bytes()
    assert "Eva Ødegård".encode() in raw and "grøn omstilling".encode() in raw  # not character references
    graph = nx.read_gexf(path)
    assert graph.nodes[EVA]["label"] == "Eva Ødegård"
    assert any("grøn omstilling" in json.loads(data["shared_terms"]) for _, _, data in graph.edges(data=True))


def test_markup_is_escaped_and_control_characters_are_dropped(tmp_path, schema, built):
    network = built[networks.TERM_COOCCURRENCE]
    label = 'Ærø <&> "Å"\tline\nbreak'
    nodes = network.nodes.with_columns(
        label=pl.when(pl.col("id") == "term:klima").then(pl.lit(label + "\x00\x07\x1b")).otherwise("label"),
        platforms=pl.when(pl.col("id") == "term:klima").then(pl.lit(['x,"twitter"\x0b'])).otherwise("platforms"),
    )
    odd = networks.Network(network.name, nodes, network.edges, network.records)

    path = gexf.write_gexf(odd, tmp_path / "odd.gexf", description='<b>"Grøn" & \x01omstilling</b>').path

    schema.assertValid(etree.parse(str(path)))
    graph = nx.read_gexf(path)
    assert graph.nodes["term:klima"]["label"] == label
    assert json.loads(graph.nodes["term:klima"]["platforms"]) == ['x,"twitter"']
    assert etree.parse(str(path)).findtext(f".//{{{gexf.NAMESPACE}}}description") == '<b>"Grøn" & omstilling</b>'


@pytest.mark.parametrize("dynamic", [False, True])
def test_an_empty_network_is_a_valid_file(tmp_path, schema, dynamic):
    empty = networks.Network(
        networks.ACTOR_COOCCURRENCE,
        pl.DataFrame(schema=networks.NODE_SCHEMA),
        pl.DataFrame(schema=networks.ACTOR_EDGE_SCHEMA),
        records=0,
    )

    summary = gexf.write_gexf(empty, tmp_path / "empty.gexf", dynamic=dynamic)

    schema.assertValid(etree.parse(str(summary.path)))
    assert (summary.nodes, summary.edges, summary.spells) == (0, 0, 0)
    graph = nx.read_gexf(summary.path)
    assert (graph.number_of_nodes(), graph.number_of_edges()) == (0, 0)


def test_nodes_without_edges_and_null_values_validate(tmp_path, schema, built):
    network = built[networks.ACTOR_TERM]
    nodes = network.nodes.with_columns(is_public_figure=pl.lit(None, pl.Boolean), label=pl.lit(None, pl.Utf8))

    path = gexf.write_gexf(
        networks.Network(network.name, nodes, network.edges.head(0), 0), tmp_path / "n.gexf", dynamic=True
    ).path

    schema.assertValid(etree.parse(str(path)))
    graph = nx.read_gexf(path)
    assert graph.number_of_nodes() == nodes.height and graph.number_of_edges() == 0
    assert all("is_public_figure" not in data for _, data in graph.nodes(data=True))


def test_frames_are_written_in_slices(tmp_path, schema, built, monkeypatch):
    # Slices of two rows: node and edge rows cross many slice boundaries, ids must still run on.
    monkeypatch.setattr(gexf, "_SLICE_ROWS", 2)
    network = built[networks.ACTOR_TERM]

    path = gexf.write_gexf(network, tmp_path / "sliced.gexf", dynamic=True).path

    schema.assertValid(etree.parse(str(path)))
    ids = [edge.get("id") for edge in etree.parse(str(path)).iter(f"{{{gexf.NAMESPACE}}}edge")]
    assert ids == [str(i) for i in range(network.edges.height)] and len(ids) > 2
    assert_read_back(path, network)


def test_a_failed_write_leaves_the_previous_file(tmp_path, built, monkeypatch):
    network = built[networks.ACTOR_TERM]
    path = tmp_path / "actor_term.gexf"
    gexf.write_gexf(network, path)
    previous = path.read_bytes()
    rows = gexf._rows

    def rows_then_full_disk(frame):
        iterator = rows(frame)
        yield next(iterator)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gexf, "_rows", rows_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        gexf.write_gexf(network, path, dynamic=True)

    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_failed_first_write_leaves_no_file(tmp_path, built):
    network = built[networks.ACTOR_TERM]
    broken = networks.Network(network.name, network.nodes, network.edges.drop("source"), network.records)

    with pytest.raises(ValueError, match="'source'"):
        gexf.write_gexf(broken, tmp_path / "broken.gexf")

    assert list(tmp_path.iterdir()) == []


def test_read_network_round_trips_the_stored_tables(tmp_path, built, monkeypatch, schema):
    monkeypatch.setenv("OBSERVATORY_ANALYSIS_DIR", str(tmp_path / "analysis"))
    for network in built.values():
        networks.write_network(network, "klimadebat", MARCH)

    for name, network in built.items():
        stored = gexf.read_network("klimadebat", MARCH, name)
        assert stored.nodes.equals(network.nodes) and stored.edges.equals(network.edges)
        assert (stored.name, stored.records, stored.info) == (name, network.records, network.info)
    assert built[networks.ACTOR_COOCCURRENCE].info["actors_included"] == 5

    stored = gexf.read_network("klimadebat", MARCH, networks.ACTOR_COOCCURRENCE)
    path = gexf.write_gexf(stored, tmp_path / "stored.gexf").path
    schema.assertValid(etree.parse(str(path)))
    assert_read_back(path, built[networks.ACTOR_COOCCURRENCE])


def test_read_network_refuses_unknown_and_missing_networks(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSERVATORY_ANALYSIS_DIR", str(tmp_path / "analysis"))

    with pytest.raises(ValueError, match="unknown network 'friends'"):
        gexf.read_network("klimadebat", MARCH, "friends")
    with pytest.raises(FileNotFoundError, match="materialize the analysis assets"):
        gexf.read_network("klimadebat", MARCH, networks.TERM_COOCCURRENCE)
