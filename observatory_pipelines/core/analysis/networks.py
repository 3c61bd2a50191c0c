"""The four networks of one corpus, built in polars and kept as Parquet node and edge tables.

Every network is undirected and built from the corpus's records without duplicates, with actors
identified and labelled as ``core.stats`` describes (resolved actor, else pseudonymised account).
Pairs are found by exploding the matched terms and joining on the (term, day) or on the record: never
by a self-join of records on overlapping term arrays, whose cost grows with the square of the
records (DESIGN.md).

- ``actor_cooccurrence``: two actors are linked when they used the same search term on the same
  day (UTC): attention to the same topic at the same time. (Two accounts never share a record, and
  a shared term anywhere in the month links nearly every pair once a design has a few popular
  terms: the network is complete and says nothing.) ``weight`` = over the (term, day) pairs both
  used, the sum of the quieter actor's records there (two accounts that post on a topic all day
  weigh more than two that touched it once); ``shared_terms`` = those terms; ``days`` = those
  days. A (term, day) used by k actors makes k(k−1)/2 candidate co-uses, so when they would
  exceed ``max_links`` only the most active actors (records, then engagement) that fit are paired
  (``actors_included`` < ``actors_total``): the join holds at most about 2 × ``max_links`` rows
  (each pair both ways, before one is kept). Of the candidate edges, only the backbone is kept:
  the disparity filter (Serrano, Boguñá & Vespignani 2009, PNAS 106(16):6483–6488) keeps an
  edge when, for at least one of its two actors, its share p = weight / strength of that actor's
  edges is improbable under a uniform split of the strength over the actor's k edges:
  ``disparity_alpha`` = min over both ends of (1 − p)^(k−1) ≤ ``alpha`` (default 0.05). An actor
  whose only edge is the one judged cannot make it significant (its (1 − 1)^0 is 1). Nodes are the
  actors with at least one backbone edge; ``info`` counts the candidates, removed and kept edges.
- ``term_cooccurrence``: nodes are the matched terms. Two terms are linked when they appear in the
  same record; ``weight`` = the number of such records; ``days`` = their dates.
- ``actor_term``: bipartite. An actor is linked to each term it used; ``weight`` = the actor's
  records matching the term; ``days`` = their dates.
- ``cross_platform_actors``: bipartite. Resolved actors whose records come from two or more
  platforms, each linked to those platforms; ``weight`` = the actor's records on the platform;
  ``days`` = their dates. Accounts that entity resolution has not linked to an actor never appear.

Node ids: the actor id (resolved actor uuid or pseudonymised account), ``term:<term>``,
``platform:<platform>``. Node columns: id, label, type (actor / term / platform), platforms,
records (the actor's records, the records matching the term, or all records on the platform),
is_public_figure, resolved, first_seen, last_seen, degree, weighted_degree. Edge columns:
source, target, weight, days (sorted dates), first_seen, last_seen (and shared_terms and
disparity_alpha for actor_cooccurrence); source < target as strings. ``<network>_summary`` holds one row of figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import polars as pl

from observatory_pipelines.core.analysis import store as analysis_store
from observatory_pipelines.core.analysis.statistics import LABEL_HEX_CHARS, AnalysisCorpus, actor_table

if TYPE_CHECKING:  # polars keeps its type aliases in a private module
    from polars._typing import PolarsDataType

ACTOR_COOCCURRENCE = "actor_cooccurrence"
TERM_COOCCURRENCE = "term_cooccurrence"
ACTOR_TERM = "actor_term"
CROSS_PLATFORM_ACTORS = "cross_platform_actors"
NETWORKS = (ACTOR_COOCCURRENCE, TERM_COOCCURRENCE, ACTOR_TERM, CROSS_PLATFORM_ACTORS)

#: At most as many candidate co-uses (actor pairs counted once per shared (term, day)) are joined:
#: rows of a few integers each, so the pairing stays within a few hundred MB whatever the corpus.
DEFAULT_MAX_LINKS = 5_000_000
#: The disparity filter's significance level, as Serrano, Boguñá & Vespignani (2009) use it.
DEFAULT_BACKBONE_ALPHA = 0.05
BACKBONE_RULE = "disparity filter (Serrano, Boguñá & Vespignani 2009)"
TOP_NODES = 10

HOW_BUILT = """Built from the corpus's records without those marked as duplicates by the dedup pass
(raw_metadata.duplicate_of). An actor is the resolved actor (author_id) when entity resolution has
linked the account, else the pseudonymised account id (per platform); actor labels are names only for
actors flagged as public figures, otherwise the first {label_chars} hex characters of the pseudonymised id.
Pairs come from polars explode + join on the (term, day) or on the record,
never from a self-join of records on overlapping term arrays. The graph is undirected; days are the
dates (UTC) of the records that make each edge, first_seen/last_seen their bounds, for time-aware exports.

Stored in the analysis store (<OBSERVATORY_HOME>/analysis/<design>/<YYYY-MM>/) as {name}_nodes.parquet
(id, label, type, platforms, records, is_public_figure, resolved, first_seen, last_seen, degree,
weighted_degree), {name}_edges.parquet (source, target, weight, days, first_seen, last_seen{extra})
and {name}_summary.parquet; core.analysis.networks.load_graph rebuilds the networkx graph."""

DEFINITIONS = {
    ACTOR_COOCCURRENCE: (
        "Actor co-occurrence network of one corpus. Edge: two actors used the same search term on the same "
        "day (UTC). weight = over the (term, day) pairs both used, the sum of the quieter actor's records matching the term that day; shared_terms = those terms, sorted; "
        "days = those days. Only the backbone is kept: the disparity filter (Serrano, Boguñá & Vespignani "
        "2009, PNAS 106(16)) keeps an edge when its weight is an improbably large share of either actor's "
        "strength, disparity_alpha = min over both ends of (1 - weight/strength)^(degree-1) <= backbone_alpha "
        f"(run config, default {DEFAULT_BACKBONE_ALPHA}); the metadata gives the candidate, removed and kept "
        "edges. Nodes: the actors with at least one kept edge. A (term, day) used by k actors makes "
        "k(k-1)/2 candidate co-uses: when they would exceed max_links (run config, default "
        f"{DEFAULT_MAX_LINKS:,}), only the most active actors (by records, then engagement) that fit are "
        "paired, and the metadata says how many of how many."
    ),
    TERM_COOCCURRENCE: (
        "Term co-occurrence network of one corpus. Nodes: the design's search terms matched by at least "
        "one record (id term:<term>). Edge: two terms both matched in the same record. weight = the number "
        "of records matching both; days = the dates of those records."
    ),
    ACTOR_TERM: (
        "Bipartite actor–term network of one corpus. Nodes: actors (type actor) and matched search terms "
        "(type term, id term:<term>). Edge: an actor used a term. weight = the actor's records matching "
        "the term; days = the dates of those records. Actors whose records match no term are absent."
    ),
    CROSS_PLATFORM_ACTORS: (
        "Cross-platform actors of one corpus, as a bipartite actor–platform network. Nodes: resolved "
        "actors (entity resolution linked their accounts to one actor) whose records come from two or more "
        "platforms, and those platforms (type platform, id platform:<platform>, records = all the corpus's "
        "records on it). Edge: the actor published on the platform. weight = the actor's records there; "
        "days = their dates. Unresolved accounts never appear: resolve actors first."
    ),
}


def describe(name: str) -> str:
    """How network ``name`` is built, for its asset's description and docs/analysis.md."""
    extra = ", shared_terms, disparity_alpha" if name == ACTOR_COOCCURRENCE else ""
    return DEFINITIONS[name] + "\n\n" + HOW_BUILT.format(name=name, extra=extra, label_chars=LABEL_HEX_CHARS)


NODE_SCHEMA: dict[str, PolarsDataType] = {
    "id": pl.Utf8,
    "label": pl.Utf8,
    "type": pl.Utf8,
    "platforms": pl.List(pl.Utf8),
    "records": pl.Int64,
    "is_public_figure": pl.Boolean,
    "resolved": pl.Boolean,
    "first_seen": pl.Date,
    "last_seen": pl.Date,
    "degree": pl.Int64,
    "weighted_degree": pl.Int64,
}
EDGE_SCHEMA: dict[str, PolarsDataType] = {
    "source": pl.Utf8,
    "target": pl.Utf8,
    "weight": pl.Int64,
    "days": pl.List(pl.Date),
    "first_seen": pl.Date,
    "last_seen": pl.Date,
}
ACTOR_EDGE_SCHEMA = {**EDGE_SCHEMA, "shared_terms": pl.List(pl.Utf8), "disparity_alpha": pl.Float64}


@dataclass(frozen=True)
class Network:
    name: str
    nodes: pl.DataFrame
    edges: pl.DataFrame
    #: Records the network was built from (the corpus without duplicates).
    records: int
    #: Extra figures (actor_cooccurrence: actors_total, actors_included, links, links_complete,
    #: max_links, backbone_rule, backbone_alpha, candidate_edges, backbone_removed, backbone_kept).
    info: dict[str, int | float | str] = field(default_factory=dict)

    @property
    def density(self) -> float:
        """2E / (N(N−1)), as ``networkx.density`` computes it for an undirected graph."""
        n = self.nodes.height
        return 2 * self.edges.height / (n * (n - 1)) if n > 1 else 0.0

    def top_nodes(self, count: int = TOP_NODES) -> pl.DataFrame:
        return (
            self.nodes.sort(["degree", "weighted_degree", "label"], descending=[True, True, False])
            .head(count)
            .select("label", "type", "degree", "weighted_degree", "records")
        )

    def summary(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "network": self.name,
                    "records": self.records,
                    "nodes": self.nodes.height,
                    "edges": self.edges.height,
                    "density": self.density,
                    **self.info,
                }
            ]
        )


# --- shared pieces ---------------------------------------------------------------------------


def _int_max(column: pl.Series) -> int:
    """An integer column's largest value; 0 when it is empty."""
    top = column.max()
    if not isinstance(top, int | None):
        raise TypeError(f"column {column.name!r} holds {column.dtype}, not integers")
    return top or 0


def _day_bit(corpus: AnalysisCorpus) -> pl.Expr:
    """The record's day as one bit of a month bitmask: sets of days are OR-ed while aggregating,
    which keeps a per-edge list of days as cheap as a count."""
    offset = (pl.col("day") - pl.lit(corpus.first_day)).dt.total_days()
    return pl.lit(2, pl.Int64).pow(offset).alias("day_mask")


def _with_days(frame: pl.DataFrame, corpus: AnalysisCorpus) -> pl.DataFrame:
    """``frame``'s ``day_mask`` replaced by ``days`` (sorted dates), ``first_seen`` and ``last_seen``."""
    first = corpus.first_day
    offsets = range(corpus.days_in_month)
    bits = pl.DataFrame({"bit": [1 << i for i in offsets], "day": [first + timedelta(days=i) for i in offsets]})
    # Decoded once per distinct mask, not once per edge: active pairs share their masks.
    decoded = (
        frame.select("day_mask")
        .unique()
        .join(bits, how="cross")
        .filter((pl.col("day_mask") & pl.col("bit")) != 0)
        .group_by("day_mask")
        .agg(days=pl.col("day").sort())
    )
    return (
        frame.join(decoded, on="day_mask", how="left")
        .with_columns(first_seen=pl.col("days").list.first(), last_seen=pl.col("days").list.last())
        .drop("day_mask")
    )


def _term_enum(corpus: AnalysisCorpus) -> pl.Enum:
    # Terms as an Enum in sorted order: joins and group-bys work on integers, and sorting a list
    # of terms sorts them alphabetically.
    terms = corpus.records["terms"].explode().drop_nulls().unique().sort()
    return pl.Enum(terms.to_list())


def _actor_nodes(actors: pl.DataFrame) -> pl.DataFrame:
    return actors.select(
        pl.col("actor_id").alias("id"),
        "label",
        pl.lit("actor").alias("type"),
        "platforms",
        "records",
        "is_public_figure",
        "resolved",
        "first_seen",
        "last_seen",
    )


def _term_nodes(corpus: AnalysisCorpus) -> pl.DataFrame:
    return (
        corpus.records.select("terms", "platform", "day")
        .explode("terms")
        .drop_nulls("terms")
        .group_by("terms")
        .agg(
            platforms=pl.col("platform").unique().sort(),
            records=pl.len(),
            first_seen=pl.col("day").min(),
            last_seen=pl.col("day").max(),
        )
        .select(
            ("term:" + pl.col("terms")).alias("id"),
            pl.col("terms").alias("label"),
            pl.lit("term").alias("type"),
            "platforms",
            "records",
            pl.lit(False).alias("is_public_figure"),
            pl.lit(False).alias("resolved"),
            "first_seen",
            "last_seen",
        )
    )


def _finish(
    name: str,
    corpus: AnalysisCorpus,
    nodes: pl.DataFrame,
    edges: pl.DataFrame,
    edge_schema: dict,
    info: dict | None = None,
) -> Network:
    edges = (
        edges.with_columns(
            pl.min_horizontal("source", "target").alias("source"), pl.max_horizontal("source", "target").alias("target")
        )
        .select(list(edge_schema))
        .cast(edge_schema)
        .sort(["weight", "source", "target"], descending=[True, False, False])
    )
    ends = pl.concat(
        [edges.select(pl.col("source").alias("id"), "weight"), edges.select(pl.col("target").alias("id"), "weight")]
    )
    degrees = ends.group_by("id").agg(degree=pl.len(), weighted_degree=pl.col("weight").sum())
    nodes = (
        nodes.join(degrees, on="id", how="left")
        .with_columns(pl.col("degree", "weighted_degree").fill_null(0))
        .select(list(NODE_SCHEMA))
        .cast(NODE_SCHEMA)  # type: ignore[arg-type]  # polars types cast()'s keys invariantly (pola-rs/polars#14468)
        .sort("id")
    )
    return Network(name=name, nodes=nodes, edges=edges, records=corpus.records.height, info=info or {})


# --- the four networks -----------------------------------------------------------------------


def _actor_terms(corpus: AnalysisCorpus, terms: pl.Enum) -> pl.DataFrame:
    """One row per (actor, term): records, day_mask."""
    return (
        corpus.records.filter(pl.col("actor").is_not_null())
        .select("actor", pl.col("terms").cast(pl.List(terms)), _day_bit(corpus))
        .explode("terms")
        .drop_nulls("terms")
        .group_by("actor", "terms")
        .agg(records=pl.len(), day_mask=pl.col("day_mask").bitwise_or())
    )


def _actor_term_days(corpus: AnalysisCorpus, terms: pl.Enum) -> pl.DataFrame:
    """One row per (actor, term, day) used, with the actor's records matching the term that day:
    the day as its index in the month."""
    offset = (pl.col("day") - pl.lit(corpus.first_day)).dt.total_days().cast(pl.UInt8)
    return (
        corpus.records.filter(pl.col("actor").is_not_null())
        .select("actor", pl.col("terms").cast(pl.List(terms)), offset.alias("day_index"))
        .explode("terms")
        .drop_nulls("terms")
        .group_by("actor", "terms", "day_index")
        .agg(records=pl.len())
    )


def disparity_backbone(candidates: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """The edges of ``candidates`` (source, target, weight, ...) that the disparity filter keeps,
    with their ``disparity_alpha``.

    For an edge of node i with degree k and strength s (the sum of its edges' weights), the null
    hypothesis spreads s uniformly at random over the k edges; the probability of a share at least
    p = weight / s is (1 − p)^(k−1). An edge is kept when that probability is ≤ ``alpha`` for at
    least one of its two nodes (Serrano, Boguñá & Vespignani 2009)."""
    ends = pl.concat(
        [
            candidates.select(pl.col("source").alias("node"), "weight"),
            candidates.select(pl.col("target").alias("node"), "weight"),
        ]
    )
    strength = ends.group_by("node").agg(strength=pl.col("weight").sum(), degree=pl.len())

    def significance(end: str) -> pl.Expr:
        share = pl.col("weight") / pl.col(f"strength_{end}")
        return (1.0 - share).pow(pl.col(f"degree_{end}") - 1)

    return (
        candidates.join(strength.rename(lambda c: f"{c}_source"), left_on="source", right_on="node_source")
        .join(strength.rename(lambda c: f"{c}_target"), left_on="target", right_on="node_target")
        .with_columns(disparity_alpha=pl.min_horizontal(significance("source"), significance("target")))
        .filter(pl.col("disparity_alpha") <= alpha)
        .drop("strength_source", "degree_source", "strength_target", "degree_target")
    )


def actor_cooccurrence(
    corpus: AnalysisCorpus, max_links: int = DEFAULT_MAX_LINKS, alpha: float = DEFAULT_BACKBONE_ALPHA
) -> Network:
    terms = _term_enum(corpus)
    uses = _actor_term_days(corpus, terms)
    actors = actor_table(corpus).filter(pl.col("actor_id").is_in(uses["actor"].unique().implode()))
    # Rank the actors, most active first; ranks stand in for ids in the join.
    ranks = actors.select(pl.col("actor_id").alias("actor")).with_row_index("rank")
    ranked = uses.join(ranks, on="actor").select("rank", "terms", "day_index", "records").sort("rank")
    # An actor adds one co-use for each earlier-ranked actor that used the same term on the same
    # day, so the running total over ranks is the join's size with the top-N actors, known before joining.
    added = ranked.with_columns(earlier=pl.col("rank").cum_count().over("terms", "day_index") - 1)
    links_by_rank = (
        added.group_by("rank").agg(pl.col("earlier").sum()).sort("rank").with_columns(total=pl.col("earlier").cum_sum())
    )
    fitting = links_by_rank.filter(pl.col("total") <= max_links)
    included = fitting.height
    links = _int_max(fitting["total"])
    links_complete = _int_max(links_by_rank["total"])
    kept = ranked.filter(pl.col("rank") < included)
    day_bit = pl.lit(2, pl.Int64).pow(pl.col("day_index").cast(pl.Int64))
    pairs = (
        kept.join(kept, on=["terms", "day_index"], suffix="_b")
        .filter(pl.col("rank") < pl.col("rank_b"))
        .group_by("rank", "rank_b")
        .agg(
            # Co-use in proportion: on a shared (term, day), as many as the quieter actor's records.
            weight=pl.min_horizontal("records", "records_b").sum().cast(pl.Int64),
            shared_terms=pl.col("terms").unique().sort(),
            day_mask=day_bit.bitwise_or(),
        )
    )
    candidates = pairs.join(ranks.rename({"actor": "source"}), on="rank").join(
        ranks.rename({"actor": "target", "rank": "rank_b"}), on="rank_b"
    )
    backbone = disparity_backbone(candidates, alpha)
    linked = pl.concat([backbone["source"], backbone["target"]]).unique().implode()
    nodes = _actor_nodes(actors.head(included).filter(pl.col("actor_id").is_in(linked)))
    info: dict[str, int | float | str] = {
        "actors_total": actors.height,
        "actors_included": included,
        "links": links,
        "links_complete": links_complete,
        "max_links": max_links,
        "backbone_rule": BACKBONE_RULE,
        "backbone_alpha": alpha,
        "candidate_edges": candidates.height,
        "backbone_removed": candidates.height - backbone.height,
        "backbone_kept": backbone.height,
    }
    return _finish(ACTOR_COOCCURRENCE, corpus, nodes, _with_days(backbone, corpus), ACTOR_EDGE_SCHEMA, info)


def term_cooccurrence(corpus: AnalysisCorpus) -> Network:
    terms = _term_enum(corpus)
    # Records with the same terms on the same day contribute identically: count them once per
    # (terms, day) before pairing, so the join works on a few thousand groups, not every record.
    groups = (
        corpus.records.filter(pl.col("terms").list.len() >= 2)
        .group_by(pl.col("terms").cast(pl.List(terms)), "day")
        .agg(records=pl.len())
        .with_row_index("group")
    )
    members = groups.select("group", "terms").explode("terms")
    edges = (
        members.join(members, on="group", suffix="_b")
        .filter(pl.col("terms") < pl.col("terms_b"))
        .join(groups.select("group", "day", "records"), on="group")
        .group_by("terms", "terms_b")
        .agg(weight=pl.col("records").sum(), days=pl.col("day").unique().sort())
        .select(
            ("term:" + pl.col("terms").cast(pl.Utf8)).alias("source"),
            ("term:" + pl.col("terms_b").cast(pl.Utf8)).alias("target"),
            "weight",
            "days",
            pl.col("days").list.first().alias("first_seen"),
            pl.col("days").list.last().alias("last_seen"),
        )
    )
    return _finish(TERM_COOCCURRENCE, corpus, _term_nodes(corpus), edges, EDGE_SCHEMA)


def actor_term(corpus: AnalysisCorpus) -> Network:
    actor_terms = _actor_terms(corpus, _term_enum(corpus))
    actors = actor_table(corpus).filter(pl.col("actor_id").is_in(actor_terms["actor"].unique().implode()))
    edges = actor_terms.select(
        pl.col("actor").alias("source"),
        ("term:" + pl.col("terms").cast(pl.Utf8)).alias("target"),
        pl.col("records").alias("weight"),
        "day_mask",
    )
    nodes = pl.concat([_actor_nodes(actors), _term_nodes(corpus)], how="vertical_relaxed")
    return _finish(ACTOR_TERM, corpus, nodes, _with_days(edges, corpus), EDGE_SCHEMA)


def cross_platform_actors(corpus: AnalysisCorpus) -> Network:
    resolved = corpus.records.filter(pl.col("resolved"))
    by_platform = (
        resolved.select("actor", "platform", _day_bit(corpus))
        .group_by("actor", "platform")
        .agg(weight=pl.len(), day_mask=pl.col("day_mask").bitwise_or())
        .filter(pl.len().over("actor") >= 2)
    )
    actors = actor_table(corpus).filter(pl.col("actor_id").is_in(by_platform["actor"].unique().implode()))
    platforms = (
        corpus.records.filter(pl.col("platform").is_in(by_platform["platform"].unique().implode()))
        .group_by("platform")
        .agg(records=pl.len(), first_seen=pl.col("day").min(), last_seen=pl.col("day").max())
        .select(
            ("platform:" + pl.col("platform")).alias("id"),
            pl.col("platform").alias("label"),
            pl.lit("platform").alias("type"),
            pl.concat_list("platform").alias("platforms"),
            "records",
            pl.lit(False).alias("is_public_figure"),
            pl.lit(False).alias("resolved"),
            "first_seen",
            "last_seen",
        )
    )
    edges = by_platform.select(
        pl.col("actor").alias("source"), ("platform:" + pl.col("platform")).alias("target"), "weight", "day_mask"
    )
    nodes = pl.concat([_actor_nodes(actors), platforms], how="vertical_relaxed")
    return _finish(CROSS_PLATFORM_ACTORS, corpus, nodes, _with_days(edges, corpus), EDGE_SCHEMA)


def build_networks(
    corpus: AnalysisCorpus, max_links: int = DEFAULT_MAX_LINKS, alpha: float = DEFAULT_BACKBONE_ALPHA
) -> dict[str, Network]:
    return {
        ACTOR_COOCCURRENCE: actor_cooccurrence(corpus, max_links, alpha),
        TERM_COOCCURRENCE: term_cooccurrence(corpus),
        ACTOR_TERM: actor_term(corpus),
        CROSS_PLATFORM_ACTORS: cross_platform_actors(corpus),
    }


# --- storage ---------------------------------------------------------------------------------


def write_network(network: Network, slug: str, month: str) -> dict[str, Path]:
    return {
        part: analysis_store.write_table(slug, month, f"{network.name}_{part}", frame)
        for part, frame in (("nodes", network.nodes), ("edges", network.edges), ("summary", network.summary()))
    }


def load_graph(slug: str, month: str, network: str) -> nx.Graph:
    """The stored network as an undirected ``networkx.Graph``: node and edge columns become
    attributes (lists stay lists, dates are ``datetime.date``); the summary row is ``graph.graph``."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network '{network}'; choose one of {', '.join(NETWORKS)}")
    nodes = analysis_store.read_table(slug, month, f"{network}_nodes")
    edges = analysis_store.read_table(slug, month, f"{network}_edges")
    summary = analysis_store.read_table(slug, month, f"{network}_summary")
    graph = nx.Graph(design=slug, month=month, **(summary.row(0, named=True) if summary.height else {}))
    graph.add_nodes_from((row.pop("id"), row) for row in nodes.iter_rows(named=True))
    graph.add_edges_from((row.pop("source"), row.pop("target"), row) for row in edges.iter_rows(named=True))
    return graph
