"""GEXF 1.3 files of the stored networks, for Gephi and networkx.

A file holds one network exactly as ``core.networks`` builds and stores it (what its nodes and
edges are is documented there): one ``<node>`` per row of the node table, one ``<edge>`` per row
of the edge table, in the tables' order.

- ``<graph defaultedgetype="undirected">``. A node carries its ``id`` and ``label``; an edge its
  row number as ``id``, ``source``, ``target`` and ``weight``.
- Every other column is a static attribute, declared once in ``<attributes class="node|edge">``
  with the column name as title (ids are short numbers: an ``<attvalue for>`` repeats it on every
  element), and given per element as ``<attvalue>`` (left out when null). Types: integers
  ``long``, floats ``double``, booleans ``boolean``, strings ``string``, dates ``string`` in ISO
  form (``YYYY-MM-DD``; GEXF 1.3 has no date attribute type), lists (``platforms``, ``days``,
  ``shared_terms``) ``liststring``.
- A ``liststring`` value is a JSON array of strings, ``["bluesky", "x_twitter"]``: Gephi parses
  that as its array syntax (every item a quoted literal, so commas and spaces inside a term are
  safe), and networkx, which keeps liststring values as text, gives it back to ``json.loads``.
- The dynamic variant (``mode="dynamic" timeformat="date"``) adds time for Gephi's timeline: a
  node lives from ``first_seen`` to ``last_seen`` (its ``start`` and ``end``), an edge on its
  ``days``, as ``<spells>`` of consecutive days (``<spell start=first end=last>``, both ends
  included). Time is said once: the dynamic file leaves out the ``days``, ``first_seen`` and
  ``last_seen`` attributes that the spells and ``start``/``end`` carry; every other attribute
  is static, declared once and written once per element, never per time slice. Gephi shows an
  edge only while both its nodes live, so an actor_cooccurrence edge is hidden on a day of its
  ``days`` that lies outside one actor's own first and last record.
- Size bound: a file stays within ``max_bytes`` (``MAX_FILE_BYTES``, 50 MB, by default). When
  the whole network would not fit, the file holds the strongest edges that do (the edge table
  is ordered by weight, heaviest first) and only the nodes they touch; ``GexfSummary`` and the
  file's description say how many edges and nodes were left out. The Parquet tables always
  hold the whole network. Gephi's own README puts its practical range at "networks up to a
  million elements" (https://github.com/gephi/gephi); a 50 MB file holds about 85,000 (static)
  to 110,000 (dynamic) actor–term edges with their attributes and nodes, well inside it.
- ``<meta lastmodifieddate>`` holds the writing date (UTC), a creator and a description.

The file is UTF-8, one line per node and per edge. Characters XML cannot carry (control
characters other than tab and line breaks) are dropped and markup characters escaped. Lines are
written as they are made from slices of the frames, so the document is never whole in memory,
into a temporary file beside the target that replaces it only once complete: a failed write
leaves the previous file, or none. The lines are made twice: once to measure them against the
size bound, once to write the part that fits.
"""

from __future__ import annotations

import bisect
import dataclasses
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
#: Largest file written by default, in bytes.
MAX_FILE_BYTES = 50_000_000
#: The columns the dynamic variant carries as time (spells, start and end), not as attributes.
_TIME_COLUMNS = ("days", "first_seen", "last_seen")
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
    #: Edge spells written (the dynamic variant's runs of consecutive days); 0 for the static variant.
    spells: int
    size: int
    #: Edges and nodes of the network left out to keep the file within its size bound.
    edges_left_out: int = 0
    nodes_left_out: int = 0


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


def _attributes(frame: pl.DataFrame, fixed: tuple[str, ...], dynamic: bool) -> dict[str, tuple[str, Callable]]:
    missing = [column for column in fixed if column not in frame.columns]
    if missing:
        raise ValueError(f"a network table lacks the column '{missing[0]}'")
    left_out = fixed + (_TIME_COLUMNS if dynamic else ())
    return {name: _attribute_type(name, dtype) for name, dtype in frame.schema.items() if name not in left_out}


def _rows(frame: pl.DataFrame) -> Iterator[dict]:
    for chunk in frame.iter_slices(_SLICE_ROWS):
        yield from chunk.iter_rows(named=True)


def _declarations(kind: str, attributes: dict[str, tuple[str, Callable]]) -> str:
    declared = "".join(
        _tag("attribute", {"id": str(number), "title": name, "type": gexf_type})
        for number, (name, (gexf_type, _)) in enumerate(attributes.items())
    )
    return _tag("attributes", {"class": kind, "mode": "static"}, ">") + declared + "</attributes>\n"


def _attvalues(row: dict, attributes: dict[str, tuple[str, Callable]]) -> str:
    values = "".join(
        _tag("attvalue", {"for": str(number), "value": write(row[name])})
        for number, (name, (_, write)) in enumerate(attributes.items())
        if row[name] is not None
    )
    return f"<attvalues>{values}</attvalues>" if values else ""


def day_runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted ``days`` as (first, last) runs of consecutive days: one spell each."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days == 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


@dataclass(frozen=True)
class _Layout:
    """What every line of one file is made from."""

    dynamic: bool
    node_attributes: dict[str, tuple[str, Callable]]
    edge_attributes: dict[str, tuple[str, Callable]]

    def node(self, row: dict) -> str:
        attrib = {"id": row["id"]}
        if row["label"] is not None:
            attrib["label"] = row["label"]
        if self.dynamic and row.get("first_seen") is not None:
            attrib["start"] = row["first_seen"].isoformat()
        if self.dynamic and row.get("last_seen") is not None:
            attrib["end"] = row["last_seen"].isoformat()
        return _tag("node", attrib, ">") + _attvalues(row, self.node_attributes) + "</node>\n"

    def edge(self, index: int, row: dict) -> str:
        attrib = {"id": str(index), "source": row["source"], "target": row["target"], "weight": str(row["weight"])}
        spells = ""
        # <spells> needs at least one <spell>.
        if self.dynamic and row.get("days"):
            spells = (
                "<spells>"
                + "".join(f'<spell start="{a.isoformat()}" end="{b.isoformat()}"/>' for a, b in day_runs(row["days"]))
                + "</spells>"
            )
        return _tag("edge", attrib, ">") + _attvalues(row, self.edge_attributes) + spells + "</edge>\n"


def _layout(network: networks.Network, dynamic: bool) -> _Layout:
    return _Layout(
        dynamic=dynamic,
        node_attributes=_attributes(network.nodes, ("id", "label"), dynamic),
        edge_attributes=_attributes(network.edges, ("source", "target", "weight"), dynamic),
    )


def _head(network: networks.Network, layout: _Layout, description: str) -> str:
    graph = {"defaultedgetype": "undirected", "mode": "dynamic" if layout.dynamic else "static"}
    if layout.dynamic:
        graph["timeformat"] = "date"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + _tag("gexf", {"xmlns": NAMESPACE, "version": "1.3"}, ">\n")
        + _tag("meta", {"lastmodifieddate": datetime.now(timezone.utc).date().isoformat()}, ">")
        + f"<creator>{CREATOR}</creator><description>{_text(description)}</description></meta>\n"
        + _tag("graph", graph, ">\n")
        + _declarations("node", layout.node_attributes)
        + _declarations("edge", layout.edge_attributes)
    )


def _document(network: networks.Network, layout: _Layout, description: str) -> Iterator[str]:
    """The file, a line at a time."""
    yield _head(network, layout, description)
    yield _tag("nodes", {"count": str(network.nodes.height)}, ">\n")
    for row in _rows(network.nodes):
        yield layout.node(row)
    yield "</nodes>\n" + _tag("edges", {"count": str(network.edges.height)}, ">\n")
    for index, row in enumerate(_rows(network.edges)):
        yield layout.edge(index, row)
    yield _TAIL


_TAIL = "</edges>\n</graph>\n</gexf>\n"


def _utf8_bytes(line: str) -> int:
    return len(line.encode())


def fitting_part(network: networks.Network, layout: _Layout, description: str, max_bytes: int) -> networks.Network:
    """The part of ``network`` whose file fits in ``max_bytes``: the longest run of its edges, in
    table order (heaviest first), whose lines and those of the nodes they touch fit beside the
    head and tail; the whole network when it fits."""
    node_bytes = {row["id"]: _utf8_bytes(layout.node(row)) for row in _rows(network.nodes)}
    frame = sum(
        _utf8_bytes(part)
        for part in (
            _tag("nodes", {"count": str(network.nodes.height)}, ">\n"),
            "</nodes>\n" + _tag("edges", {"count": str(network.edges.height)}, ">\n"),
            _TAIL,
        )
    )
    whole_budget = max_bytes - frame - _utf8_bytes(_head(network, layout, description))
    # A cut file's description says so; counts only get shorter, so the whole network's bound them.
    note = _left_out_note(network.edges.height, network.edges.height)
    cut_budget = max_bytes - frame - _utf8_bytes(_head(network, layout, description + note))
    # Edges are taken in order, each with the nodes it is first to touch, until one does not fit;
    # nodes without any edge come last. used[i] = the bytes of the first i + 1 edges and their nodes.
    used: list[int] = []
    touched: set[str] = set()
    for index, row in enumerate(_rows(network.edges)):
        new = {row["source"], row["target"]} - touched
        total = (used[-1] if used else 0) + _utf8_bytes(layout.edge(index, row)) + sum(node_bytes[n] for n in new)
        if total > whole_budget:
            break
        used.append(total)
        touched |= new
    untouched = sum(size for node, size in node_bytes.items() if node not in touched)
    if len(used) == network.edges.height and (used[-1] if used else 0) + untouched <= whole_budget:
        return network
    kept = bisect.bisect_right(used, cut_budget)
    edges = network.edges.head(kept)
    ends = pl.concat([edges["source"], edges["target"]]).implode()
    return dataclasses.replace(network, nodes=network.nodes.filter(pl.col("id").is_in(ends)), edges=edges)


def _left_out_note(left_out: int, edges: int) -> str:
    return f" The file holds the {edges - left_out:,} strongest of {edges:,} edges (size bound); the Parquet tables hold all."


def write_gexf(
    network: networks.Network,
    path: str | os.PathLike,
    *,
    dynamic: bool = False,
    description: str = "",
    max_bytes: int = MAX_FILE_BYTES,
) -> GexfSummary:
    """Write ``network`` to ``path`` as GEXF 1.3 (the dynamic variant when ``dynamic``), within
    ``max_bytes``: the strongest edges that fit when the whole network does not."""
    target = Path(path)
    description = description or (
        f"{network.name}: {network.nodes.height} nodes, {network.edges.height} edges, from {network.records} records"
    )
    layout = _layout(network, dynamic)
    written = fitting_part(network, layout, description, max_bytes)
    edges_left_out = network.edges.height - written.edges.height
    if edges_left_out:
        description += _left_out_note(edges_left_out, network.edges.height)
    has_days = dynamic and "days" in written.edges.columns
    spells = sum(len(day_runs(days)) for days in written.edges["days"]) if has_days else 0
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(handle, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(_document(written, layout, description))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return GexfSummary(
        path=target,
        nodes=written.nodes.height,
        edges=written.edges.height,
        spells=spells,
        size=target.stat().st_size,
        edges_left_out=edges_left_out,
        nodes_left_out=network.nodes.height - written.nodes.height,
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
