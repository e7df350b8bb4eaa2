"""HQ→edge messages (``cc/v1/<edge>/down/<kind>``): checked, applied once, acknowledged.

The sync publisher's thread hands every down message to ``Inbox.receive`` (the publisher owns the
MQTT client; the inbox only needs a SQLite connection). A message is JSON::

    {"id": "01JD3K…", "edge": "<this edge>", "kind": "config", "scope": "agents", "version": 3,
     "ts": 1795392102.5, "type": "config.section", "body": {...}}

It is applied only when its ``version`` is above the one last applied for its (kind, scope)
(``downlink_applied``): a redelivery or an older version is acknowledged ``duplicate`` and changes
nothing. Applying is one SQLite transaction holding the handler's writes, the new
``downlink_applied`` row and the ack's outbox row (stream ``downlink``, type ``downlink.ack``,
body ``{"id", "kind", "scope", "version", "result", "error"}``), so a crash leaves either all of
it or none, and HQ re-sends what was never acknowledged.

Handlers are registered per kind (``@register("config")``) and called as
``HANDLERS[kind](conn, message)`` inside that transaction; they only write to the store (the
runtime's core thread polls ``hq_config`` and ``hq_commands``). A handler raises
``DownlinkRejected(reason)`` for a body it cannot use: its writes are rolled back, the version is
recorded as ``rejected`` (a re-send is not tried again) and the ack carries the reason.

Bad input never stops the inbox: a payload that is not JSON, names another edge or an unknown
kind is logged and, when its id, kind, scope and version can be read, acknowledged ``rejected``
with the reason. A database error rolls everything back and sends no ack: HQ sends it again.
"""
from __future__ import annotations

import contextvars
import json
import logging
import math
import sqlite3
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from edge.errors import ConfigError, EdgeError
from edge.store.outbox_rows import add_to_outbox
from edge.sync.payloads import PayloadError, decode_json

log = logging.getLogger(__name__)

TOPIC_ROOT = "cc/v1"
ACK_STREAM, ACK_TYPE = "downlink", "downlink.ack"
MAX_NAME = 64
MAX_ERROR = 1000

Handler = Callable[[sqlite3.Connection, "DownMessage"], None]
HANDLERS: dict[str, Handler] = {}


class DownlinkRejected(EdgeError):
    """A down message this edge will not apply; the text is the reason HQ is told."""


def register(kind: str) -> Callable[[Handler], Handler]:
    """Register ``fn(conn, message)`` as the handler of one kind (the last registration wins)."""
    def decorate(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn
    return decorate


@dataclass(frozen=True)
class DownMessage:
    id: str
    edge: str
    kind: str
    scope: str
    version: int
    ts: float
    type: str
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalConfig:
    """The edge's own TOML as parsed (before validation) and its folder: what HQ's config
    sections are merged into and checked against (``edge.sync.hq_config``)."""
    raw: Mapping[str, Any]
    base_dir: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> "LocalConfig":
        """Read the TOML file; ``ConfigError`` if it cannot be read or parsed."""
        path = Path(path)
        try:
            return cls(tomllib.loads(path.read_text(encoding="utf-8")), str(path.parent))
        except OSError as exc:
            raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc


_LOCAL: contextvars.ContextVar[Callable[[], LocalConfig | None]] = contextvars.ContextVar(
    "local_config", default=lambda: None)


def local_config() -> LocalConfig | None:
    """The local config of the inbox applying the current message (handlers read it); None when
    the edge runs without one; ``ConfigError`` when its file cannot be read now."""
    return _LOCAL.get()()


@dataclass(frozen=True)
class Ack:
    id: str
    kind: str
    scope: str
    version: int
    result: str      # applied | duplicate | rejected
    error: str = ""

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "scope": self.scope, "version": self.version,
                "result": self.result, "error": self.error}


class Inbox:
    """Applies down messages for one edge. ``local`` is needed to accept config sections."""

    def __init__(self, edge_id: str, local: LocalConfig | None = None, *,
                 local_path: str | Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``local``: the local TOML as data; or ``local_path``: its file, read again for each
        config message (so a technician's edit on site is what HQ's sections are checked with)."""
        self.edge_id = edge_id
        self.local = local
        self.local_path = local_path
        self._clock = clock
        self.received = 0
        self.results: dict[str, int] = {"applied": 0, "duplicate": 0, "rejected": 0}

    def receive(self, conn: sqlite3.Connection, topic: str, payload: bytes) -> Ack | None:
        """Apply one message from the broker; returns the ack written (None: nothing was)."""
        self.received += 1
        try:
            return self._receive(conn, topic, payload)
        except sqlite3.Error as exc:
            log.error("downlink %s: not applied, the database failed (HQ will send it again): %s",
                      topic, exc)
        except Exception:  # noqa: BLE001 - a bug here must not stop the sync thread
            log.exception("downlink %s: unexpected error; not applied", topic)
        return None

    # --- the steps ----------------------------------------------------------------------------

    def _receive(self, conn: sqlite3.Connection, topic: str, payload: bytes) -> Ack | None:
        try:
            data = _decode(payload)
        except DownlinkRejected as exc:         # not JSON: nothing to acknowledge
            log.error("downlink %s: %s; dropped (%r)", topic, exc, bytes(payload[:200]))
            return None
        try:
            message = self._message(topic, data)
        except DownlinkRejected as exc:
            return self._reject_unreadable(conn, topic, data, str(exc))
        with _transaction(conn):
            ack = self._apply(conn, message)
            add_to_outbox(conn, ACK_STREAM, ACK_TYPE, ack.body(), self._clock())
        self.results[ack.result] += 1
        level = logging.WARNING if ack.result == "rejected" else logging.INFO
        log.log(level, "downlink %s %s/%s v%s: %s%s", message.id, message.kind, message.scope,
                message.version, ack.result, f" ({ack.error})" if ack.error else "")
        return ack

    def _message(self, topic: str, data: Any) -> DownMessage:
        if not isinstance(data, dict):
            raise DownlinkRejected(f"expected a JSON object, got {type(data).__name__}")
        message = DownMessage(
            id=_name(data, "id"), edge=_name(data, "edge"), kind=_name(data, "kind"),
            scope=_name(data, "scope", 128), version=_version(data), ts=_ts(data),
            type=_name(data, "type"), body=_body(data))
        if message.edge != self.edge_id:
            raise DownlinkRejected(f"edge: the message is for {message.edge!r}, this is "
                                   f"{self.edge_id!r}")
        if topic != f"{TOPIC_ROOT}/{self.edge_id}/down/{message.kind}":
            raise DownlinkRejected(f"kind {message.kind!r} does not match the topic {topic!r}")
        if message.kind not in HANDLERS:
            raise DownlinkRejected(f"unknown kind {message.kind!r} (this edge applies "
                                   f"{', '.join(sorted(HANDLERS))})")
        return message

    def _apply(self, conn: sqlite3.Connection, message: DownMessage) -> Ack:
        row = conn.execute("SELECT version FROM downlink_applied WHERE kind = ? AND scope = ?",
                           [message.kind, message.scope]).fetchone()
        if row is not None and message.version <= row[0]:
            return _ack(message, "duplicate", f"version {message.version} <= applied {row[0]}"
                        if message.version < row[0] else "")
        result, error = "applied", ""
        conn.execute("SAVEPOINT downlink_handler")
        token = _LOCAL.set(self._local_config)
        try:
            HANDLERS[message.kind](conn, message)
        except DownlinkRejected as exc:
            result, error = "rejected", str(exc)
        except sqlite3.Error:
            raise                               # the whole message waits for HQ's re-send
        except Exception as exc:  # noqa: BLE001 - a handler's bug rejects one message only
            log.exception("downlink %s: the %s handler failed", message.id, message.kind)
            result, error = "rejected", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            _LOCAL.reset(token)
        if result == "rejected":
            conn.execute("ROLLBACK TO downlink_handler")
        conn.execute("RELEASE downlink_handler")
        conn.execute("INSERT INTO downlink_applied (kind, scope, version, id, result, applied_at)"
                     " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, scope) DO UPDATE SET"
                     " version = excluded.version, id = excluded.id, result = excluded.result,"
                     " applied_at = excluded.applied_at",
                     [message.kind, message.scope, message.version, message.id, result,
                      self._clock()])
        return _ack(message, result, error)

    def _local_config(self) -> LocalConfig | None:
        if self.local is None and self.local_path:
            return LocalConfig.load(self.local_path)
        return self.local

    def _reject_unreadable(self, conn: sqlite3.Connection, topic: str, data: Any,
                           reason: str) -> Ack | None:
        """A message that cannot be applied at all: acked ``rejected`` if HQ can tell which."""
        fields = data if isinstance(data, dict) else {}
        key = (fields.get("id"), fields.get("kind"), fields.get("scope"), fields.get("version"))
        readable = all(isinstance(v, str) and v for v in key[:3]) and \
            isinstance(key[3], int) and not isinstance(key[3], bool)
        if not readable:
            log.error("downlink %s: %s; no id/kind/scope/version to acknowledge, dropped (%r)",
                      topic, reason, json.dumps(data, ensure_ascii=False)[:200])
            return None
        ack = Ack(str(key[0])[:MAX_NAME], str(key[1])[:MAX_NAME], str(key[2])[:128], int(key[3]),
                  "rejected", reason[:MAX_ERROR])
        with _transaction(conn):
            add_to_outbox(conn, ACK_STREAM, ACK_TYPE, ack.body(), self._clock())
        self.results["rejected"] += 1
        log.warning("downlink %s on %s rejected: %s", ack.id, topic, reason)
        return ack


def _ack(message: DownMessage, result: str, error: str = "") -> Ack:
    return Ack(message.id, message.kind, message.scope, message.version, result, error[:MAX_ERROR])


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE``: take the write lock first, so two writers never deadlock upgrading."""
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


# --- parsing ---------------------------------------------------------------------------------------

def _decode(payload: bytes) -> Any:
    try:
        return decode_json(payload)
    except PayloadError as exc:
        raise DownlinkRejected(str(exc)) from None


def _name(data: Mapping[str, Any], key: str, max_length: int = MAX_NAME) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_length \
            or any(c in value for c in "/+#\0"):
        raise DownlinkRejected(f"{key}: expected a name of 1 to {max_length} characters without "
                               f"/+#, got {value!r:.80}")
    return value


def _version(data: Mapping[str, Any]) -> int:
    value = data.get("version")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise DownlinkRejected(f"version: expected an integer >= 1, got {value!r:.80}")
    return value


def _ts(data: Mapping[str, Any]) -> float:
    value = data.get("ts")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DownlinkRejected(f"ts: expected epoch seconds, got {value!r:.80}")
    return float(value)


def _body(data: Mapping[str, Any]) -> Mapping[str, Any]:
    value = data.get("body")
    if not isinstance(value, dict):
        raise DownlinkRejected(f"body: expected a JSON object, got {type(value).__name__}")
    return value


def _load_handlers() -> None:
    """The handlers of this package, and the customers helper's when it is installed."""
    from edge.sync import announcements, hq_commands, hq_config  # noqa: F401  (register)
    try:
        from edge.sync import reference  # noqa: F401  (registers customers, reference)
    except ImportError as exc:
        if getattr(exc, "name", "") != "edge.sync.reference":
            raise
        log.debug("edge.sync.reference not installed: customers/reference not applied")


_load_handlers()
