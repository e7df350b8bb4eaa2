"""The dynamic-security broker (``MosquittoBroker(dynsec=True)``) confines edges like the password
mode does, and HQ adds, disables and removes edges at runtime through the control API
(``aggregator.fleet.dynsec``), with a real Mosquitto 2.0 and real paho clients, no restart."""
from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aggregator.fleet.dynsec import DynsecClient
from aggregator.fleet.errors import BrokerControlError, InvalidInput
from hil.broker import HQ_USER, MosquittoBroker, free_port
from tests.sync.test_broker_acl import client, settle

EDGES = {"edge-a": "secret-a", "edge-b": "secret-b"}


@pytest.fixture
def dynsec_broker(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", EDGES, dynsec=True) as running:
        yield running


def admin(broker: MosquittoBroker, **kwargs) -> DynsecClient:
    return DynsecClient("127.0.0.1", broker.port, broker.admin_user, broker.admin_password,
                        **kwargs)


def connack(broker: MosquittoBroker, user: str, password: str):
    """The broker's answer to a CONNECT as ``user``."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    codes: list = []
    c.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason)
    c.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 3
    while not codes and time.monotonic() < deadline:
        c.loop(0.05)
    c.disconnect()
    assert codes, f"no CONNACK for {user}"
    return codes[0]


def granted(c: mqtt.Client, topic: str) -> bool:
    """SUBSCRIBE and report whether the broker granted it (paho's network thread is running)."""
    codes: list = []
    c.on_subscribe = lambda _c, _u, _m, reasons, _p: codes.append(reasons)
    c.subscribe(topic, qos=1)
    deadline = time.monotonic() + 3
    while not codes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert codes, f"no SUBACK for {topic}"
    return not codes[0][0].is_failure


def stop(*clients: mqtt.Client) -> None:
    """Disconnect first: it wakes paho's network thread, which loop_stop() alone leaves in a
    select of up to 1 s."""
    for c in clients:
        c.disconnect()
        c.loop_stop()


def publish_attempts(broker, user: str, password: str, topics_payloads) -> None:
    """Each publish on a fresh connection, QoS 1: done when PUBACKed or when Mosquitto drops
    the client for publishing where it may not (it does so to MQTT 3.1.1 clients)."""
    for topic, payload in topics_payloads:
        c = client(broker, user, password)
        c.reconnect_delay_set(0.05, 0.05)   # or loop_stop() waits out paho's 1 s reconnect pause
        info = c.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while not info.is_published() and c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        stop(c)


# --- the generated configuration ---------------------------------------------------------------

@pytest.mark.hil
def test_an_edge_cannot_publish_as_another_edge(dynsec_broker):
    hq_inbox: queue.Queue = queue.Queue()
    hq = client(dynsec_broker, HQ_USER, dynsec_broker.hq_password, hq_inbox)
    assert granted(hq, "cc/v1/+/up/#")
    publish_attempts(dynsec_broker, "edge-a", "secret-a", [
        ("cc/v1/edge-a/up/cdr", b"mine"), ("cc/v1/edge-b/up/cdr", b"forged"),
        ("cc/v1/edge-a/down/command", b"self-command")])
    got = settle(hq_inbox)
    assert got == [("cc/v1/edge-a/up/cdr", b"mine")]
    stop(hq)


@pytest.mark.hil
def test_an_edge_reads_only_its_own_down_topics(dynsec_broker):
    a_inbox: queue.Queue = queue.Queue()
    a = client(dynsec_broker, "edge-a", "secret-a", a_inbox)
    assert granted(a, "cc/v1/edge-a/down/#")
    for foreign in ("cc/v1/edge-b/down/#", "cc/v1/edge-b/up/#", "cc/v1/+/down/#", "#"):
        assert not granted(a, foreign), foreign
    hq = client(dynsec_broker, HQ_USER, dynsec_broker.hq_password)
    for topic in ("cc/v1/edge-a/down/config", "cc/v1/edge-b/down/config"):
        hq.publish(topic, topic.encode(), qos=1).wait_for_publish(5)
    hq.publish("cc/v1/edge-a/down/ack", b"retained", qos=1, retain=True).wait_for_publish(5)
    got = settle(a_inbox)
    assert sorted(t for t, _ in got) == ["cc/v1/edge-a/down/ack", "cc/v1/edge-a/down/config"]
    stop(hq, a)


@pytest.mark.hil
def test_hq_reads_through_a_shared_subscription_and_cannot_publish_as_an_edge(dynsec_broker):
    """Mosquitto 2.0's plugin checks ``$share/…`` as written: the HQ role must name it."""
    hq_inbox: queue.Queue = queue.Queue()
    hq = client(dynsec_broker, HQ_USER, dynsec_broker.hq_password, hq_inbox)
    assert granted(hq, "$share/ingest/cc/v1/+/up/#")
    # Mosquitto 2.0 drops an MQTT 3.1.1 client whose QoS 1 publish it denies: forge on another one
    publish_attempts(dynsec_broker, HQ_USER, dynsec_broker.hq_password, [
        ("cc/v1/edge-a/up/cdr", b"hq-forged")])
    publish_attempts(dynsec_broker, "edge-b", "secret-b", [("cc/v1/edge-b/up/agent", b"b")])
    assert not granted(hq, "cc/v1/+/down/#")
    assert settle(hq_inbox) == [("cc/v1/edge-b/up/agent", b"b")]
    stop(hq)


@pytest.mark.hil
def test_wrong_passwords_and_the_admin_are_kept_apart(dynsec_broker):
    assert connack(dynsec_broker, "edge-a", "wrong").is_failure
    assert connack(dynsec_broker, "nobody", "secret-a").is_failure
    # the admin can run the control API but sees no edge traffic
    spy = client(dynsec_broker, dynsec_broker.admin_user, dynsec_broker.admin_password)
    assert not granted(spy, "cc/v1/#")
    stop(spy)


# --- the control API ---------------------------------------------------------------------------

@pytest.mark.hil
def test_an_added_edge_connects_at_once_and_is_confined(dynsec_broker):
    admin(dynsec_broker).add_edge("edge-new", "fresh-secret")
    hq_inbox: queue.Queue = queue.Queue()
    hq = client(dynsec_broker, HQ_USER, dynsec_broker.hq_password, hq_inbox)
    assert granted(hq, "$share/ingest/cc/v1/+/up/#")
    new_inbox: queue.Queue = queue.Queue()
    new = client(dynsec_broker, "edge-new", "fresh-secret", new_inbox)
    assert granted(new, "cc/v1/edge-new/down/#")
    assert not granted(new, "cc/v1/edge-a/down/#")
    stop(new)
    publish_attempts(dynsec_broker, "edge-new", "fresh-secret", [
        ("cc/v1/edge-new/up/health", b"ok"), ("cc/v1/edge-a/up/cdr", b"forged")])
    hq.publish("cc/v1/edge-a/down/config", b"for-a", qos=1).wait_for_publish(5)
    assert settle(hq_inbox) == [("cc/v1/edge-new/up/health", b"ok")]
    assert new_inbox.empty()
    stop(hq)


@pytest.mark.hil
def test_disable_enable_and_remove_take_effect_without_a_restart(dynsec_broker):
    control = admin(dynsec_broker)
    control.add_edge("edge-x", "x-secret")
    pid = dynsec_broker.process.pid
    control.disable_edge("edge-x")
    assert connack(dynsec_broker, "edge-x", "x-secret").is_failure
    assert control.client_info("edge-x")["disabled"] is True
    control.enable_edge("edge-x")
    assert not connack(dynsec_broker, "edge-x", "x-secret").is_failure
    control.remove_edge("edge-x")
    assert connack(dynsec_broker, "edge-x", "x-secret").is_failure
    control.remove_edge("edge-x")   # removing again is not an error
    assert dynsec_broker.process.pid == pid


@pytest.mark.hil
def test_a_connected_edge_is_dropped_when_disabled(dynsec_broker):
    control = admin(dynsec_broker)
    control.add_edge("edge-y", "y-secret")
    y = client(dynsec_broker, "edge-y", "y-secret")
    control.disable_edge("edge-y")
    deadline = time.monotonic() + 3
    while y.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    connected = y.is_connected()
    stop(y)
    assert not connected


@pytest.mark.hil
def test_an_added_edge_survives_a_broker_restart(dynsec_broker):
    admin(dynsec_broker).add_edge("edge-kept", "kept-secret")
    dynsec_broker.restart()
    assert not connack(dynsec_broker, "edge-kept", "kept-secret").is_failure
    saved = json.loads(dynsec_broker.dynsec_path.read_text())
    assert "edge-kept" in [c["username"] for c in saved["clients"]]


@pytest.mark.hil
def test_adding_an_existing_edge_is_refused_and_keeps_its_password(dynsec_broker):
    control = admin(dynsec_broker)
    with pytest.raises(BrokerControlError, match="Client already exists"):
        control.add_edge("edge-a", "hijacked")
    assert not connack(dynsec_broker, "edge-a", "secret-a").is_failure
    assert connack(dynsec_broker, "edge-a", "hijacked").is_failure


@pytest.mark.hil
def test_control_failures_are_clear_errors(dynsec_broker):
    with pytest.raises(BrokerControlError, match="refused the dynamic-security admin"):
        DynsecClient("127.0.0.1", dynsec_broker.port, dynsec_broker.admin_user, "wrong").add_edge(
            "edge-z", "z")
    with pytest.raises(BrokerControlError, match="unreachable"):
        DynsecClient("127.0.0.1", free_port(), "dynsec-admin", "x", timeout_s=1).add_edge(
            "edge-z", "z")
    # HQ's own user is no admin: the plugin never answers it
    with pytest.raises(BrokerControlError, match="may not read"):
        DynsecClient("127.0.0.1", dynsec_broker.port, HQ_USER, dynsec_broker.hq_password,
                     timeout_s=1).add_edge("edge-z", "z")
    with pytest.raises(BrokerControlError, match="Client not found"):
        admin(dynsec_broker).disable_edge("edge-unknown")
    with pytest.raises(InvalidInput):
        admin(dynsec_broker).add_edge("edge/+", "x")
    assert connack(dynsec_broker, "edge-z", "z").is_failure


@pytest.mark.hil
def test_a_password_broker_has_no_control_api(tmp_path: Path):
    """Talking dynsec to a broker without the plugin times out with a hint, not a hang."""
    with MosquittoBroker(tmp_path / "plain", EDGES) as plain:
        with pytest.raises(BrokerControlError, match="dynamic-security plugin"):
            DynsecClient("127.0.0.1", plain.port, HQ_USER, plain.hq_password,
                         timeout_s=1).add_edge("edge-z", "z")
