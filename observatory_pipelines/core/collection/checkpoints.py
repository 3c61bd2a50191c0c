"""Where each paged query of a corpus stands, so a re-run resumes instead of paying twice.

A row per (design, arena, month, source, UTC day): the arena's last ``Checkpoint`` for that source
that day. It is written only after the items before it are stored (the runner flushes first), so
resuming from it never skips an item that was not stored. A later day starts a new row: paid
searches are repeated on purpose then (new results, rank history), and the arena may use the last
state it saw (a newest id) to fetch only what is new.
"""

from __future__ import annotations

import json
import uuid
from datetime import date

import sqlalchemy as sa

from observatory_pipelines.core.collection.arenas.base import Checkpoint, Resume


def load(conn: sa.Connection, design_id: uuid.UUID, arena: str, month: str, today: date) -> dict[str, Resume]:
    """Each source's latest checkpoint in this corpus, by source."""
    rows = conn.execute(
        sa.text(
            """
            SELECT DISTINCT ON (source) source, state, finished, collection_day
            FROM collection_checkpoints
            WHERE query_design_id = :design AND arena = :arena AND month = :month
            ORDER BY source, collection_day DESC
            """
        ),
        {"design": design_id, "arena": arena, "month": month},
    )
    return {
        row.source: Resume(state=row.state, finished=row.finished, today=row.collection_day == today) for row in rows
    }


def save(engine: sa.Engine, design_id: uuid.UUID, arena: str, month: str, today: date, checkpoint: Checkpoint) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO collection_checkpoints
                    (query_design_id, arena, month, source, collection_day, state, finished)
                VALUES (:design, :arena, :month, :source, :day, CAST(:state AS jsonb), :finished)
                ON CONFLICT (query_design_id, arena, month, source, collection_day)
                DO UPDATE SET state = EXCLUDED.state, finished = EXCLUDED.finished, updated_at = now()
                """
            ),
            {
                "design": design_id,
                "arena": arena,
                "month": month,
                "source": checkpoint.source,
                "day": today,
                "state": json.dumps(dict(checkpoint.state), sort_keys=True),
                "finished": checkpoint.finished,
            },
        )
