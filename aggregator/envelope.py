"""The edge→HQ wire contract: topics, the event envelope, and the HQ→edge ack. Pure, no I/O.

An edge publishes each outbox row on ``cc/v1/<edge>/up/<stream>`` (QoS 1) as a JSON envelope::

    {"id": "01JD3K2...", "edge": "edge-a", "stream": "cdr", "seq": 42, "ts": 1795392102.5,
     "type": "cdr", "body": {...}}

``seq`` counts 1, 2, 3 … per (edge, stream). HQ answers on ``cc/v1/<edge>/down/ack`` (QoS 1,
retained) with ``{"acks": {"<stream>": <hwm>, ...}, "ts": <epoch>}``: every seq up to ``hwm`` of
that stream is committed at HQ, so the edge may delete those outbox rows.

HQ sends edges versioned messages on ``cc/v1/<edge>/down/<kind>`` (QoS 1, not retained; kinds in
``DOWN_KINDS``) as ``DownMessage`` JSON::

    {"id": "01JD3K…", "edge": "edge-a", "kind": "config", "scope": "agents", "version": 3,
     "ts": 1795392102.5, "type": "config.section", "body": {...}}

``version`` counts 1, 2, 3 … per (edge, kind, scope); the edge applies a message only when its
version is above the one it applied last for that (kind, scope), and acknowledges it on its
``downlink`` stream (type ``downlink.ack``).

``parse(topic, payload)`` accepts a message or raises ``EnvelopeError`` whose text is the reason a
dead letter is filed under. The topic is part of the check: the broker guarantees who published
(an edge may write only under its own ``cc/v1/<id>/up/#``), so an envelope whose ``edge`` or
``stream`` disagrees with its topic comes from a forged or confused publisher and is not trusted.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from aggregator import AggregatorError
from edge.sync.payloads import PayloadError, decode_json

TOPIC_ROOT = "cc/v1"
UP_FILTER = f"{TOPIC_ROOT}/+/up/#"
DOWN_KINDS = ("config", "command", "announcement", "customers", "reference")
DOWN_RESULTS = ("applied", "duplicate", "rejected")
MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 64
MAX_SEQ = 2**63 - 1   # a 64-bit column in SQLite and PostgreSQL


class EnvelopeError(AggregatorError):
    """A message that is not a valid envelope; the text is the reason, for the dead letter."""


@dataclass(frozen=True)
class Envelope:
    id: str
    edge: str
    stream: str
    seq: int
    ts: float
    type: str
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return up_topic(self.edge, self.stream)

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "edge": self.edge, "stream": self.stream, "seq": self.seq,
                           "ts": self.ts, "type": self.type, "body": self.body},
                          separators=(",", ":"), ensure_ascii=False).encode()

    def body_json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class DownMessage:
    """One HQ→edge message as it goes on the wire (and as the ``downlink`` table keeps it)."""

    id: str
    edge: str
    kind: str
    scope: str
    version: int
    ts: float
    type: str
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return down_topic(self.edge, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "edge": self.edge, "kind": self.kind, "scope": self.scope,
                "version": self.version, "ts": self.ts, "type": self.type, "body": dict(self.body)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def down_topic(edge: str, kind: str) -> str:
    return f"{TOPIC_ROOT}/{edge}/down/{kind}"


def check_down_name(what: str, value: Any, max_length: int = MAX_NAME_LENGTH) -> str:
    """An edge id, kind or scope that can stand in a topic and a key; raises ``EnvelopeError``."""
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"{what}: expected a non-empty string, got {value!r:.80}")
    if len(value) > max_length or any(c in value for c in "/+#\0"):
        raise EnvelopeError(f"{what}: {value!r:.80} is too long or holds a topic character")
    return value


def up_topic(edge: str, stream: str) -> str:
    return f"{TOPIC_ROOT}/{edge}/up/{stream}"


def ack_topic(edge: str) -> str:
    return f"{TOPIC_ROOT}/{edge}/down/ack"


def ack_payload(hwms: Mapping[str, int], ts: float) -> bytes:
    """The retained ack of one edge: the high-water mark of each of its streams."""
    return json.dumps({"acks": dict(sorted(hwms.items())), "ts": ts}, separators=(",", ":")).encode()


def parse_up_topic(topic: str) -> tuple[str, str]:
    """``cc/v1/<edge>/up/<stream>`` -> (edge, stream)."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT or parts[3] != "up" \
            or not parts[2] or not parts[4]:
        raise EnvelopeError(f"topic {topic!r} is not {TOPIC_ROOT}/<edge>/up/<stream>")
    return parts[2], parts[4]


def parse(topic: str, payload: bytes) -> Envelope:
    """Validate one received message against its topic; raises ``EnvelopeError`` with the reason."""
    topic_edge, topic_stream = parse_up_topic(topic)
    data = _decode(payload)
    envelope = from_dict(data)
    if envelope.edge != topic_edge:
        raise EnvelopeError(f"edge mismatch: envelope says {envelope.edge!r}, topic is {topic_edge!r}")
    if envelope.stream != topic_stream:
        raise EnvelopeError(
            f"stream mismatch: envelope says {envelope.stream!r}, topic is {topic_stream!r}")
    return envelope


REJECTED_TYPE = "rejected"


def stand_in(topic: str, payload: bytes, reason: str, ts: float) -> Envelope | None:
    """For a message that is no valid envelope but still names its topic's edge and stream, an
    id and a seq: a stand-in (type ``rejected``, the reason as body) that marks that seq as
    received, so the stream's high-water mark moves on and the edge stops re-sending what HQ can
    never store. The payload itself is kept in ``dead_letters``; None when it cannot be placed."""
    try:
        edge, stream = parse_up_topic(topic)
        data = _decode(payload)
        if not isinstance(data, dict) or data.get("edge") != edge or data.get("stream") != stream:
            return None
        return Envelope(_name(data, "id", MAX_ID_LENGTH), edge, stream, _seq(data), ts,
                        REJECTED_TYPE, {"reason": reason[:500]})
    except EnvelopeError:
        return None


def from_dict(data: Any) -> Envelope:
    """An ``Envelope`` from decoded JSON; extra keys are tolerated (a newer edge may add some)."""
    if not isinstance(data, dict):
        raise EnvelopeError(f"envelope: expected a JSON object, got {type(data).__name__}")
    return Envelope(
        id=_name(data, "id", MAX_ID_LENGTH),
        edge=_name(data, "edge", MAX_NAME_LENGTH),
        stream=_name(data, "stream", MAX_NAME_LENGTH),
        seq=_seq(data),
        ts=_ts(data),
        type=_name(data, "type", MAX_NAME_LENGTH),
        body=_body(data),
    )


def _decode(payload: bytes) -> Any:
    try:
        return decode_json(payload)
    except PayloadError as exc:
        raise EnvelopeError(str(exc)) from None


def _required(data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise EnvelopeError(f"{key}: missing")
    return data[key]


def _name(data: Mapping[str, Any], key: str, max_length: int) -> str:
    value = _required(data, key)
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"{key}: expected a non-empty string, got {value!r:.80}")
    if len(value) > max_length or "/" in value or "+" in value or "#" in value:
        raise EnvelopeError(f"{key}: {value!r:.80} is too long or holds a topic character")
    return value


def _seq(data: Mapping[str, Any]) -> int:
    value = _required(data, "seq")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEQ:
        raise EnvelopeError(f"seq: expected an integer from 1 to 2**63-1, got {value!r:.80}")
    return value


def _ts(data: Mapping[str, Any]) -> float:
    value = _required(data, "ts")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EnvelopeError(f"ts: expected an epoch number, got {value!r:.80}")
    return float(value)


def _body(data: Mapping[str, Any]) -> Mapping[str, Any]:
    value = _required(data, "body")
    if not isinstance(value, dict):
        raise EnvelopeError(f"body: expected a JSON object, got {type(value).__name__}")
    return value
