"""HQ→edge over a real Mosquitto, end to end: HQ queues a message (``aggregator.downlink``), the
dispatcher publishes it, the edge's publisher thread hands it to the inbox, which applies it once
and queues the ack in its outbox; the ack comes back through the real ingest and the
``downlink.ack`` projection settles the HQ row. Announcements fan out by department, and an
agent's read receipt reaches HQ the same way. HQ runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest

from aggregator.db import HqDb
from aggregator.downlink import announcements as ann
from aggregator.downlink import fanout, queue
from aggregator.downlink.announcements import Audience
from aggregator.downlink.dispatch import Dispatcher
from aggregator.envelope import down_topic
from aggregator.fleet import edges as fleet_edges
from aggregator.ingest import IngestConsumer
from edge.store import Store
from edge.sync.publisher import SyncPublisher
from hil.broker import HQ_USER
from tests.aggregator.conftest import hq_db_url, postgres_server  # noqa: F401  (fixtures)
from tests.aggregator.helpers import make_department

EDGE_PASSWORDS = {"edge-a": "secret-a", "edge-b": "secret-b"}
LOCAL_TOML = """
[edge]
id = "{edge}"

[[groups]]
name = "general"

[[groups]]
name = "cards"

[[agents]]
id = "a8001"
name = "张伟"
extension = "8001"
groups = ["general"]

[routing]
default_group = "general"
"""
AGENTS_V1 = {"agents": [{"id": "a8001", "name": "张伟", "extension": "8001",
                         "groups": ["general"]}]}
AGENTS_V2 = {"agents": [*AGENTS_V1["agents"],
                        {"id": "a8002", "name": "王芳", "extension": "8002", "groups": ["cards"]}]}


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out: {what}")


class Clock:
    """The dispatcher's clock, which a test may move forward (a re-send falls due)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Hq:
    """HQ's database with two departments and two active edges, the ingest and the dispatcher."""

    def __init__(self, broker, db_url: str) -> None:
        self.path = db_url
        self.db = HqDb.open(self.path)
        self.shenzhen = make_department(self.db, "深圳")
        self.north = make_department(self.db, "华北")
        with self.db.transaction() as tx:
            for name, department in (("a", self.shenzhen), ("b", self.north)):
                edge = fleet_edges.insert_new(tx, name, department, time.time())
                fleet_edges.set_state(tx, edge, "active", time.time())
        self.ingest = IngestConsumer(self.path, "127.0.0.1", broker.port, HQ_USER,
                                     broker.hq_password, "ingest-1", batch_s=0.005).start()
        assert self.ingest.wait_subscribed(10)
        self.clock = Clock()
        self.dispatcher = Dispatcher(HqDb.open(self.path), "127.0.0.1", broker.port, HQ_USER,
                                     broker.hq_password, resend_s=1.0, resend_max_s=2.0,
                                     poll_s=0.05, clock=self.clock).start()
        self.broker = broker

    def enqueue(self, edge: str, kind: str, scope: str, type_: str, body: dict) -> str:
        with self.db.transaction() as tx:
            message = queue.enqueue(tx, edge, kind, scope, type_, body)
        self.dispatcher.wake()
        return message.id

    def state(self, message_id: str) -> str:
        return queue.get(self.db, message_id).state

    def wait_state(self, message_id: str, state: str, timeout: float = 15) -> None:
        wait(lambda: self.state(message_id) == state, timeout,
             f"HQ to see {message_id} {state} (it is {self.state(message_id)})")

    def acks_from(self, edge: str) -> list[dict]:
        rows = self.db.query("SELECT body FROM messages WHERE edge = ? AND type = 'downlink.ack'"
                             " ORDER BY seq", (edge,))
        return [json.loads(body) for (body,) in rows]

    def close(self) -> None:
        self.dispatcher.stop()
        self.dispatcher.db.close()
        self.ingest.stop()
        self.db.close()


class EdgeSide:
    """One edge: its store, local TOML and sync publisher (restartable with the same session)."""

    def __init__(self, broker, tmp_path: Path, edge: str) -> None:
        self.edge, self.broker = edge, broker
        folder = tmp_path / edge
        folder.mkdir()
        self.toml = folder / "edge.toml"
        self.toml.write_text(LOCAL_TOML.format(edge=edge), encoding="utf-8")
        self.store = Store(folder / "edge.sqlite3", outbox=True)
        self.publisher: SyncPublisher | None = None

    def start(self) -> "EdgeSide":
        self.publisher = SyncPublisher(self.store.path, self.edge, "127.0.0.1", self.broker.port,
                                       self.edge, EDGE_PASSWORDS[self.edge], resend_s=1.0,
                                       local_config_path=str(self.toml))
        self.store.on_outbox = self.publisher.wake
        self.publisher.start()
        wait(lambda: self.publisher.connected, 10, f"{self.edge} to connect")
        return self

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None

    def close(self) -> None:
        self.stop()
        self.store.close()


@pytest.fixture
def hq(broker, hq_db_url):
    h = Hq(broker, hq_db_url)
    yield h
    h.close()


@pytest.fixture
def edge_a(broker, tmp_path):
    e = EdgeSide(broker, tmp_path, "edge-a")
    yield e
    e.close()


@pytest.fixture
def edge_b(broker, tmp_path):
    e = EdgeSide(broker, tmp_path, "edge-b")
    yield e
    e.close()


def hq_client(broker) -> mqtt.Client:
    """A bare HQ-credentialed client, to put on the wire what the dispatcher never would."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hq-raw-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(HQ_USER, broker.hq_password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


@pytest.mark.hil
def test_config_command_and_announcement_are_applied_once_and_acked_back_to_hq(
        broker, hq, edge_a):
    edge_a.start()
    v1 = hq.enqueue("edge-a", "config", "agents", "config.section", AGENTS_V1)
    v2 = hq.enqueue("edge-a", "config", "agents", "config.section", AGENTS_V2)
    command = hq.enqueue("edge-a", "command", queue.new_scope(), "command",
                         {"name": "agent.logout", "args": {"agent_id": "a8001"}})
    announcement, edges = fanout.announce(hq.db, Audience("everyone"), "国庆值班安排",
                                          "10月1日至7日按值班表上岗。", priority="high")
    assert edges == ["edge-a", "edge-b"]
    hq.dispatcher.wake()
    for message_id in (v1, v2, command):
        hq.wait_state(message_id, "applied")
    to_a = queue.listing(hq.db, edge="edge-a", scope=announcement.id)[0]
    hq.wait_state(to_a.message.id, "applied")
    store = edge_a.store
    assert store.hq_config_versions() == {"agents": 2}
    assert [c["name"] for c in store.pending_hq_commands()] == ["agent.logout"]
    assert store.announcement(announcement.id)["title"] == "国庆值班安排"
    # the broker delivers a copy, and an older version turns up late: nothing changes twice
    client = hq_client(broker)
    try:
        old = queue.get(hq.db, v1).message
        for payload in (queue.get(hq.db, v2).message.to_json(), old.to_json(),
                        queue.get(hq.db, command).message.to_json()):
            client.publish(old.topic if b'"config"' in payload else
                           down_topic("edge-a", "command"), payload, qos=1).wait_for_publish(5)
        wait(lambda: {v1, v2, command} <= {a["id"] for a in hq.acks_from("edge-a")
                                             if a["result"] == "duplicate"}, 15,
             "HQ to get the duplicates' acks")
    finally:
        client.loop_stop()
        client.disconnect()
    assert [hq.state(m) for m in (v1, v2, command)] == ["applied"] * 3
    assert len(store.pending_hq_commands()) == 1 and store.hq_config_versions() == {"agents": 2}
    applied = [a for a in hq.acks_from("edge-a") if a["result"] == "applied"]
    assert sorted(a["id"] for a in applied) == sorted([v1, v2, command, to_a.message.id])
    wait(lambda: store.outbox_depth() == 0, 10, "the edge's acks to be acknowledged in turn")
    # edge-b never connected: its copy waits, pending, re-sent by the dispatcher
    to_b = queue.listing(hq.db, edge="edge-b", scope=announcement.id)[0]
    assert to_b.state == "pending"
    wait(lambda: queue.get(hq.db, to_b.message.id).sends >= 2, 10, "re-sends to edge-b")


@pytest.mark.hil
def test_an_offline_edge_gets_what_hq_sent_meanwhile_when_it_comes_back(broker, hq, edge_a, edge_b):
    hq.dispatcher.resend_s = hq.dispatcher.resend_max_s = 60.0   # no re-send unless time moves
    edge_a.start()        # edge-a has a session (and its subscription) at the broker ...
    edge_a.stop()         # ... and goes offline; edge-b has never been connected at all
    ids = {edge: hq.enqueue(edge, "config", "agents", "config.section", AGENTS_V2)
           for edge in ("edge-a", "edge-b")}
    wait(lambda: all(queue.get(hq.db, i).sends == 1 for i in ids.values()), 10,
         "the dispatcher to hand both to the broker")
    assert [hq.state(i) for i in ids.values()] == ["pending", "pending"]
    edge_a.start()        # the broker kept it in edge-a's persistent session
    edge_b.start()
    hq.wait_state(ids["edge-a"], "applied")
    assert queue.get(hq.db, ids["edge-a"]).sends == 1             # delivered without a re-send
    time.sleep(0.5)
    assert hq.state(ids["edge-b"]) == "pending"                   # nothing was kept for edge-b
    hq.clock.offset += 61                                         # its re-send falls due
    hq.wait_state(ids["edge-b"], "applied")
    assert queue.get(hq.db, ids["edge-b"]).sends == 2
    assert edge_a.store.hq_config_versions() == edge_b.store.hq_config_versions() == {"agents": 1}


@pytest.mark.hil
def test_malformed_and_invalid_messages_are_rejected_with_a_reason_and_nothing_breaks(
        broker, hq, edge_a):
    edge_a.start()
    good = hq.enqueue("edge-a", "config", "agents", "config.section", AGENTS_V1)
    hq.wait_state(good, "applied")
    client = hq_client(broker)
    try:
        client.publish(down_topic("edge-a", "config"), b"{not json", qos=1).wait_for_publish(5)
        client.publish(down_topic("edge-a", "config"), "中文但不是 JSON".encode(),
                       qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
    bad_group = {"agents": [{"id": "a8009", "name": "赵主管", "extension": "8009",
                             "groups": ["vip"]}]}
    invalid = hq.enqueue("edge-a", "config", "agents", "config.section", bad_group)
    unknown_command = hq.enqueue("edge-a", "command", queue.new_scope(), "command",
                                 {"name": "disk.format", "args": {}})
    hq.wait_state(invalid, "rejected")
    hq.wait_state(unknown_command, "rejected")
    assert queue.get(hq.db, invalid).error == \
        "agents: agents[0].groups[0]: unknown group 'vip'"
    assert "unknown command 'disk.format'" in queue.get(hq.db, unknown_command).error
    assert edge_a.store.hq_config_sections()["agents"]["body"] == AGENTS_V1   # old config kept
    assert edge_a.publisher is not None and edge_a.publisher._thread.is_alive()
    edge_a.store.append_event("agent.state", {"agent_id": "a8001", "state": "idle"})
    wait(lambda: hq.db.count("edge-a", "agent") == 1, 10, "the up path to carry on")
    assert hq.db.dead_letters() == []


@pytest.mark.hil
def test_a_department_announcement_reaches_only_its_edges_and_read_receipts_come_back(
        broker, hq, edge_a, edge_b):
    edge_a.start()
    edge_b.start()
    local, _ = fanout.announce(hq.db, Audience("department", department_id=hq.shenzhen),
                               "深圳分行系统升级", "今晚 22:00 升级，请提前保存。")
    everyone, _ = fanout.announce(hq.db, Audience("everyone"), "全员通知", "周五下午全员大会。")
    hq.dispatcher.wake()
    wait(lambda: edge_b.store.announcement(everyone.id) is not None, 15, "edge-b to get its one")
    wait(lambda: edge_a.store.announcement(local.id) is not None
         and edge_a.store.announcement(everyone.id) is not None, 15, "edge-a to get both")
    assert edge_b.store.announcement(local.id) is None
    assert queue.listing(hq.db, edge="edge-b", scope=local.id) == []
    shown = edge_a.store.announcements_for("a8001", ["general"])
    assert sorted(a["title"] for a in shown) == ["全员通知", "深圳分行系统升级"]
    read_at = edge_a.store.mark_announcement_read(local.id, "a8001")
    edge_a.store.mark_announcement_read(local.id, "a8001")        # a second click: one receipt
    wait(lambda: ann.reads(hq.db, local.id), 15, "the read receipt to reach HQ")
    reads = ann.reads(hq.db, local.id)
    assert [(r["edge"], r["agent_id"], r["read_at"]) for r in reads] == \
        [("edge-a", "a8001", read_at)]
    assert ann.reads(hq.db, everyone.id) == []
    withdrawn, _ = fanout.withdraw(hq.db, local.id)
    hq.dispatcher.wake()
    wait(lambda: edge_a.store.announcement(local.id)["withdrawn"], 15, "the withdrawal")
    assert [a["title"] for a in edge_a.store.announcements_for("a8001", ["general"])] == ["全员通知"]
