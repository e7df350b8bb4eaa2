"""HQ ingest through a real Mosquitto (hil/broker.py) and real paho clients: edges publish
envelopes, the consumer stores each once and acks every stream's committed high-water mark on the
edge's retained ``down/ack`` topic; bad payloads become dead letters; two consumer processes on
the shared subscription lose nothing and store nothing twice when one is SIGKILLed mid-burst.

The consumer tests run on SQLite and on PostgreSQL (``hq_db_url``, a real server from
``hil.postgres``); the two-consumer burst on PostgreSQL is in test_ingest_postgres.py."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from ulid import ULID

from aggregator.web.serve import terminate
from aggregator.db import HqDb
from aggregator.envelope import ack_topic, up_topic
from aggregator.ingest import IngestConsumer
from aggregator.pg import WRITERS_KEY
from hil.broker import HQ_USER
from tests.aggregator.conftest import hq_db_url, postgres_server  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
EDGE_PASSWORDS = {"edge-a": "secret-a", "edge-b": "secret-b"}


def wait_until(predicate, timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def envelope(edge: str, stream: str, seq: int, **overrides) -> dict:
    """A CDR has a call_id (the HQ's cdr projection dead-letters one without)."""
    body = {"n": seq, "call_id": f"{edge}-call-{seq}"} if stream == "cdr" else {"n": seq}
    data = {"id": str(ULID()), "edge": edge, "stream": stream, "seq": seq, "ts": time.time(),
            "type": "cdr" if stream == "cdr" else "agent.state", "body": body}
    data.update(overrides)
    return data


class FakeEdge:
    """The edge's side of the contract, over the wire: an outbox of published envelopes that
    shrinks as HQ's retained acks arrive, and is re-sent while something stays unacknowledged."""

    def __init__(self, broker, edge: str) -> None:
        self.edge = edge
        self.outbox: dict[tuple[str, int], bytes] = {}
        self.hwm: dict[str, int] = {}
        self.acks: list[dict] = []
        self.resent = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"{edge}-{time.monotonic_ns()}", protocol=mqtt.MQTTv311)
        self.client.username_pw_set(edge, EDGE_PASSWORDS[edge])
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(ack_topic(edge), qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), f"{edge} could not subscribe to its acks"

    def publish(self, stream: str, seq: int, **overrides) -> bytes:
        payload = json.dumps(envelope(self.edge, stream, seq, **overrides)).encode()
        with self._lock:
            self.outbox[(stream, seq)] = payload
        self.client.publish(up_topic(self.edge, stream), payload, qos=1)
        return payload

    def publish_raw(self, stream: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(up_topic(self.edge, stream), payload, qos=1)

    def resend(self) -> int:
        with self._lock:
            pending = sorted(self.outbox.items())
        for (stream, _seq), payload in pending:
            self.client.publish(up_topic(self.edge, stream), payload, qos=1)
        self.resent += len(pending)
        return len(pending)

    def wait_acked(self, stream: str, hwm: int, timeout_s: float = 5.0) -> bool:
        return wait_until(lambda: self.hwm.get(stream, 0) >= hwm, timeout_s)

    def drain(self, timeout_s: float, resend_after_s: float = 2.0) -> bool:
        """Wait for every outbox row to be acked, re-sending all of them after a quiet spell."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = len(self.outbox)
            if wait_until(lambda: not self.outbox, min(resend_after_s, deadline - time.monotonic())):
                return True
            if len(self.outbox) == before:
                self.resend()
        return not self.outbox

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_ack(self, _client, _userdata, message) -> None:
        data = json.loads(message.payload)
        with self._lock:
            self.acks.append(data)
            for stream, hwm in data["acks"].items():
                self.hwm[stream] = max(self.hwm.get(stream, 0), hwm)
                for key in [k for k in self.outbox if k[0] == stream and k[1] <= hwm]:
                    del self.outbox[key]


class ConsumerProcess:
    """``python -m aggregator.ingest`` as its own process, so a test can SIGKILL it."""

    def __init__(self, broker, db_url: str | Path, client_id: str) -> None:
        self.args = [sys.executable, "-m", "aggregator.ingest", "--db", str(db_url),
                     "--host", "127.0.0.1", "--port", str(broker.port), "--user", HQ_USER,
                     "--password", broker.hq_password, "--client-id", client_id]
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 10.0) -> "ConsumerProcess":
        self.lines = []
        self.process = subprocess.Popen(self.args, cwd=REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(self.process, self.lines), daemon=True).start()
        assert wait_until(lambda: any("subscribed to" in line for line in self.lines), timeout_s), \
            "".join(self.lines)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        terminate(self.process, 10.0)

    @staticmethod
    def _read(process: subprocess.Popen[str], lines: list[str]) -> None:
        for line in process.stderr:
            lines.append(line)


@pytest.fixture
def consumer(broker, hq_db_url: str):
    running = IngestConsumer(hq_db_url, "127.0.0.1", broker.port, HQ_USER, broker.hq_password,
                             "ingest-1", reconnect_max_s=0.5).start()
    assert running.wait_subscribed(5)
    yield running
    running.stop()


@pytest.fixture
def edge_a(broker):
    edge = FakeEdge(broker, "edge-a")
    yield edge
    edge.close()


@pytest.fixture
def db(hq_db_url: str, consumer):
    with HqDb.open(hq_db_url) as hq:
        yield hq


@pytest.mark.hil
def test_published_envelopes_are_stored_once_and_acked_per_stream(consumer, edge_a, db):
    for seq in range(1, 6):
        edge_a.publish("cdr", seq)
    for seq in range(1, 4):
        edge_a.publish("agent", seq)

    assert edge_a.wait_acked("cdr", 5) and edge_a.wait_acked("agent", 3)
    assert not edge_a.outbox
    assert db.count() == 8 and db.count("edge-a", "cdr") == 5
    assert db.hwms("edge-a") == {"agent": 3, "cdr": 5}
    # the retained ack carries every stream of the edge, so an edge reconnecting sees them all
    assert edge_a.acks[-1]["acks"] == {"agent": 3, "cdr": 5}
    assert [seq for seq, _id in db.messages("edge-a", "cdr")] == [1, 2, 3, 4, 5]


@pytest.mark.hil
def test_the_ack_is_retained_for_an_edge_that_connects_later(broker, consumer, edge_a):
    edge_a.publish("cdr", 1)
    assert edge_a.wait_acked("cdr", 1)
    late = FakeEdge(broker, "edge-a")
    try:
        assert late.wait_acked("cdr", 1, timeout_s=2)
    finally:
        late.close()


@pytest.mark.hil
def test_duplicates_are_stored_once_and_a_resend_is_acked_again(consumer, edge_a, db):
    payload = edge_a.publish("cdr", 1)
    assert edge_a.wait_acked("cdr", 1)
    acks_before = len(edge_a.acks)

    for _ in range(3):
        edge_a.publish_raw("cdr", payload)
    assert wait_until(lambda: len(edge_a.acks) > acks_before, 3), "a resend must be acked again"
    assert db.count() == 1 and db.duplicates() == 0 and db.hwm("edge-a", "cdr") == 1
    assert db.dead_letters() == []

    # the same seq under another id is no redelivery: kept aside, the stored one stands
    edge_a.publish_raw("cdr", json.dumps(envelope("edge-a", "cdr", 1)).encode())
    assert wait_until(lambda: len(db.dead_letters()) == 1, 3)
    assert "conflict: edge-a/cdr seq 1 is already stored" in db.dead_letters()[0].reason
    assert db.count() == 1 and db.messages("edge-a", "cdr")[0][1] == json.loads(payload)["id"]


@pytest.mark.hil
def test_the_hwm_waits_for_a_gap_and_a_lasting_gap_is_recorded(consumer, edge_a, db):
    for seq in (1, 2, 4, 5):
        edge_a.publish("cdr", seq)
    assert wait_until(lambda: db.count() == 4, 5)
    assert edge_a.wait_acked("cdr", 2)
    time.sleep(0.2)
    assert edge_a.hwm["cdr"] == 2 and db.hwm("edge-a", "cdr") == 2

    now = time.time()
    assert db.record_gaps(settle_s=30, now=now) == []          # still settling: not a gap yet
    gaps = db.record_gaps(settle_s=30, now=now + 31)
    assert [(g.edge, g.stream, g.seq) for g in gaps] == [("edge-a", "cdr", 3)]
    assert db.record_gaps(settle_s=30, now=now + 32) == []     # recorded once

    edge_a.publish("cdr", 3)                                   # the edge re-sends it
    assert edge_a.wait_acked("cdr", 5)
    db.record_gaps(settle_s=30, now=now + 33)
    assert db.gaps() == []


@pytest.mark.hil
def test_bad_payloads_become_dead_letters_with_their_reason(consumer, edge_a, db):
    bad = {
        "not UTF-8": b"\xff\xfe{}",
        "not JSON": b"{not json",
        "seq: missing": json.dumps({k: v for k, v in envelope("edge-a", "cdr", 7).items()
                                    if k != "seq"}).encode(),
        "seq: expected an integer": json.dumps(envelope("edge-a", "cdr", "8")).encode(),
        "body: expected a JSON object": json.dumps(envelope("edge-a", "cdr", 9, body=[1])).encode(),
        "edge mismatch": json.dumps(envelope("edge-b", "cdr", 1)).encode(),
        "stream mismatch": json.dumps(envelope("edge-a", "agent", 1)).encode(),
    }
    for payload in bad.values():
        edge_a.publish_raw("cdr", payload).wait_for_publish(5)
    edge_a.publish("cdr", 1)                       # the consumer is still alive and acks this

    assert edge_a.wait_acked("cdr", 1)
    assert wait_until(lambda: len(db.dead_letters()) == len(bad), 3)
    letters = {letter.payload: letter for letter in db.dead_letters()}
    for reason, payload in bad.items():
        assert reason in letters[payload].reason, (reason, letters[payload].reason)
        assert letters[payload].topic == "cc/v1/edge-a/up/cdr"
    # the body-less seq 9 still names edge-a/cdr, an id and a seq: a stand-in holds its place
    assert db.count() == 2 and db.hwms("edge-b") == {}
    assert [seq for seq, _ in db.messages("edge-a", "cdr")] == [1, 9]
    assert edge_a.acks[-1]["acks"] == {"cdr": 1}     # the forged edge-b seq 1 acked nothing


@pytest.mark.hil
def test_a_dead_letter_that_names_its_seq_does_not_block_the_stream(consumer, edge_a, db):
    """An edge re-sends until HQ's mark covers a row: a message HQ can never store must still
    count as received, or the edge's stream would stall behind it for ever."""
    edge_a.publish("cdr", 1)
    edge_a.publish_raw("cdr", json.dumps(envelope("edge-a", "cdr", 2, body="no object")).encode())
    edge_a.publish("cdr", 3)
    assert edge_a.wait_acked("cdr", 3)
    assert db.hwm("edge-a", "cdr") == 3
    letters = db.dead_letters()
    assert len(letters) == 1 and "body: expected a JSON object" in letters[0].reason
    rows = db.query("SELECT type, body FROM messages WHERE edge = ? AND stream = ? AND seq = 2",
                    ("edge-a", "cdr"))
    assert rows[0][0] == "rejected" and "body: expected a JSON object" in rows[0][1]


@pytest.mark.hil
def test_the_consumer_rides_out_a_broker_crash(broker, consumer, edge_a, db):
    for seq in range(1, 51):
        edge_a.publish("cdr", seq)
    assert edge_a.wait_acked("cdr", 50)
    saved = broker.workdir / "data" / "mosquitto.db"
    acked_at = time.time()
    # the broker saves its sessions every autosave (whole seconds, so ~2 s): wait for one, so
    # that the restart restores the consumer's session — the case that loses the subscription
    assert wait_until(lambda: saved.exists() and saved.stat().st_mtime > acked_at, 5)

    broker.kill()
    time.sleep(0.3)
    broker.start()
    for seq in range(51, 101):
        edge_a.publish("cdr", seq)       # paho holds them until the edge is reconnected
    # Mosquitto 2.0 restores the consumer's session but not its shared subscription: without a
    # re-subscribe on every CONNACK nothing more would reach HQ (and the ack would never come)
    assert edge_a.drain(timeout_s=15)
    assert db.count() == 100 and db.duplicates() == 0 and db.hwm("edge-a", "cdr") == 100
    assert consumer.stats.connections >= 2


@pytest.mark.hil
def test_two_consumers_one_killed_mid_burst_store_every_message_once(broker, tmp_path):
    db_path = tmp_path / "hq.sqlite3"
    consumers = [ConsumerProcess(broker, db_path, f"ingest-{n}").start() for n in (1, 2)]
    edges = {"edge-a": ("cdr", 6000), "edge-b": ("agent", 4000)}
    fakes = {edge: FakeEdge(broker, edge) for edge in edges}
    try:
        with HqDb(db_path) as db:
            for seq in range(1, 6001):
                for edge, (stream, total) in edges.items():
                    if seq <= total:
                        fakes[edge].publish(stream, seq)
                if seq == 2000:
                    # mid-flow: it holds delivered, uncommitted, un-PUBACKed messages
                    assert wait_until(lambda: db.count() > 500, 5)
                    consumers[0].kill()
                if seq == 4000:
                    time.sleep(0.5)        # the broker queues its share in its session meanwhile
                    consumers[0].start()

            for edge, fake in fakes.items():
                assert fake.drain(timeout_s=12), (edge, len(fake.outbox))
            assert db.count() == 10_000
            assert db.duplicates() == 0
            assert db.hwm("edge-a", "cdr") == 6000 and db.hwm("edge-b", "agent") == 4000
            assert db.dead_letters() == []
        # the killed consumer's uncommitted messages came back from its session, not from a resend
        assert all(fake.resent == 0 for fake in fakes.values())
    finally:
        for fake in fakes.values():
            fake.close()
        for process in consumers:
            process.stop()


class WriterBlocker:
    """Another writer holding the database's write lock for as long as the test wants: SQLite's
    file lock, or on PostgreSQL the advisory lock every ingest batch needs a share of."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def __enter__(self) -> "WriterBlocker":
        if self.db_url.startswith("postgresql://"):
            self.conn = psycopg.connect(self.db_url, autocommit=True)
            self.conn.execute(f"SELECT pg_advisory_lock({WRITERS_KEY})")
        else:
            self.conn = sqlite3.connect(self.db_url, isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.conn, sqlite3.Connection):
            self.conn.execute("ROLLBACK")
        self.conn.close()     # PostgreSQL drops a session's advisory locks with it


@pytest.mark.hil
def test_a_database_outage_loses_nothing(broker, hq_db_url, edge_a):
    consumer = IngestConsumer(hq_db_url, "127.0.0.1", broker.port, HQ_USER, broker.hq_password,
                              "ingest-1", reconnect_min_s=0.05, reconnect_max_s=0.2,
                              db_busy_timeout_s=0.2).start()
    try:
        assert consumer.wait_subscribed(5)
        with HqDb.open(hq_db_url) as db:
            with WriterBlocker(hq_db_url):      # a long lock: every batch fails after 0.2 s
                for seq in range(1, 101):
                    edge_a.publish("cdr", seq)
                assert wait_until(lambda: consumer.stats.received >= 100, 5)
                time.sleep(0.5)
                assert edge_a.hwm.get("cdr", 0) == 0 and edge_a.outbox
                assert db.count() == 0

            assert edge_a.wait_acked("cdr", 100, timeout_s=5)
            assert db.count() == 100 and db.duplicates() == 0
            assert consumer.stats.connections >= 2 and edge_a.resent == 0
    finally:
        consumer.stop()
