"""``python -m aggregator.downlink.dispatch`` as its own process against a real Mosquitto that is
SIGKILLed and restarted: messages queued while the broker is down go out once it is back, in
version order, QoS 1 and not retained; the process stops cleanly on SIGTERM. On SQLite and on
PostgreSQL."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aggregator.db import HqDb
from aggregator.downlink import queue
from tests.aggregator.conftest import hq_db_url, postgres_server  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]


class EdgeListener:
    """A bare client with edge-a's credentials on ``cc/v1/edge-a/down/#``, clean session."""

    def __init__(self, broker) -> None:
        self.received: list[tuple[str, dict, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener-a",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set("edge-a", "secret-a")
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, json.loads(m.payload), bool(m.retain)))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def _on_connect(self, client, *_args) -> None:
        self.subscribed.clear()
        client.subscribe("cc/v1/edge-a/down/#", qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out: {what}")


@pytest.mark.hil
def test_the_dispatcher_process_rides_out_a_broker_crash_and_keeps_version_order(
        broker, hq_db_url, tmp_path):
    db = HqDb.open(hq_db_url)
    secret = tmp_path / "hq.password"
    secret.write_text(broker.hq_password + "\n")
    listener = EdgeListener(broker)
    dispatcher = subprocess.Popen(
        [sys.executable, "-m", "aggregator.downlink.dispatch", "--db", hq_db_url, "--host",
         "127.0.0.1", "--port", str(broker.port), "--user", "hq", "--password-file", str(secret),
         "--resend-s", "30", "--poll-s", "0.05"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with db.transaction() as tx:
            first = queue.enqueue(tx, "edge-a", "announcement", "A1", "announcement.publish",
                                  {"title": "停电通知"})
        wait(lambda: listener.received, 15, "the first message")
        broker.kill()
        ids = []
        for n in range(5):
            with db.transaction() as tx:
                ids.append(queue.enqueue(tx, "edge-a", "config", "agents", "config.section",
                                         {"agents": [], "n": n}).id)
        time.sleep(0.5)                                   # the dispatcher fails to reach it
        broker.start()
        wait(lambda: listener.subscribed.is_set(), 10, "the listener to come back")
        wait(lambda: len(listener.received) >= 6, 20, "the five queued while the broker was down")
        assert dispatcher.poll() is None
        topics = [topic for topic, _, _ in listener.received]
        assert topics == ["cc/v1/edge-a/down/announcement"] + ["cc/v1/edge-a/down/config"] * 5
        versions = [body["version"] for _, body, _ in listener.received[1:]]
        assert versions == [1, 2, 3, 4, 5]
        assert listener.received[0][1]["body"] == {"title": "停电通知"}
        assert listener.received[0][1]["id"] == first.id
        assert not any(retained for _, _, retained in listener.received)
        wait(lambda: all(queue.get(db, i).sends == 1 for i in ids), 10, "sends recorded")
        assert queue.get(db, ids[0]).state == "pending"        # only the edge's ack settles it
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        code = dispatcher.wait(15)
        stderr = dispatcher.stderr.read().decode(errors="replace")
        listener.close()
        db.close()
    assert code == 0, stderr
    assert "connection lost" in stderr or "cannot connect" in stderr or "disconnected" in stderr
