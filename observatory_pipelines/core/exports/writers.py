"""Export one corpus (query design × month) as the files researchers download.

Content files hold one row per record, in ``COLUMNS`` order, sorted by publication time:

- CSV: UTF-8 with a byte-order mark (so Excel reads æøå right), RFC 4180 quoting, ``\\n`` line
  ends. Written by PostgreSQL's own ``COPY ... TO STDOUT (FORMAT csv)``, straight to disk. Cells
  are verbatim: a text starting with ``=`` stays as it was posted, so open the XLSX in a
  spreadsheet (where text never becomes a formula) rather than the CSV.
- NDJSON: one JSON object per line, built by PostgreSQL (each value by ``to_json``): UUIDs and
  times as strings, counts as numbers, ``search_terms_matched`` as an array, ``raw_metadata`` as
  an object.
- Parquet: typed (``published_at`` a UTC timestamp, counts int64, ``search_terms_matched`` a list
  of strings), zstd-compressed, one row group per 32 MiB block of the COPY stream: the stream is
  cut into blocks of whole rows on this thread while the block before is parsed and written on
  another, so memory holds a few blocks however large the corpus.
- XLSX: a workbook made by openpyxl in write-only mode (bold, frozen, filterable header; set column
  widths; ``published_at`` as an Excel date-time in UTC), whose data rows are then streamed into
  the sheets by ``_SheetRows``. Filling the rows through openpyxl measured 9k rows/s here; writing
  the same cells directly measured 68k. A corpus longer than a sheet continues on "content (2)"
  and so on, each with the header. Excel cells hold at most 32,767 characters: longer texts are
  cut there (the count is reported) and are whole in the other formats.

Times are ISO 8601 in UTC everywhere (``2026-03-01T12:00:00+00:00``); ``search_terms_matched`` is
a JSON array in CSV and XLSX. Records the dedup pass marked as duplicates are left out unless
``include_duplicates`` (then a ``duplicate_of`` column says which record each copies);
``raw_metadata`` is added only when asked. No export is ever held whole in memory.

Who the files name follows ``core.exports.identity`` (``ExportOptions.identity``, pseudonymised
unless the design records a legal basis for identified exports): the writers select the
expressions it gives for ``author_display_name``, ``url`` and ``raw_metadata``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import queue
import re
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa

from observatory_pipelines.core.analysis.networks import NETWORKS
from observatory_pipelines.core.collection.designs import Corpus
from observatory_pipelines.core.exports import identity as export_identity
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports.identity import Identity
from observatory_pipelines.core.exports.layout import ExportFile, ExportMetadata
from observatory_pipelines.core.platform import database, months
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage import ObjectStore, StoredObject

UTF8_BOM = b"\xef\xbb\xbf"
#: Rows on one Excel sheet, header included (Excel's limit).
EXCEL_MAX_ROWS = 1_048_576
#: Characters in one Excel cell (Excel's limit; a longer cell makes Excel "repair" the file).
EXCEL_MAX_CELL_CHARS = 32_767
_XLSX_DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"
_FETCH_ROWS = 5_000
_PARQUET_BLOCK_BYTES = 32 * 1024 * 1024
#: pyarrow parses a block in pieces of this size, in parallel.
_PARSE_BLOCK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Column:
    name: str
    #: The SELECT expression. CSV, Parquet and XLSX read it; NDJSON uses ``json``.
    sql: str
    arrow: pa.DataType
    #: XLSX column width, in characters.
    width: float
    #: The NDJSON value expression (native PostgreSQL types, so arrays and objects stay JSON).
    json: str = ""

    @property
    def json_sql(self) -> str:
        return self.json or self.sql


_ISO_TIME = "to_json(published_at) #>> '{}'"
_TEXT, _COUNT = pa.string(), pa.int64()

COLUMNS: tuple[Column, ...] = (
    Column("platform", "platform", _TEXT, 12),
    Column("arena", "arena", _TEXT, 12),
    Column("content_type", "content_type", _TEXT, 12),
    Column("title", "title", _TEXT, 40),
    Column("text_content", "text_content", _TEXT, 80),
    Column("url", "url", _TEXT, 40),
    Column("author_display_name", "author_display_name", _TEXT, 24),
    Column("pseudonymized_author_id", "pseudonymized_author_id", _TEXT, 20),
    Column("published_at", _ISO_TIME, pa.timestamp("us", tz="UTC"), 20, json="published_at"),
    Column("views_count", "views_count", _COUNT, 11),
    Column("likes_count", "likes_count", _COUNT, 11),
    Column("shares_count", "shares_count", _COUNT, 11),
    Column("comments_count", "comments_count", _COUNT, 11),
    Column("language", "language", _TEXT, 9),
    Column("collection_tier", "collection_tier", _TEXT, 10),
    Column(
        "search_terms_matched",
        "array_to_json(search_terms_matched)::text",
        pa.list_(pa.string()),
        30,
        json="search_terms_matched",
    ),
)
DUPLICATE_OF = Column("duplicate_of", "raw_metadata ->> 'duplicate_of'", _TEXT, 38)
RAW_METADATA = Column("raw_metadata", "raw_metadata::text", _TEXT, 60, json="raw_metadata")
_LIST_COLUMNS = {"search_terms_matched"}


@dataclass(frozen=True)
class ExportOptions:
    include_duplicates: bool = False
    include_raw_metadata: bool = False
    #: Who the files name (pseudonymised unless the design records a legal basis).
    identity: Identity = export_identity.DEFAULT

    def columns(self) -> tuple[Column, ...]:
        """The columns written, each selected as the identity rule says."""
        extra = ((DUPLICATE_OF,) if self.include_duplicates else ()) + (
            (RAW_METADATA,) if self.include_raw_metadata else ()
        )
        return tuple(self._with_identity(column) for column in COLUMNS + extra)

    def _with_identity(self, column: Column) -> Column:
        expression = export_identity.column_sql(column.name, self.identity)
        if expression is None:
            return column
        if column.name == RAW_METADATA.name:  # jsonb: text for CSV, XLSX and Parquet, JSON for NDJSON
            return dataclasses.replace(column, sql=f"({expression})::text", json=expression)
        return dataclasses.replace(column, sql=expression, json="")


@dataclass(frozen=True)
class WrittenFile:
    """An export file written to local disk."""

    path: Path
    rows: int
    size: int
    sha256: str
    #: Format-specific figures (XLSX: sheets, cells_truncated).
    details: dict[str, int] = field(default_factory=dict)


# --- reading the corpus ------------------------------------------------------------------------


def _select(corpus: Corpus, options: ExportOptions, expressions: list[str]) -> tuple[str, tuple]:
    start, end = months.month_bounds(corpus.month)
    where = "query_design_id = %s AND published_at >= %s AND published_at < %s"
    if not options.include_duplicates:
        where += " AND NOT (raw_metadata ? 'duplicate_of')"
    sql = f"SELECT {', '.join(expressions)} FROM content_records WHERE {where} ORDER BY published_at, id"
    return sql, (str(corpus.design_id), start, end)


@contextmanager
def _cursor(engine: sa.Engine) -> Iterator:
    """A psycopg cursor in a read-only transaction whose times print in UTC."""
    with database.driver_connection(engine, commit=False) as connection, connection.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        yield cur


def _copy_out(engine: sa.Engine, statement: str, params: tuple, write: Callable[[bytes], object]) -> int:
    """Run a ``COPY ... TO STDOUT``, handing each chunk to ``write``; the number of rows."""
    with _cursor(engine) as cur:
        with cur.copy(statement, params) as copy:
            for chunk in copy:
                write(chunk)
        return cur.rowcount


def _pipelined(blocks: Iterator[bytes], consume: Callable[[bytes], None]) -> None:
    """``consume`` each block on a second thread while the next is read on this one; at most one
    block waits between them. (pyarrow's own streaming CSV reader reads up to 32 blocks ahead of
    the consumer, so its memory grew with the corpus whenever writing fell behind reading.)"""
    waiting: queue.Queue = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def work() -> None:
        while (block := waiting.get()) is not None:
            if failed:
                continue  # drain, so the reading thread never blocks on a dead consumer
            try:
                consume(block)
            except BaseException as err:  # re-raised on the calling thread
                failed.append(err)

    worker = threading.Thread(target=work, name="export-parquet", daemon=True)
    worker.start()
    try:
        for block in blocks:
            if failed:
                break
            waiting.put(block)
    finally:
        waiting.put(None)
        worker.join()
    if failed:
        raise failed[0]


# --- writers -----------------------------------------------------------------------------------


def write_csv(engine: sa.Engine, corpus: Corpus, path: Path, options: ExportOptions = ExportOptions()) -> WrittenFile:
    columns = options.columns()
    sql, params = _select(corpus, options, [f"{c.sql} AS {c.name}" for c in columns])
    with open(path, "wb") as out:
        out.write(UTF8_BOM)
        rows = _copy_out(engine, f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", params, out.write)
    return _written(path, rows)


def _json_value(column: Column) -> str:
    """SQL for the column's value as JSON text; counts and ``raw_metadata`` (jsonb) are already."""
    if column.arrow == _COUNT or column.name == RAW_METADATA.name:
        return f"coalesce(({column.json_sql})::text, 'null')"
    return f"coalesce(to_json({column.json_sql})::text, 'null')"


def write_ndjson(
    engine: sa.Engine, corpus: Corpus, path: Path, options: ExportOptions = ExportOptions()
) -> WrittenFile:
    columns = options.columns()
    # The object concatenated from its values rather than json_build_object(...): the same objects,
    # keys in the same order, in 5% fewer bytes (json_build_object pads every colon with spaces) and
    # 5-25% less database time (bench/exports, docs/benchmarks.md).
    fields = " || ',' || ".join(f"'{json.dumps(c.name)}:' || {_json_value(c)}" for c in columns)
    sql, params = _select(corpus, options, [f"'{{' || {fields} || '}}'"])
    # PostgreSQL's JSON escapes every control character, so a line never holds a raw newline, \x01
    # or \x02: with those as quote and delimiter, CSV format writes each object untouched, where
    # text format would double every backslash.
    statement = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    with open(path, "wb") as out:
        rows = _copy_out(engine, statement, params, out.write)
    return _written(path, rows)


def parquet_schema(options: ExportOptions = ExportOptions()) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow) for c in options.columns()])


def write_parquet(
    engine: sa.Engine, corpus: Corpus, path: Path, options: ExportOptions = ExportOptions()
) -> WrittenFile:
    columns = options.columns()
    schema = parquet_schema(options)
    sql, params = _select(corpus, options, [f"{c.sql} AS {c.name}" for c in columns])
    read_options = pa_csv.ReadOptions(column_names=[c.name for c in columns], block_size=_PARSE_BLOCK_BYTES)
    parse_options = pa_csv.ParseOptions(newlines_in_values=True)
    convert_options = pa_csv.ConvertOptions(
        column_types={c.name: (pa.string() if c.name in _LIST_COLUMNS else c.arrow) for c in columns},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    rows = 0
    with _cursor(engine) as cur, pq.ParquetWriter(path, schema, compression="zstd") as writer:

        def write(block: bytes) -> None:
            nonlocal rows
            # The streaming reader, not read_csv: read_csv's threaded reader once failed here with
            # "a chunk failed converting for an unknown reason" (pyarrow 26, 1 MiB pieces).
            table = pa_csv.open_csv(io.BytesIO(block), read_options, parse_options, convert_options).read_all()
            writer.write_table(_typed_batch(table, schema))  # one row group
            rows += table.num_rows

        with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
            _pipelined(database.copy_row_blocks(copy, _PARQUET_BLOCK_BYTES), write)
    return _written(path, rows)


def _typed_batch(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for column in schema:
        values = batch.column(column.name)
        if column.name in _LIST_COLUMNS:
            decoded = pl.Series(values).str.json_decode(pl.List(pl.Utf8))
            values = decoded.to_arrow().cast(column.type)
        arrays.append(values)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_xlsx(
    engine: sa.Engine,
    corpus: Corpus,
    path: Path,
    options: ExportOptions = ExportOptions(),
    rows_per_sheet: int = EXCEL_MAX_ROWS - 1,
) -> WrittenFile:
    """``rows_per_sheet`` data rows per sheet (below the header); a smaller value is for tests."""
    columns = options.columns()
    expressions = [("published_at" if c.name == "published_at" else c.sql) + f" AS {c.name}" for c in columns]
    sql, params = _select(corpus, options, expressions)
    count_sql, _ = _select(corpus, options, ["count(*)"])
    count_sql = count_sql.removesuffix(" ORDER BY published_at, id")
    with _cursor(engine) as cur:
        # One snapshot (REPEATABLE READ) for the count that sizes the sheets and the rows that fill them.
        total = cur.execute(count_sql, params).fetchone()[0]
        sheets = max(1, -(-total // rows_per_sheet))
        skeleton = _xlsx_skeleton(columns, [min(rows_per_sheet, total - i * rows_per_sheet) for i in range(sheets)])
        cur.execute(f"DECLARE export_rows NO SCROLL CURSOR FOR {sql}", params)
        fetch = lambda: cur.execute(f"FETCH FORWARD {_FETCH_ROWS} FROM export_rows").fetchall()  # noqa: E731
        truncated = _fill_workbook(skeleton, path, columns, fetch, rows_per_sheet)
    return _written(path, total, {"sheets": sheets, "cells_truncated": truncated})


# --- XLSX --------------------------------------------------------------------------------------

_SAMPLE_DATE = datetime(2000, 1, 1)
_SAMPLE_ROW = re.compile(rb'<row r="2"[^>]*>.*?</row>', re.S)
_STYLE = re.compile(rb'\bs="(\d+)"')
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EXCEL_EPOCH = datetime(1899, 12, 30, tzinfo=timezone.utc)


def sheet_name(index: int) -> str:
    return "content" if index == 0 else f"content ({index + 1})"


def _xlsx_skeleton(columns: tuple[Column, ...], rows_on_sheet: list[int]) -> bytes:
    """The workbook as openpyxl makes it: styles, sheets, header, widths, frozen pane, filter.
    Each sheet also holds one sample date cell, so its style id can be read back; it is replaced
    by the real rows."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    date_column = next(i for i, c in enumerate(columns) if c.name == "published_at")
    last_column = get_column_letter(len(columns))
    for index, rows in enumerate(rows_on_sheet):
        sheet = workbook.create_sheet(sheet_name(index))
        sheet.freeze_panes = "A2"
        sheet.auto_filter.ref = f"A1:{last_column}{rows + 1}"
        for number, column in enumerate(columns, start=1):
            sheet.column_dimensions[get_column_letter(number)].width = column.width
        header = []
        for column in columns:
            cell = WriteOnlyCell(sheet, value=column.name)
            cell.font = Font(bold=True)
            header.append(cell)
        sheet.append(header)
        sample = WriteOnlyCell(sheet, value=_SAMPLE_DATE)
        sample.number_format = _XLSX_DATE_FORMAT
        sheet.append([None] * date_column + [sample])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _sheet_number(name: str) -> int:
    match = re.search(r"(\d+)\.xml$", name)
    assert match is not None  # openpyxl names its sheets xl/worksheets/sheet<N>.xml
    return int(match.group(1))


def _fill_workbook(skeleton: bytes, path: Path, columns, fetch, rows_per_sheet: int) -> int:
    """Copy the skeleton to ``path``, streaming the fetched rows into its sheets in order."""
    truncated = 0
    pending: list[tuple] = []
    with (
        zipfile.ZipFile(io.BytesIO(skeleton)) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target,
    ):
        sheets = sorted(
            (n for n in source.namelist() if n.startswith("xl/worksheets/sheet")),
            key=_sheet_number,
        )
        for name in source.namelist():
            if name not in sheets:
                target.writestr(source.getinfo(name), source.read(name))
        for name in sheets:  # in sheet order, as the rows arrive
            xml = source.read(name)
            sample = _SAMPLE_ROW.search(xml)
            assert sample is not None  # _xlsx_skeleton wrote a sample row into every sheet
            style = _STYLE.search(sample.group(0))
            assert style is not None  # openpyxl gives the styled sample cell its style id
            date_style = style.group(1).decode()
            writer = _SheetRows(columns, date_style)
            with target.open(name, "w", force_zip64=True) as out:
                out.write(xml[: sample.start()])
                written = 0
                while written < rows_per_sheet:
                    if not pending:
                        pending = fetch()
                        if not pending:
                            break
                    take = pending[: rows_per_sheet - written]
                    pending = pending[len(take) :]
                    out.write(writer.rows(take, first_row=written + 2))
                    written += len(take)
                out.write(xml[sample.end() :])
            truncated += writer.truncated
    return truncated


class _SheetRows:
    """Encodes rows as SpreadsheetML ``<row>`` elements with inline strings."""

    def __init__(self, columns: tuple[Column, ...], date_style: str):
        from openpyxl.utils import get_column_letter

        self.truncated = 0
        kinds = {"published_at": self._date}
        self._cells = [
            (get_column_letter(i), kinds.get(c.name) or (self._number if c.arrow == _COUNT else self._text))
            for i, c in enumerate(columns, start=1)
        ]
        self._date_style = date_style

    def rows(self, rows: list[tuple], first_row: int) -> bytes:
        cells = self._cells
        parts = []
        for number, row in enumerate(rows, start=first_row):
            parts.append(f'<row r="{number}">')
            for (letter, encode), value in zip(cells, row):
                if value is not None:
                    parts.append(encode(f"{letter}{number}", value))
            parts.append("</row>")
        return "".join(parts).encode("utf-8")

    def _text(self, ref: str, value) -> str:
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        value = _XML_ILLEGAL.sub("", value)
        if len(value) > EXCEL_MAX_CELL_CHARS:
            value = value[:EXCEL_MAX_CELL_CHARS]
            self.truncated += 1
        if "&" in value or "<" in value or ">" in value:
            value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'

    @staticmethod
    def _number(ref: str, value) -> str:
        return f'<c r="{ref}"><v>{int(value)}</v></c>'

    def _date(self, ref: str, value: datetime) -> str:
        serial = (value - _EXCEL_EPOCH).total_seconds() / 86400
        return f'<c r="{ref}" s="{self._date_style}"><v>{serial!r}</v></c>'


# --- files and storage -------------------------------------------------------------------------

WRITERS = {"csv": write_csv, "ndjson": write_ndjson, "parquet": write_parquet, "xlsx": write_xlsx}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _written(path: Path, rows: int, details: dict[str, int] | None = None) -> WrittenFile:
    return WrittenFile(path=path, rows=rows, size=os.path.getsize(path), sha256=sha256_of(path), details=details or {})


@dataclass(frozen=True)
class StoredExport:
    key: str
    uri: str
    stored: StoredObject
    file: WrittenFile


def store_file(
    store: ObjectStore, corpus: Corpus, file: ExportFile, written: WrittenFile, options: ExportOptions
) -> StoredExport:
    """Upload ``written`` under the corpus's key for ``file``, recording its checksum, options and
    identity level. Any other file first withdraws the corpus's manifest, which is written again
    last (``manifest.export_manifest``): a manifest never describes a file since replaced."""
    key = export_layout.corpus_export_key(corpus, file)
    metadata = ExportMetadata(
        sha256=written.sha256,
        rows=written.rows,
        include_duplicates=options.include_duplicates,
        include_raw_metadata=options.include_raw_metadata,
        identity=options.identity.level,
    )
    if file != export_layout.MANIFEST:
        store.delete(export_layout.corpus_export_key(corpus, export_layout.MANIFEST))
    stored = store.put_file(key, written.path, file.content_type, metadata.to_object_metadata())
    return StoredExport(key=key, uri=store.uri(key), stored=stored, file=written)


def export_content(
    engine: sa.Engine, store: ObjectStore, corpus: Corpus, fmt: str, options: ExportOptions = ExportOptions()
) -> StoredExport:
    """Write one content format of a corpus to a temporary file and store it."""
    file = export_layout.content_file(fmt)
    with tempfile.TemporaryDirectory(prefix="observatory-export-") as folder:
        written = WRITERS[fmt](engine, corpus, Path(folder) / file.filename, options)
        return store_file(store, corpus, file, written, options)


def export_networks(
    engine: sa.Engine, store: ObjectStore, corpus: Corpus, identity: Identity = export_identity.DEFAULT
) -> list[StoredExport]:
    """Write each stored network of a corpus as GEXF 1.3, static and dynamic, and store them; actor
    labels follow the identity rule (``identity.label_actors``)."""
    from observatory_pipelines.core.exports import gexf

    slug, month = corpus.slug, corpus.month
    options = ExportOptions(identity=identity)
    labels = export_identity.actor_labels(engine, corpus, identity)
    stored = []
    with tempfile.TemporaryDirectory(prefix="observatory-export-") as folder:
        for name in NETWORKS:
            try:
                network = gexf.read_network(slug, month, name)
            except FileNotFoundError:
                raise ConfigError(
                    f"the {name} network of '{slug}' {month} has not been built: materialize the corpus's "
                    "networks for that partition first"
                ) from None
            network = dataclasses.replace(network, nodes=export_identity.label_actors(network.nodes, labels))
            for file in (ExportFile("gexf", name, False), ExportFile("gexf", name, True)):
                path = Path(folder) / file.filename
                summary = gexf.write_gexf(
                    network,
                    path,
                    dynamic=file.dynamic,
                    description=f"{name} network of query design '{slug}', {month}",
                )
                written = WrittenFile(
                    path=path,
                    rows=summary.edges,
                    size=summary.size,
                    sha256=sha256_of(path),
                    details={
                        "nodes": summary.nodes,
                        "edges": summary.edges,
                        # Left out to keep the file within gexf.MAX_FILE_BYTES: the strongest edges stay.
                        "edges_left_out": summary.edges_left_out,
                        "nodes_left_out": summary.nodes_left_out,
                    },
                )
                stored.append(store_file(store, corpus, file, written, options))
                path.unlink()
    return stored
