"""The ``cdr`` projection: each edge CDR into ``hq_cdrs``, in the ingest batch's transaction.

It runs on the ingest hot path, so it is one ``INSERT … ON CONFLICT DO UPDATE`` and no read. The
edge rewrites a CDR when a call is finished twice (and re-queues it), so a row is replaced only
by a message with a higher ``seq`` of the stream: with several consumers an older message may be
stored after a newer one. A field of the wrong type is stored as NULL/empty, as the edge's own
store does; only a body without a ``call_id`` is refused (dead-lettered).
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

from aggregator.envelope import Envelope
from aggregator.projections import ProjectionError, projection

_TEXTS = (("agent_id", "agent_id"), ("caller", "caller"), ("callee", "callee"),
          ("direction", "direction"), ("group", "queue_group"), ("disposition", "disposition"))
_NUMBERS = ("started_at", "answered_at", "ended_at", "wait_s", "talk_s", "hold_s")
_COLUMNS = ("edge", "call_id", "seq", *(column for _, column in _TEXTS), *_NUMBERS, "body",
            "updated_at")
_UPSERT = (f"INSERT INTO hq_cdrs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
           " ON CONFLICT (edge, call_id) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
           + " WHERE hq_cdrs.seq < excluded.seq")


@projection("cdr")
def store_cdr(tx: Any, envelope: Envelope, now: float) -> None:
    if envelope.type != "cdr":
        return
    tx.execute(_UPSERT, cdr_row(envelope, now))


def cdr_row(envelope: Envelope, now: float) -> list[Any]:
    body = envelope.body
    if not isinstance(body, Mapping):
        raise ProjectionError("a CDR body must be an object")
    call_id = body.get("call_id")
    if not isinstance(call_id, str) or not call_id.strip():
        raise ProjectionError(f"a CDR needs a call_id, got {call_id!r}")
    texts = [_text(body.get(key)) for key, _ in _TEXTS]
    numbers = [_number(body.get(key)) for key in _NUMBERS]
    text = json.dumps(dict(body), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return [envelope.edge, call_id, envelope.seq, *texts, *numbers, text, now]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
