"""Edge outbox -> real Mosquitto -> HQ ingest, end to end, with real crashes (issue 5's first
Must show): the broker SIGKILLed and restarted during a burst of 10,000 events, and the edge
process SIGKILLed mid-burst and restarted; HQ ends with all of them, none twice, and the edge's
outbox drains to empty (rows leave only on HQ's committed high-water mark)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aggregator.db import HqDb
from aggregator.web.serve import terminate
from edge.store import Store
from edge.sync.publisher import SyncPublisher
from hil.broker import HQ_USER

BURST = 10_000
REPO = Path(__file__).parents[2]


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


def start_ingest(broker, db: Path, client_id: str = "ingest-1") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aggregator.ingest", "--db", str(db),
                             "--host", "127.0.0.1", "--port", str(broker.port), "--user", HQ_USER,
                             "--password", broker.hq_password, "--client-id", client_id],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hq_count(db: Path) -> int:
    if not db.exists():
        return 0
    with HqDb(db) as hq:
        return hq.count("edge-a")


def hq_duplicates(db: Path) -> int:
    with HqDb(db) as hq:
        return hq.duplicates()


@pytest.mark.hil
def test_broker_killed_and_restarted_during_a_burst_loses_and_doubles_nothing(broker, tmp_path):
    store_path, hq_db = tmp_path / "edge.sqlite3", tmp_path / "hq.sqlite3"
    ingest = start_ingest(broker, hq_db)
    store = Store(store_path, outbox=True)
    publisher = SyncPublisher(str(store_path), "edge-a", "127.0.0.1", broker.port, "edge-a",
                              "secret-a", resend_s=2.0)
    publisher.start()
    try:
        for i in range(BURST):
            store.append_event("agent.state", {"n": i, "agent_id": f"a{i % 50}"})
            if i == BURST // 2:
                broker.kill()          # mid-burst: whatever the broker held in memory is gone
                broker.start()
        wait(lambda: hq_count(hq_db) == BURST, 90, f"HQ to hold all {BURST} events")
        wait(lambda: store.outbox_depth() == 0, 30, "the outbox to drain on HQ's acks")
        assert hq_duplicates(hq_db) == 0
    finally:
        publisher.stop()
        store.close()
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(10)


EDGE_BURST_SCRIPT = textwrap.dedent("""
    import sys
    from edge.store import Store
    store = Store(sys.argv[1], outbox=True)
    for i in range(int(sys.argv[2]), int(sys.argv[3])):
        store.append_event("agent.state", {"n": i})
""")


@pytest.mark.hil
def test_edge_killed_mid_burst_and_restarted_loses_and_doubles_nothing(broker, tmp_path):
    """The edge process (store + publisher) dies by SIGKILL halfway through writing; a new one
    takes the same store: the committed rows go, the rest follow, HQ has each once."""
    store_path, hq_db = tmp_path / "edge.sqlite3", tmp_path / "hq.sqlite3"
    ingest = start_ingest(broker, hq_db)
    runner = textwrap.dedent(f"""
        import sys, time
        from edge.store import Store
        from edge.sync.publisher import SyncPublisher
        store = Store(sys.argv[1], outbox=True)
        pub = SyncPublisher(sys.argv[1], "edge-a", "127.0.0.1", {broker.port}, "edge-a", "secret-a",
                            resend_s=2.0)
        pub.start()
        for i in range(int(sys.argv[2]), int(sys.argv[3])):
            store.append_event("agent.state", {{"n": i}})
        time.sleep(3600)
    """)
    try:
        first = subprocess.Popen([sys.executable, "-c", runner, str(store_path), "0", str(BURST)],
                                 cwd=REPO, stderr=subprocess.DEVNULL)
        wait(lambda: hq_count(hq_db) > 1000, 60, "the first edge to get going")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        with Store(store_path) as store:  # what the dead edge had committed
            written = store.db.execute("SELECT count(*) FROM events").fetchone()[0]
        assert 0 < written < BURST
        second = subprocess.Popen([sys.executable, "-c", runner, str(store_path), str(written),
                                   str(BURST)], cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            wait(lambda: hq_count(hq_db) == BURST, 90, f"HQ to hold all {BURST} events")
            with Store(store_path) as store:
                wait(lambda: store.outbox_depth() == 0, 30, "the outbox to drain")
            assert hq_duplicates(hq_db) == 0
        finally:
            second.kill()
            second.wait(10)
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(10)


class EdgeBeforeHq:
    """An edge store and its publisher running against the broker with no HQ consumer yet
    (what it sends meanwhile reaches nobody); ``start_hq()`` starts the ingest process."""

    def __init__(self, broker, tmp_path: Path, **publisher_options) -> None:
        self.broker = broker
        self.store_path, self.hq_db = tmp_path / "edge.sqlite3", tmp_path / "hq.sqlite3"
        self.store = Store(self.store_path, outbox=True)
        self.publisher = SyncPublisher(str(self.store_path), "edge-a", "127.0.0.1", broker.port,
                                       "edge-a", "secret-a", **publisher_options)
        self.ingest: subprocess.Popen | None = None

    def __enter__(self) -> "EdgeBeforeHq":
        self.publisher.start()
        return self

    def start_hq(self) -> None:
        self.ingest = start_ingest(self.broker, self.hq_db)

    def __exit__(self, *exc: object) -> None:
        self.publisher.stop()
        self.store.close()
        terminate(self.ingest, 10.0)


@pytest.mark.hil
def test_hq_down_for_the_whole_burst_catches_up_after(broker, tmp_path):
    """No consumer at all while the edge writes 10,000 events (the broker drops what nobody
    subscribes to): the outbox keeps every row, re-sends after HQ's silence, and HQ catches up."""
    with EdgeBeforeHq(broker, tmp_path, resend_s=1.0) as edge:
        for i in range(BURST):
            edge.store.append_event("call.ringing", {"n": i})
        wait(lambda: edge.publisher.published >= BURST, 30, "the burst to be published once")
        assert edge.store.outbox_depth() == BURST  # PUBACKs from the broker removed nothing
        edge.start_hq()
        wait(lambda: hq_count(edge.hq_db) == BURST, 90, f"HQ to catch up on {BURST} events")
        wait(lambda: edge.store.outbox_depth() == 0, 30, "the outbox to drain")
        assert hq_duplicates(edge.hq_db) == 0


@pytest.mark.hil
def test_a_window_nobody_received_goes_again_soon_not_after_resend_s(broker, tmp_path):
    """After a broker restart the edge may reconnect before HQ's consumer has subscribed again,
    and what it sends then reaches nobody. Until HQ's mark first moves on a connection the edge
    re-sends after half a second (doubling), not after ``resend_s`` (30 s here)."""
    with EdgeBeforeHq(broker, tmp_path, resend_s=30.0) as edge:
        for i in range(100):
            edge.store.append_event("call.ringing", {"n": i})
        wait(lambda: edge.publisher.published >= 100, 10, "the window to be published to nobody")
        edge.start_hq()
        wait(lambda: edge.store.outbox_depth() == 0, 15, "HQ to get the re-sent window and ack it")
        assert hq_count(edge.hq_db) == 100 and hq_duplicates(edge.hq_db) == 0


@pytest.mark.hil
def test_a_store_locked_past_the_busy_timeout_does_not_stop_the_publisher(broker, tmp_path):
    """A writer that keeps the store's lock longer than the publisher's busy timeout (a burst of
    FULL commits can starve it) while HQ's acks arrive costs a retry, not the publisher thread;
    the acks are applied once the lock is free."""
    with EdgeBeforeHq(broker, tmp_path, busy_timeout_s=0.1) as edge:
        for i in range(50):
            edge.store.append_event("call.ringing", {"n": i})
        wait(lambda: edge.publisher.published >= 50, 10, "the events to go out (to nobody yet)")
        holder = sqlite3.connect(edge.store_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")          # the write lock: the acks cannot delete rows
        edge.start_hq()
        wait(lambda: hq_count(edge.hq_db) == 50, 15, "HQ to store the events and ack them")
        time.sleep(0.5)                            # acks applied and refused a few turns
        assert edge.publisher.alive and edge.store.outbox_depth() == 50
        holder.execute("ROLLBACK")
        holder.close()
        wait(lambda: edge.store.outbox_depth() == 0, 15, "the outbox to drain after the lock")
        assert edge.publisher.alive and hq_duplicates(edge.hq_db) == 0
