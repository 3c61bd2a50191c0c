"""GEXF 1.3 files of the stored networks, for Gephi and networkx.

A file holds one network exactly as ``core.networks`` builds and stores it (what its nodes and
edges are is documented there): one ``<node>`` per row of the node table, one ``<edge>`` per row
of the edge table, in the tables' order.

- ``<graph defaultedgetype="undirected">``. A node carries its ``id`` and ``label``; an edge its
  row number as ``id``, ``source``, ``target`` and ``weight``.
- Every other column is a static attribute, declared once in ``<attributes class="node|edge">``
  with the column name as id and title, and given per element as ``<attvalue>`` (left out when
  null). Types: integers ``long``, booleans ``boolean``, strings ``string``, dates ``string`` in
  ISO form (``YYYY-MM-DD``; GEXF 1.3 has no date attribute type), lists (``platforms``, ``days``,
  ``shared_terms``) ``liststring``.
- A ``liststring`` value is a JSON array of strings, ``["bluesky", "x_twitter"]``: Gephi parses
  that as its array syntax (every item a quoted literal, so commas and spaces inside a term are
  safe), and networkx, which keeps liststring values as text, gives it back to ``json.loads``.
- The dynamic variant (``mode="dynamic" timeformat="date"``) adds time for Gephi's timeline: a
  node lives from ``first_seen`` to ``last_seen`` (its ``start`` and ``end``), an edge on each
  of its ``days`` (one ``<spell start=day end=day>`` per day). The attributes stay static. Gephi
  shows an edge only while both its nodes live, so an actor_cooccurrence edge is hidden on a day
  of its ``days`` that lies outside one actor's own first and last record.
- ``<meta lastmodifieddate>`` holds the writing date (UTC), a creator and a description.

The file is UTF-8, one line per node and per edge. Characters XML cannot carry (control
characters other than tab and line breaks) are dropped and markup characters escaped. Lines are
written as they are made from slices of the frames, so the document is never whole in memory,
into a temporary file beside the target that replaces it only once complete: a failed write
leaves the previous file, or none.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from observatory_pipelines.core.analysis import networks
from observatory_pipelines.core.analysis import store as analysis_store

NAMESPACE = "http://gexf.net/1.3"
CREATOR = "observatory_pipelines"
#: Rows converted to Python at a time: bounds memory whatever the network's size.
_SLICE_ROWS = 10_000
# What XML 1.0 allows (https://www.w3.org/TR/xml/#charsets); a parser refuses anything else.
_XML_ILLEGAL = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Every value is written as an attribute: tabs and line breaks as references, or a parser would
# turn them into spaces. Characters XML cannot carry are dropped.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
_ESCAPES = str.maketrans(_ENTITIES)
_SPECIAL = re.compile(f"[{''.join(_ENTITIES)}]|{_XML_ILLEGAL.pattern}")
# The summary columns Network.summary() always writes; the rest of the row is Network.info.
_SUMMARY_FIGURES = ("network", "records", "nodes", "edges", "density")


@dataclass(frozen=True)
class GexfSummary:
    """What ``write_gexf`` wrote."""

    path: Path
    nodes: int
    edges: int
    #: Edge spells written (the dynamic variant's edge-days); 0 for the static variant.
    spells: int
    size: int


def _text(value: str) -> str:
    # Most values (numbers, dates, ids) need nothing: one scan tells.
    return _XML_ILLEGAL.sub("", value).translate(_ESCAPES) if _SPECIAL.search(value) else value


def _tag(name: str, attrib: dict[str, str], end: str = "/>") -> str:
    return f"<{name}" + "".join(f' {key}="{_text(value)}"' for key, value in attrib.items()) + end


def _list_value(items: list) -> str:
    # Cleaned before encoding, or json.dumps would write a control character as the text \u0007.
    return json.dumps([_XML_ILLEGAL.sub("", str(item)) for item in items], ensure_ascii=False)


def _attribute_type(column: str, dtype: pl.DataType) -> tuple[str, Callable[[Any], str]]:
    """The GEXF type of a column and how one value is written."""
    if dtype == pl.Boolean:
        return "boolean", lambda value: "true" if value else "false"
    if dtype.is_integer():
        return "long", str
    if dtype.is_float():
        return "double", repr
    if dtype == pl.Date:
        return "string", date.isoformat
    if dtype == pl.Utf8:
        return "string", str
    if isinstance(dtype, pl.List):
        return "liststring", _list_value
    raise TypeError(f"column '{column}' has type {dtype}, which a GEXF attribute cannot hold")


def _attributes(frame: pl.DataFrame, fixed: tuple[str, ...]) -> dict[str, tuple[str, Callable]]:
    missing = [column for column in fixed if column not in frame.columns]
    if missing:
        raise ValueError(f"a network table lacks the column '{missing[0]}'")
    return {name: _attribute_type(name, dtype) for name, dtype in frame.schema.items() if name not in fixed}


def _rows(frame: pl.DataFrame) -> Iterator[dict]:
    for chunk in frame.iter_slices(_SLICE_ROWS):
        yield from chunk.iter_rows(named=True)


def _declarations(kind: str, attributes: dict[str, tuple[str, Callable]]) -> str:
    declared = "".join(
        _tag("attribute", {"id": name, "title": name, "type": gexf_type}) for name, (gexf_type, _) in attributes.items()
    )
    return _tag("attributes", {"class": kind, "mode": "static"}, ">") + declared + "</attributes>\n"


def _attvalues(row: dict, attributes: dict[str, tuple[str, Callable]]) -> str:
    values = "".join(
        _tag("attvalue", {"for": name, "value": write(row[name])})
        for name, (_, write) in attributes.items()
        if row[name] is not None
    )
    return f"<attvalues>{values}</attvalues>" if values else ""


def _document(network: networks.Network, dynamic: bool, description: str) -> Iterator[str]:
    """The file, a line at a time."""
    node_attributes = _attributes(network.nodes, ("id", "label"))
    edge_attributes = _attributes(network.edges, ("source", "target", "weight"))
    graph = {"defaultedgetype": "undirected", "mode": "dynamic" if dynamic else "static"}
    if dynamic:
        graph["timeformat"] = "date"
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield _tag("gexf", {"xmlns": NAMESPACE, "version": "1.3"}, ">\n")
    yield _tag("meta", {"lastmodifieddate": datetime.now(timezone.utc).date().isoformat()}, ">")
    yield f"<creator>{CREATOR}</creator><description>{_text(description)}</description></meta>\n"
    yield _tag("graph", graph, ">\n")
    yield _declarations("node", node_attributes)
    yield _declarations("edge", edge_attributes)
    yield _tag("nodes", {"count": str(network.nodes.height)}, ">\n")
    for row in _rows(network.nodes):
        attrib = {"id": row["id"]}
        if row["label"] is not None:
            attrib["label"] = row["label"]
        if dynamic and row.get("first_seen") is not None:
            attrib["start"] = row["first_seen"].isoformat()
        if dynamic and row.get("last_seen") is not None:
            attrib["end"] = row["last_seen"].isoformat()
        yield _tag("node", attrib, ">") + _attvalues(row, node_attributes) + "</node>\n"
    yield "</nodes>\n" + _tag("edges", {"count": str(network.edges.height)}, ">\n")
    for index, row in enumerate(_rows(network.edges)):
        attrib = {"id": str(index), "source": row["source"], "target": row["target"], "weight": str(row["weight"])}
        spells = ""
        # <spells> needs at least one <spell>.
        if dynamic and row.get("days"):
            days = [day.isoformat() for day in row["days"]]
            spells = "<spells>" + "".join(f'<spell start="{day}" end="{day}"/>' for day in days) + "</spells>"
        yield _tag("edge", attrib, ">") + _attvalues(row, edge_attributes) + spells + "</edge>\n"
    yield "</edges>\n</graph>\n</gexf>\n"


def write_gexf(
    network: networks.Network, path: str | os.PathLike, *, dynamic: bool = False, description: str = ""
) -> GexfSummary:
    """Write ``network`` to ``path`` as GEXF 1.3 (the dynamic variant when ``dynamic``)."""
    target = Path(path)
    description = description or (
        f"{network.name}: {network.nodes.height} nodes, {network.edges.height} edges, from {network.records} records"
    )
    has_days = dynamic and "days" in network.edges.columns
    spells = int(network.edges["days"].list.len().sum() or 0) if has_days else 0
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(handle, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(_document(network, dynamic, description))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return GexfSummary(
        path=target, nodes=network.nodes.height, edges=network.edges.height, spells=spells, size=target.stat().st_size
    )


def read_network(slug: str, month: str, name: str) -> networks.Network:
    """The network ``networks.write_network`` stored for the corpus."""
    if name not in networks.NETWORKS:
        raise ValueError(f"unknown network '{name}'; choose one of {', '.join(networks.NETWORKS)}")
    summary = analysis_store.read_table(slug, month, f"{name}_summary")
    figures = summary.row(0, named=True) if summary.height else {}
    return networks.Network(
        name=name,
        nodes=analysis_store.read_table(slug, month, f"{name}_nodes"),
        edges=analysis_store.read_table(slug, month, f"{name}_edges"),
        records=int(figures.get("records") or 0),
        info={key: value for key, value in figures.items() if key not in _SUMMARY_FIGURES and value is not None},
    )
