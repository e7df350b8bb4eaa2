"""The HQ downlink dispatcher: pending ``downlink`` rows out to the edges over MQTT.

One process, one thread that owns its paho client (the same rule as the ingest consumer: paho
writes to the socket from whichever thread publishes). Each turn it looks for pending messages
that are due, in (edge, kind, scope, version) order, and publishes them QoS 1, not retained, on
``cc/v1/<edge>/down/<kind>``. A message counts as sent when the broker PUBACKs it; until the edge's
``downlink.ack`` settles it (ingest + ``aggregator.downlink.projections``) it stays pending and is
sent again ``resend_s`` later, the wait doubling per send up to ``resend_max_s`` (an edge offline
for a week would otherwise collect a copy every ``resend_s`` in its broker session).

Delivery to an edge that is offline rests on its persistent session (the broker keeps QoS 1
messages for it); a session the broker lost, a message published before the edge's first
subscription, or a broker crash before its autosave are covered by the re-sends. The edge applies
each version once, so copies are harmless.

A lost broker is reconnected with jittered exponential back-off, on a fresh client each time, so
nothing from the old connection is replayed by paho; what was in flight is simply due again.

    python -m aggregator.downlink.dispatch --db hq.sqlite3 --host 127.0.0.1 --port 1883 \\
        --user hq --password-file /etc/cc/hq.password
"""
from __future__ import annotations

import argparse
import logging
import random
import socket
import sys
import threading
import time
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt

from aggregator import AggregatorError, service_cli
from aggregator.db import HqDb
from aggregator.downlink import queue

log = logging.getLogger("aggregator.downlink.dispatch")

CONNACK_TIMEOUT_S = 10.0


class Dispatcher:
    """``start()`` returns at once (the broker may be down); ``stop()`` ends the thread."""

    def __init__(self, db: HqDb, host: str, port: int, username: str, password: str, *,
                 client_id: str = "hq-downlink", resend_s: float = 30.0,
                 resend_max_s: float = 900.0, poll_s: float = 0.2, batch: int = 500,
                 reconnect_min_s: float = 0.1, reconnect_max_s: float = 5.0,
                 keepalive_s: int = 30, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.client_id = client_id
        self.resend_s, self.resend_max_s = resend_s, resend_max_s
        self.poll_s, self.batch = poll_s, batch
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.keepalive_s = keepalive_s
        self._clock = clock
        self._client: mqtt.Client | None = None
        self._online = False
        self._in_flight: dict[int, str] = {}    # paho mid -> downlink id, until PUBACK
        self._confirmed: dict[str, float] = {}  # downlink id -> when the broker took it
        self._backoff = reconnect_min_s
        self._next_poll = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.connections = 0

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> "Dispatcher":
        self._thread = threading.Thread(target=self._run, name="downlink-dispatch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wake(self) -> None:
        """Look for due messages now rather than at the next poll (any thread)."""
        self._wake.set()

    @property
    def online(self) -> bool:
        return self._online

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._online and not self._connect():
                    self._wait_backoff()
                    continue
                self._turn()
            except AggregatorError as exc:
                log.error("downlink dispatch: %s; trying again in %.1f s", exc, self._backoff)
                self._wait_backoff()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive one bad turn
                log.exception("downlink dispatch: unexpected error; reconnecting")
                self._lost("unexpected error")
                self._wait_backoff()
        self._disconnect()

    def _turn(self) -> None:
        assert self._client is not None
        rc = self._client.loop(timeout=min(self.poll_s, 0.05))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._lost(mqtt.error_string(rc))
            return
        self._record_confirmed()
        now = time.monotonic()
        if now >= self._next_poll or self._wake.is_set():
            self._wake.clear()
            self._next_poll = now + self.poll_s
            self._publish_due()

    def _publish_due(self) -> None:
        assert self._client is not None
        messages = queue.due(self.db, self._clock(), self.batch, skip=list(self._in_flight.values()))
        for message in messages:
            info = self._client.publish(message.topic, message.to_json(), qos=1, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost(f"publish: {mqtt.error_string(info.rc)}")
                return
            self._in_flight[info.mid] = message.id
            self.published += 1
            log.debug("sent %s v%s of %s/%s to %s", message.id, message.version, message.kind,
                      message.scope, message.edge)

    def _record_confirmed(self) -> None:
        if not self._confirmed:
            return
        sent, self._confirmed = self._confirmed, {}
        try:
            with self.db.transaction() as tx:
                queue.record_sends(tx, sent, self.resend_s, self.resend_max_s)
        except AggregatorError:
            self._confirmed.update(sent)   # the broker has them; record it next turn
            raise

    # --- MQTT ---------------------------------------------------------------------------------

    def _connect(self) -> bool:
        self._client = client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                            client_id=self.client_id, clean_session=True,
                                            protocol=mqtt.MQTTv311)
        client.username_pw_set(self.username, self.password)
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except (OSError, ValueError) as exc:
            self._lost(f"cannot connect to {self.host}:{self.port}: {exc}")
            return False
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while not self._online and time.monotonic() < deadline and not self._stop.is_set():
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        if not self._online:
            self._lost("no CONNACK")
            return False
        return True

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            log.error("downlink dispatch: broker refused the connection: %s", reason)
            return
        self._online = True
        self._backoff = self.reconnect_min_s
        self.connections += 1
        self._next_poll = 0.0
        log.info("downlink dispatch: connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, *_args: Any) -> None:
        if self._online and not self._stop.is_set():
            log.warning("downlink dispatch: disconnected from the broker")
        self._online = False

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, *_args: Any) -> None:
        message_id = self._in_flight.pop(mid, None)
        if message_id is not None:
            self._confirmed[message_id] = self._clock()

    def _lost(self, why: str) -> None:
        if self._online:
            log.warning("downlink dispatch: connection lost (%s); retrying in %.2f s", why,
                        self._backoff)
        else:
            log.info("downlink dispatch: %s; retrying in %.2f s", why, self._backoff)
        self._online = False
        self._in_flight.clear()      # not PUBACKed: due again on the next connection
        if self._client is not None:
            try:
                self._client.disconnect()
                self._client.loop(timeout=0)    # writes DISCONNECT or fails: the socket closes
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._client = None

    def _wait_backoff(self) -> None:
        self._stop.wait(self._backoff * random.uniform(0.5, 1.0))
        self._backoff = min(self.reconnect_max_s, self._backoff * 2)

    def _disconnect(self) -> None:
        if self._client is not None and self._online:
            deadline = time.monotonic() + 2.0
            while self._in_flight and time.monotonic() < deadline:
                if self._client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
            try:
                self._record_confirmed()
            except AggregatorError as exc:
                log.error("downlink dispatch: sends not recorded at stop: %s", exc)
            self._client.disconnect()
        self._online = False


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


# --- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = service_cli.parser("python -m aggregator.downlink.dispatch",
                           "Publish HQ's pending downlink messages to the edges.")
    p.add_argument("--client-id", default="hq-downlink")
    p.add_argument("--resend-s", type=float, default=30.0)
    p.add_argument("--resend-max-s", type=float, default=900.0)
    p.add_argument("--poll-s", type=float, default=0.2)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    service_cli.setup_logging(args.log_level)
    try:
        db = HqDb.open(args.db)
    except AggregatorError as exc:
        log.error("%s", exc)
        return 1
    dispatcher = Dispatcher(db, args.host, args.port, args.user, service_cli.password(args),
                            client_id=args.client_id, resend_s=args.resend_s,
                            resend_max_s=args.resend_max_s, poll_s=args.poll_s)
    dispatcher.start()
    service_cli.run_until_signalled(dispatcher.stop)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
