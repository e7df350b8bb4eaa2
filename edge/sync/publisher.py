"""Drain the outbox to HQ over MQTT (ARCHITECTURE.md "Sync over MQTT", principle 3).

One thread owns the paho client and drives it (its own ``select`` on the MQTT socket and a
wake-up socket, then ``loop_read``/``loop_write``/``loop_misc``), because paho's own network
thread with a wide in-flight window gets slower as the window grows. ``wake()`` (the store calls
it after each commit that queued rows) ends the wait at once, so an event goes out within
microseconds of its commit instead of at the next poll. Rows go out in ``seq`` order per
stream as QoS 1 envelopes ``{id, edge, stream, seq, ts, type, body}`` on
``cc/v1/<edge>/up/<stream>``; up to ``in_flight`` per stream are unacknowledged at a time.

A PUBACK only means the broker has the message in memory. A row leaves the outbox when HQ's
committed high-water mark for its stream (retained on ``cc/v1/<edge>/down/ack``) covers it. Rows
still there ``resend_s`` after they went out are sent again (HQ ignores the duplicates), and so is
everything unacknowledged after a reconnect. The session is persistent (``clean_session`` off), so
acks published while the edge was away are delivered when it comes back; the retained ack covers a
lost session.

The same client subscribes to ``cc/v1/<edge>/down/#`` (QoS 1): besides the ack, HQ's versioned
messages (config, commands, announcements …) arrive there and go to ``edge.sync.inbox.Inbox``,
which applies each in one transaction on this thread's connection, inside the message callback,
so paho PUBACKs it only after the commit; the ack the inbox queues goes out on the next turn.
"""
from __future__ import annotations

import json
import logging
import select
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as mqtt

from edge.sync.inbox import Inbox
from edge.sync.sockets import corked

log = logging.getLogger(__name__)

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.05, 5.0
IDLE_WAIT_S = 0.05  # the longest wait for the socket when nobody wakes the publisher
BUSY_RETRY_S = 0.1  # after the store stayed locked past its busy timeout


FIRST_RESEND_S = 0.5   # the first re-send wait on a new connection before HQ has answered


@dataclass
class _Stream:
    next_seq: int = 1        # the next seq to publish
    acked: int = 0           # HQ's committed high-water mark
    progress_at: float = field(default_factory=time.monotonic)  # last ack progress (or send)
    heard: bool = False      # HQ's mark moved since this connection began
    quick_resends: int = 0   # re-sends before HQ was heard on this connection


class SyncPublisher:
    def __init__(self, store_path: str, edge_id: str, host: str, port: int, username: str,
                 password: str, *, in_flight: int = 1000, resend_s: float = 5.0,
                 synchronous: str = "NORMAL", local_config_path: str = "",
                 wake_socket: socket.socket | None = None,
                 on_turn: Callable[[], None] | None = None,
                 busy_timeout_s: float = 5.0) -> None:
        """``local_config_path``: the edge's TOML, which HQ's config sections are checked
        against (without it they are rejected). Options are plain values: ``SyncProcess``
        hands them to a child process as JSON. ``wake_socket``: another socket whose bytes wake
        the thread like ``wake()`` (the parent's, when this runs in ``edge.sync.process``);
        ``on_turn``: called once per turn before the outbox is read (it clears the parent's
        "woken" flag, so every commit after it wakes the thread again)."""
        self.store_path = store_path
        self.edge_id = edge_id
        self.host, self.port = host, port
        self.in_flight = in_flight
        self.resend_s = resend_s
        self.synchronous = synchronous
        self.up_prefix = f"cc/v1/{edge_id}/up/"
        self.ack_topic = f"cc/v1/{edge_id}/down/ack"
        self.down_filter = f"cc/v1/{edge_id}/down/#"   # the ack and HQ's messages
        self.inbox = Inbox(edge_id, local_path=local_config_path or None)
        self._db: sqlite3.Connection | None = None     # the thread's, for the inbox
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{edge_id}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(0)  # our window, not paho's, bounds what is out
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_socket_open = _no_delay  # Nagle would hold small publishes ~40 ms
        self.client.on_message = self._on_message
        self.streams: dict[str, _Stream] = {}
        self._acks: dict[str, int] = {}
        self._connected = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_socks = [self._wake_r] + ([wake_socket] if wake_socket is not None else [])
        self._on_turn = on_turn
        self.busy_timeout_s = busy_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.deleted = 0

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sync-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        """Rows were committed: look at the outbox now (any thread; never blocks)."""
        try:
            self._wake_w.send(b"!")
        except OSError:  # the pipe is full (already woken) or closed (stopped)
            pass

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        db = sqlite3.connect(self.store_path, timeout=self.busy_timeout_s)
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        self._db = db
        backoff = RECONNECT_MIN_S
        try:
            while not self._stop.is_set():
                if not self._connected and not self._connect():
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, RECONNECT_MAX_S)
                    continue
                backoff = RECONNECT_MIN_S
                rc = self._io(IDLE_WAIT_S)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    self._lost(f"loop: {mqtt.error_string(rc)}")
                    continue
                if self._on_turn is not None:
                    self._on_turn()
                try:
                    self._apply_acks(db)
                    self._publish_due(db)
                except sqlite3.OperationalError as exc:
                    # "database is locked": a writer kept the lock past the busy timeout (a
                    # burst of FULL commits can starve us); the acks are kept, try next turn
                    log.warning("sync: store busy, retrying: %s", exc)
                    self._stop.wait(BUSY_RETRY_S)
        except Exception:
            log.exception("sync publisher failed; it stops (the outbox keeps every row)")
        finally:
            db.close()
            try:
                self.client.disconnect()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    def _io(self, timeout: float) -> int:
        """One turn of paho's network work, waiting at most ``timeout`` for the socket or a wake-up."""
        sock = self.client.socket()
        if sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        writable = [sock] if self.client.want_write() else []
        readable, _, _ = select.select([sock, *self._wake_socks], writable, [], timeout)
        for wake in self._wake_socks:
            if wake in readable:
                try:
                    while wake.recv(4096):
                        pass
                except OSError:
                    pass
        if sock in readable:
            rc = self.client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return rc
        if self.client.want_write():
            rc = self.client.loop_write()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return rc
        return self.client.loop_misc()

    def _connect(self) -> bool:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            log.warning("sync: cannot reach the broker %s:%s: %s", self.host, self.port, exc)
            return False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self._connected and not self._stop.is_set():
            if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                return False
        return self._connected

    def _lost(self, why: str) -> None:
        log.warning("sync: broker connection lost (%s); reconnecting", why)
        self._connected = False
        self._restart_streams()

    def _restart_streams(self) -> None:
        """Everything not acknowledged goes again, and HQ has not been heard on this connection."""
        for stream in self.streams.values():
            stream.next_seq = stream.acked + 1
            stream.heard, stream.quick_resends = False, 0

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if reason.is_failure:
            log.error("sync: broker refused the connection: %s", reason)
            return
        client.subscribe(self.down_filter, qos=1)
        self._connected = True
        self._restart_streams()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.ack_topic:
            self._on_down(msg)
            return
        try:
            acks = json.loads(msg.payload.decode("utf-8"))["acks"]
            for stream, hwm in acks.items():
                if isinstance(hwm, int):
                    self._acks[stream] = max(hwm, self._acks.get(stream, 0))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("sync: unreadable ack on %s ignored: %s (%r)", msg.topic, exc, msg.payload[:200])

    def _on_down(self, msg: mqtt.MQTTMessage) -> None:
        """An HQ message: applied here, before paho PUBACKs it (the inbox never raises)."""
        if self._db is None:
            log.error("sync: down message on %s before the store was open; HQ re-sends it",
                      msg.topic)
            return
        self.inbox.receive(self._db, msg.topic, bytes(msg.payload))

    # --- outbox -------------------------------------------------------------------------------

    def _apply_acks(self, db: sqlite3.Connection) -> None:
        if not self._acks:
            return
        acks, self._acks = self._acks, {}
        try:
            self._delete_acked(db, acks)
        except sqlite3.OperationalError:
            for name, hwm in acks.items():      # not applied: keep them for the next turn
                self._acks[name] = max(hwm, self._acks.get(name, 0))
            raise

    def _delete_acked(self, db: sqlite3.Connection, acks: dict[str, int]) -> None:
        """Delete what HQ has committed; the streams move on only once the delete is."""
        moved: list[tuple[_Stream, int]] = []
        deleted = 0
        with db:
            for name, hwm in acks.items():
                stream = self.streams.setdefault(name, _Stream())
                if hwm <= stream.acked:
                    continue
                deleted += db.execute("DELETE FROM outbox WHERE stream = ? AND seq <= ?",
                                      [name, hwm]).rowcount
                moved.append((stream, hwm))
        self.deleted += deleted
        now = time.monotonic()
        for stream, hwm in moved:
            stream.acked, stream.progress_at, stream.heard = hwm, now, True
            stream.next_seq = max(stream.next_seq, hwm + 1)

    def _publish_due(self, db: sqlite3.Connection) -> None:
        now = time.monotonic()
        # outbox_seq names every stream ever queued (a handful); DISTINCT would scan the outbox
        for (name,) in db.execute("SELECT stream FROM outbox_seq").fetchall():
            stream = self.streams.setdefault(name, self._first_seen(db, name))
            if now - stream.progress_at > self._resend_wait(stream) \
                    and stream.next_seq > stream.acked + 1:
                stream.next_seq, stream.progress_at = stream.acked + 1, now  # HQ missed some
                stream.quick_resends += not stream.heard
            if stream.next_seq == stream.acked + 1:
                stream.progress_at = now   # nothing was out: the resend clock starts now
            room = self.in_flight - (stream.next_seq - 1 - stream.acked)
            if room <= 0:
                continue
            rows = db.execute("SELECT seq, id, ts, type, body FROM outbox WHERE stream = ? "
                              "AND seq >= ? ORDER BY seq LIMIT ?",
                              [name, stream.next_seq, room]).fetchall()
            with corked(self.client.socket()):
                if not self._publish_rows(name, stream, rows):
                    return

    def _publish_rows(self, name: str, stream: _Stream, rows: list[tuple]) -> bool:
        """False when the connection failed (it is then marked lost)."""
        for seq, message_id, ts, kind, body in rows:
            payload = (f'{{"id": "{message_id}", "edge": {json.dumps(self.edge_id)}, '
                       f'"stream": {json.dumps(name)}, "seq": {seq}, "ts": {ts!r}, '
                       f'"type": {json.dumps(kind)}, "body": {body}}}')
            info = self.client.publish(self.up_prefix + name, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost(f"publish: {mqtt.error_string(info.rc)}")
                return False
            stream.next_seq = seq + 1
            self.published += 1
        return True

    def _resend_wait(self, stream: _Stream) -> float:
        """``resend_s`` once HQ answered on this connection. Before that, a window sent right
        after a broker restart may have found no subscriber (Mosquitto restores HQ's session but
        not its shared subscription until the consumer subscribes again) and is simply gone:
        re-send it after ``FIRST_RESEND_S``, doubling up to ``resend_s`` while HQ stays silent
        (HQ down must not fill its broker session with copies)."""
        if stream.heard:
            return self.resend_s
        return min(self.resend_s, FIRST_RESEND_S * 2 ** min(stream.quick_resends, 16))

    @staticmethod
    def _first_seen(db: sqlite3.Connection, name: str) -> _Stream:
        """A stream met for the first time (a start): everything still in the outbox is unacked."""
        low = db.execute("SELECT min(seq) FROM outbox WHERE stream = ?", [name]).fetchone()[0]
        acked = (low or 1) - 1
        return _Stream(next_seq=acked + 1, acked=acked)


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (a proxy, a test double): fine
        pass
