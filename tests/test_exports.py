"""Content exports, opened the way researchers' tools open them (csv, polars, pyarrow, openpyxl,
LibreOffice where installed)."""

from __future__ import annotations

import csv
import json
import subprocess
from datetime import datetime

import openpyxl
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.core.exports.writers import ExportOptions
from tests.factories import LONG_TEXT, MARCH, at, corpus_of, needs_tool

HEADER = [c.name for c in exports.COLUMNS]


@pytest.fixture
def ref(engine, export_corpus):
    return corpus_of(engine, "klimadebat", MARCH)


def test_exports_are_stored_in_the_owners_folder(engine, ref):
    owner = export_layout.owner_folder(ref.owner_id)
    assert owner == f"user-{ref.owner_id}" and "@" not in owner  # no e-mail address in keys or links
    key = export_layout.corpus_export_key(ref, export_layout.content_file("csv"))
    assert key == f"exports/{owner}/klimadebat/2026-03/content.csv"


def test_csv_has_a_bom_and_round_trips_through_csv_and_polars(engine, ref, tmp_path):
    written = exports.write_csv(engine, ref, tmp_path / "content.csv")
    raw = written.path.read_bytes()
    assert raw.startswith(exports.UTF8_BOM)
    assert written.rows == 5 and written.size == len(raw)

    with open(written.path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == HEADER
    assert [r["text_content"] for r in rows][:3] == [
        'Han sagde: "klima, nu!"\nNy linje; æøå ÆØÅ',
        '=HYPERLINK("http://evil")',
        "Kontroltegn:\x01\x02\x07 slut & <b>fed</b>",
    ]
    assert rows[0]["author_display_name"] == "Søren Ærø"
    assert rows[0]["published_at"] == "2026-03-01T10:00:00+00:00"
    assert rows[1]["published_at"] == "2026-03-02T09:00:00.123456+00:00"
    assert json.loads(rows[0]["search_terms_matched"]) == ["klima", "grøn omstilling"]
    assert rows[3]["text_content"] == LONG_TEXT  # CSV keeps every character
    assert "duplicate_of" not in rows[0] and "raw_metadata" not in rows[0]

    frame = pl.read_csv(written.path, infer_schema=False)
    assert frame.columns == HEADER and frame.height == 5
    assert frame["platform_id" if "platform_id" in frame.columns else "url"][4].endswith("/r1")
    # NULL and "" stay apart: a missing title is empty, an empty text is quoted.
    assert frame["title"][1] is None and frame["text_content"][4] == ""


def test_duplicates_and_raw_metadata_on_request(engine, ref, tmp_path):
    options = ExportOptions(include_duplicates=True, include_raw_metadata=True)
    written = exports.write_csv(engine, ref, tmp_path / "content.csv", options)
    frame = pl.read_csv(written.path, infer_schema=False)
    assert frame.columns == HEADER + ["duplicate_of", "raw_metadata"]
    assert written.rows == 6
    duplicates = frame.filter(pl.col("duplicate_of").is_not_null())
    assert duplicates.height == 1 and duplicates["likes_count"][0] == "1000"
    assert "duplicate_of" in json.loads(duplicates["raw_metadata"][0])


def test_ndjson_is_one_typed_object_per_line(engine, ref, tmp_path):
    written = exports.write_ndjson(engine, ref, tmp_path / "content.ndjson", ExportOptions(include_raw_metadata=True))
    lines = written.path.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 6 == written.rows + 1
    objects = [json.loads(line) for line in lines[:-1]]
    assert list(objects[0]) == HEADER + ["raw_metadata"]
    first, second, third = objects[:3]
    assert first["text_content"] == 'Han sagde: "klima, nu!"\nNy linje; æøå ÆØÅ'
    assert first["published_at"] == "2026-03-01T10:00:00+00:00"
    assert first["views_count"] == 1200 and first["comments_count"] == 3 and second["shares_count"] is None
    assert first["search_terms_matched"] == ["klima", "grøn omstilling"] and third["search_terms_matched"] == []
    assert third["text_content"] == "Kontroltegn:\x01\x02\x07 slut & <b>fed</b>"
    assert third["pseudonymized_author_id"] is None
    assert isinstance(first["raw_metadata"], dict)
    assert pl.read_ndjson(written.path).height == 5


def test_parquet_is_typed_and_reads_in_pyarrow_and_polars(engine, ref, tmp_path):
    written = exports.write_parquet(engine, ref, tmp_path / "content.parquet")
    table = pq.read_table(written.path)
    assert table.schema == exports.parquet_schema()
    assert table.schema.field("published_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("likes_count").type == pa.int64()
    assert table.schema.field("search_terms_matched").type == pa.list_(pa.string())
    assert written.rows == table.num_rows == 5
    assert pq.ParquetFile(written.path).metadata.num_row_groups == 1  # not a row group per COPY row
    rows = table.to_pylist()
    assert rows[0]["published_at"] == at(1, 10)
    assert rows[1]["published_at"] == at(2, 9, micro=123456)
    assert rows[0]["search_terms_matched"] == ["klima", "grøn omstilling"]
    assert rows[2]["search_terms_matched"] == []
    assert rows[0]["text_content"] == 'Han sagde: "klima, nu!"\nNy linje; æøå ÆØÅ'
    assert rows[3]["text_content"] == LONG_TEXT
    assert rows[4]["text_content"] == "" and rows[4]["views_count"] is None

    frame = pl.read_parquet(written.path)
    assert frame.schema["published_at"] == pl.Datetime("us", "UTC")
    assert frame.schema["search_terms_matched"] == pl.List(pl.Utf8)
    assert frame["author_display_name"][0] == "Søren Ærø"


def test_xlsx_opens_in_openpyxl_with_styled_header_and_intact_letters(engine, ref, tmp_path):
    written = exports.write_xlsx(engine, ref, tmp_path / "content.xlsx")
    assert written.rows == 5 and written.details == {"sheets": 1, "cells_truncated": 1}
    workbook = openpyxl.load_workbook(written.path)
    assert workbook.sheetnames == ["content"]
    sheet = workbook["content"]
    header = [c.value for c in sheet[1]]
    assert header == HEADER
    assert all(c.font.bold for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:P6"
    assert sheet.column_dimensions["E"].width == 80  # text_content
    values = [dict(zip(header, (c.value for c in row))) for row in sheet.iter_rows(min_row=2)]
    assert len(values) == 5
    assert values[0]["text_content"] == 'Han sagde: "klima, nu!"\nNy linje; æøå ÆØÅ'
    assert values[0]["author_display_name"] == "Søren Ærø"
    assert values[0]["published_at"] == datetime(2026, 3, 1, 10)  # Excel has no zones: UTC
    assert values[0]["views_count"] == 1200 and values[1]["shares_count"] is None
    assert json.loads(values[0]["search_terms_matched"]) == ["klima", "grøn omstilling"]
    assert values[1]["text_content"] == '=HYPERLINK("http://evil")'  # text, never a formula
    assert sheet.cell(3, 5).data_type == "s"
    assert values[2]["text_content"] == "Kontroltegn: slut & <b>fed</b>"  # XML cannot hold \x01
    assert len(values[3]["text_content"]) == exports.EXCEL_MAX_CELL_CHARS
    assert values[4]["text_content"] is None or values[4]["text_content"] == ""


def test_xlsx_continues_on_further_sheets_without_losing_rows(engine, ref, tmp_path):
    written = exports.write_xlsx(engine, ref, tmp_path / "content.xlsx", rows_per_sheet=2)
    assert written.details["sheets"] == 3
    workbook = openpyxl.load_workbook(written.path, read_only=True)
    assert workbook.sheetnames == ["content", "content (2)", "content (3)"]
    times = []
    for sheet in workbook.worksheets:
        rows = list(sheet.iter_rows(values_only=True))
        assert list(rows[0]) == HEADER
        times += [row[HEADER.index("published_at")] for row in rows[1:]]
    assert [t.day for t in times] == [1, 2, 2, 9, 31]


def test_excel_row_limit_is_the_default_sheet_size(engine, ref, tmp_path):
    # Excel's own limit: 1,048,576 rows, one of them the header.
    assert exports.EXCEL_MAX_ROWS == 2**20
    written = exports.write_xlsx(engine, ref, tmp_path / "content.xlsx", rows_per_sheet=5)
    assert written.details["sheets"] == 1


@needs_tool("soffice", "libreoffice-calc-nogui")
def test_xlsx_opens_in_libreoffice(engine, ref, tmp_path):
    written = exports.write_xlsx(engine, ref, tmp_path / "content.xlsx", rows_per_sheet=3)
    out = tmp_path / "converted"
    subprocess.run(
        [
            "soffice",
            "--headless",
            f"-env:UserInstallation=file://{tmp_path}/lo-profile",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
            "--outdir",
            str(out),
            str(written.path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # -1 in the filter options writes every sheet to its own CSV file.
    assert sorted(p.name for p in out.glob("*.csv")) == ["content-content (2).csv", "content-content.csv"]
    with open(out / "content-content.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HEADER and len(rows) == 4
    assert rows[1][HEADER.index("author_display_name")] == "Søren Ærø"
    assert rows[1][HEADER.index("text_content")] == 'Han sagde: "klima, nu!"\nNy linje; æøå ÆØÅ'


def test_an_empty_month_exports_headers_only(engine, export_corpus, tmp_path):
    ref = corpus_of(engine, "klimadebat", "2026-02")
    csv_file = exports.write_csv(engine, ref, tmp_path / "content.csv")
    assert csv_file.rows == 0 and csv_file.path.read_text("utf-8-sig").strip().split(",") == HEADER
    assert exports.write_ndjson(engine, ref, tmp_path / "content.ndjson").size == 0
    parquet = exports.write_parquet(engine, ref, tmp_path / "content.parquet")
    assert pq.read_table(parquet.path).schema == exports.parquet_schema() and parquet.rows == 0
    xlsx = exports.write_xlsx(engine, ref, tmp_path / "content.xlsx")
    sheet = openpyxl.load_workbook(xlsx.path).active
    assert [c.value for c in sheet[1]] == HEADER and sheet.max_row == 1


def test_unknown_design_and_bad_month_are_clear_errors(engine, export_corpus):
    with pytest.raises(Exception, match="no query design with slug 'ingen'"):
        corpus_of(engine, "ingen", MARCH)
    with pytest.raises(ValueError, match="YYYY-MM"):
        corpus_of(engine, "klimadebat", "marts")


@pytest.mark.parametrize("fmt", export_layout.CONTENT_FORMATS)
def test_export_content_stores_the_file_with_its_checksum(engine, export_corpus, local_store, tmp_path, fmt):
    stored = exports.export_content(engine, local_store, corpus_of(engine, "klimadebat", MARCH), fmt)
    assert stored.key.endswith(f"/klimadebat/2026-03/content.{fmt}")
    local = local_store.root / stored.key
    assert local.is_file() and local.stat().st_size == stored.file.size
    assert exports.sha256_of(local) == stored.file.sha256
    meta = export_layout.ExportMetadata.from_object_metadata(local_store.stat(stored.key).metadata)
    assert meta.sha256 == stored.file.sha256 and meta.rows == 5 and not meta.include_duplicates
    assert not list(tmp_path.glob("observatory-export-*"))
