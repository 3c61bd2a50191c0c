"""The four network assets of one corpus, built together from one read of the corpus."""

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.analysis import networks
from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.defs.partitions import corpus_partitions
from observatory_pipelines.defs.resources import PostgresResource, content_engine

_COMMON = """

Built from the corpus's records without those marked as duplicates by the dedup pass
(raw_metadata.duplicate_of). An actor is the resolved actor (author_id) when entity resolution has
linked the account, else the pseudonymised account id (per platform); actor labels are names only for
actors flagged as public figures, otherwise the first 12 hex characters of the pseudonymised id.
Pairs come from polars explode + join on the term (or the record), never from a self-join of records
on overlapping term arrays. The graph is undirected; days are the dates (UTC) of the records that make
each edge, first_seen/last_seen their bounds, for time-aware exports.

Stored in the analysis store (<OBSERVATORY_HOME>/analysis/<design>/<YYYY-MM>/) as {name}_nodes.parquet
(id, label, type, platforms, records, is_public_figure, resolved, first_seen, last_seen, degree,
weighted_degree), {name}_edges.parquet (source, target, weight, days, first_seen, last_seen{extra})
and {name}_summary.parquet; core.networks.load_graph rebuilds the networkx graph.
Check network_has_edges warns when the corpus has records but the network has no edge."""

DESCRIPTIONS = {
    networks.ACTOR_COOCCURRENCE: (
        "Actor co-occurrence network of one corpus. Nodes: actors with at least one matched search term. "
        "Edge: two actors both used the same search term somewhere in the corpus (in any of their records, "
        "not necessarily the same record or day). weight = the number of distinct terms they share; "
        "shared_terms = those terms, sorted; days = the dates on which either of the two published a record "
        "matching one of the shared terms. A term used by k actors alone makes k(k-1)/2 edges: when the "
        "links (actor pairs counted once per shared term) would exceed max_links (run config, default "
        f"{networks.DEFAULT_MAX_LINKS:,}), only the most active actors (by records, then engagement) that fit "
        "are kept, and the metadata says how many of how many."
    ),
    networks.TERM_COOCCURRENCE: (
        "Term co-occurrence network of one corpus. Nodes: the design's search terms matched by at least "
        "one record (id term:<term>). Edge: two terms both matched in the same record. weight = the number "
        "of records matching both; days = the dates of those records."
    ),
    networks.ACTOR_TERM: (
        "Bipartite actor–term network of one corpus. Nodes: actors (type actor) and matched search terms "
        "(type term, id term:<term>). Edge: an actor used a term. weight = the actor's records matching "
        "the term; days = the dates of those records. Actors whose records match no term are absent."
    ),
    networks.CROSS_PLATFORM_ACTORS: (
        "Cross-platform actors of one corpus, as a bipartite actor–platform network. Nodes: resolved "
        "actors (entity resolution linked their accounts to one actor) whose records come from two or more "
        "platforms, and those platforms (type platform, id platform:<platform>, records = all the corpus's "
        "records on it). Edge: the actor published on the platform. weight = the actor's records there; "
        "days = their dates. Unresolved accounts never appear: resolve actors first."
    ),
}


def _description(name: str) -> str:
    extra = ", shared_terms" if name == networks.ACTOR_COOCCURRENCE else ""
    return DESCRIPTIONS[name] + _COMMON.format(name=name, extra=extra)


ASSET_NAMES = {
    networks.ACTOR_COOCCURRENCE: "actor_cooccurrence_network",
    networks.TERM_COOCCURRENCE: "term_cooccurrence_network",
    networks.ACTOR_TERM: "actor_term_network",
    networks.CROSS_PLATFORM_ACTORS: "cross_platform_actor_network",
}


def asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(ASSET_NAMES[name])


class NetworkConfig(dg.Config):
    max_links: int = Field(
        default=networks.DEFAULT_MAX_LINKS,
        ge=0,
        description="Largest actor co-occurrence network built, in actor pairs counted once per shared term; "
        "beyond it only the most active actors that fit are kept.",
    )


def _metadata(network: networks.Network, paths: dict) -> dict:
    metadata = {
        "records": dg.MetadataValue.int(network.records),
        "nodes": dg.MetadataValue.int(network.nodes.height),
        "edges": dg.MetadataValue.int(network.edges.height),
        "density": dg.MetadataValue.float(round(network.density, 6)),
        "top_nodes_by_degree": dg.MetadataValue.md(stats.markdown_table(network.top_nodes())),
        "nodes_path": dg.MetadataValue.path(str(paths["nodes"])),
        "edges_path": dg.MetadataValue.path(str(paths["edges"])),
    }
    metadata.update({key: dg.MetadataValue.int(value) for key, value in network.info.items()})
    return metadata


def _check(network: networks.Network) -> dg.AssetCheckResult:
    passed = network.records == 0 or network.edges.height > 0
    return dg.AssetCheckResult(
        asset_key=asset_key(network.name),
        check_name="network_has_edges",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else
        f"{network.records} records but no {network.name} edge; see the asset description for how edges are made",
        metadata={"records": network.records, "edges": network.edges.height},
    )


@dg.multi_asset(
    name="corpus_networks",
    partitions_def=corpus_partitions,
    specs=[
        dg.AssetSpec(
            asset_key(name),
            group_name="analysis",
            deps=[dg.AssetKey("dedup_pass")],
            automation_condition=dg.AutomationCondition.eager(),
            kinds={"polars", "networkx", "parquet"},
            description=_description(name),
        )
        for name in networks.NETWORKS
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "network_has_edges",
            asset=asset_key(name),
            description="Warns when the corpus has records but the network has no edge.",
        )
        for name in networks.NETWORKS
    ],
)
def corpus_networks(context: dg.AssetExecutionContext, config: NetworkConfig, postgres: PostgresResource):
    keys = context.partition_key.keys_by_dimension
    month, slug = keys["month"], keys["design"]
    with content_engine(postgres) as engine:
        corpus = stats.load_analysis_corpus(engine, slug, month)
    for name, network in networks.build_networks(corpus, max_links=config.max_links).items():
        paths = networks.write_network(network, slug, month)
        context.log.info(f"{name}: {network.nodes.height} nodes, {network.edges.height} edges")
        yield dg.MaterializeResult(asset_key=asset_key(name), metadata=_metadata(network, paths),
                                   check_results=[_check(network)])


defs = dg.Definitions(assets=[corpus_networks])
