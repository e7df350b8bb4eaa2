"""The sync publisher in a child process (``edge.sync.process.SyncProcess``), against a real
Mosquitto and the real HQ ingest: events go end to end, a SIGKILLed child is restarted by the
parent mid-burst with nothing lost and nothing twice, wake-ups cross the process boundary
coalesced, the child's log records reach the parent's logging, and it stops with its parent."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from aggregator.db import HqDb
from edge.store import Store
from edge.sync.process import WAKE, SyncProcess
from hil.broker import HQ_USER, free_port

BURST = 10_000
REPO = Path(__file__).parents[2]
# the class the child runs (``SyncProcess(publisher_class=…)``): the product's publisher
PUBLISHERS = pytest.mark.parametrize("publisher_class", ["edge.sync.publisher:SyncPublisher"],
                                     ids=["publisher"])


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out: {what}")


def start_ingest(broker, db: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aggregator.ingest", "--db", str(db),
                             "--host", "127.0.0.1", "--port", str(broker.port), "--user", HQ_USER,
                             "--password", broker.hq_password, "--client-id", "ingest-1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_ingest(ingest: subprocess.Popen) -> None:
    ingest.send_signal(signal.SIGTERM)
    ingest.wait(10)


def hq_count(db: Path) -> int:
    if not db.exists():
        return 0
    with HqDb(db) as hq:
        return hq.count("edge-a")


def hq_numbers(db: Path, stream: str) -> list[int]:
    """The ``n`` of every event HQ stored for ``stream``, in seq order (one row per message)."""
    with HqDb(db) as hq:
        rows = hq.query("SELECT body FROM messages WHERE edge = ? AND stream = ? ORDER BY seq",
                        ["edge-a", stream])
    return [json.loads(body)["data"]["n"] for (body,) in rows]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def sync_process(broker_port: int, store_path: Path, **kwargs: object) -> SyncProcess:
    return SyncProcess(str(store_path), "edge-a", "127.0.0.1", broker_port, "edge-a", "secret-a",
                       resend_s=2.0, **kwargs)


@pytest.mark.hil
@PUBLISHERS
def test_events_go_end_to_end_through_the_child_process(broker, tmp_path, publisher_class):
    store_path, hq_db = tmp_path / "edge.sqlite3", tmp_path / "hq.sqlite3"
    ingest = start_ingest(broker, hq_db)
    store = Store(store_path, outbox=True)
    sync = sync_process(broker.port, store_path, publisher_class=publisher_class)
    store.on_outbox = sync.wake
    sync.start()
    try:
        wait(lambda: sync.connected, 20, "the child to connect")
        assert sync.pid is not None and sync.pid != os.getpid()
        for i in range(2_000):
            store.append_event("agent.state", {"n": i, "name": "张三", "note": "公告已读"})
        wait(lambda: hq_count(hq_db) == 2_000, 60, "HQ to hold all 2,000 events")
        assert hq_numbers(hq_db, "agent") == list(range(2_000))
        with HqDb(hq_db) as hq:
            body = json.loads(hq.query("SELECT body FROM messages WHERE edge = ? LIMIT 1",
                                       ["edge-a"])[0][0])
        assert body["data"]["name"] == "张三" and body["data"]["note"] == "公告已读"
        wait(lambda: store.outbox_depth() == 0, 30, "the outbox to drain on HQ's acks")
        wait(lambda: sync.published >= 2_000, 5, "the child to report what it published")
        assert sync.restarts == 0
    finally:
        sync.stop()
        sync.close()
        store.close()
        stop_ingest(ingest)


@pytest.mark.hil
@PUBLISHERS
def test_child_sigkilled_mid_burst_is_restarted_and_hq_has_each_event_once(broker, tmp_path,
                                                                           publisher_class):
    store_path, hq_db = tmp_path / "edge.sqlite3", tmp_path / "hq.sqlite3"
    ingest = start_ingest(broker, hq_db)
    store = Store(store_path, outbox=True)
    sync = sync_process(broker.port, store_path, restart_min_s=0.2,
                        publisher_class=publisher_class)
    store.on_outbox = sync.wake
    sync.start()
    try:
        wait(lambda: sync.connected, 20, "the child to connect")
        first = sync.pid
        killed_at = None
        for i in range(BURST):
            store.append_event("agent.state", {"n": i})
            if killed_at is None and i % 250 == 0 and hq_count(hq_db) > 1_000:
                os.kill(first, signal.SIGKILL)   # mid-burst, with messages in flight
                killed_at = i
        assert killed_at is not None and killed_at < BURST - 1_000, "the kill came too late"
        wait(lambda: sync.restarts == 1 and sync.pid != first, 20, "the parent to restart it")
        assert gone(first)
        wait(lambda: hq_count(hq_db) == BURST, 90, f"HQ to hold all {BURST} events")
        assert hq_numbers(hq_db, "agent") == list(range(BURST))  # each once, in seq order
        wait(lambda: store.outbox_depth() == 0, 30, "the outbox to drain on HQ's acks")
        assert sync.restarts == 1
    finally:
        sync.stop()
        sync.close()
        store.close()
        stop_ingest(ingest)


@pytest.mark.hil
@PUBLISHERS
def test_wake_ups_are_coalesced_until_the_child_takes_one(broker, tmp_path, publisher_class):
    """While the child is frozen, a thousand commits put one byte on the socket; once it has
    taken that one, the next commit sends a byte again. (Connected: a publisher that waits on the
    socket itself takes wake-ups only then.)"""
    Store(tmp_path / "edge.sqlite3", outbox=True).close()
    sync = sync_process(broker.port, tmp_path / "edge.sqlite3", publisher_class=publisher_class)
    sync.start()
    try:
        wait(lambda: sync.connected, 20, "the child to connect")
        for wakes in (1_000, 1):
            with frozen(sync.pid):
                for _ in range(wakes):
                    sync.wake()
                assert pending_wake_bytes(sync) == 1
            wait(lambda: sync._status[WAKE] == 0 and pending_wake_bytes(sync) == 0, 5,
                 "the child to take the wake-up")
    finally:
        sync.stop()
        sync.close()


@pytest.mark.hil
@PUBLISHERS
def test_no_wake_up_is_left_stuck_after_a_storm_of_commits(broker, tmp_path, publisher_class):
    """Wake-ups in a tight loop race the child's turns; when they stop, the child has taken the
    last one: the flag is down and no byte waits (a flag left up would silence every later
    commit, and the publisher would only find rows at its idle poll)."""
    Store(tmp_path / "edge.sqlite3", outbox=True).close()
    sync = sync_process(broker.port, tmp_path / "edge.sqlite3", publisher_class=publisher_class)
    sync.start()
    try:
        wait(lambda: sync.connected, 20, "the child to connect")
        for _ in range(5):
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                sync.wake()
            wait(lambda: sync._status[WAKE] == 0 and pending_wake_bytes(sync) == 0, 5,
                 "the child to take the last wake-up")
    finally:
        sync.stop()
        sync.close()


@contextlib.contextmanager
def frozen(pid: int):
    """SIGSTOP, and wait until every thread of it has stopped (the signal is asynchronous)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        wait(lambda: all(_thread_state(pid, task) == "T"
                         for task in os.listdir(f"/proc/{pid}/task")), 5, "the child to stop")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _thread_state(pid: int, task: str) -> str:
    try:
        stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
    except FileNotFoundError:  # the thread ended meanwhile
        return "T"
    return stat.rsplit(")", 1)[1].split()[0]


def pending_wake_bytes(sync: SyncProcess) -> int:
    """Bytes on the wake socket not yet read by the child (the parent holds that end too)."""
    try:
        return len(sync._wake_r.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


def test_the_childs_log_records_reach_the_parents_logging(tmp_path, caplog):
    Store(tmp_path / "edge.sqlite3", outbox=True).close()
    sync = sync_process(free_port(), tmp_path / "edge.sqlite3")  # nothing listens there
    with caplog.at_level(logging.INFO):
        sync.start()
        try:
            wait(lambda: any(r.name == "edge.sync.publisher" and "cannot reach the broker"
                             in r.getMessage() for r in caplog.records), 15,
                 "the child's warning in the parent's log")
        finally:
            sync.stop()
            sync.close()
    record = next(r for r in caplog.records if r.name == "edge.sync.publisher")
    assert record.levelno == logging.WARNING
    assert f"[sync process {sync.pid}]" in record.getMessage()


def test_a_child_that_keeps_dying_is_restarted_with_growing_back_off(tmp_path, caplog):
    """The store's directory does not exist: every child fails at once."""
    missing = tmp_path / "no-such-dir" / "edge.sqlite3"
    sync = sync_process(free_port(), missing, restart_min_s=0.1, restart_max_s=0.8)
    with caplog.at_level(logging.INFO):
        sync.start()
        try:
            wait(lambda: sync.restarts >= 3, 20, "three restarts")
        finally:
            sync.stop()
            sync.close()
    delays = [float(r.getMessage().split("restarting it in ")[1].split(" s")[0])
              for r in caplog.records if "restarting it in" in r.getMessage()]
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert any("exited with exit code 1" in r.getMessage() for r in caplog.records)


def test_stop_ends_the_child_cleanly_and_a_killed_parent_takes_it_along(tmp_path):
    Store(tmp_path / "edge.sqlite3", outbox=True).close()
    sync = sync_process(free_port(), tmp_path / "edge.sqlite3")
    sync.start()
    wait(lambda: sync.pid is not None, 5, "the child to start")
    child = psutil.Process(sync.pid)
    started = time.monotonic()
    sync.stop()
    sync.close()
    assert time.monotonic() - started < 5
    assert gone(child.pid) and sync.restarts == 0

    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from edge.sync.process import SyncProcess
        sync = SyncProcess({str(tmp_path / "edge.sqlite3")!r}, "edge-a", "127.0.0.1",
                           {free_port()}, "edge-a", "secret-a")
        sync.start()
        print(sync.pid, flush=True)
        time.sleep(3600)
    """)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    orphan = int(parent.stdout.readline())
    assert not gone(orphan)
    parent.kill()
    parent.wait(5)
    wait(lambda: gone(orphan), 5, "the child to notice its parent died and stop")
