"""Where a corpus's exports live in object storage, and what each file is called.

Every file of one corpus (query design × month) sits under one readable folder::

    exports/{owner}/{design-slug}/{YYYY-MM}/content.csv
                                            content.xlsx
                                            content.ndjson
                                            content.parquet
                                            actor_cooccurrence.gexf          (and .dynamic.gexf,
                                            term_cooccurrence.gexf            one per network)
                                            actor_term.gexf
                                            cross_platform_actors.gexf
                                            manifest.json

``{owner}`` is ``user-<uuid>``, the design owner's user id: never an e-mail address, which would
otherwise travel in every key, presigned link and manifest.
Keys are stable: re-materializing a partition replaces its files in place.

Each stored file carries object metadata (``ExportMetadata``): its SHA-256, row count, the
options it was made with and its identity level (``core.exports.identity``), which the manifest and
downloads read back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from observatory_pipelines.core.analysis.networks import NETWORKS
from observatory_pipelines.core.collection.designs import SLUG, Corpus, check_slug
from observatory_pipelines.core.platform import months

PREFIX = "exports"
#: Bumped whenever a column is added, removed, renamed or retyped in any content export.
SCHEMA_VERSION = "1"

CONTENT_FORMATS = ("csv", "xlsx", "ndjson", "parquet")
FORMATS = (*CONTENT_FORMATS, "gexf", "manifest")

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "gexf": "application/gexf+xml",
    "manifest": "application/json",
}


@dataclass(frozen=True)
class ExportFile:
    """One file of a corpus's exports."""

    format: str
    network: str | None = None
    dynamic: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown export format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.format == "gexf":
            if self.network not in NETWORKS:
                raise ValueError(f"unknown network {self.network!r}; choose one of {', '.join(NETWORKS)}")
        elif self.network is not None or self.dynamic:
            raise ValueError("only GEXF exports have a network and a dynamic variant")

    @property
    def filename(self) -> str:
        if self.format == "manifest":
            return "manifest.json"
        if self.format == "gexf":
            return f"{self.network}.dynamic.gexf" if self.dynamic else f"{self.network}.gexf"
        return f"content.{self.format}"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @classmethod
    def from_filename(cls, filename: str) -> ExportFile | None:
        """The file a stored name stands for, or ``None`` for a name no export writes."""
        for candidate in all_files():
            if candidate.filename == filename:
                return candidate
        return None


def content_file(fmt: str) -> ExportFile:
    if fmt not in CONTENT_FORMATS:
        raise ValueError(f"{fmt!r} is not a content format ({', '.join(CONTENT_FORMATS)})")
    return ExportFile(fmt)


def gexf_files() -> tuple[ExportFile, ...]:
    return tuple(ExportFile("gexf", network, dynamic) for network in NETWORKS for dynamic in (False, True))


MANIFEST = ExportFile("manifest")


def all_files() -> tuple[ExportFile, ...]:
    """Every file one corpus's exports consist of, manifest last."""
    return (*(ExportFile(f) for f in CONTENT_FORMATS), *gexf_files(), MANIFEST)


def owner_folder(user_id: uuid.UUID | str) -> str:
    """The owner's folder name: ``user-<uuid>`` (no e-mail address in keys, links or manifests)."""
    return f"user-{uuid.UUID(str(user_id))}"


def corpus_prefix(owner: str, slug: str, month: str) -> str:
    """The folder (ending in ``/``) holding one corpus's exports."""
    check_slug(slug)
    return f"{owner_prefix(owner)}{slug}/{months.month_key(months.parse_month(month))}/"


def owner_prefix(owner: str) -> str:
    if "/" in owner or not owner:
        raise ValueError(f"{owner!r} is not an owner folder")
    return f"{PREFIX}/{owner}/"


def export_key(owner: str, slug: str, month: str, file: ExportFile) -> str:
    return corpus_prefix(owner, slug, month) + file.filename


def corpus_export_key(corpus: Corpus, file: ExportFile) -> str:
    """Where ``file`` of ``corpus`` is stored: under its owner's folder."""
    return export_key(owner_folder(corpus.owner_id), corpus.slug, corpus.month, file)


@dataclass(frozen=True)
class ParsedKey:
    owner: str
    slug: str
    month: str
    file: ExportFile


def parse_key(key: str) -> ParsedKey | None:
    """What an object key under ``exports/`` holds, or ``None`` if no export writes such a key."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != PREFIX:
        return None
    _, owner, slug, month, filename = parts
    file = ExportFile.from_filename(filename)
    if file is None or not SLUG.fullmatch(slug):
        return None
    try:
        if months.month_key(months.parse_month(month)) != month:
            return None
    except ValueError:
        return None
    return ParsedKey(owner=owner, slug=slug, month=month, file=file)


@dataclass(frozen=True)
class ExportMetadata:
    """What each stored export file says about itself (S3 user metadata: lowercase ASCII names)."""

    sha256: str
    rows: int
    include_duplicates: bool = False
    include_raw_metadata: bool = False
    schema_version: str = SCHEMA_VERSION
    #: ``pseudonymised`` or ``identified``; empty for a file stored before exports recorded it.
    identity: str = "pseudonymised"

    def to_object_metadata(self) -> dict[str, str]:
        return {
            "sha256": self.sha256,
            "rows": str(self.rows),
            "include-duplicates": "true" if self.include_duplicates else "false",
            "include-raw-metadata": "true" if self.include_raw_metadata else "false",
            "schema-version": self.schema_version,
            "identity": self.identity,
        }

    @classmethod
    def from_object_metadata(cls, metadata) -> ExportMetadata | None:
        """``None`` when the object was not written by an export (no checksum recorded)."""
        found = {name.lower(): value for name, value in (metadata or {}).items()}
        if "sha256" not in found:
            return None
        return cls(
            sha256=found["sha256"],
            rows=int(found.get("rows", "0") or 0),
            include_duplicates=found.get("include-duplicates") == "true",
            include_raw_metadata=found.get("include-raw-metadata") == "true",
            schema_version=found.get("schema-version", ""),
            identity=found.get("identity", ""),
        )
