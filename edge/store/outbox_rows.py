"""The sync outbox (ARCHITECTURE.md principle 3): what HQ must get, written in the same SQLite
transaction as the row it reports (a CDR, a notification), so a crash can never keep one and lose
the other.

Each row is one envelope of a stream (``cdr``, ``agent``, ``call``, ``recording``, ``task``,
``event``) with the stream's next ``seq`` from ``outbox_seq`` — a counter of its own, because
acknowledged rows are deleted and ``max(seq)`` would then go back. ``edge.sync.publisher`` sends
rows in order and deletes them only when HQ's committed high-water mark for the stream covers them.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from ulid import ULID

STREAM_OF_TOPIC = (("agent.", "agent"), ("call.", "call"), ("queue.", "call"),
                   ("transfer.", "call"), ("recording.", "recording"), ("voicemail.", "recording"),
                   ("task.", "task"), ("callback.", "task"), ("remote_dial.", "task"))


def stream_of(topic: str) -> str:
    return next((stream for prefix, stream in STREAM_OF_TOPIC if topic.startswith(prefix)), "event")


def add_to_outbox(conn: Any, stream: str, kind: str, body: Mapping[str, Any] | str,
                  ts: float) -> int:
    """Inside the caller's transaction: append one envelope; returns its ``seq``."""
    # one statement bumps and reads the counter (RETURNING); fetchall() runs it to completion
    seq = int(conn.execute("INSERT INTO outbox_seq (stream, last) VALUES (?, 1) "
                           "ON CONFLICT(stream) DO UPDATE SET last = last + 1 RETURNING last",
                           [stream]).fetchall()[0][0])
    text = body if isinstance(body, str) else json.dumps(dict(body), ensure_ascii=False,
                                                        sort_keys=True, default=str)
    conn.execute("INSERT INTO outbox (stream, seq, id, ts, type, body) VALUES (?, ?, ?, ?, ?, ?)",
                 [stream, seq, str(ULID()), ts, kind, text])
    return seq


class OutboxRows:
    """Mixed into ``Store``: what the outbox holds (status pages, tests, the health report)."""

    def outbox_depth(self, stream: str | None = None) -> int:
        with self._guard("outbox depth") as db:  # type: ignore[attr-defined]
            if stream is None:
                return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
            return int(db.execute("SELECT count(*) FROM outbox WHERE stream = ?",
                                  [stream]).fetchone()[0])
