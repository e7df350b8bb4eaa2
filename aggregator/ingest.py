"""The HQ ingest consumer: edge messages from MQTT into the HQ database, acks back to the edges.

Delivery from the edges is at least once (ARCHITECTURE.md "Sync over MQTT"), so the consumer is
built to lose nothing and to let the database make it exactly once:

* **PUBACK after COMMIT.** paho runs with ``manual_ack``: a message is acknowledged to the broker
  only once the batch that holds it is committed. A consumer killed mid-batch leaves its messages
  unacknowledged in its persistent session, and the broker delivers them again when it comes back.
  Redeliveries and the edge's own resends are duplicates the database skips.
* **One thread owns the MQTT client.** paho 2.x, driven by ``loop()`` from a thread of our own,
  writes to the socket from whichever thread calls ``publish()``/``ack()``; two threads doing so
  can interleave packets. So one thread receives, commits a batch every ``batch_s`` (or at
  ``batch_max`` messages), PUBACKs and publishes the acks; SQLite's insert is fast enough that a
  second thread would only add locking.
* **End-to-end acks.** After each commit the consumer publishes, for every edge in the batch, a
  retained ``cc/v1/<edge>/down/ack`` holding the high-water mark of each of that edge's streams.
  An edge whose messages were all duplicates gets one too: its resend means it missed the last.
* **Shared subscription, persistent session.** Several consumers share
  ``$share/<group>/cc/v1/+/up/#`` (Mosquitto 2.0 honours ``$share`` for MQTT 3.1.1 clients) with
  fixed client ids and ``clean_session=False``. The consumer subscribes on *every* CONNACK, even
  with a session present: Mosquitto 2.0.11 restores a persistent session after a restart but not
  its shared subscriptions. A graceful ``stop()`` unsubscribes first, because the broker keeps
  queueing a share of the traffic for an offline group member until it returns.
* **Nothing dropped, no crash.** A payload that is not a valid envelope, or whose ``edge``/
  ``stream`` disagree with its topic, is committed to ``dead_letters`` with the reason (and then
  PUBACKed). A database error drops the connection without PUBACKing the batch, so the broker
  delivers it again after the back-off; a lost broker is reconnected with jittered exponential
  back-off, keeping the session.

Run one per process (``--db`` is a SQLite file or a ``postgresql://`` URL; several consumers
share one PostgreSQL, see ``aggregator.db``)::

    python -m aggregator.ingest --db hq.sqlite3 --host 127.0.0.1 --port 1883 \\
        --user hq --password-file /etc/cc/hq.password --client-id ingest-1
"""
from __future__ import annotations

import argparse
import logging
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt

from aggregator import AggregatorError, service_cli
from aggregator.db import BUSY_TIMEOUT_S, DbError, HqDb, Reject
from aggregator.envelope import (
    UP_FILTER,
    EnvelopeError,
    ack_payload,
    ack_topic,
    parse,
    stand_in,
)
from edge.sync.sockets import corked

log = logging.getLogger("aggregator.ingest")   # not "__main__" under python -m

SHARE_GROUP = "ingest"
CONNACK_TIMEOUT_S = 10.0
IDLE_TICK_S = 0.1
DRAIN_CHECK_S = 0.001  # a batch is committed once a look this long brings nothing new
DRAIN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class _Received:
    connection: int      # which connection delivered it: a PUBACK is only valid on that one
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass
class IngestStats:
    received: int = 0
    batches: int = 0
    dead_letters: int = 0
    acks_published: int = 0
    connections: int = 0
    max_commit_s: float = 0.0


class IngestConsumer:
    """One ingest consumer: ``start()`` returns at once (the broker may still be down),
    ``stop()`` drains, commits and leaves the shared group."""

    def __init__(self, db_path: str | Path, host: str, port: int, username: str, password: str,
                 client_id: str, *, shared: bool = True, group: str = SHARE_GROUP,
                 batch_s: float = 0.015, batch_max: int = 500, gap_settle_s: float = 30.0,
                 gap_check_s: float = 5.0, keepalive_s: int = 30, reconnect_min_s: float = 0.1,
                 reconnect_max_s: float = 5.0, db_busy_timeout_s: float = BUSY_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.db_path = str(db_path)
        self.host, self.port = host, port
        self.client_id = client_id
        self.topic_filter = f"$share/{group}/{UP_FILTER}" if shared else UP_FILTER
        self.batch_s, self.batch_max = batch_s, batch_max
        self.gap_settle_s, self.gap_check_s = gap_settle_s, gap_check_s
        self.keepalive_s = keepalive_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.db_busy_timeout_s = db_busy_timeout_s
        self.stats = IngestStats()
        self._clock = clock
        self._client = self._make_client(username, password)
        self._db: HqDb | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self._inbox: list[_Received] = []
        self._flush_at = 0.0                  # monotonic deadline of the open batch
        self._acks_due: set[str] = set()      # edges owed an ack once the broker is back
        self._connection = 0                  # counts CONNACKs; tags what each one delivered
        self._online = False                  # CONNACK received and no loss since
        self._tcp_up = False
        self._ever_connected = False
        self._connect_started = 0.0
        self._next_attempt = 0.0
        self._backoff = reconnect_min_s
        self._next_gap_check = 0.0

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> "IngestConsumer":
        """Open the database (errors raise here, not in the thread) and start consuming."""
        self._db = HqDb.open(self.db_path, clock=self._clock,
                             busy_timeout_s=self.db_busy_timeout_s)
        self._next_gap_check = time.monotonic() + self.gap_check_s
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self.client_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("%s: the ingest thread did not stop within %s s", self.client_id,
                          timeout_s)

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        return self._subscribed.wait(timeout_s)

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception:  # noqa: BLE001 - the consumer must outlive any one bad turn
                    log.exception("%s: unexpected error; reconnecting", self.client_id)
                    self._lost("unexpected error")
            self._drain()
        finally:
            if self._db is not None:
                self._db.close()

    def _step(self) -> None:
        now = time.monotonic()
        if not self._tcp_up:
            if now >= self._next_attempt:
                self._connect()
            else:
                self._stopping.wait(min(self._next_attempt - now, IDLE_TICK_S))
        received = self.stats.received
        if self._tcp_up:
            # while a batch waits, look again after 1 ms: a look that brings nothing new means
            # the socket is drained, and the batch is committed now rather than at batch_s
            rc = self._client.loop(DRAIN_CHECK_S if self._inbox else self._loop_timeout(now))
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost(mqtt.error_string(rc))
            elif not self._online and now - self._connect_started > CONNACK_TIMEOUT_S:
                self._lost("no CONNACK")
        drained = self.stats.received == received
        now = time.monotonic()
        if self._inbox and (drained or now >= self._flush_at or len(self._inbox) >= self.batch_max):
            self._flush()
        if now >= self._next_gap_check:
            self._next_gap_check = now + self.gap_check_s
            self._check_gaps()

    def _loop_timeout(self, now: float) -> float:
        if self._inbox:
            return max(0.0, min(self._flush_at - now, IDLE_TICK_S))
        return IDLE_TICK_S

    def _connect(self) -> None:
        try:
            if self._ever_connected:
                self._client.reconnect()
            else:
                self._client.connect(self.host, self.port, keepalive=self.keepalive_s)
                self._ever_connected = True
        except (OSError, ValueError) as exc:
            self._lost(f"cannot connect to {self.host}:{self.port}: {exc}")
            return
        self._tcp_up = True
        self._connect_started = time.monotonic()

    def _lost(self, why: str) -> None:
        if self._online or self._tcp_up:
            log.warning("%s: connection lost (%s); retrying in %.2f s", self.client_id, why,
                        self._backoff)
        else:
            log.info("%s: %s; retrying in %.2f s", self.client_id, why, self._backoff)
        self._online = self._tcp_up = False
        self._next_attempt = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
        self._backoff = min(self.reconnect_max_s, self._backoff * 2)

    def _drain(self) -> None:
        """Leave the group, commit and PUBACK what arrived, say goodbye (the session stays)."""
        if self._online:
            self._client.unsubscribe(self.topic_filter)
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while self._online and not self._unsubscribed.is_set() and time.monotonic() < deadline:
                if self._client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                    self._online = False
        self._flush()
        if self._online:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while self._client.want_write() and time.monotonic() < deadline:
                if self._client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
            self._client.disconnect()
        self._online = self._tcp_up = False

    # --- MQTT callbacks (run inside loop(), on the consumer's thread) ---------------------------

    def _make_client(self, username: str, password: str) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        client.username_pw_set(username, password)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("%s: broker refused the connection: %s", self.client_id, reason)
            return
        self._connection += 1
        self.stats.connections += 1
        self._online = True
        self._backoff = self.reconnect_min_s
        log.info("%s: connected to %s:%s (session present: %s)", self.client_id, self.host,
                 self.port, flags.session_present)
        # always: Mosquitto 2.0 does not restore shared subscriptions with a restored session
        client.subscribe(self.topic_filter, qos=1)
        self._publish_acks()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        was_online, self._online = self._online, False
        if was_online and not self._stopping.is_set():
            log.warning("%s: disconnected: %s", self.client_id, reason)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Sequence[Any],
                      _properties: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("%s: the broker refused the subscription to %s: %s", self.client_id,
                      self.topic_filter, reasons)
            return
        log.info("%s: subscribed to %s", self.client_id, self.topic_filter)
        self._subscribed.set()

    def _on_unsubscribe(self, *_args: Any) -> None:
        log.info("%s: unsubscribed from %s", self.client_id, self.topic_filter)
        self._subscribed.clear()
        self._unsubscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # the dead letter still says where
        if not self._inbox:
            self._flush_at = time.monotonic() + self.batch_s
        self._inbox.append(_Received(self._connection, message.mid, message.qos, topic,
                                     bytes(message.payload)))
        self.stats.received += 1

    # --- batches ------------------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._inbox or self._db is None:
            return
        batch, self._inbox = self._inbox, []
        envelopes, rejects = [], []
        for received in batch:
            try:
                envelopes.append(parse(received.topic, received.payload))
            except EnvelopeError as exc:
                log.warning("%s: dead letter on %s: %s", self.client_id, received.topic, exc)
                rejects.append(Reject(received.topic, received.payload, str(exc)))
                placed = stand_in(received.topic, received.payload, str(exc), time.time())
                if placed is not None:
                    envelopes.append(placed)
        started = time.monotonic()
        try:
            hwms = self._db.store_batch(envelopes, rejects)
        except DbError as exc:
            # nothing of the batch is PUBACKed: dropping the connection makes the broker keep
            # it in the session and deliver it again, and keeps our memory bounded meanwhile
            log.error("%s: batch of %s not stored; reconnecting to receive it again: %s",
                      self.client_id, len(batch), exc)
            if self._online:
                self._client.disconnect()
            self._lost("database error")
            return
        self.stats.max_commit_s = max(self.stats.max_commit_s, time.monotonic() - started)
        self.stats.batches += 1
        self.stats.dead_letters += len(rejects)
        self._puback(batch)
        self._acks_due.update(edge for edge, _stream in hwms)
        self._publish_acks()

    def _puback(self, batch: list[_Received]) -> None:
        """Only on the connection that delivered them: after a reconnect the broker sends the
        unacknowledged ones again (and their packet ids may now name other messages)."""
        if not self._online:
            return
        with corked(self._client.socket()):
            for received in batch:
                if received.connection == self._connection and received.qos > 0:
                    self._client.ack(received.mid, received.qos)

    def _publish_acks(self) -> None:
        if not self._online or self._db is None:
            return
        for edge in sorted(self._acks_due):
            try:
                hwms = self._db.hwms(edge)
            except DbError as exc:
                log.error("%s: cannot read the marks of %s: %s", self.client_id, edge, exc)
                return
            self._client.publish(ack_topic(edge), ack_payload(hwms, self._clock()), qos=1,
                                 retain=True)
            self.stats.acks_published += 1
        self._acks_due.clear()

    def _check_gaps(self) -> None:
        if self._db is None:
            return
        try:
            self._db.record_gaps(self.gap_settle_s)
        except DbError as exc:
            log.error("%s: gap check failed: %s", self.client_id, exc)


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Nagle's algorithm holds a small PUBLISH back until the previous segment (a PUBACK) is
    ACKed, which the broker's delayed ACK postpones by ~40 ms: without this an ack reaches its
    edge ~80 ms later. The broker (``set_tcp_nodelay true``) and the edge want the same."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:
        log.warning("cannot disable Nagle's algorithm on the MQTT socket: %s", exc)


# --- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = service_cli.parser("python -m aggregator.ingest",
                           "Consume edge messages from MQTT into the HQ database.")
    p.add_argument("--client-id", required=True,
                   help="fixed per consumer slot (ingest-1, ingest-2 …): it names the session")
    p.add_argument("--no-shared", action="store_true", help="subscribe without $share (one consumer)")
    p.add_argument("--batch-ms", type=float, default=15.0)
    p.add_argument("--batch-max", type=int, default=500)
    p.add_argument("--gap-settle-s", type=float, default=30.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    service_cli.setup_logging(args.log_level)
    consumer = IngestConsumer(args.db, args.host, args.port, args.user, service_cli.password(args),
                              args.client_id,
                              shared=not args.no_shared, batch_s=args.batch_ms / 1000,
                              batch_max=args.batch_max, gap_settle_s=args.gap_settle_s)
    try:
        consumer.start()
    except AggregatorError as exc:
        log.error("%s", exc)
        return 1
    service_cli.run_until_signalled(consumer.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
