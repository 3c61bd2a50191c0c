"""The four network assets of one corpus, built together from one read of the corpus."""

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.analysis import networks
from observatory_pipelines.core.analysis import statistics as stats
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.partitions import corpus_of, corpus_partitions
from observatory_pipelines.defs.resources import PostgresResource

_CHECK = "\nCheck network_has_edges warns when the corpus has records but the network has no edge."


def _description(name: str) -> str:
    return networks.describe(name) + _CHECK


class NetworkConfig(dg.Config):
    max_links: int = Field(
        default=networks.DEFAULT_MAX_LINKS,
        ge=0,
        description="Largest actor co-occurrence pairing, in actor pairs counted once per shared (term, day); "
        "beyond it only the most active actors that fit are paired.",
    )
    backbone_alpha: float = Field(
        default=networks.DEFAULT_BACKBONE_ALPHA,
        gt=0,
        le=1,
        description="Significance level of the disparity filter that keeps the actor co-occurrence backbone; "
        "1 keeps every candidate edge.",
    )


def _info_value(value: int | float | str) -> dg.MetadataValue:
    if isinstance(value, str):
        return dg.MetadataValue.text(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    return dg.MetadataValue.int(value)


def _metadata(network: networks.Network, paths: dict) -> dict:
    metadata: dict[str, dg.MetadataValue] = {
        "records": dg.MetadataValue.int(network.records),
        "nodes": dg.MetadataValue.int(network.nodes.height),
        "edges": dg.MetadataValue.int(network.edges.height),
        "density": dg.MetadataValue.float(round(network.density, 6)),
        "top_nodes_by_degree": dg.MetadataValue.md(stats.markdown_table(network.top_nodes())),
        "nodes_path": dg.MetadataValue.path(str(paths["nodes"])),
        "edges_path": dg.MetadataValue.path(str(paths["edges"])),
    }
    metadata.update({key: _info_value(value) for key, value in network.info.items()})
    return metadata


def _check(network: networks.Network) -> dg.AssetCheckResult:
    passed = network.records == 0 or network.edges.height > 0
    description = f"{network.records} records but no {network.name} edge; "
    removed = network.info.get("backbone_removed", 0)
    if removed:
        description += (
            f"the backbone removed all {removed} candidate edges: no tie stands out at backbone_alpha "
            f"{network.info['backbone_alpha']} (run config; 1 keeps every candidate)"
        )
    else:
        description += "see the asset description for how edges are made"
    return dg.AssetCheckResult(
        asset_key=asset_keys.NETWORKS[network.name],
        check_name="network_has_edges",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else description,
        metadata={"records": network.records, "edges": network.edges.height},
    )


@dg.multi_asset(
    name="corpus_networks",
    partitions_def=corpus_partitions,
    specs=[
        dg.AssetSpec(
            asset_keys.NETWORKS[name],
            group_name="analysis",
            deps=[asset_keys.DEDUP],
            automation_condition=dg.AutomationCondition.eager(),
            kinds={"polars", "networkx", "parquet"},
            description=_description(name),
        )
        for name in networks.NETWORKS
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "network_has_edges",
            asset=asset_keys.NETWORKS[name],
            description="Warns when the corpus has records but the network has no edge.",
        )
        for name in networks.NETWORKS
    ],
)
def corpus_networks(context: dg.AssetExecutionContext, config: NetworkConfig, postgres: PostgresResource):
    with postgres.engine() as engine:
        corpus = corpus_of(context, engine)
        analysed = stats.load_analysis_corpus(engine, corpus)
    for name, network in networks.build_networks(
        analysed, max_links=config.max_links, alpha=config.backbone_alpha
    ).items():
        paths = networks.write_network(network, corpus.slug, corpus.month)
        context.log.info(f"{name}: {network.nodes.height} nodes, {network.edges.height} edges")
        yield dg.MaterializeResult(
            asset_key=asset_keys.NETWORKS[name], metadata=_metadata(network, paths), check_results=[_check(network)]
        )


defs = dg.Definitions(assets=[corpus_networks])
