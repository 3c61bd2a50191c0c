"""Export assets: the files researchers download, per corpus (query design × month).

Each asset writes its files to the object store under
``exports/{owner}/{design}/{YYYY-MM}/`` and shows the object's URI, size, rows, checksum and a
presigned download link (valid an hour) in its metadata. ``export_manifest`` runs last and
describes them all. Who the files name follows ``core.exports.identity``: pseudonymised unless the
design records a legal basis for identified exports (run config ``identity`` asks for a level).
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from observatory_pipelines.core.exports import identity as export_identity
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports import manifest
from observatory_pipelines.core.exports import writers as exports
from observatory_pipelines.core.exports.writers import ExportOptions, StoredExport
from observatory_pipelines.core.platform import markdown
from observatory_pipelines.core.platform.storage import ObjectStore, StorageError
from observatory_pipelines.defs import asset_keys
from observatory_pipelines.defs.partitions import corpus_of, corpus_partitions
from observatory_pipelines.defs.resources import PostgresResource, StorageResource

GROUP = "exports"
LINK_LIFETIME = timedelta(hours=1)

_COMMON = """

Stored at exports/{{owner}}/{{design}}/{{YYYY-MM}}/{filename} in the object store (MinIO/S3 when
MINIO_ENDPOINT is set, else .observatory/objects/), with its SHA-256, row count and options as object
metadata. Researchers fetch it with `observatory exports download --design SLUG --month YYYY-MM
--format {fmt}`, or the presigned link below (valid one hour)."""

_CONTENT_DESCRIPTIONS = {
    "csv": "The corpus as CSV: UTF-8 with a byte-order mark, a header row, RFC 4180 quoting; written by "
    "PostgreSQL's COPY. Times ISO 8601 UTC; search_terms_matched a JSON array.",
    "xlsx": "The corpus as an Excel workbook: bold, frozen, filterable header, set column widths, published_at "
    "as a date-time in UTC. Over 1,048,575 records it continues on sheets 'content (2)', 'content (3)', ... "
    "Cells are cut at Excel's 32,767 characters (counted in cells_truncated; other formats keep the text whole).",
    "ndjson": "The corpus as NDJSON: one JSON object per line, UUIDs and times as strings, counts as numbers, "
    "search_terms_matched an array.",
    "parquet": "The corpus as Parquet (zstd): published_at timestamp[us, UTC], counts int64, "
    "search_terms_matched list<string>.",
}

_COLUMNS_NOTE = (
    "\n\nColumns: " + ", ".join(c.name for c in exports.COLUMNS) + ". Records marked as duplicates by the "
    "dedup pass are left out unless include_duplicates (then a duplicate_of column is added); raw_metadata "
    "is added with include_raw_metadata."
)
_IDENTITY_NOTE = (
    "\n\nPseudonymised unless the query design records a legal basis for identified exports: authors by "
    "pseudonymized_author_id, author_display_name only for public figures, social-platform URLs without the "
    "author's handle (the id-only form, else none), raw_metadata without the author's fields; no e-mail "
    "address in an author field. Identified exports (every name) need the design's recorded legal basis, "
    "which the manifest names; asked for without one, the run fails in one line."
)
_GEXF_IDENTITY_NOTE = (
    "\n\nActor labels: a public figure's name, otherwise the first hex characters of the pseudonymised id; "
    "names for every actor only in an identified export, which needs the design's recorded legal basis."
)

_IDENTITY_FIELD = Field(
    default=None,
    description="'pseudonymised' or 'identified'; unset: what the query design records (pseudonymised unless "
    "it records a legal basis). 'identified' is refused without the design's recorded legal basis.",
)


class IdentityConfig(dg.Config):
    identity: str | None = _IDENTITY_FIELD


class ExportConfig(dg.Config):
    identity: str | None = _IDENTITY_FIELD
    include_duplicates: bool = Field(
        default=False, description="Keep records the dedup pass marked as duplicates (adds a duplicate_of column)."
    )
    include_raw_metadata: bool = Field(
        default=False, description="Add each record's raw_metadata (the platform's own fields) as JSON text."
    )

    def options(self, identity: export_identity.Identity) -> ExportOptions:
        return ExportOptions(
            include_duplicates=self.include_duplicates,
            include_raw_metadata=self.include_raw_metadata,
            identity=identity,
        )


def _identity(engine, corpus, requested: str | None) -> export_identity.Identity:
    with engine.connect() as conn:
        return export_identity.for_corpus(conn, corpus, requested)


def _link(store: ObjectStore, key: str, log) -> dict:
    """A download link, if the store can make one: a missing link must not fail an export."""
    try:
        return {"download_link": dg.MetadataValue.url(store.url(key, LINK_LIFETIME))}
    except (StorageError, ValueError) as err:
        log.warning(f"no download link for {key}: {err}")
        return {}


def _file_metadata(stored: StoredExport) -> dict:
    return {
        "uri": dg.MetadataValue.text(stored.uri),
        "size_bytes": dg.MetadataValue.int(stored.file.size),
        "rows": dg.MetadataValue.int(stored.file.rows),
        "sha256": dg.MetadataValue.text(stored.file.sha256),
        **{name: dg.MetadataValue.int(value) for name, value in stored.file.details.items()},
    }


def _export_asset(
    fmt: str, deps: list[dg.AssetKey], description: str, filename: str, download: str, kind: str | None = None
):
    """The decorator every export asset shares: one corpus partition, stored in the object store."""
    return dg.asset(
        key=asset_keys.export(fmt),
        group_name=GROUP,
        partitions_def=corpus_partitions,
        deps=deps,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={kind or fmt, "s3"},
        description=description + _COMMON.format(filename=filename, fmt=download),
    )


def _content_export(fmt: str) -> dg.AssetsDefinition:
    file = export_layout.content_file(fmt)

    @_export_asset(
        fmt, [asset_keys.DEDUP], _CONTENT_DESCRIPTIONS[fmt] + _COLUMNS_NOTE + _IDENTITY_NOTE, file.filename, fmt
    )
    def content_export(
        context: dg.AssetExecutionContext, config: ExportConfig, postgres: PostgresResource, storage: StorageResource
    ) -> dg.MaterializeResult:
        with postgres.engine() as engine:
            corpus = corpus_of(context, engine)
            identity = _identity(engine, corpus, config.identity)
            store = storage.store()
            stored = exports.export_content(engine, store, corpus, fmt, config.options(identity))
            link = _link(store, stored.key, context.log)
        context.log.info(
            f"{corpus.slug} {corpus.month}: {stored.file.rows} records → {stored.uri} ({stored.file.size} bytes)"
        )
        return dg.MaterializeResult(
            metadata={
                **_file_metadata(stored),
                **link,
                "include_duplicates": config.include_duplicates,
                "include_raw_metadata": config.include_raw_metadata,
                "identity": identity.level,
            }
        )

    return content_export


content_exports = [_content_export(fmt) for fmt in export_layout.CONTENT_FORMATS]


@_export_asset(
    "gexf",
    [asset_keys.NETWORKS[name] for name in export_layout.NETWORKS],
    "The corpus's four networks (actor co-occurrence, term co-occurrence, bipartite actor–term, "
    "cross-platform actors; see each network asset for how nodes and edges are made) as GEXF 1.3 files for "
    "Gephi, valid against the GEXF 1.3 schema: <network>.gexf (static, with node and edge attributes) and "
    "<network>.dynamic.gexf (each edge active on the days its records were published, one spell per run of "
    "consecutive days, for Gephi's timeline; time is not repeated as attributes). Each file stays within "
    "50 MB: a larger network is written with its strongest edges that fit and the nodes they touch, and the "
    "file's description and the manifest say how many were left out." + _GEXF_IDENTITY_NOTE,
    "<network>.gexf and <network>.dynamic.gexf",
    "gexf --network NAME [--dynamic]",
)
def export_gexf(
    context: dg.AssetExecutionContext, config: IdentityConfig, postgres: PostgresResource, storage: StorageResource
):
    with postgres.engine() as engine:
        corpus = corpus_of(context, engine)
        identity = _identity(engine, corpus, config.identity)
        store = storage.store()
        stored = exports.export_networks(engine, store, corpus, identity)
        first_link = _link(store, stored[0].key, context.log)
    table = markdown.table(
        ["file", "nodes", "edges", "bytes"],
        [(s.key.rsplit("/", 1)[1], s.file.details["nodes"], s.file.details["edges"], s.file.size) for s in stored],
    )
    return dg.MaterializeResult(
        metadata={
            "files": dg.MetadataValue.md(table),
            "uri": dg.MetadataValue.text(stored[0].uri.rsplit("/", 1)[0] + "/"),
            "size_bytes": dg.MetadataValue.int(sum(s.file.size for s in stored)),
            "identity": identity.level,
            **first_link,
        }
    )


@_export_asset(
    "manifest",
    [*(asset_keys.export(fmt) for fmt in export_layout.CONTENT_FORMATS), asset_keys.export("gexf")],
    "manifest.json: what the corpus's exports are, for citing exactly what was analysed: the query "
    "design (search terms, actor lists, arenas with tiers and options), the month, the collection runs and "
    "tasks behind it, record counts, each file's size, rows, SHA-256, options and identity level (read back "
    "from the object store), the exports' identity level and, when identified, the design's legal basis, the "
    "column schema, the schema version and the software and PostgreSQL versions. Written last: replacing any "
    "other file of the corpus withdraws it until it is written again.",
    "manifest.json",
    "manifest",
    kind="json",
)
def export_manifest(context: dg.AssetExecutionContext, postgres: PostgresResource, storage: StorageResource):
    with postgres.engine() as engine:
        corpus = corpus_of(context, engine)
        store = storage.store()
        stored, document = manifest.export_manifest(engine, store, corpus)
        link = _link(store, stored.key, context.log)
    files = markdown.table(
        ["file", "rows", "bytes", "sha256"],
        [(f["name"], f["rows"], f["size"], f["sha256"][:16] + "…") for f in document["files"]],
    )
    return dg.MaterializeResult(
        metadata={
            "uri": dg.MetadataValue.text(stored.uri),
            "size_bytes": dg.MetadataValue.int(stored.file.size),
            "files": dg.MetadataValue.md(files),
            "records": dg.MetadataValue.int(document["records"]["without_duplicates"]),
            "collection_runs": dg.MetadataValue.int(len(document["collection_runs"])),
            "schema_version": dg.MetadataValue.text(document["schema_version"]),
            "identity": dg.MetadataValue.text(document["identity"]["level"]),
            **link,
        }
    )


defs = dg.Definitions(assets=[*content_exports, export_gexf, export_manifest])
