"""The four networks: edges and weights exactly as documented, the demo corpus end to end, the assets."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import networkx as nx
import pytest
import sqlalchemy as sa

from observatory_pipelines.core.analysis import networks
from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.core.collection import ingest, privacy
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.analysis.networks import corpus_networks
from observatory_pipelines.defs.partitions import corpus_key, query_design_partitions
from observatory_pipelines.defs.resources import PostgresResource
from observatory_pipelines.demo import seed as demo
from tests.factories import DEMO_SALT, MARCH, at, corpus_of, make_actor, make_design, pseudonym, record

pytestmark = pytest.mark.usefixtures("analysis_dir")

A, B, C, D = (pseudonym("x_twitter", name) for name in ("anna", "bo", "carl", "dorte"))


def d(day: int) -> date:
    return date(2026, 3, day)


@pytest.fixture
def corpus(engine):
    """Anna and Bo share klima and havvind, Carl only klima; Dorte matched no term; Bo's duplicate
    would have given him grøn omstilling with Anna. Eva Ødegård (public figure) and Frederik are
    resolved actors: Eva on X and Bluesky, Frederik on X only."""
    design = make_design(engine, terms=("klima", "havvind", "grøn omstilling"))
    ingest.write_batch(
        engine,
        [
            record(design, "a1", at(2), author="anna", terms=["klima", "havvind"], likes=9),
            record(design, "a2", at(5), author="anna", terms=["grøn omstilling"], likes=9),
            record(design, "b1", at(3), author="bo", terms=["havvind"], likes=1),
            record(design, "b2", at(10), author="bo", terms=["klima"], likes=1),
            record(design, "b3", at(7), author="bo", terms=["grøn omstilling"], duplicate_of=str(uuid.uuid4())),
            record(design, "c1", at(4), author="carl", terms=["klima"]),
            record(design, "d1", at(6), author="dorte"),
            record(design, "e1", at(11), author="eva_x", display_name="Eva Ødegård"),
            record(design, "e2", at(12), author="eva_x", display_name="Eva Ødegård"),
            record(design, "e3", at(12), author="eva.bsky", platform="bluesky", arena="bluesky"),
            record(design, "f1", at(13), author="frederik"),
        ],
    )
    make_actor(
        engine, "Eva Ødegård", ("x_twitter", "eva_x"), ("bluesky", "eva.bsky"), public_figure=True, claim_records=True
    )
    make_actor(engine, "Frederik", ("x_twitter", "frederik"), claim_records=True)
    return design


@pytest.fixture
def analysis_corpus(engine, corpus):
    return stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH))


def edges(network: networks.Network, *columns: str) -> set[tuple]:
    return {
        (frozenset((r["source"], r["target"])), *(tuple(r[c]) if isinstance(r[c], list) else r[c] for c in columns))
        for r in network.edges.iter_rows(named=True)
    }


@pytest.fixture
def same_day_corpus(engine, corpus):
    """The fixture's records (no two actors share a term on a day) and three more: on 2 March Bo
    and Carl use klima with Anna, Bo also havvind; on 3 March Carl uses havvind with Bo."""
    ingest.write_batch(
        engine,
        [
            record(corpus, "b4", at(2, 9), author="bo", terms=["klima", "havvind"]),
            record(corpus, "c2", at(2, 18), author="carl", terms=["klima"]),
            record(corpus, "c3", at(3, 20), author="carl", terms=["havvind"]),
        ],
    )
    return stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH))


def test_actor_cooccurrence_links_actors_who_used_a_term_on_the_same_day(same_day_corpus):
    network = networks.actor_cooccurrence(same_day_corpus, alpha=1.0)  # every candidate edge kept

    assert edges(network, "weight", "shared_terms", "days") == {
        (frozenset((A, B)), 2, ("havvind", "klima"), (d(2),)),  # (havvind, 2 March) and (klima, 2 March)
        (frozenset((A, C)), 1, ("klima",), (d(2),)),
        (frozenset((B, C)), 2, ("havvind", "klima"), (d(2), d(3))),
    }
    assert set(network.nodes["id"]) == {A, B, C}  # Dorte, Eva and Frederik matched no term
    assert all(r["source"] < r["target"] for r in network.edges.iter_rows(named=True))
    assert edges(network, "first_seen", "last_seen") >= {(frozenset((B, C)), d(2), d(3))}
    assert network.info == {
        "actors_total": 3,
        "actors_included": 3,
        "links": 5,  # (klima, 2): 3 pairs; (havvind, 2): Anna–Bo; (havvind, 3): Bo–Carl
        "links_complete": 5,
        "max_links": networks.DEFAULT_MAX_LINKS,
        "backbone_rule": networks.BACKBONE_RULE,
        "backbone_alpha": 1.0,
        "candidate_edges": 3,
        "backbone_removed": 0,
        "backbone_kept": 3,
    }
    nodes = {r["id"]: r for r in network.nodes.iter_rows(named=True)}
    assert (nodes[A]["degree"], nodes[A]["weighted_degree"], nodes[A]["records"]) == (2, 3, 2)
    assert nodes[A]["label"] == A[:12] and nodes[A]["type"] == "actor"


def test_two_accounts_busy_on_a_topic_the_same_day_weigh_more_than_a_passing_one(engine):
    # Mette and Søren post about klima all of 5 March (6 and 4 posts), Åse once: on a shared
    # (term, day) an edge weighs as many as the quieter account's records there.
    design = make_design(engine, terms=("klima",))
    posts = {"mette": 6, "søren": 4, "åse": 1}
    rows = [
        record(design, f"{author}-{n}", at(5, 8 + n), author=author, terms=["klima"])
        for author, count in posts.items()
        for n in range(count)
    ]
    ingest.write_batch(engine, rows)
    analysed = stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH))
    network = networks.actor_cooccurrence(analysed, alpha=1.0)
    mette, soeren, aase = (pseudonym("x_twitter", a) for a in posts)
    assert edges(network, "weight") == {
        (frozenset((mette, soeren)), 4),
        (frozenset((mette, aase)), 1),
        (frozenset((soeren, aase)), 1),
    }


def test_actors_using_every_term_on_different_days_are_not_linked(engine):
    # Five Danish accounts each post on every term, each on a day of their own, and Åse and Søren
    # share klima on 20 March. One shared term anywhere in the month linked every pair (a complete
    # graph of 10 edges); a shared (term, day) links one pair.
    terms = ["klima", "havvind", "grøn omstilling"]
    design = make_design(engine, terms=tuple(terms))
    authors = ["åse", "søren", "ærlige_jens", "bjørk", "mågen"]
    rows = [record(design, f"{a}-{n}", at(n + 1), author=a, terms=terms) for n, a in enumerate(authors)]
    rows += [record(design, f"{a}-20", at(20), author=a, terms=["klima"]) for a in ("åse", "søren")]
    ingest.write_batch(engine, rows)
    analysed = stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH))
    per_term = networks.actor_term(analysed)
    assert per_term.edges.height == len(authors) * len(terms)  # every actor used every term

    candidates = networks.actor_cooccurrence(analysed, alpha=1.0)
    backbone = networks.actor_cooccurrence(analysed)

    pair = frozenset(pseudonym("x_twitter", a) for a in ("åse", "søren"))
    assert edges(candidates, "weight", "shared_terms", "days") == {(pair, 1, ("klima",), (d(20),))}
    assert candidates.info["actors_total"] == len(authors)
    # An edge that is each actor's only edge cannot stand out from a uniform split: no backbone.
    assert backbone.edges.is_empty() and backbone.nodes.is_empty()
    assert (backbone.info["candidate_edges"], backbone.info["backbone_removed"], backbone.info["backbone_kept"]) == (
        1,
        1,
        0,
    )


def test_backbone_keeps_a_planted_strong_tie_and_removes_the_noise(engine):
    # Anne and Bjørn post on havvind together on twelve days; on 20 March they and four others all
    # post on klima: fifteen candidate edges, fourteen of them one shared (term, day).
    design = make_design(engine, terms=("klima", "havvind"))
    rows = [
        record(design, f"{author}-{day}", at(day), author=author, terms=["havvind"])
        for day in range(1, 13)
        for author in ("anne", "bjørn")
    ]
    crowd = ["anne", "bjørn", "søs", "øjvind", "åge", "ærø_radio"]
    rows += [record(design, f"{author}-20", at(20), author=author, terms=["klima"]) for author in crowd]
    ingest.write_batch(engine, rows)
    analysed = stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH))

    network = networks.actor_cooccurrence(analysed)

    anne, bjorn = pseudonym("x_twitter", "anne"), pseudonym("x_twitter", "bjørn")
    assert edges(network, "weight", "shared_terms") == {(frozenset((anne, bjorn)), 13, ("havvind", "klima"))}
    assert set(network.nodes["id"]) == {anne, bjorn}  # the crowd has no edge left
    # Anne's strength is 13 + 4 × 1 over 5 edges: (1 − 13/17)^(5−1); a crowd edge is (1 − 1/5)^4 = 0.41 at best.
    assert network.edges["disparity_alpha"][0] == pytest.approx((4 / 17) ** 4)
    info = network.info
    assert (info["candidate_edges"], info["backbone_removed"], info["backbone_kept"]) == (15, 14, 1)
    assert info["backbone_removed"] + info["backbone_kept"] == info["candidate_edges"]
    assert (info["backbone_rule"], info["backbone_alpha"]) == (networks.BACKBONE_RULE, networks.DEFAULT_BACKBONE_ALPHA)
    # A stricter level than the tie's significance removes it too; the counts follow.
    strict = networks.actor_cooccurrence(analysed, alpha=(4 / 17) ** 4 / 2)
    assert strict.edges.is_empty() and strict.info["backbone_removed"] == 15


def test_actor_cooccurrence_keeps_the_most_active_actors_within_max_links(engine, corpus):
    # All four post on klima on 2 March; Anna and Bo also on havvind on 3 March. Ranked by records
    # (then engagement): Anna, Bo, Carl, Dorte. Co-uses joined: Bo adds 2, Carl 2, Dorte 3.
    ingest.write_batch(
        engine,
        [
            record(corpus, "a9", at(3), author="anna", terms=["havvind"], likes=9),
            record(corpus, "b9", at(2), author="bo", terms=["klima"], likes=1),
            record(corpus, "c9", at(2), author="carl", terms=["klima"], likes=1),
            record(corpus, "d9", at(2), author="dorte", terms=["klima"]),
        ],
    )
    analysed = stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH))

    network = networks.actor_cooccurrence(analysed, max_links=5, alpha=1.0)

    assert set(network.nodes["id"]) == {A, B, C}
    assert edges(network, "weight") == {(frozenset((A, B)), 2), (frozenset((A, C)), 1), (frozenset((B, C)), 1)}
    info = network.info
    assert (info["actors_total"], info["actors_included"], info["links"], info["links_complete"]) == (4, 3, 4, 7)


def test_term_cooccurrence_counts_records_with_both_terms(engine, corpus, analysis_corpus):
    ingest.write_batch(
        engine,
        [
            record(corpus, "g1", at(20), author="gitte", terms=["klima", "havvind", "grøn omstilling"]),
            record(corpus, "g2", at(20, 15), author="gitte", terms=["klima", "havvind"]),
        ],
    )
    network = networks.term_cooccurrence(stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", MARCH)))

    assert edges(network, "weight", "days") == {
        (frozenset(("term:havvind", "term:klima")), 3, (d(2), d(20))),
        (frozenset(("term:grøn omstilling", "term:klima")), 1, (d(20),)),
        (frozenset(("term:grøn omstilling", "term:havvind")), 1, (d(20),)),
    }
    labels = dict(zip(network.nodes["id"], network.nodes["label"]))
    assert labels == {"term:klima": "klima", "term:havvind": "havvind", "term:grøn omstilling": "grøn omstilling"}
    assert dict(zip(network.nodes["label"], network.nodes["records"])) == {
        "klima": 5,
        "havvind": 4,
        "grøn omstilling": 2,
    }


def test_actor_term_links_each_actor_to_its_terms(analysis_corpus):
    network = networks.actor_term(analysis_corpus)

    assert edges(network, "weight", "days") == {
        (frozenset((A, "term:klima")), 1, (d(2),)),
        (frozenset((A, "term:havvind")), 1, (d(2),)),
        (frozenset((A, "term:grøn omstilling")), 1, (d(5),)),
        (frozenset((B, "term:havvind")), 1, (d(3),)),
        (frozenset((B, "term:klima")), 1, (d(10),)),
        (frozenset((C, "term:klima")), 1, (d(4),)),
    }
    assert dict(zip(network.nodes["id"], network.nodes["type"])) == {
        A: "actor",
        B: "actor",
        C: "actor",
        "term:klima": "term",
        "term:havvind": "term",
        "term:grøn omstilling": "term",
    }


def test_cross_platform_actors_are_resolved_actors_on_several_platforms(engine, analysis_corpus):
    network = networks.cross_platform_actors(analysis_corpus)
    with engine.connect() as conn:
        eva = conn.execute(sa.text("SELECT id::text FROM actors WHERE canonical_name = 'Eva Ødegård'")).scalar_one()

    assert edges(network, "weight", "days") == {
        (frozenset((eva, "platform:x_twitter")), 2, (d(11), d(12))),
        (frozenset((eva, "platform:bluesky")), 1, (d(12),)),
    }
    nodes = {r["id"]: r for r in network.nodes.iter_rows(named=True)}
    assert set(nodes) == {eva, "platform:x_twitter", "platform:bluesky"}  # Frederik is on X only
    assert (nodes[eva]["label"], nodes[eva]["platforms"], nodes[eva]["is_public_figure"]) == (
        "Eva Ødegård",
        ["bluesky", "x_twitter"],
        True,
    )
    assert nodes["platform:x_twitter"]["records"] == 9  # every non-duplicate X record of the corpus


def test_graph_round_trips_through_the_store_for_the_exports(same_day_corpus):
    built = networks.build_networks(same_day_corpus, alpha=1.0)
    for network in built.values():
        networks.write_network(network, "klimadebat", MARCH)

    graph = networks.load_graph("klimadebat", MARCH, networks.ACTOR_COOCCURRENCE)
    assert isinstance(graph, nx.Graph) and not graph.is_directed()
    assert graph.edges[A, B] == {
        "weight": 2,
        "days": [d(2)],
        "first_seen": d(2),
        "last_seen": d(2),
        "shared_terms": ["havvind", "klima"],
        # Anna: 2 of her strength 3 over 2 edges, (1 − 2/3)^1; Bo: 2 of 4, (1 − 1/2)^1.
        "disparity_alpha": pytest.approx(1 / 3),
    }
    assert graph.nodes[A]["label"] == A[:12] and graph.nodes[A]["platforms"] == ["x_twitter"]
    assert nx.density(graph) == pytest.approx(built[networks.ACTOR_COOCCURRENCE].density)
    assert graph.graph["edges"] == 3 and graph.graph["design"] == "klimadebat"
    term_graph = networks.load_graph("klimadebat", MARCH, networks.ACTOR_TERM)
    assert term_graph.nodes["term:grøn omstilling"]["label"] == "grøn omstilling"
    with pytest.raises(ValueError, match="unknown network"):
        networks.load_graph("klimadebat", MARCH, "friends")


def test_empty_month_gives_empty_networks(engine, corpus):
    empty = stats.load_analysis_corpus(engine, corpus_of(engine, "klimadebat", "2026-05"))
    built = networks.build_networks(empty)
    info = built[networks.ACTOR_COOCCURRENCE].info
    assert (info["candidate_edges"], info["backbone_removed"], info["backbone_kept"], info["actors_total"]) == (
        0,
        0,
        0,
        0,
    )
    for name, network in built.items():
        assert network.nodes.is_empty() and network.edges.is_empty() and network.records == 0, name
        assert network.top_nodes().is_empty() and network.density == 0.0
        networks.write_network(network, "klimadebat", "2026-05")
        assert networks.load_graph("klimadebat", "2026-05", name).number_of_nodes() == 0


# --- the demo corpus, end to end ------------------------------------------------------------


SOFIE_ACCOUNTS = [("x_twitter", "sofie_kjaer_dk"), ("instagram", "sofiekjaer")]


def test_demo_corpus_gives_non_trivial_networks_and_sofie_crosses_platforms_once_resolved(engine, demo_corpus):
    corpus = stats.load_analysis_corpus(engine, corpus_of(engine, demo.DESIGN_SLUG, demo.DEMO_MONTH))
    built = networks.build_networks(corpus)

    # 73 records: a few actors share a (term, day), none strongly enough to stand out at alpha 0.05.
    actors = built[networks.ACTOR_COOCCURRENCE]
    assert actors.edges.is_empty() and actors.info["backbone_removed"] == actors.info["candidate_edges"] > 0
    assert networks.actor_cooccurrence(corpus, alpha=1.0).edges.height == actors.info["candidate_edges"]
    assert built[networks.TERM_COOCCURRENCE].edges.height > 0
    assert built[networks.ACTOR_TERM].edges.height > 0
    assert built[networks.CROSS_PLATFORM_ACTORS].edges.is_empty()  # her two accounts are two actors yet
    labels = set(built[networks.ACTOR_TERM].nodes["label"])
    assert demo.PUBLIC_FIGURE["name"] in labels  # the public figure is named...
    assert not labels & {"Sofie Kjær", "Sofie Kjaer", "sofie_kjaer_dk"}  # ...nobody else is

    sofie = str(make_actor(engine, "Sofie Kjær", *SOFIE_ACCOUNTS, claim_records=True).id)
    resolved = networks.cross_platform_actors(
        stats.load_analysis_corpus(engine, corpus_of(engine, demo.DESIGN_SLUG, demo.DEMO_MONTH))
    )

    assert edges(resolved, "weight") == {
        (frozenset((sofie, "platform:x_twitter")), 2),
        (frozenset((sofie, "platform:instagram")), 2),
    }
    node = resolved.nodes.filter(resolved.nodes["id"] == sofie).row(0, named=True)
    assert node["platforms"] == ["instagram", "x_twitter"] and node["resolved"]
    assert node["label"] == min(privacy.pseudonymise(p, u, DEMO_SALT.encode()) for p, u in SOFIE_ACCOUNTS)[:12]


def _materialize(instance, db_url, **kwargs):
    instance.add_dynamic_partitions(query_design_partitions.name, [demo.DESIGN_SLUG])
    return dg.materialize(
        [corpus_networks],
        instance=instance,
        partition_key=corpus_key(demo.DEMO_MONTH, demo.DESIGN_SLUG),
        resources={"postgres": PostgresResource(database_url=db_url)},
        **kwargs,
    )


def test_assets_materialize_with_metadata_and_warn_without_cross_platform_actors(
    engine, db_url, demo_corpus, instance, analysis_dir
):
    result = _materialize(instance, db_url)

    assert result.success
    materialized = {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node("corpus_networks")
    }
    assert set(materialized) == {key.to_user_string() for key in asset_keys.NETWORKS.values()}
    actor = materialized["actor_cooccurrence_network"]
    assert actor["records"] == 73 and actor["nodes"] == actor["edges"] == 0 and actor["density"] == 0
    assert actor["actors_included"] == actor["actors_total"]
    assert (actor["backbone_rule"], actor["backbone_alpha"]) == (networks.BACKBONE_RULE, 0.05)
    assert actor["backbone_removed"] == actor["candidate_edges"] > 0 and actor["backbone_kept"] == 0
    terms = materialized["term_cooccurrence_network"]
    assert "| label | type | degree | weighted_degree | records |" in terms["top_nodes_by_degree"]
    assert (
        Path(actor["edges_path"]).is_file() and Path(actor["edges_path"]).parent == analysis_dir / "klimadebat" / MARCH
    )
    checks = {c.asset_key.to_user_string(): c for c in result.get_asset_check_evaluations()}
    assert {k: c.passed for k, c in checks.items()} == {
        "actor_cooccurrence_network": False,
        "term_cooccurrence_network": True,
        "actor_term_network": True,
        "cross_platform_actor_network": False,
    }
    warning = checks["cross_platform_actor_network"]
    assert warning.severity == dg.AssetCheckSeverity.WARN
    assert "73 records but no cross_platform_actors edge" in warning.description
    assert f"the backbone removed all {actor['candidate_edges']} candidate edges" in (
        checks["actor_cooccurrence_network"].description
    )

    make_actor(engine, "Sofie Kjær", *SOFIE_ACCOUNTS, claim_records=True)
    config = {"max_links": 5, "backbone_alpha": 1.0}  # every candidate edge of the capped pairing kept
    rerun = _materialize(instance, db_url, run_config={"ops": {"corpus_networks": {"config": config}}})
    assert all(c.passed for c in rerun.get_asset_check_evaluations())
    capped = next(
        m.metadata
        for m in rerun.asset_materializations_for_node("corpus_networks")
        if m.asset_key.to_user_string() == "actor_cooccurrence_network"
    )
    assert capped["max_links"].value == 5 and capped["links"].value <= 5
    assert capped["actors_included"].value < capped["actors_total"].value
    assert capped["backbone_kept"].value == capped["edges"].value == capped["candidate_edges"].value > 0
    assert capped["backbone_removed"].value == 0 and capped["backbone_alpha"].value == 1.0


def test_asset_descriptions_say_how_edges_are_built():
    specs = {s.key.to_user_string(): s.description for s in corpus_networks.specs}
    assert "the sum of the quieter actor's records matching the term that day" in specs["actor_cooccurrence_network"]
    assert "disparity filter" in specs["actor_cooccurrence_network"]
    assert "weight = the number of records matching both" in specs["term_cooccurrence_network"]
    assert "weight = the actor's records matching the term" in specs["actor_term_network"]
    assert "two or more platforms" in specs["cross_platform_actor_network"]
    for description in specs.values():
        assert "duplicate" in description and "never from a self-join" in description
