"""Load one corpus (query design × month) from ``content_records`` into a polars DataFrame.

Analysis works columnar: one ``COPY (SELECT ...) TO STDOUT`` streams just the columns a step
needs (never the text, unless asked), straight into polars. Arrays and JSON travel as JSON text
and are decoded by polars, so there is no per-row Python.

The stream is parsed in blocks of ``COPY_BLOCK_BYTES`` (``corpus_blocks``), each typed as it
arrives: the month's CSV text is never held whole, only one block of it beside the typed columns
(which are smaller: a time is 8 bytes, not 32 characters). A step that keeps only some of each
block (``statistics.load_analysis_corpus``) reads the blocks itself.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import polars as pl
import sqlalchemy as sa

from observatory_pipelines.core.collection import privacy
from observatory_pipelines.core.models import ITEM_COPY_KIND
from observatory_pipelines.core.platform import database, months

#: Column → (SQL select expression, polars dtype). Only these names can be asked for.
COLUMN_TYPES: dict[str, tuple[str, pl.DataType]] = {
    "id": ("id::text", pl.Utf8()),
    "published_at": ("published_at", pl.Datetime("us", "UTC")),
    "platform": ("platform", pl.Utf8()),
    "arena": ("arena", pl.Utf8()),
    "platform_id": ("platform_id", pl.Utf8()),
    "content_type": ("content_type", pl.Utf8()),
    "url": ("url", pl.Utf8()),
    "title": ("title", pl.Utf8()),
    "text_content": ("text_content", pl.Utf8()),
    "language": ("language", pl.Utf8()),
    "collected_at": ("collected_at", pl.Datetime("us", "UTC")),
    "author_platform_id": ("author_platform_id", pl.Utf8()),
    "author_display_name": ("author_display_name", pl.Utf8()),
    "author_id": ("author_id::text", pl.Utf8()),
    "pseudonymized_author_id": ("pseudonymized_author_id", pl.Utf8()),
    "views_count": ("views_count", pl.Int64()),
    "likes_count": ("likes_count", pl.Int64()),
    "shares_count": ("shares_count", pl.Int64()),
    "comments_count": ("comments_count", pl.Int64()),
    "engagement_score": ("engagement_score", pl.Float64()),
    "collection_run_id": ("collection_run_id::text", pl.Utf8()),
    "search_terms_matched": ("array_to_json(search_terms_matched)::text", pl.Utf8()),
    "collection_tier": ("collection_tier", pl.Utf8()),
    "raw_metadata": ("raw_metadata::text", pl.Utf8()),
    "media_urls": ("array_to_json(media_urls)::text", pl.Utf8()),
    "content_hash": ("content_hash", pl.Utf8()),
    "simhash": ("simhash", pl.Int64()),
    "duplicate_of": ("raw_metadata->>'duplicate_of'", pl.Utf8()),
    "is_public_figure": (privacy.PUBLIC_FIGURE_SQL, pl.Boolean()),
}
_JSON_LISTS = ("search_terms_matched", "media_urls")
#: Bytes of COPY output parsed at a time: tens of thousands of rows of the statistics columns. A
#: block's text is held only while it is parsed, whatever the month's size (2 MiB measured 10%
#: less peak at 1M records, for twice the blocks).
COPY_BLOCK_BYTES = 8 * 1024 * 1024


def load_corpus(
    engine: sa.Engine,
    query_design_id: uuid.UUID | str,
    month: str,
    columns: list[str],
    include_duplicates: bool = True,
    include_item_copies: bool = True,
) -> pl.DataFrame:
    """The corpus's rows with ``columns`` (names from ``COLUMN_TYPES``), ordered by time and id.

    ``include_duplicates=False`` leaves out every record marked ``duplicate_of``;
    ``include_item_copies=False`` only the further copies of an item (``models.ITEM_COPY_KIND``).
    The frame is made of one chunk per block read (``corpus_blocks``), not copied into one.
    """
    blocks = list(corpus_blocks(engine, query_design_id, month, columns, include_duplicates, include_item_copies))
    if not blocks:
        return empty_corpus(columns)
    return pl.concat(blocks, rechunk=False)


def empty_corpus(columns: list[str]) -> pl.DataFrame:
    """A corpus without rows, typed as ``load_corpus`` types ``columns``."""
    return pl.DataFrame(schema={c: pl.Utf8 for c in columns}).with_columns(
        [_typed(c, COLUMN_TYPES[c][1]) for c in columns]
    )


def corpus_blocks(
    engine: sa.Engine,
    query_design_id: uuid.UUID | str,
    month: str,
    columns: list[str],
    include_duplicates: bool = True,
    include_item_copies: bool = True,
    block_bytes: int | None = None,
) -> Iterator[pl.DataFrame]:
    """``load_corpus``'s rows as typed frames of consecutive rows, one per ``block_bytes`` (default
    ``COPY_BLOCK_BYTES``) of the COPY stream; no frame when the corpus is empty."""
    unknown = [c for c in columns if c not in COLUMN_TYPES]
    if unknown:
        raise ValueError(f"unknown corpus column '{unknown[0]}'")
    start, end = months.month_bounds(month)
    select = ", ".join(f"{COLUMN_TYPES[c][0]} AS {c}" for c in columns)
    where = "query_design_id = %s AND published_at >= %s AND published_at < %s"
    params: list = [str(query_design_id), start, end]
    if not include_duplicates:
        where += " AND NOT (raw_metadata ? 'duplicate_of')"
    elif not include_item_copies:
        where += " AND raw_metadata ->> 'duplicate_kind' IS DISTINCT FROM %s"
        params.append(ITEM_COPY_KIND)
    sql = f"COPY (SELECT {select} FROM content_records WHERE {where} ORDER BY published_at, id) TO STDOUT WITH (FORMAT csv)"
    types = [_typed(c, COLUMN_TYPES[c][1]) for c in columns]
    with database.driver_connection(engine, commit=False) as conn, conn.cursor() as cur:
        # Timestamps are written in the session's time zone: make that UTC.
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        with cur.copy(sql, params) as copy:
            for block in database.copy_row_blocks(copy, block_bytes or COPY_BLOCK_BYTES):
                # Every column as text, typed below.
                text = pl.read_csv(io.BytesIO(block), has_header=False, new_columns=columns, infer_schema=False)
                yield text.with_columns(types)


def _typed(column: str, dtype: pl.DataType) -> pl.Expr:
    text = pl.col(column)
    if column in _JSON_LISTS:
        return text.str.json_decode(pl.List(pl.Utf8))
    if isinstance(dtype, pl.Datetime):
        return text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%#z", time_unit="us").dt.convert_time_zone("UTC")
    if dtype == pl.Boolean():
        return text == "t"
    return text.cast(dtype)
