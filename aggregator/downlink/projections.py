"""What the edges report back about the downlink, projected into HQ's tables.

* ``downlink.ack`` (stream ``downlink``): the edge applied, skipped or rejected a message; the
  ``downlink`` row takes the result (``queue.settle``).
* ``command.result`` (stream ``downlink``): what a command did once the edge's core ran it.
* ``health``: an edge that reports is online; its unacknowledged messages sent before the report
  are due again at once.
* ``announcement.read`` (stream ``announcement``): an agent read an announcement; one receipt per
  (announcement, edge, agent), the first read time kept.

Each runs once per stored message, inside the ingest batch's transaction. An ack that names a
message HQ never sent to that edge is refused (``ProjectionError``: dead-lettered with the reason):
the broker proves which edge published it, and an edge may only settle its own messages.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from aggregator.downlink import queue
from aggregator.envelope import DOWN_KINDS, DOWN_RESULTS
from aggregator.projections import ProjectionError, projection

if TYPE_CHECKING:
    from aggregator.envelope import Envelope

MAX_ERROR = 2000


@projection("downlink.ack")
def on_ack(tx: Any, envelope: "Envelope", now: float) -> None:
    body = envelope.body
    message_id = _text(body, "id", 64)
    result = body.get("result")
    if result not in DOWN_RESULTS:
        raise ProjectionError(f"result: expected one of {', '.join(DOWN_RESULTS)}, got {result!r:.80}")
    if body.get("kind") not in DOWN_KINDS:
        raise ProjectionError(f"kind: expected one of {', '.join(DOWN_KINDS)}, "
                              f"got {body.get('kind')!r:.80}")
    error = body.get("error") or ""
    if not isinstance(error, str):
        raise ProjectionError(f"error: expected text, got {error!r:.80}")
    if not queue.settle(tx, envelope.edge, message_id, result, error[:MAX_ERROR], now):
        raise ProjectionError(f"downlink message {message_id} was not sent to {envelope.edge}")


@projection("command.result")
def on_command_result(tx: Any, envelope: "Envelope", now: float) -> None:
    body = envelope.body
    message_id = _text(body, "id", 64)
    state = body.get("state")
    if state not in ("done", "failed"):
        raise ProjectionError(f"state: expected done or failed, got {state!r:.80}")
    result = body.get("result") or ""
    if not isinstance(result, str):
        raise ProjectionError(f"result: expected text, got {result!r:.80}")
    if not queue.record_result(tx, envelope.edge, message_id, f"{state}: {result}"[:MAX_ERROR]):
        raise ProjectionError(f"command {message_id} was not sent to {envelope.edge}")


@projection("announcement.read")
def on_read(tx: Any, envelope: "Envelope", now: float) -> None:
    body = envelope.body
    announcement_id = _text(body, "announcement_id", 64)
    agent_id = _text(body, "agent_id", 64)
    read_at = body.get("read_at")
    if isinstance(read_at, bool) or not isinstance(read_at, (int, float)) \
            or not math.isfinite(read_at):
        raise ProjectionError(f"read_at: expected an epoch number, got {read_at!r:.80}")
    sent = tx.execute("SELECT 1 FROM downlink WHERE edge = ? AND kind = 'announcement'"
                      " AND scope = ? LIMIT 1", (envelope.edge, announcement_id)).fetchone()
    if sent is None:
        raise ProjectionError(f"announcement {announcement_id} was not sent to {envelope.edge}")
    tx.execute("INSERT INTO announcement_reads (announcement_id, edge, agent_id, read_at,"
               " received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
               (announcement_id, envelope.edge, agent_id, float(read_at), now))


def _text(body: Mapping[str, Any], key: str, max_length: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ProjectionError(f"{key}: expected a non-empty string of at most {max_length} "
                              f"characters, got {value!r:.80}")
    return value


HEARD_MARGIN_S = 2.0


@projection("health")
def on_health(tx: Any, envelope: "Envelope", now: float) -> None:
    """An edge that reports its health is online and subscribed: what HQ sent it before that
    report and it has not acknowledged (sent before its first subscription, or lost with a
    broker's session) is due again now instead of after the resend back-off."""
    tx.execute("UPDATE downlink SET next_send_at = ? WHERE edge = ? AND state = 'pending'"
               " AND sends > 0 AND next_send_at > ? AND last_sent_at < ?",
               (now, envelope.edge, now, envelope.ts - HEARD_MARGIN_S))
