"""Models, hand-written migrations and the partitioned content_records table, on real servers."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from observatory_pipelines.core.models import CORPUS_ITEM_CONSTRAINT, FULLTEXT_DOCUMENT_SQL, Base
from observatory_pipelines.core.platform import database, migrate
from observatory_pipelines.core.platform.errors import DatabaseUnavailable

TABLES = [
    "users",
    "credit_allocations",
    "api_credentials",
    "actors",
    "actor_aliases",
    "actor_platform_presences",
    "query_designs",
    "search_terms",
    "actor_lists",
    "actor_list_members",
    "collection_runs",
    "collection_tasks",
    "credit_transactions",
    "content_records",
    "content_items",
    "actor_match_suggestions",
    "actor_audit_log",
    "design_changes",
    "source_yields",
    "invitations",
    "portal_sessions",
    "api_tokens",
    "sign_in_failures",
    "export_downloads",
    "collection_checkpoints",
]

CONTENT_INDEXES = {
    "idx_content_platform": "btree",
    "idx_content_arena": "btree",
    "idx_content_published": "btree",
    "idx_content_query": "btree",
    "idx_content_hash": "btree",
    "idx_content_author": "btree",
    "idx_content_terms": "gin",
    "idx_content_metadata": "gin",
    "idx_content_fulltext": "gin",
}

PARTITIONS = {
    "content_records_2026_02": "FOR VALUES FROM ('2026-02-01 00:00:00+00') TO ('2026-03-01 00:00:00+00')",
    "content_records_2026_03": "FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-04-01 00:00:00+00')",
    "content_records_2026_04": "FOR VALUES FROM ('2026-04-01 00:00:00+00') TO ('2026-05-01 00:00:00+00')",
    "content_records_default": "DEFAULT",
}

PG = postgresql.dialect()


def _type(type_: sa.types.TypeEngine) -> str:
    return " ".join(type_.compile(dialect=PG).upper().split())


def _public_tables(conn: sa.Connection) -> set[str]:
    return set(
        conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            )
        ).scalars()
    )


def _project_tables(conn: sa.Connection) -> set[str]:
    return {name for name in _public_tables(conn) if name != "alembic_version" and name not in PARTITIONS}


# --- models and migrations agree -----------------------------------------------------------------


def test_models_cover_every_table():
    assert sorted(Base.metadata.tables) == sorted(TABLES)


def test_columns_types_and_nullability_match_migrations(engine):
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        assert _project_tables(conn) == set(Base.metadata.tables)
    for table in Base.metadata.sorted_tables:
        reflected = {col["name"]: col for col in inspector.get_columns(table.name)}
        assert set(reflected) == set(table.columns.keys()), table.name
        for column in table.columns:
            db_col = reflected[column.name]
            where = f"{table.name}.{column.name}"
            assert db_col["nullable"] == column.nullable, where
            assert _type(db_col["type"]) == _type(column.type), where
            assert (db_col["default"] is not None) == (column.server_default is not None), where


def test_server_defaults_match_migrations(engine):
    """Alembic compares defaults heuristically (it missed a changed text default in a trial), so
    let the server canonicalise both sides: the model's defaults go on a temporary table, and are
    read back beside the real ones."""
    defaults = sa.text(
        "SELECT column_name, column_default FROM information_schema.columns"
        " WHERE table_schema = :schema AND table_name = :table"
    )
    with engine.connect() as conn:
        probes = {}
        for table in Base.metadata.sorted_tables:
            probe = sa.Table(
                f"probe_{table.name}",
                sa.MetaData(),
                *(sa.Column(c.name, c.type, server_default=c.server_default) for c in table.columns),
                prefixes=["TEMPORARY"],
            )
            probe.create(conn)
            probes[table.name] = probe.name
        temp_schema = conn.execute(
            sa.text("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
        ).scalar_one()
        for table, probe in probes.items():
            expected = dict(conn.execute(defaults, {"schema": temp_schema, "table": probe}).all())
            actual = dict(conn.execute(defaults, {"schema": "public", "table": table}).all())
            assert actual == expected, table
        conn.rollback()


def test_constraints_match_migrations(engine):
    inspector = sa.inspect(engine)
    for table in Base.metadata.sorted_tables:
        model_checks = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        db_checks = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert db_checks == model_checks, table.name

        model_fks = {
            (fk.name, fk.referred_table.name, tuple(fk.column_keys), fk.ondelete)
            for fk in table.foreign_key_constraints
        }
        db_fks = {
            (
                fk["name"],
                fk["referred_table"],
                tuple(fk["constrained_columns"]),
                fk["options"].get("ondelete"),
            )
            for fk in inspector.get_foreign_keys(table.name)
        }
        assert db_fks == model_fks, table.name

        model_pk = table.primary_key
        db_pk = inspector.get_pk_constraint(table.name)
        assert db_pk["name"] == model_pk.name, table.name
        assert db_pk["constrained_columns"] == [c.name for c in model_pk.columns], table.name


def test_alembic_finds_no_difference(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": migrate.include_object,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        assert compare_metadata(context, Base.metadata) == []


def test_fulltext_index_is_the_documented_expression(engine):
    """The index Alembic cannot compare: the server must store the expression queries repeat."""
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE probe (title text, text_content text)"))
        conn.execute(sa.text(f"CREATE INDEX probe_fulltext ON probe USING gin ({FULLTEXT_DOCUMENT_SQL})"))
        definitions = (
            conn.execute(
                sa.text(
                    "SELECT regexp_replace(pg_get_indexdef(oid), '^.* USING ', '')"
                    " FROM pg_class WHERE relname IN ('idx_content_fulltext', 'probe_fulltext')"
                )
            )
            .scalars()
            .all()
        )
    assert len(definitions) == 2 and definitions[0] == definitions[1]


# --- migrations run both ways --------------------------------------------------------------------


def test_upgrade_downgrade_upgrade(empty_db_url):
    head = migrate.head()
    assert head == "011_collection_checkpoints"
    assert migrate.current(empty_db_url) is None

    migrate.upgrade(empty_db_url)
    assert migrate.current(empty_db_url) == head

    migrate.downgrade(empty_db_url, "001_initial_schema")
    assert migrate.current(empty_db_url) == "001_initial_schema"
    engine = database.make_engine(empty_db_url, poolclass=sa.NullPool)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("query_designs")}
        assert "arenas_config" not in columns

        migrate.downgrade(empty_db_url, "base")
        assert migrate.current(empty_db_url) is None
        with engine.connect() as conn:
            assert _public_tables(conn) == {"alembic_version"}
            # Extensions are left in place on purpose.
            extensions = set(conn.execute(sa.text("SELECT extname FROM pg_extension")).scalars())
            assert "pg_trgm" in extensions

        migrate.upgrade(empty_db_url)
        assert migrate.current(empty_db_url) == head
        with engine.connect() as conn:
            assert _project_tables(conn) == set(TABLES)
    finally:
        engine.dispose()


def test_upgrade_widens_a_default_alembic_version_table(empty_db_url):
    """A database stamped by stock Alembic has varchar(32), too short for revision 002's id."""
    engine = database.make_engine(empty_db_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL,"
                    " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                )
            )
        migrate.upgrade(empty_db_url)
        assert migrate.current(empty_db_url) == migrate.head()
    finally:
        engine.dispose()


def test_unreachable_server_is_one_line_error():
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    for call in (lambda: migrate.upgrade(url), lambda: migrate.current(url)):
        with pytest.raises(DatabaseUnavailable) as err:
            call()
        assert "127.0.0.1:1/nowhere" in str(err.value)
        assert "\n" not in str(err.value)


# --- structure -----------------------------------------------------------------------------------


def test_tables_indexes_and_partitions(engine):
    with engine.connect() as conn:
        assert set(TABLES) <= _public_tables(conn)

        indexes = dict(
            conn.execute(
                sa.text(
                    "SELECT i.relname, am.amname FROM pg_index x"
                    " JOIN pg_class i ON i.oid = x.indexrelid"
                    " JOIN pg_am am ON am.oid = i.relam"
                    " WHERE x.indrelid = 'content_records'::regclass"
                )
            ).all()
        )
        for name, method in CONTENT_INDEXES.items():
            assert indexes.get(name) == method, name

        strategy, key = conn.execute(
            sa.text(
                "SELECT p.partstrat, pg_get_partkeydef(p.partrelid) FROM pg_partitioned_table p"
                " WHERE p.partrelid = 'content_records'::regclass"
            )
        ).one()
        assert strategy == "r"
        assert key == "RANGE (published_at)"

        conn.execute(sa.text("SET TimeZone = 'UTC'"))
        bounds = dict(
            conn.execute(
                sa.text(
                    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                    " JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'content_records'::regclass"
                )
            ).all()
        )
        assert bounds == PARTITIONS

        assert conn.execute(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")).scalar_one() == 1
        trgm = conn.execute(sa.text("SELECT pg_get_indexdef('idx_actors_name_trgm'::regclass)")).scalar_one()
        assert "USING gin (canonical_name gin_trgm_ops)" in trgm


# --- behaviour -----------------------------------------------------------------------------------


def _user(conn: sa.Connection) -> uuid.UUID:
    return conn.execute(
        sa.text("INSERT INTO users (email) VALUES (:email) RETURNING id"),
        {"email": f"{uuid.uuid4().hex[:8]}@example.org"},
    ).scalar_one()


def _query_design(conn: sa.Connection, slug: str | None = None) -> uuid.UUID:
    if slug is None:
        slug = f"design-{uuid.uuid4().hex[:8]}"
    return conn.execute(
        sa.text("INSERT INTO query_designs (owner_id, name, slug) VALUES (:owner, :name, :slug) RETURNING id"),
        {"owner": _user(conn), "name": slug, "slug": slug},
    ).scalar_one()


def _content(conn: sa.Connection, design: uuid.UUID, published_at: str, **values) -> str:
    """Insert one record; return the partition it landed in."""
    row = {
        "platform": "bluesky",
        "arena": "bluesky",
        "platform_id": uuid.uuid4().hex,
        "text_content": None,
        "title": None,
    } | values
    return conn.execute(
        sa.text(
            "INSERT INTO content_records"
            " (query_design_id, published_at, platform, arena, platform_id, text_content, title)"
            " VALUES (:design, CAST(:published_at AS timestamptz), :platform, :arena,"
            " :platform_id, :text_content, :title)"
            " RETURNING tableoid::regclass::text"
        ),
        {"design": design, "published_at": published_at, **row},
    ).scalar_one()


def test_rows_land_in_their_utc_month(engine):
    with engine.begin() as conn:
        design = _query_design(conn)
        assert _content(conn, design, "2026-03-15 12:00:00+00") == "content_records_2026_03"
        # 23:30 at UTC-2 is 01:30 on 1 April in UTC.
        assert _content(conn, design, "2026-03-31 23:30:00-02") == "content_records_2026_04"
        assert _content(conn, design, "2030-01-01 00:00:00+00") == "content_records_default"
        # Bounds are UTC whatever the session's zone: 1 April 01:30 in Copenhagen is March in UTC.
        conn.execute(sa.text("SET LOCAL TimeZone = 'Europe/Copenhagen'"))
        assert _content(conn, design, "2026-04-01 01:30:00") == "content_records_2026_03"
        assert _content(conn, design, "2026-04-01 02:00:00") == "content_records_2026_04"


def test_corpus_uniqueness_is_per_query_design(engine):
    with engine.connect() as conn:
        first = _query_design(conn)
        second = _query_design(conn)
        post = {"platform_id": "at://did:plc:abc/post/1"}
        _content(conn, first, "2026-03-15 12:00:00+00", **post)
        # The same post in another corpus is kept: each design keeps its own copy.
        _content(conn, second, "2026-03-15 12:00:00+00", **post)
        # The same instant written with another offset is the same key. PostgreSQL names the
        # partition's copy of the constraint in the error, so look at the key instead.
        with pytest.raises(sa.exc.IntegrityError) as err:
            with conn.begin_nested():
                _content(conn, first, "2026-03-15 14:00:00+02", **post)
        assert isinstance(err.value.orig, psycopg.errors.UniqueViolation)
        assert "(query_design_id, platform, platform_id, published_at)" in str(err.value)
        # Writers upsert by the parent's constraint name; PostgreSQL routes it to the partition.
        updated = conn.execute(
            sa.text(
                "INSERT INTO content_records"
                " (query_design_id, published_at, platform, arena, platform_id, title)"
                " VALUES (:design, '2026-03-15 12:00:00+00', 'bluesky', 'bluesky', :pid, 'again')"
                f" ON CONFLICT ON CONSTRAINT {CORPUS_ITEM_CONSTRAINT}"
                " DO UPDATE SET title = excluded.title RETURNING title"
            ),
            {"design": first, "pid": post["platform_id"]},
        ).scalar_one()
        assert updated == "again"
        count = conn.execute(
            sa.text("SELECT count(*) FROM content_records WHERE platform_id = :p"),
            {"p": post["platform_id"]},
        ).scalar_one()
        assert count == 2
        conn.rollback()


def test_published_at_is_required(engine):
    with engine.connect() as conn:
        design = _query_design(conn)
        with pytest.raises(sa.exc.IntegrityError, match="published_at"):
            _content(conn, design, None)
        conn.rollback()


@pytest.mark.parametrize("slug", ["Bad Slug", "æøå", "-x", "x-", "a--b", "Klima", ""])
def test_slug_rejects(engine, slug):
    with engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError, match="ck_query_designs_slug_format"):
            _query_design(conn, slug=slug)
        conn.rollback()


def test_slug_accepts_and_is_unique(engine):
    with engine.connect() as conn:
        _query_design(conn, slug="klima-debat-2026")
        with pytest.raises(sa.exc.IntegrityError, match="uq_query_designs_slug"):
            _query_design(conn, slug="klima-debat-2026")
        conn.rollback()


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_danish_fulltext_search_uses_the_index(engine):
    search = f"SELECT text_content FROM content_records WHERE {FULLTEXT_DOCUMENT_SQL} @@ plainto_tsquery('danish', :q)"
    with engine.connect() as conn:
        design = _query_design(conn)
        _content(conn, design, "2026-03-10 08:00:00+00", text_content="Debatten i København handler om klimaet")
        _content(
            conn, design, "2026-03-11 08:00:00+00", title="Klimaet", text_content="Aarhus vil have flere cykelstier"
        )
        _content(conn, design, "2026-04-02 08:00:00+00", text_content="Folketinget mødes igen")

        found = conn.execute(sa.text(search), {"q": "københavn"}).scalars().all()
        assert found == ["Debatten i København handler om klimaet"]
        # The title is part of the document, and Danish stemming matches inflected forms.
        assert len(conn.execute(sa.text(search), {"q": "klima"}).all()) == 2
        assert conn.execute(sa.text(search), {"q": "odense"}).all() == []

        fulltext_indexes = set(
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'idx_content_fulltext'::regclass"
                )
            ).scalars()
        )
        assert len(fulltext_indexes) == len(PARTITIONS)

        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {search}"), {"q": "københavn"}).scalar_one()
        nodes = list(_plan_nodes(plan[0]["Plan"]))
        used = {n["Index Name"] for n in nodes if n["Node Type"] == "Bitmap Index Scan"}
        assert used and used <= fulltext_indexes, nodes
        conn.rollback()


def test_trigram_similarity_is_available(engine):
    with engine.connect() as conn:
        score = conn.execute(sa.text("SELECT similarity('Mette Frederiksen', 'Mette Frederiksén')")).scalar_one()
    assert score > 0.5
