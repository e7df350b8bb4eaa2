"""The broker confines each edge to its own topics (ARCHITECTURE.md "Sync over MQTT"), through a
real Mosquitto and real paho clients: an edge can neither publish as another edge nor read
another edge's commands, and HQ sees everything."""
from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
import pytest

from hil.broker import HQ_USER


def client(broker, user: str, password: str, inbox: "queue.Queue" | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    if inbox is not None:
        c.on_message = lambda _c, _u, msg: inbox.put((msg.topic, msg.payload))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not c.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.is_connected(), f"{user} could not connect"
    return c


def settle(inbox: "queue.Queue", seconds: float = 0.5) -> list:
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(inbox.get(timeout=0.05))
        except queue.Empty:
            pass
    return got


@pytest.mark.hil
def test_an_edge_cannot_publish_as_another_edge(broker):
    hq_inbox: queue.Queue = queue.Queue()
    hq = client(broker, HQ_USER, broker.hq_password, hq_inbox)
    hq.subscribe("cc/v1/#", qos=1)
    time.sleep(0.2)
    for topic, payload in (("cc/v1/edge-a/up/cdr", b"mine"), ("cc/v1/edge-b/up/cdr", b"forged"),
                           ("cc/v1/edge-a/down/command", b"self-command")):
        a = client(broker, "edge-a", "secret-a")
        try:
            a.publish(topic, payload, qos=1).wait_for_publish(5)
        except RuntimeError:
            pass  # Mosquitto 2.0 may drop the connection of a client that publishes where it may not
        a.loop_stop()
        a.disconnect()
    got = settle(hq_inbox)
    assert ("cc/v1/edge-a/up/cdr", b"mine") in got
    assert all(payload not in (b"forged", b"self-command") for _, payload in got)
    hq.loop_stop()
    hq.disconnect()


@pytest.mark.hil
def test_an_edge_reads_only_its_own_down_topics(broker):
    a_inbox: queue.Queue = queue.Queue()
    a = client(broker, "edge-a", "secret-a", a_inbox)
    a.subscribe([("cc/v1/edge-a/down/#", 1), ("cc/v1/edge-b/down/#", 1), ("cc/v1/edge-b/up/#", 1)])
    time.sleep(0.2)
    hq = client(broker, HQ_USER, broker.hq_password)
    for topic in ("cc/v1/edge-a/down/config", "cc/v1/edge-b/down/config", "cc/v1/edge-b/up/cdr"):
        hq.publish(topic, topic.encode(), qos=1).wait_for_publish(5)
    got = settle(a_inbox)
    assert [t for t, _ in got] == ["cc/v1/edge-a/down/config"]
    for c in (hq, a):
        c.loop_stop()
        c.disconnect()


@pytest.mark.hil
def test_a_wrong_password_is_refused(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv311)
    c.username_pw_set("edge-a", "wrong")
    codes: list = []
    c.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason)
    c.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 3
    while not codes and time.monotonic() < deadline:
        c.loop(0.05)
    assert codes and codes[0].is_failure
