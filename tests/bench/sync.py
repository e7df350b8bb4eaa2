"""Sync benchmark (issue 5): edge outbox -> Mosquitto (QoS 1) -> HQ ingest -> HQ database.

Run from the repository root::

    .venv/bin/python tests/bench/sync.py            # full run (~2 min)
    .venv/bin/python tests/bench/sync.py --quick    # smaller counts, under 30 s

Every part runs for real on this machine: a Mosquitto 2.0 per scenario (``hil.broker``: ACLs,
persistence, in a temporary directory), the HQ ingest as its own process
(``python -m aggregator.ingest``, one consumer, shared subscription, as in production), and the
edge side as the edge runtime runs it: ``Store(outbox=True).append_event`` on the main thread of
this process and the publisher in a child process of its own (``edge.sync.process.SyncProcess``,
woken after each commit); ``--publisher thread`` runs ``SyncPublisher`` on a thread of this process
instead, for comparison. Every event is ``agent.state`` (one stream).

* **ceiling**: a bare paho publisher -> Mosquitto -> paho subscriber (its own process), QoS 1,
  no storage, envelope-sized payloads, on the same broker set-up. Two client set-ups:
  (a) in-flight 20 with ``loop_start()`` on both clients, (b) in-flight 1,000 with each client
  driven by ``loop()`` from its own one thread. The faster is the ceiling. msg/s = N / (first
  publish -> N-th message received).
* **end-to-end events/s**: N events written with ``append_event`` as fast as the edge can, the
  publisher connected and the consumer subscribed beforehand; N / (first write -> HQ holds N).
  "HQ holds N" is polled every 5 ms as the stream's committed high-water mark (O(1); with one
  stream and no gaps it equals the row count, which is checked at the end).
* **latency at 500 events/s**: events written at a paced 500/s; per event, HQ's ``received_at``
  minus the envelope's ``ts``. ``ts`` is the edge's clock inside the write transaction, just
  before its commit; ``received_at`` is HQ's clock when the consumer's batch transaction begins
  (after its batch window, before the insert and COMMIT), so the commit itself (well under a
  millisecond per batch here) is not in the figure. Same machine, same clock.
* **catch-up**: the broker stopped (SIGTERM, persistence saved) under a connected publisher and
  consumer; N events written into the outbox; the broker started again; seconds from that start
  until HQ holds N. Everything is inside the figure and shown apart: both clients' reconnect
  back-off, a lost window, the drain. (Mosquitto 2.0.11 does not restore the consumer's shared
  subscription with its session, so when the edge reconnects first its first window reaches no
  subscriber and goes again after ``resend_s``: "resent by the publisher" is then 1,000.) The
  backlog is written with ``synchronous=NORMAL`` in both columns (its writing is not timed); the
  column's mode is the publisher's (its DELETEs on HQ's acks).
* **outbox alone** (for scale): ``append_event`` with the outbox and no publisher.
* **CPU s writer/publisher/broker/ingest**: CPU seconds each process spent in the end-to-end
  run (with ``--publisher thread`` the publisher's are inside the writer's). On a 2-core box their
  sum against the wall time shows how close the run came to the machine's limit.

``--publisher-class MODULE:CLASS`` runs another publisher class in the child (same constructor,
including ``wake_socket``/``on_turn``), to compare a candidate side by side.

The FULL column runs the store and the publisher's connection with ``synchronous=FULL``. Publisher
and consumer keep their defaults (window 1,000, resend 5 s; batch 15 ms or 500 messages).

Targets (default durability, ``synchronous=NORMAL``): end-to-end >= 0.5x the ceiling, p99 <= 5 ms
at 500/s, 100,000 queued events caught up in <= 20 s. ``FULL`` is measured beside for scale.
``--quick`` catches up 20,000 and reports ``catchup_s_100k`` as that time x 5, marked
"(extrapolated)" in the table; the fixed part (reconnects, a lost window) is multiplied too, so
the figure is pessimistic: the full run measures 100,000.

The last line is machine-readable:
``RESULT events_per_s=... ratio_vs_ceiling=... p99_ms_at_500=... catchup_s_100k=...``.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
import psutil

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aggregator.db import HqDb  # noqa: E402
from edge.store import Store  # noqa: E402
from edge.store.outbox_rows import stream_of  # noqa: E402
from edge.sync.process import CHILD_TURN_S, SyncProcess  # noqa: E402
from edge.sync.publisher import SyncPublisher  # noqa: E402
from hil.broker import HQ_USER, MOSQUITTO, MosquittoBroker  # noqa: E402

EDGE, EDGE_PASSWORD = "edge-a", "secret-a"
TOPIC = "agent.state"
STREAM = stream_of(TOPIC)
MODES = ("NORMAL", "FULL")
SETUPS = {"a": True, "b": False}  # ceiling set-up -> paho's own thread (loop_start)?
PACED_RATE = 500
TARGET_RATIO = 0.5
TARGET_P99_MS = 5.0
TARGET_CATCHUP_S = 20.0
CATCHUP_TARGET_N = 100_000
POLL_S = 0.005
PUBLISHERS = {"process": SyncProcess, "thread": SyncPublisher}


class BenchError(RuntimeError):
    """A scenario did not complete (the ingest log tail is quoted when it helps)."""


@dataclass(frozen=True)
class Sizes:
    ceiling: int
    ceiling_rounds: int
    outbox_alone: int
    end_to_end: int
    paced_s: float
    catchup: int


QUICK = Sizes(ceiling=8_000, ceiling_rounds=1, outbox_alone=2_000, end_to_end=6_000,
              paced_s=2.0, catchup=20_000)
FULL_RUN = Sizes(ceiling=50_000, ceiling_rounds=3, outbox_alone=20_000, end_to_end=50_000,
                 paced_s=10.0, catchup=CATCHUP_TARGET_N)


def event_data(i: int) -> dict[str, object]:
    return {"agent_id": f"a{i % 50}", "state": "idle" if i % 2 else "busy", "n": i}


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               poll_s: float = POLL_S) -> float:
    """The monotonic time at which ``predicate`` was first seen true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- the HQ side: broker and ingest process ---------------------------------------------------

class IngestProcess:
    """``python -m aggregator.ingest`` on its own, logging to a file we can read."""

    def __init__(self, workdir: Path, broker: MosquittoBroker) -> None:
        self.db_path = workdir / "hq.sqlite3"
        self.log_path = workdir / "ingest.log"
        self.broker = broker
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "IngestProcess":
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aggregator.ingest", "--db", str(self.db_path),
                 "--host", "127.0.0.1", "--port", str(self.broker.port), "--user", HQ_USER,
                 "--password", self.broker.hq_password, "--client-id", "ingest-1",
                 "--log-level", "INFO"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file)
        return self

    def subscriptions(self) -> int:
        """How many SUBACKs the consumer has logged (one per connection)."""
        try:
            return self.log_path.read_text(errors="replace").count("subscribed to")
        except OSError:
            return 0

    def wait_subscribed(self, more_than: int = 0, timeout_s: float = 20.0) -> float:
        return wait_until(lambda: self.alive_or_raise() and self.subscriptions() > more_than,
                          timeout_s, "the ingest consumer to subscribe", poll_s=0.02)

    def alive_or_raise(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"the ingest process exited ({self.process.returncode}): "
                             f"{self.log_tail()}")
        return True

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Rig:
    """Broker, ingest process, edge store and publisher, all up and connected; torn down in
    reverse order on exit, errors included."""

    publisher_kind = "process"  # set from --publisher
    publisher_class: str | None = None  # set from --publisher-class

    def __init__(self, workdir: Path, store_mode: str, publisher_mode: str) -> None:
        self.workdir = workdir
        self.store_mode, self.publisher_mode = store_mode, publisher_mode
        self.stack = contextlib.ExitStack()
        self.broker = MosquittoBroker(workdir / "broker", {EDGE: EDGE_PASSWORD})
        self.ingest = IngestProcess(workdir, self.broker)
        self.store: Store
        self.publisher: SyncProcess | SyncPublisher
        self.hq: HqDb

    def __enter__(self) -> "Rig":
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def _start(self) -> None:
        self.broker.start()
        self.stack.callback(self.broker.stop)
        self.ingest.start()
        self.stack.callback(self.ingest.stop)
        self.ingest.wait_subscribed()
        self.hq = HqDb(self.ingest.db_path)
        self.stack.callback(self.hq.close)
        store_path = self.workdir / "edge.sqlite3"
        self.store = Store(store_path, synchronous=self.store_mode, outbox=True)
        self.stack.callback(self.store.close)
        publisher = PUBLISHERS[self.publisher_kind]
        extra = {"publisher_class": self.publisher_class} if self.publisher_class else {}
        self.publisher = publisher(str(store_path), EDGE, "127.0.0.1", self.broker.port, EDGE,
                                   EDGE_PASSWORD, synchronous=self.publisher_mode, **extra)
        self.store.on_outbox = self.publisher.wake  # as edge/runtime.py wires it
        self.publisher.start()
        self.stack.callback(getattr(self.publisher, "close", lambda: None))
        self.stack.callback(self.publisher.stop)
        wait_until(lambda: self.publisher.connected, 10, "the publisher to connect")

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def published(self) -> int:
        """Messages the publisher has sent; a child process reports its count every
        ``CHILD_TURN_S``, so wait that out first (after the timed part)."""
        if isinstance(self.publisher, SyncProcess):
            time.sleep(2 * CHILD_TURN_S)
        return self.publisher.published

    def hwm(self) -> int:
        self.ingest.alive_or_raise()
        return self.hq.hwm(EDGE, STREAM)

    def wait_for_hq(self, n: int, timeout_s: float) -> float:
        try:
            return wait_until(lambda: self.hwm() >= n, timeout_s, f"HQ to hold {n:,} events")
        except BenchError as exc:
            raise BenchError(f"{exc} (it holds {self.hq.count(EDGE):,}; publisher sent "
                             f"{self.publisher.published:,}); ingest log: "
                             f"{self.ingest.log_tail()}") from exc

    def hq_rows(self, sql: str, *params: object) -> list[tuple]:
        """Read HQ's database directly (read-only): ``sql`` takes the edge id, then ``params``."""
        with contextlib.closing(sqlite3.connect(f"file:{self.ingest.db_path}?mode=ro",
                                                uri=True)) as db:
            return db.execute(sql, [EDGE, *params]).fetchall()

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far: the edge's writer process, its publisher process (0 when the
        publisher is a thread of the writer's), the broker, the ingest."""
        pids = {"writer": os.getpid(), "publisher": getattr(self.publisher, "pid", None),
                "broker": self.broker.process.pid,  # type: ignore[union-attr]
                "ingest": self.ingest.process.pid}  # type: ignore[union-attr]
        return {name: sum(psutil.Process(pid).cpu_times()[:2]) if pid else 0.0
                for name, pid in pids.items()}


def write_events(store: Store, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        store.append_event(TOPIC, event_data(i))


# --- the ceiling: a bare paho pair ------------------------------------------------------------

def bare_payload() -> bytes:
    """An envelope of the size the publisher sends for one of our events."""
    return (f'{{"id": "01JD3K2ZP8Q9R7S6T5V4W3X2Y1", "edge": "{EDGE}", "stream": "{STREAM}", '
            f'"seq": 12345, "ts": {time.time()!r}, "type": "{TOPIC}", "body": {{"topic": '
            f'"{TOPIC}", "data": {{"agent_id": "a17", "n": 12345, "state": "idle"}}}}}}').encode()


def bare_subscriber(port: int, password: str, n: int, threaded: bool, conn) -> None:
    """Child process: count N QoS 1 messages; send (count, first, last) monotonic times."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-sub",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(HQ_USER, password)
    seen = {"count": 0, "first": 0.0, "last": 0.0}

    def on_message(_c, _u, _m) -> None:
        now = time.monotonic()
        if seen["count"] == 0:
            seen["first"] = now
        seen["count"] += 1
        seen["last"] = now

    client.on_message = on_message
    client.on_subscribe = lambda *_args: conn.send("ready")
    client.connect("127.0.0.1", port)
    client.subscribe(f"cc/v1/{EDGE}/up/#", qos=1)
    deadline = time.monotonic() + 120
    if threaded:
        client.loop_start()
        while seen["count"] < n and time.monotonic() < deadline:
            time.sleep(0.001)
    else:
        while seen["count"] < n and time.monotonic() < deadline:
            client.loop(0.01)
    conn.send((seen["count"], seen["first"], seen["last"]))
    client.disconnect()  # before loop_stop(), which would otherwise wait out its select()
    if threaded:
        client.loop_stop()


def bare_publisher(port: int, threaded: bool) -> tuple[mqtt.Client, list[int]]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-pub",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(EDGE, EDGE_PASSWORD)
    client.max_inflight_messages_set(20 if threaded else 1000)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *_args: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    if threaded:
        client.loop_start()
        wait_until(client.is_connected, 10, "the bare publisher to connect")
    else:
        wait_until(lambda: client.loop(0.01) == 0 and client.is_connected(), 10,
                   "the bare publisher to connect", poll_s=0)
    return client, acked


def publish_all(client: mqtt.Client, acked: list[int], n: int, threaded: bool) -> None:
    topic, payload = f"cc/v1/{EDGE}/up/{STREAM}", bare_payload()
    if threaded:  # paho queues past its in-flight 20 and its thread sends on each PUBACK
        for _ in range(n):
            client.publish(topic, payload, qos=1)
        return
    sent, deadline = 0, time.monotonic() + 120
    while acked[0] < n and time.monotonic() < deadline:
        while sent < n and sent - acked[0] < 1000:
            client.publish(topic, payload, qos=1)
            sent += 1
        client.loop(0.001)


def ceiling_run(workdir: Path, n: int, threaded: bool) -> float:
    """msg/s of one set-up: N / (first publish -> N-th message received)."""
    ctx = multiprocessing.get_context("fork")  # no thread is running yet: the first scenario
    with MosquittoBroker(workdir, {EDGE: EDGE_PASSWORD}) as broker:
        parent, child = ctx.Pipe()
        sub = ctx.Process(target=bare_subscriber, args=(broker.port, broker.hq_password, n,
                                                        threaded, child), daemon=True)
        sub.start()
        try:
            if not parent.poll(30) or parent.recv() != "ready":
                raise BenchError("the bare subscriber did not subscribe")
            client, acked = bare_publisher(broker.port, threaded)
            started = time.monotonic()
            publish_all(client, acked, n, threaded)
            if not parent.poll(120):
                raise BenchError("the bare subscriber did not report")
            count, _first, last = parent.recv()
            client.disconnect()
            if threaded:
                client.loop_stop()
        finally:
            sub.join(5)
            if sub.is_alive():
                sub.kill()
                sub.join(5)
    if count < n:
        raise BenchError(f"the bare subscriber got {count:,} of {n:,}")
    return n / (last - started)


# --- the measurements -------------------------------------------------------------------------

@dataclass
class Throughput:
    n: int
    per_s: float
    write_per_s: float
    resent: int
    cpu: dict[str, float]
    wall_s: float


@dataclass
class Latency:
    n: int
    achieved_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class CatchUp:
    n: int
    total_s: float
    publisher_connected_s: float
    ingest_subscribed_s: float
    first_row_s: float
    drain_s: float
    resent: int


def outbox_alone(workdir: Path, mode: str, n: int) -> float:
    with Store(workdir / f"alone-{mode}.sqlite3", synchronous=mode, outbox=True) as store:
        write_events(store, 200)  # warm-up: first pages, statement cache
        started = time.perf_counter()
        write_events(store, n, first=200)
        return n / (time.perf_counter() - started)


def end_to_end(rig: Rig, n: int) -> Throughput:
    """N events as fast as the edge writes them; N / (first write -> HQ holds N)."""
    cpu_before = rig.cpu_s()
    started = time.monotonic()
    write_events(rig.store, n)
    written = time.monotonic()
    done = rig.wait_for_hq(n, timeout_s=max(60.0, n / 200))
    cpu = {k: v - cpu_before[k] for k, v in rig.cpu_s().items()}
    if rig.hq.count(EDGE) != n:
        raise BenchError(f"HQ holds {rig.hq.count(EDGE):,} rows, expected {n:,}")
    return Throughput(n, n / (done - started), n / (written - started),
                      rig.published() - n, cpu, done - started)


def paced_latency(rig: Rig, rate: int, seconds: float) -> Latency:
    """Events at a paced ``rate`` after the ones already sent; HQ's received_at - edge ts."""
    wait_until(lambda: rig.store.outbox_depth() == 0, 30, "the outbox to drain first")
    before, n = rig.hwm(), int(rate * seconds)
    started = time.monotonic()
    for i in range(n):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rig.store.append_event(TOPIC, event_data(before + i))
    achieved = n / (time.monotonic() - started)
    rig.wait_for_hq(before + n, timeout_s=60)
    values = sorted(1000 * row[0] for row in rig.hq_rows(
        "SELECT received_at - ts FROM messages WHERE edge = ? AND seq > ?", before))
    return Latency(n, achieved, percentile(values, 0.50), percentile(values, 0.99), values[-1])


def live_sync(workdir: Path, mode: str, n: int, seconds: float) -> tuple[Throughput, Latency]:
    """End-to-end throughput, then latency at 500/s, on one rig (store, publisher in ``mode``)."""
    with Rig(workdir, mode, mode) as rig:
        return end_to_end(rig, n), paced_latency(rig, PACED_RATE, seconds)


def catch_up(workdir: Path, mode: str, n: int) -> CatchUp:
    with Rig(workdir, "NORMAL", mode) as rig:
        rig.broker.stop()
        wait_until(lambda: not rig.publisher.connected, 10, "the publisher to see the broker go")
        write_events(rig.store, n)
        subscribed_before = rig.ingest.subscriptions()
        started, started_wall = time.monotonic(), time.time()
        rig.broker.start()
        marks: dict[str, float] = {}

        def progress() -> bool:
            now = time.monotonic()
            if rig.publisher.connected:
                marks.setdefault("publisher", now)
            if rig.ingest.subscriptions() > subscribed_before:
                marks.setdefault("ingest", now)
            return rig.hwm() >= n

        done = wait_until(progress, max(120.0, n / 100), f"HQ to catch up {n:,} events")
        first_wall = rig.hq_rows("SELECT min(received_at) FROM messages WHERE edge = ?")[0][0]
        first_row = first_wall - started_wall
        return CatchUp(n, done - started, marks.get("publisher", math.nan) - started,
                       marks.get("ingest", math.nan) - started, first_row,
                       (done - started) - first_row, rig.published() - n)


# --- report -----------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Results:
    sizes: Sizes
    ceiling: dict[str, float]           # set-up -> best msg/s
    alone: dict[str, float]             # mode -> append_event/s
    e2e: dict[str, Throughput]
    paced: dict[str, Latency]
    caught: dict[str, CatchUp]

    @property
    def best(self) -> float:
        return max(self.ceiling.values())

    @property
    def scale(self) -> float:
        """Catch-up seconds for 100,000 per second measured (5 in --quick)."""
        return CATCHUP_TARGET_N / self.sizes.catchup


def measure(sizes: Sizes, work: Path) -> Results:
    ceiling = {name: 0.0 for name in SETUPS}
    for round_ in range(sizes.ceiling_rounds):  # interleaved; the best round of each
        for name, threaded in SETUPS.items():
            rate = ceiling_run(work / f"bare-{name}{round_}", sizes.ceiling, threaded)
            ceiling[name] = max(ceiling[name], rate)
    alone = {mode: outbox_alone(work, mode, sizes.outbox_alone) for mode in MODES}
    live = {mode: live_sync(work / f"live-{mode}", mode, sizes.end_to_end, sizes.paced_s)
            for mode in MODES}
    caught = {mode: catch_up(work / f"catchup-{mode}", mode, sizes.catchup) for mode in MODES}
    return Results(sizes, ceiling, alone, {m: r[0] for m, r in live.items()},
                   {m: r[1] for m, r in live.items()}, caught)


def print_ceiling(r: Results) -> None:
    rounds = f", best of {r.sizes.ceiling_rounds} rounds" if r.sizes.ceiling_rounds > 1 else ""
    print(f"ceiling: bare paho pair, QoS 1, {r.sizes.ceiling:,} messages of "
          f"{len(bare_payload())} B{rounds}")
    print(f"  (a) in-flight 20, loop_start() on both       {r.ceiling['a']:>9,.0f} msg/s")
    print(f"  (b) in-flight 1000, one thread each, loop()  {r.ceiling['b']:>9,.0f} msg/s")
    faster = "(a)" if r.ceiling["a"] >= r.ceiling["b"] else "(b)"
    print(f"  ceiling = {faster}: {r.best:,.0f} msg/s")


Row = tuple[str, Callable[[str], str], str]  # label, cell per mode, target


def live_rows(r: Results) -> list[Row]:
    e2e, paced = r.e2e, r.paced
    cpu = ("writer", "publisher", "broker", "ingest")
    return [
        ("outbox alone, append_event/s", lambda m: f"{r.alone[m]:,.0f}", "(scale)"),
        (f"end-to-end events/s ({r.sizes.end_to_end:,})", lambda m: f"{e2e[m].per_s:,.0f}",
         f">= {TARGET_RATIO * r.best:,.0f}"),
        ("  ratio vs ceiling", lambda m: f"{e2e[m].per_s / r.best:.2f}x", f">= {TARGET_RATIO}x"),
        ("  edge write phase events/s", lambda m: f"{e2e[m].write_per_s:,.0f}", ""),
        ("  CPU s writer/publisher/broker/ingest",
         lambda m: "/".join(f"{e2e[m].cpu[k]:.1f}" for k in cpu), ""),
        ("    in wall s", lambda m: f"{e2e[m].wall_s:.1f}", ""),
        ("  resent by the publisher", lambda m: f"{e2e[m].resent:,}", ""),
        (f"latency at {PACED_RATE}/s ({r.sizes.paced_s:.0f} s) p50 ms",
         lambda m: f"{paced[m].p50_ms:.2f}", ""),
        ("  p99 ms", lambda m: f"{paced[m].p99_ms:.2f}", f"<= {TARGET_P99_MS}"),
        ("  max ms", lambda m: f"{paced[m].max_ms:.2f}", ""),
        ("  achieved write rate/s", lambda m: f"{paced[m].achieved_rate:,.0f}", ""),
    ]


def catch_up_rows(r: Results) -> list[Row]:
    c = r.caught
    measured = (f"catch-up {r.sizes.catchup:,} queued, s", lambda m: f"{c[m].total_s:.2f}",
                f"<= {TARGET_CATCHUP_S:.0f}" if r.scale == 1 else "")
    rows = [measured]
    if r.scale != 1:
        rows.append((f"  100,000 queued, s (extrapolated x{r.scale:g})",
                     lambda m: f"{c[m].total_s * r.scale:.2f}", f"<= {TARGET_CATCHUP_S:.0f}"))
    return rows + [
        ("  publisher / ingest reconnected at s",
         lambda m: f"{c[m].publisher_connected_s:.2f} / {c[m].ingest_subscribed_s:.2f}", ""),
        ("  first row at HQ at s", lambda m: f"{c[m].first_row_s:.2f}", ""),
        ("  drain s (events/s)", lambda m: f"{c[m].drain_s:.2f} ({c[m].n / c[m].drain_s:,.0f})",
         ""),
        ("  resent by the publisher", lambda m: f"{c[m].resent:,}", ""),
    ]


def print_table(rows: list[Row]) -> None:
    header = f"{'measure':<44} | {'NORMAL':>22} | {'FULL':>22} | {'target (NORMAL)':>15}"
    print(header)
    print("-" * len(header))
    for label, cell, target in rows:
        print(f"{label:<44} | {cell('NORMAL'):>22} | {cell('FULL'):>22} | {target:>15}")


def print_verdicts(r: Results) -> None:
    normal, full = r.e2e["NORMAL"], r.e2e["FULL"]
    ratio = normal.per_s / r.best
    p99 = r.paced["NORMAL"].p99_ms
    catchup = r.caught["NORMAL"].total_s * r.scale
    note = f" (extrapolated from {r.sizes.catchup:,} x{r.scale:g})" if r.scale != 1 else ""
    print(f"{verdict(ratio >= TARGET_RATIO)}  end-to-end >= {TARGET_RATIO}x the ceiling: "
          f"{normal.per_s:,.0f}/s = {ratio:.2f}x (FULL {full.per_s:,.0f}/s = "
          f"{full.per_s / r.best:.2f}x)")
    print(f"{verdict(p99 <= TARGET_P99_MS)}  p99 <= {TARGET_P99_MS} ms at {PACED_RATE}/s: "
          f"{p99:.2f} ms (FULL {r.paced['FULL'].p99_ms:.2f} ms)")
    print(f"{verdict(catchup <= TARGET_CATCHUP_S)}  100,000 queued caught up in <= "
          f"{TARGET_CATCHUP_S:.0f} s: {catchup:.2f} s{note} (FULL "
          f"{r.caught['FULL'].total_s * r.scale:.2f} s)")
    print(f"RESULT events_per_s={normal.per_s:.0f} ratio_vs_ceiling={ratio:.2f} "
          f"p99_ms_at_500={p99:.2f} catchup_s_100k={catchup:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts; under 30 s")
    parser.add_argument("--publisher", choices=sorted(PUBLISHERS), default="process",
                        help="the publisher in a child process (the product's way; default) or "
                             "on a thread of the writer's process (for comparison)")
    parser.add_argument("--publisher-class", metavar="MODULE:CLASS",
                        help="the class the child process runs (default: SyncPublisher)")
    args = parser.parse_args()
    # a SIGTERM unwinds like an error, so the brokers and ingest processes are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # the catch-up stops the broker on purpose: the publisher's reconnect warnings are expected
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    sizes = QUICK if args.quick else FULL_RUN
    Rig.publisher_kind = args.publisher
    if args.publisher_class:
        if args.publisher != "process":
            parser.error("--publisher-class goes with --publisher process")
        Rig.publisher_class = args.publisher_class
    version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    print(f"Edge -> HQ sync: outbox -> {version.splitlines()[0] if version else MOSQUITTO} "
          f"(QoS 1) -> ingest process -> HQ SQLite; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start (anything else running skews every figure)"
          f"{' (quick)' if args.quick else ''}; publisher: {args.publisher}"
          f"{f' ({args.publisher_class})' if args.publisher_class else ''}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        try:
            results = measure(sizes, Path(tmp))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print_ceiling(results)
    print()
    print_table(live_rows(results) + catch_up_rows(results))
    print()
    print_verdicts(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
