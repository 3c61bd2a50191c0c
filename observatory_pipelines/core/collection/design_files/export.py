"""A design in the database written back as a design file (``designs export``)."""

from __future__ import annotations

import sqlalchemy as sa

from observatory_pipelines.core.collection.design_files.document import to_yaml
from observatory_pipelines.core.collection.design_files.plan import read_document
from observatory_pipelines.core.collection.designs import UnknownDesign, check_slug


def export_design(conn: sa.Connection, slug: str) -> str:
    """The design file of design ``slug``: applying it to the same database changes nothing."""
    stored = read_document(conn, check_slug(slug))
    if stored is None:
        raise UnknownDesign(slug)
    return to_yaml(stored.document)
