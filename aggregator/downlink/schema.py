"""The downlink area's tables (migration v4 in ``aggregator.migrations``).

* ``downlink``: every HQ→edge message with its delivery state. ``state`` starts ``pending`` and
  becomes what the edge's ack says (``applied | duplicate | rejected``, with ``error``); the
  dispatcher counts ``sends`` and schedules the next re-send in ``next_send_at``.
* ``downlink_versions``: the last version handed out per (edge, kind, scope). A counter row of its
  own (``INSERT … ON CONFLICT DO UPDATE … RETURNING``) rather than ``max(version) + 1``, because two
  transactions reading the same max would both pick it; the row lock makes them queue.
* ``announcements`` and ``announcement_reads``: what HQ announced (SVC-1) and who read it where
  (an agent id is only unique inside its edge).

Importing this module registers the area's projections (``aggregator.downlink.projections``).
"""
from __future__ import annotations

from typing import Any

from aggregator.downlink import projections  # noqa: F401  (registers downlink.ack, announcement.read)


def migrate(tx: Any, d: Any) -> None:
    tx.execute("""
        CREATE TABLE downlink (
            id TEXT PRIMARY KEY,
            edge TEXT NOT NULL,
            kind TEXT NOT NULL,
            scope TEXT NOT NULL,
            version BIGINT NOT NULL,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'pending',
            error TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL DEFAULT '',
            sends INTEGER NOT NULL DEFAULT 0,
            last_sent_at DOUBLE PRECISION,
            next_send_at DOUBLE PRECISION NOT NULL,
            acked_at DOUBLE PRECISION,
            UNIQUE (edge, kind, scope, version)
        )""")
    # the dispatcher's question: which pending messages are due now
    tx.execute("CREATE INDEX idx_downlink_due ON downlink (state, next_send_at)")
    tx.execute("CREATE INDEX idx_downlink_created ON downlink (created_at)")
    tx.execute("""
        CREATE TABLE downlink_versions (
            edge TEXT NOT NULL,
            kind TEXT NOT NULL,
            scope TEXT NOT NULL,
            version BIGINT NOT NULL,
            PRIMARY KEY (edge, kind, scope)
        )""")
    tx.execute("""
        CREATE TABLE announcements (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            audience TEXT NOT NULL,
            priority TEXT NOT NULL,
            expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            created_by TEXT NOT NULL DEFAULT '',
            withdrawn_at DOUBLE PRECISION,
            edges INTEGER NOT NULL DEFAULT 0
        )""")
    tx.execute("CREATE INDEX idx_announcements_created ON announcements (created_at)")
    tx.execute("""
        CREATE TABLE announcement_reads (
            announcement_id TEXT NOT NULL,
            edge TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            read_at DOUBLE PRECISION NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (announcement_id, edge, agent_id)
        )""")
