"""Who may see which corpus (the access rule), and the export downloads themselves.

The rule, here and nowhere else (``may_see``): a researcher sees the query designs they own, with
their corpora, statistics and exports; an admin sees everything. The CLI identifies the person by
the email address they state (``observatory exports --user``: authorization for operators acting
for a researcher, not authentication); the portal by a signed-in session or an API token. Both
then ask this module.

Refusals say nothing about what exists: asking for someone else's design and for a design that
does not exist give the same message, whether or not its exports have been made. Only the
owner (or an admin) learns that an export is missing, and which export and partition to materialize.

Downloads stream to disk through a temporary file, hashing as they go, and appear under their
final name only when the SHA-256 recorded at export time matches what arrived.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from observatory_pipelines.core.collection import designs
from observatory_pipelines.core.exports import layout as export_layout
from observatory_pipelines.core.exports.layout import ExportFile, ExportMetadata
from observatory_pipelines.core.platform import months
from observatory_pipelines.core.platform.errors import ObservatoryError
from observatory_pipelines.core.platform.storage import ObjectNotFound, ObjectStore, StorageUnavailable, StoredObject

DEFAULT_LINK_LIFETIME = timedelta(hours=1)
_CHUNK = 1024 * 1024
_FILE_ORDER = {file: index for index, file in enumerate(export_layout.all_files())}


class AccessRefused(ObservatoryError):
    """The stated user may not see this (or is no active user at all)."""


class ExportMissing(ObservatoryError):
    """The viewer may see this export, but it has not been made yet."""


class ExportCorrupted(ObservatoryError):
    """A stored export does not match the checksum recorded when it was made."""


@dataclass(frozen=True)
class Viewer:
    user_id: uuid.UUID
    email: str
    is_admin: bool

    @property
    def folder(self) -> str:
        """The folder this person's own designs' exports live in."""
        return export_layout.owner_folder(self.user_id)


@dataclass(frozen=True)
class ExportListing:
    design: str
    month: str
    owner: str
    file: ExportFile
    key: str
    size: int
    last_modified: datetime
    #: ``None`` for an object no export wrote (no metadata recorded).
    rows: int | None
    sha256: str | None


def viewer_for(engine: sa.Engine, email: str) -> Viewer:
    """The active user with this email address (compared without regard to case)."""
    stated = (email or "").strip()
    with engine.connect() as conn:
        found = (
            conn.execute(
                sa.text("SELECT id, email, role, is_active FROM users WHERE lower(email) = lower(:email)"),
                {"email": stated},
            )
            .mappings()
            .all()
        )
    # The unique constraint is case-sensitive: two accounts may differ only in case.
    if len(found) > 1:
        found = [row for row in found if row["email"] == stated]
    # Unknown and deactivated accounts get one message, so it says nothing about which it is.
    if len(found) != 1 or not found[0]["is_active"]:
        raise AccessRefused(
            f"no active observatory user {stated!r}; check the address, or ask an admin to create "
            "or reactivate the account"
        )
    row = found[0]
    return Viewer(user_id=row["id"], email=row["email"], is_admin=row["role"] == "admin")


def may_see(viewer: Viewer, owner_id: uuid.UUID) -> bool:
    """The access rule: a design's corpora are its owner's, and every admin's."""
    return viewer.is_admin or owner_id == viewer.user_id


def visible_corpus(conn: sa.Connection, viewer: Viewer, slug: str, month: str) -> designs.Corpus:
    """The corpus, if the viewer may see it. Someone else's design and a design that does not exist
    raise the same ``AccessRefused``, so the answer says nothing about what exists."""
    try:
        corpus = designs.find_corpus(conn, slug, month)
    except designs.UnknownDesign:
        corpus = None
    if corpus is None or not may_see(viewer, corpus.owner_id):
        raise AccessRefused(_refusal(slug, viewer))
    return corpus


def list_exports(engine: sa.Engine, store: ObjectStore, viewer: Viewer) -> list[ExportListing]:
    """Every export the viewer may download, by design, month and file."""
    if viewer.is_admin:
        prefixes = [f"{export_layout.PREFIX}/"]
        allowed = None
    else:
        with engine.connect() as conn:
            slugs = (
                conn.execute(
                    sa.text("SELECT slug FROM query_designs WHERE owner_id = :owner ORDER BY slug"),
                    {"owner": viewer.user_id},
                )
                .scalars()
                .all()
            )
        folder = viewer.folder
        # Only the viewer's own designs' folders are listed: other owners' keys are never read.
        prefixes = [f"{export_layout.owner_prefix(folder)}{slug}/" for slug in slugs]
        allowed = {(folder, slug) for slug in slugs}

    listings = []
    for prefix in prefixes:
        for found in store.list(prefix):
            parsed = export_layout.parse_key(found.key)
            if parsed is None or (allowed is not None and (parsed.owner, parsed.slug) not in allowed):
                continue
            listing = _listing(store, found.key, parsed)
            if listing is not None:
                listings.append(listing)
    listings.sort(key=lambda item: (item.design, item.month, _FILE_ORDER[item.file], item.owner))
    return listings


def corpus_exports(store: ObjectStore, corpus: designs.Corpus) -> list[ExportListing]:
    """The exports of one corpus, in ``layout.all_files()`` order. Only that corpus's folder is
    listed, so a page about one corpus does not read every corpus of its owner. The caller has
    checked the viewer may see ``corpus`` (``visible_corpus``)."""
    prefix = export_layout.corpus_prefix(export_layout.owner_folder(corpus.owner_id), corpus.slug, corpus.month)
    listings = []
    for found in store.list(prefix):
        parsed = export_layout.parse_key(found.key)
        if parsed is None or parsed.slug != corpus.slug or parsed.month != corpus.month:
            continue
        listing = _listing(store, found.key, parsed)
        if listing is not None:
            listings.append(listing)
    listings.sort(key=lambda item: _FILE_ORDER[item.file])
    return listings


def _listing(store: ObjectStore, key: str, parsed: export_layout.ParsedKey) -> ExportListing | None:
    """The listing of a stored export, from its object metadata; ``None`` once it is gone."""
    try:
        stored = store.stat(key)
    except ObjectNotFound:
        return None  # Replaced or removed since the listing: nothing to offer.
    recorded = ExportMetadata.from_object_metadata(stored.metadata)
    return ExportListing(
        design=parsed.slug,
        month=parsed.month,
        owner=parsed.owner,
        file=parsed.file,
        key=key,
        size=stored.size,
        last_modified=stored.last_modified,
        rows=recorded.rows if recorded else None,
        sha256=recorded.sha256 if recorded else None,
    )


def locate(
    engine: sa.Engine, store: ObjectStore, viewer: Viewer, slug: str, month: str, file: ExportFile
) -> StoredObject:
    """The stored export (with its metadata), after checking the viewer may have it."""
    with engine.connect() as conn:
        corpus = visible_corpus(conn, viewer, slug, month)
    return stored_export(store, corpus, file)


def stored_export(store: ObjectStore, corpus: designs.Corpus, file: ExportFile) -> StoredObject:
    """The stored export of a corpus the caller has checked the viewer may see (``visible_corpus``)."""
    try:
        return store.stat(export_layout.corpus_export_key(corpus, file))
    except ObjectNotFound:
        raise ExportMissing(_missing(corpus.slug, corpus.month, file)) from None


def download(
    engine: sa.Engine,
    store: ObjectStore,
    viewer: Viewer,
    slug: str,
    month: str,
    file: ExportFile,
    destination: str | os.PathLike[str],
) -> Path:
    """Fetch the export to ``destination`` (a folder: ``{slug}_{month}_{file name}`` inside it;
    otherwise that path), verified against its recorded SHA-256. Returns the file's path."""
    month = months.month_key(months.parse_month(month))
    stored = locate(engine, store, viewer, slug, month, file)
    recorded = ExportMetadata.from_object_metadata(stored.metadata)
    if recorded is None:
        raise ExportCorrupted(
            f"{stored.key} has no recorded checksum, so it was not written by an export: materialize "
            f"the {file.format} export for partition {slug}|{month} again"
        )
    target = target_path(Path(destination), slug, month, file)
    try:
        return save_verified(_stored_chunks(store, stored.key), target, recorded.sha256, f"download of {stored.key}")
    except ObjectNotFound:
        # Removed between the check and the download: say so as the check would have.
        raise ExportMissing(_missing(slug, month, file)) from None


def save_verified(chunks: Iterable[bytes], target: Path, sha256: str | None, what: str) -> Path:
    """Write ``chunks`` to ``target`` through a temporary file beside it, hashing as they arrive;
    the file appears under its name only when the SHA-256 matches (``None``: nothing to check)."""
    try:
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    except OSError as exc:
        raise ObservatoryError(
            f"cannot save to {target}: {exc.strerror or exc}; give --to a folder or file path you can write to"
        ) from None
    try:
        digest = hashlib.sha256()
        with handle:
            for chunk in chunks:
                digest.update(chunk)
                try:
                    handle.write(chunk)
                except OSError as exc:
                    raise ObservatoryError(f"cannot write {target}: {exc.strerror or exc}") from exc
        if sha256 and digest.hexdigest() != sha256.strip().lower():
            raise ExportCorrupted(f"{what} was corrupted (checksum mismatch); try again")
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


def link(
    engine: sa.Engine,
    store: ObjectStore,
    viewer: Viewer,
    slug: str,
    month: str,
    file: ExportFile,
    expires: timedelta = DEFAULT_LINK_LIFETIME,
) -> str:
    """A fresh download link for the export (on S3 a presigned URL anyone holding it can use
    until it expires; on a local store a ``file://`` URL)."""
    stored = locate(engine, store, viewer, slug, month, file)
    try:
        return store.url(stored.key, expires)
    except ObjectNotFound:
        # Removed between the check and the signing: say so as the check would have.
        raise ExportMissing(_missing(slug, months.month_key(months.parse_month(month)), file)) from None


def record_download(
    engine: sa.Engine,
    viewer: Viewer,
    corpus: designs.Corpus,
    file: ExportFile,
    *,
    via: str,
    api_token_id: uuid.UUID | None = None,
) -> None:
    """The audit row of one download: who, which export of which corpus, when, and how."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO export_downloads (user_id, query_design_id, month, file, via, api_token_id) "
                "VALUES (:user, :design, :month, :file, :via, :token)"
            ),
            {
                "user": viewer.user_id,
                "design": corpus.design_id,
                "month": corpus.month,
                "file": file.filename,
                "via": via,
                "token": api_token_id,
            },
        )


def _missing(slug: str, month: str, file: ExportFile) -> str:
    # Dagster shows a multi-partition key with its dimensions in name order: design|month.
    return (
        f"no {file.filename} export of {slug!r} for {month} yet: materialize the {file.format} export for "
        f"partition {slug}|{month} in the Dagster UI (or run: observatory run --month {month} --design {slug})"
    )


def _refusal(slug: str, viewer: Viewer) -> str:
    # Depends on the slug and the viewer's role only, never on what the database or store holds.
    whose = "" if viewer.is_admin else " of yours"
    return f"no query design {slug!r}{whose}; `observatory exports list` shows what you can download"


def target_path(destination: Path, slug: str, month: str, file: ExportFile) -> Path:
    """Where a download goes: ``{slug}_{month}_{file name}`` inside a folder, or the file path given."""
    destination = destination.expanduser()
    if destination.is_dir():
        # Named for the corpus, so downloading several months into one folder overwrites nothing.
        return destination / f"{slug}_{month}_{file.filename}"
    if not destination.parent.is_dir():
        raise ObservatoryError(
            f"cannot save to {destination}: folder {destination.parent} does not exist; create it or give --to "
            "an existing folder"
        )
    return destination


def _stored_chunks(store: ObjectStore, key: str) -> Iterator[bytes]:
    from urllib3.exceptions import HTTPError as TransportError

    with store.open(key) as source:
        while True:
            try:
                chunk = source.read(_CHUNK)
            except (OSError, TransportError) as exc:
                raise StorageUnavailable(
                    f"download of {key} was interrupted ({type(exc).__name__}); try again"
                ) from exc
            if not chunk:
                return
            yield chunk
