"""Partition maintenance against a real PostgreSQL (both servers)."""

import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from observatory_pipelines.core.maintenance import partitions


def _owner_and_design(conn, slug="klima"):
    user_id = conn.execute(
        sa.text("INSERT INTO users (email, display_name) VALUES (:e, 'Forsker') RETURNING id"),
        {"e": f"{slug}@example.dk"},
    ).scalar_one()
    return conn.execute(
        sa.text("INSERT INTO query_designs (owner_id, name, slug) VALUES (:o, :n, :s) RETURNING id"),
        {"o": user_id, "n": f"Design {slug}", "s": slug},
    ).scalar_one()


def _insert_posts(conn, design_id, published: list[datetime], prefix="p"):
    conn.execute(
        sa.text(
            """
            INSERT INTO content_records (published_at, platform, arena, platform_id, text_content, query_design_id)
            VALUES (:published_at, 'rss', 'rss_feeds', :platform_id, :text, :design)
            """
        ),
        [
            {"published_at": ts, "platform_id": f"{prefix}{i}", "text": f"Nyhed {i} fra Århus", "design": design_id}
            for i, ts in enumerate(published)
        ],
    )


def _rows_per_partition(conn) -> dict[str, int]:
    rows = conn.execute(
        sa.text("SELECT tableoid::regclass::text AS part, count(*) AS n FROM content_records GROUP BY 1")
    ).all()
    return {r.part: r.n for r in rows}


def test_ensure_creates_months_ahead_with_utc_bounds_and_is_idempotent(engine):
    now = datetime(2026, 6, 15, tzinfo=timezone.utc)
    first = partitions.ensure_partitions(engine, months_ahead=3, now=now)
    assert first.created == ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09"]
    assert first.existing == ["2026-02", "2026-03", "2026-04"]

    again = partitions.ensure_partitions(engine, months_ahead=3, now=now)
    assert again.created == []
    assert len(again.existing) == 8

    with engine.connect() as conn:
        conn.execute(sa.text("SET TimeZone = 'America/New_York'"))  # bounds must not depend on it
        bounds = {p.name: p.bound for p in partitions.list_partitions(conn)}
    september = bounds["content_records_2026_09"]
    assert september == "FOR VALUES FROM ('2026-08-31 20:00:00-04') TO ('2026-09-30 20:00:00-04')"
    assert bounds["content_records_default"] == "DEFAULT"


def test_new_partition_inherits_indexes_and_keys(engine):
    partitions.ensure_partitions(engine, months_ahead=1, now=datetime(2026, 5, 2, tzinfo=timezone.utc))
    with engine.connect() as conn:
        attached = (
            conn.execute(
                sa.text(
                    """
                SELECT parent_idx.relname
                FROM pg_inherits i
                JOIN pg_class child_idx ON child_idx.oid = i.inhrelid
                JOIN pg_class parent_idx ON parent_idx.oid = i.inhparent
                JOIN pg_index x ON x.indexrelid = child_idx.oid
                WHERE x.indrelid = 'content_records_2026_06'::regclass
                """
                )
            )
            .scalars()
            .all()
        )
    assert {
        "idx_content_platform",
        "idx_content_arena",
        "idx_content_published",
        "idx_content_query",
        "idx_content_hash",
        "idx_content_author",
        "idx_content_terms",
        "idx_content_metadata",
        "idx_content_fulltext",
    } <= set(attached)
    assert "pk_content_records" in attached
    assert "uq_content_corpus_item" in attached


def test_rows_parked_in_default_move_into_their_new_partition(engine):
    early = datetime(2026, 4, 10, tzinfo=timezone.utc)
    with engine.begin() as conn:
        design = _owner_and_design(conn)
        august = [
            datetime(2026, 8, 1, tzinfo=timezone.utc).replace(hour=h % 24, minute=i % 60)
            for i, h in enumerate(range(500))
        ]
        january = [datetime(2027, 1, 31, 23, 59, 59, tzinfo=timezone.utc)]
        backdated = [
            datetime(2019, 12, 24, 18, tzinfo=timezone.utc),
            datetime(2019, 12, 31, 23, 59, tzinfo=timezone.utc),
        ]
        _insert_posts(conn, design, august, "aug")
        _insert_posts(conn, design, january, "jan")
        _insert_posts(conn, design, backdated, "old")
        _insert_posts(conn, design, [datetime(2026, 3, 5, tzinfo=timezone.utc)], "mar")
        before_ids = set(conn.execute(sa.text("SELECT id FROM content_records")).scalars())
    with engine.connect() as conn:
        assert partitions.default_partition_months(conn) == {"2019-12": 2, "2026-08": 500, "2027-01": 1}

    result = partitions.ensure_partitions(engine, months_ahead=6, now=early)

    assert result.moved_rows == {"2019-12": 2, "2026-08": 500, "2027-01": 1}
    assert "2019-12" in result.created and "2027-01" in result.created
    with engine.connect() as conn:
        per_part = _rows_per_partition(conn)
        after_ids = set(conn.execute(sa.text("SELECT id FROM content_records")).scalars())
        assert partitions.default_partition_months(conn) == {}
    assert per_part == {
        "content_records_2019_12": 2,
        "content_records_2026_03": 1,
        "content_records_2026_08": 500,
        "content_records_2027_01": 1,
    }
    assert after_ids == before_ids  # nothing lost, nothing duplicated

    # The moved rows are still covered by the corpus unique key.
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            _insert_posts(conn, design, [august[7]], "aug")
            _insert_posts(conn, design, [august[7]], "aug")


def test_other_months_stay_writable_while_a_partition_is_created(engine):
    with engine.begin() as conn:
        design = _owner_and_design(conn)
    writer = engine.connect()
    writer_tx = writer.begin()
    # An open transaction that is writing March, and is still open while we create June.
    _insert_posts(writer, design, [datetime(2026, 3, 9, tzinfo=timezone.utc)], "open")

    done = threading.Event()
    errors: list[BaseException] = []

    def ensure():
        try:
            partitions.ensure_partitions(engine, months_ahead=1, now=datetime(2026, 5, 20, tzinfo=timezone.utc))
        except BaseException as err:  # reported below
            errors.append(err)
        finally:
            done.set()

    thread = threading.Thread(target=ensure)
    thread.start()
    finished_while_writer_open = done.wait(timeout=30)
    writer_tx.commit()
    writer.close()
    thread.join(timeout=30)
    assert not errors
    assert finished_while_writer_open, "creating a partition waited for a writer of another month"
    with engine.connect() as conn:
        assert "2026-06" in partitions.existing_months(conn)
        assert conn.execute(sa.text("SELECT count(*) FROM content_records_2026_03")).scalar_one() == 1


def test_partition_health_reports_missing_next_month_and_parked_rows(engine):
    june = datetime(2026, 6, 3, tzinfo=timezone.utc)
    health = partitions.partition_health(engine, now=june)
    assert health.next_month == "2026-07" and not health.next_month_exists and not health.healthy

    with engine.begin() as conn:
        design = _owner_and_design(conn)
        _insert_posts(conn, design, [datetime(2026, 6, 30, 23, 0, tzinfo=timezone.utc)], "jun")
    health = partitions.partition_health(engine, now=june)
    assert health.default_rows == {"2026-06": 1}

    partitions.ensure_partitions(engine, months_ahead=1, now=june)
    assert partitions.partition_health(engine, now=june).healthy


def test_ensure_rejects_negative_months_ahead(engine):
    with pytest.raises(ValueError, match="0 or more"):
        partitions.ensure_partitions(engine, months_ahead=-1)
