"""The ``downlink`` table: HQ→edge messages, their versions and their delivery state.

``enqueue`` is the one way a message is created: inside the caller's transaction it takes the next
version of (edge, kind, scope) and stores the message ``pending``, so the change that caused it (an
announcement row, an audit entry) and the message commit together. The dispatcher
(``aggregator.downlink.dispatch``) publishes what is due and records each send; the edge's
``downlink.ack`` (``aggregator.downlink.projections``) settles the state.

Example::

    with db.transaction() as tx:
        message = enqueue(tx, "edge-a", "command", new_scope(), "command", {"name": "sync.resend",
                                                                            "args": {}})
    message.version   # 1
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

from ulid import ULID

from aggregator.envelope import DOWN_KINDS, DOWN_RESULTS, DownMessage, EnvelopeError, check_down_name

STATES = ("pending", *DOWN_RESULTS)
MAX_BODY_BYTES = 256 * 1024     # a config section or a flow; the broker takes far more
COLUMNS = ("id, edge, kind, scope, version, type, body, created_at, created_by, state, error, "
           "result, sends, last_sent_at, next_send_at, acked_at")


class DownlinkError(EnvelopeError):
    """A message that cannot be queued (a bad edge, kind, scope or body); the text says why."""


@dataclass(frozen=True)
class QueuedMessage:
    """A ``downlink`` row: the message and what became of it."""

    message: DownMessage
    created_by: str
    state: str
    error: str
    result: str
    sends: int
    last_sent_at: float | None
    next_send_at: float
    acked_at: float | None

    def to_dict(self) -> dict[str, Any]:
        m = self.message
        return {"id": m.id, "edge": m.edge, "kind": m.kind, "scope": m.scope,
                "version": m.version, "type": m.type, "body": dict(m.body), "created_at": m.ts,
                "created_by": self.created_by, "state": self.state, "error": self.error,
                "result": self.result, "sends": self.sends, "last_sent_at": self.last_sent_at,
                "acked_at": self.acked_at}


def new_scope() -> str:
    """A scope of its own (a command, an announcement): ULIDs sort by time, so dispatch order
    follows creation order."""
    return str(ULID())


def enqueue(tx: Any, edge: str, kind: str, scope: str, type: str, body: Mapping[str, Any], *,
            created_by: str = "", now: float | None = None) -> DownMessage:
    """Store one pending message with the next version of (edge, kind, scope); returns it."""
    if kind not in DOWN_KINDS:
        raise DownlinkError(f"kind: expected one of {', '.join(DOWN_KINDS)}, got {kind!r}")
    try:
        check_down_name("edge", edge)
        check_down_name("scope", scope, 128)
        check_down_name("type", type)
    except EnvelopeError as exc:
        raise DownlinkError(str(exc)) from None
    if not isinstance(body, Mapping):
        raise DownlinkError(f"body: expected an object, got {body.__class__.__name__}")
    text = json.dumps(dict(body), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_BODY_BYTES:
        raise DownlinkError(f"body: {len(text.encode())} bytes, over {MAX_BODY_BYTES}")
    now = time.time() if now is None else now
    version = int(tx.execute(
        "INSERT INTO downlink_versions (edge, kind, scope, version) VALUES (?, ?, ?, 1)"
        " ON CONFLICT (edge, kind, scope) DO UPDATE SET version = downlink_versions.version + 1"
        " RETURNING version", (edge, kind, scope)).fetchone()[0])
    message = DownMessage(str(ULID()), edge, kind, scope, version, now, type, json.loads(text))
    tx.execute(
        "INSERT INTO downlink (id, edge, kind, scope, version, type, body, created_at, created_by,"
        " state, next_send_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        (message.id, edge, kind, scope, version, type, text, now, created_by, now))
    return message


def due(db: Any, now: float, limit: int, skip: Sequence[str] = ()) -> list[DownMessage]:
    """Pending messages whose (re-)send is due, per edge in the order HQ created them (a config
    section is checked against those stored before it, so an ``agents`` section pushed before a
    ``vip`` that names its agents must arrive first); versions of one scope are created in order,
    so they stay in version order."""
    rows = db.query(
        "SELECT id, edge, kind, scope, version, created_at, type, body FROM downlink"
        " WHERE state = 'pending' AND next_send_at <= ?"
        " ORDER BY edge, created_at, kind, scope, version LIMIT ?", (now, limit + len(skip)))
    skipped = set(skip)
    messages = [DownMessage(i, e, k, s, int(v), ts, t, json.loads(b))
                for i, e, k, s, v, ts, t, b in rows if i not in skipped]
    return messages[:limit]


def record_sends(tx: Any, sent: Mapping[str, float], resend_s: float, resend_max_s: float) -> None:
    """The broker took these messages (PUBACK) at the given times; the next send of one that is
    still pending waits ``resend_s`` doubled per earlier send, at most ``resend_max_s``, so an
    edge that stays offline for days does not pile copies up in its broker session."""
    for message_id, at in sent.items():
        row = tx.execute("SELECT sends FROM downlink WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            continue
        sends = int(row[0]) + 1
        wait = min(resend_s * 2 ** min(sends - 1, 30), resend_max_s)
        tx.execute("UPDATE downlink SET sends = ?, last_sent_at = ?, next_send_at = ? WHERE id = ?",
                   (sends, at, at + wait, message_id))


def settle(tx: Any, edge: str, message_id: str, result: str, error: str, now: float) -> bool:
    """Apply an edge's ack. ``applied`` and ``rejected`` are final; ``duplicate`` (a redelivery,
    or a version the edge had already passed) settles only a pending row, so a late duplicate
    ack never hides that the first delivery was applied. False when the id is not this edge's."""
    row = tx.execute("SELECT state FROM downlink WHERE id = ? AND edge = ?",
                     (message_id, edge)).fetchone()
    if row is None:
        return False
    state = row[0]
    if state == "pending" or (state == "duplicate" and result != "duplicate"):
        tx.execute("UPDATE downlink SET state = ?, error = ?, acked_at = ? WHERE id = ?",
                   (result, error, now, message_id))
    return True


def record_result(tx: Any, edge: str, message_id: str, result: str) -> bool:
    """What a command did on the edge (``command.result``)."""
    return tx.execute("UPDATE downlink SET result = ? WHERE id = ? AND edge = ?",
                      (result, message_id, edge)).rowcount == 1


def get(db: Any, message_id: str) -> QueuedMessage | None:
    rows = db.query(f"SELECT {COLUMNS} FROM downlink WHERE id = ?", (message_id,))
    return _row(rows[0]) if rows else None


def listing(db: Any, *, edge: str | None = None, kind: str | None = None,
            scope: str | None = None, state: str | None = None, limit: int = 100,
            before: str | None = None,
            edges: Collection[str] | None = None) -> list[QueuedMessage]:
    """Newest first; ``before`` (an id) pages back; ``edges`` limits to those edges."""
    clauses: list[str] = []
    params: list[Any] = []
    if edges is not None:
        if not edges:
            return []
        clauses.append(f"edge IN ({', '.join('?' for _ in edges)})")
        params.extend(sorted(edges))
    for column, value in (("edge", edge), ("kind", kind), ("scope", scope), ("state", state)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.query(f"SELECT {COLUMNS} FROM downlink{where} ORDER BY id DESC LIMIT ?",
                    (*params, limit))
    return [_row(row) for row in rows]


def counts(db: Any, edge: str | None = None) -> dict[str, int]:
    """Messages per state (a fleet page, a test)."""
    where, params = (" WHERE edge = ?", (edge,)) if edge is not None else ("", ())
    rows = db.query(f"SELECT state, count(*) FROM downlink{where} GROUP BY state", params)
    return {state: int(n) for state, n in rows}


def counts_for_scope(db: Any, kind: str, scope: str,
                     edges: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per edge, the state of its latest version of (kind, scope): an announcement's delivery."""
    rows = db.query("SELECT edge, version, state, error FROM downlink WHERE kind = ? AND scope = ?"
                    " ORDER BY edge, version", (kind, scope))
    latest = {edge: {"version": int(v), "state": st, "error": err} for edge, v, st, err in rows
              if edges is None or edge in edges}
    return latest


def _row(row: Sequence[Any]) -> QueuedMessage:
    (id_, edge, kind, scope, version, type_, body, created_at, created_by, state, error, result,
     sends, last_sent_at, next_send_at, acked_at) = row
    return QueuedMessage(DownMessage(id_, edge, kind, scope, int(version), created_at, type_,
                                     json.loads(body)),
                         created_by, state, error, result, int(sends), last_sent_at, next_send_at,
                         acked_at)
