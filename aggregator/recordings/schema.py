"""The recordings area's tables (migration v5 in ``aggregator.migrations``).

``hq_recordings``: one row per verified MP3 an edge uploaded, unique per (edge, sha256) — the
upload's key, so a re-upload finds its row. ``hq_cdrs``: each edge's CDRs, projected from the
``cdr`` stream (``aggregator.recordings.projections``), so a call and its recordings join on
(edge, call_id) whichever arrived first. ``seq`` is the CDR message's: an edge re-sends a CDR when
it rewrites it, and only a later message replaces an earlier one.
"""
from __future__ import annotations

from typing import Any

import aggregator.recordings.projections  # noqa: F401  (registers the ``cdr`` projection)


def migrate(tx: Any, d: Any) -> None:
    tx.execute(f"""
        CREATE TABLE hq_recordings (
            id {d.auto_id},
            edge TEXT NOT NULL,
            call_id TEXT NOT NULL,
            leg INTEGER NOT NULL,
            agent TEXT NOT NULL,
            day TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            duration_s DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            uploaded_at DOUBLE PRECISION NOT NULL,
            UNIQUE (edge, sha256)
        )""")
    tx.execute("CREATE INDEX idx_hq_recordings_call ON hq_recordings (edge, call_id)")
    tx.execute("CREATE INDEX idx_hq_recordings_day_agent ON hq_recordings (day, agent)")
    tx.execute("""
        CREATE TABLE hq_cdrs (
            edge TEXT NOT NULL,
            call_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            started_at DOUBLE PRECISION,
            answered_at DOUBLE PRECISION,
            ended_at DOUBLE PRECISION,
            agent_id TEXT NOT NULL,
            caller TEXT NOT NULL,
            callee TEXT NOT NULL,
            direction TEXT NOT NULL,
            queue_group TEXT NOT NULL,
            disposition TEXT NOT NULL,
            wait_s DOUBLE PRECISION,
            talk_s DOUBLE PRECISION,
            hold_s DOUBLE PRECISION,
            body TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (edge, call_id)
        )""")
    tx.execute("CREATE INDEX idx_hq_cdrs_started ON hq_cdrs (started_at)")
    tx.execute("CREATE INDEX idx_hq_cdrs_agent ON hq_cdrs (agent_id, started_at)")
