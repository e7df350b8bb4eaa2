"""Edge CPU under load: hundreds of concurrent calls through the HIL simulator, over the real wire.

Run from the repository root::

    .venv/bin/python tests/bench/edge_load.py            # 500 calls, 60 s talk each (~1.5 min)
    .venv/bin/python tests/bench/edge_load.py --quick    # 100 calls, 10 s talk (~15 s)

What runs where:

* the **edge** is a separate process, ``python -m edge.cli run --config <generated toml>``, so its
  CPU (user + system, all threads, via psutil) is measured on its own. Its config is generated:
  ``calls + 5 %`` agents (at least +10), one extension each, split over two groups
  (``sales``: extension_order, ``service``: least_calls, chosen by DID), FastAGI workers raised to
  ``calls + 64``, the store in a temporary directory, logging at the daemon's default INFO level to a
  file there;
* the **simulated Asterisk** (``hil.pbx.PbxSimulator``) runs in this process: an E1 span with one
  DAHDI channel per call, one desk phone per agent (answers ~1 s after it rings, the agent hangs
  up after the scripted talk time), and the trunk calls, all arriving within a short window so
  that every call is in talk at the same time. Edge and simulator talk AMI and FastAGI over
  loopback TCP, one FastAGI session per call, exactly as with a real Asterisk 22.

The measured window starts when the simulator's world starts (the edge is already up and logged
in to AMI, its idle CPU rate measured just before) and ends when the edge has written the last
CDR. Definitions:

* ``call-seconds (virtual)``: sum over calls of bridged -> unbridged time in scripted time (what
  the scripts say: ~60 s per call in the full run);
* ``call-seconds (real)``: the same in wall-clock seconds (virtual x time_scale; identical at the
  default time_scale 1.0);
* **edge CPU ms per call-second** = edge CPU ms over the window / real call-seconds. This is the
  figure ``measure_edge_cpu`` returns and ``tests/bench/acd.py`` prints as
  ``edge_cpu_ms_per_call_s``. 1 ms per call-second = 0.1 % of one core per live call. Most of the
  edge's work is per call (offer, answer, DialEnd, CDR), not per second of talk, so the figure
  falls as calls get longer: the table also shows CPU ms per call and the rate during steady talk.

The default time_scale is 1.0 (real time) so that the per-real-second figure is what a branch box
would see; ``--time-scale 0.05`` runs the same scripts 20x faster (the per-virtual-call-second
figure is then the comparable one).

The last line is machine-readable: ``RESULT edge_cpu_ms_per_call_s=... concurrent_calls=...
cdrs_written=... calls=...``. The exit status is 1 when a call was lost, got no CDR, or the peak
concurrency fell short of the number of calls.
"""
# No ``from __future__ import annotations``: acd.py loads this file with importlib without
# registering it in sys.modules, and dataclasses need the module there to read string annotations.
import argparse
import logging
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from hil.pbx.scripts import E1, PhoneScript, RingBehaviour, TrunkCall, TrunkSpan, World  # noqa: E402
from hil.pbx.simulator import PbxSimulator  # noqa: E402

AMI_USER, AMI_SECRET = "edge", "bench-secret"
CPU_TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")  # psutil's cpu_times resolution (10 ms on Linux)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<rest>.*)$")
SERVICE_DID, SALES_DID = "95001", "95002"
FIRST_EXTENSION = 10_000


@dataclass(frozen=True)
class LoadSpec:
    calls: int
    talk_ms: int               # scripted: the agent hangs up this long after answering
    arrive_ms: int             # scripted: calls arrive evenly spread over this window
    answer_ms: int = 1_000     # scripted: the desk phone answers this long after it rings
    time_scale: float = 1.0    # simulator and edge: real seconds per scripted second
    idle_s: float = 3.0        # real seconds of idle edge CPU measured before the load
    log_level: str = "INFO"    # the edge daemon's default
    label: str = "full"

    @property
    def agents(self) -> int:
        return self.calls + max(10, self.calls // 20)

    @property
    def workers(self) -> int:
        return self.calls + 64


FULL = LoadSpec(calls=500, talk_ms=60_000, arrive_ms=5_000, label="full")
QUICK = LoadSpec(calls=100, talk_ms=10_000, arrive_ms=1_000, idle_s=1.0, label="quick")


@dataclass
class LoadResult:
    spec: LoadSpec
    calls_arrived: int = 0
    calls_bridged: int = 0
    calls_rejected: int = 0
    agi_failed: int = 0
    peak_talking: int = 0
    rings: int = 0
    ring_statuses: Counter = field(default_factory=Counter)
    answer_lag_ms_p90: float | None = None  # real ms the scripted answer came late (simulator load)
    peak_agi_sessions: int = 0
    peak_live_channels: int = 0
    talk_virtual_s: float = 0.0
    talk_real_s: float = 0.0
    wall_s: float = 0.0
    edge_cpu_ms: float = 0.0
    idle_cpu_ms_per_s: float = 0.0
    idle_precise: bool = False  # from schedstat (ns), else from cpu_times ticks
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # name, wall s, cpu ms
    cdrs: int = 0
    cdrs_answered: int = 0
    cdr_talk_s: float = 0.0
    missing_cdrs: list[str] = field(default_factory=list)
    dispositions: Counter = field(default_factory=Counter)
    edge_peak_threads: int = 0
    edge_peak_fds: int = 0
    edge_peak_rss_mb: float = 0.0
    edge_nofile: tuple[int, int] = (0, 0)
    edge_log_levels: Counter = field(default_factory=Counter)
    edge_log_samples: list[str] = field(default_factory=list)
    edge_exit: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def cpu_per_real_call_s(self) -> float | None:
        return self.edge_cpu_ms / self.talk_real_s if self.talk_real_s else None

    @property
    def cpu_per_virtual_call_s(self) -> float | None:
        return self.edge_cpu_ms / self.talk_virtual_s if self.talk_virtual_s else None

    @property
    def cpu_per_call(self) -> float | None:
        return self.edge_cpu_ms / self.calls_bridged if self.calls_bridged else None

    @property
    def ok(self) -> bool:
        return not self.problems


# --- set-up ---------------------------------------------------------------------------------------

def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (the edge child inherits it): each call holds a
    FastAGI socket on both sides plus the edge's wake-up socketpair."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def extension(i: int) -> str:
    return str(FIRST_EXTENSION + i)


def edge_toml(spec: LoadSpec, ami_port: int, agi_port: int, store: Path) -> str:
    lines = [
        "[edge]",
        'id = "bench-load"',
        f"time_scale = {spec.time_scale!r}",
        f'store = "{store.as_posix()}"',
        "",
        "[asterisk]",
        'ami_host = "127.0.0.1"',
        f"ami_port = {ami_port}",
        f'ami_user = "{AMI_USER}"',
        f'ami_secret = "{AMI_SECRET}"',
        'fastagi_host = "127.0.0.1"',
        f"fastagi_port = {agi_port}",
        f"fastagi_workers = {spec.workers}",
        "",
        "[recording]",  # this bench measures call handling; tests/bench/recording.py encoding
        "enabled = false",
        "",
        "[api]",
        "enabled = false",
        "",
        "[[groups]]",
        'name = "sales"',
        'strategy = "extension_order"',
        "ring_timeout_s = 20",
        "",
        "[[groups]]",
        'name = "service"',
        'strategy = "least_calls"',
        "ring_timeout_s = 20",
        "",
        "[routing]",
        'default_group = "sales"',
        "",
        "[routing.did_groups]",
        f'"{SERVICE_DID}" = "service"',
        "",
    ]
    for i in range(spec.agents):
        lines += [
            "[[agents]]",
            f'id = "a{i}"',
            f'name = "agent {i}"',
            f'extension = "{extension(i)}"',
            f'groups = ["{"service" if i % 2 else "sales"}"]',
            "wrap_up_s = 5",
            "",
        ]
    return "\n".join(lines)


def build_world(spec: LoadSpec) -> World:
    ring = RingBehaviour(answer_after_ms=spec.answer_ms, hangup_after_ms=spec.talk_ms)
    phones = {extension(i): PhoneScript(extension(i), f"agent {i}", [ring]) for i in range(spec.agents)}
    step = spec.arrive_ms / max(1, spec.calls - 1) if spec.calls > 1 else 0
    calls = [TrunkCall(id=f"c{i}", caller=f"139{i:08d}", did=SERVICE_DID if i % 2 else SALES_DID,
                       at_ms=int(i * step), profile=E1)
             for i in range(spec.calls)]
    world = World(phones=phones, trunks=[TrunkSpan(E1, list(range(1, spec.calls + 1)))], calls=calls)
    world.validate()
    return world


def start_edge(config: Path, log_file: Path, log_level: str, workdir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config),
         "--log-level", log_level, "--log-file", str(log_file)],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)


def stop_edge(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def count_cdrs(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1.0) as db:
            return int(db.execute("SELECT count(*) FROM cdrs").fetchone()[0])
    except sqlite3.Error:
        return 0


def cpu_ms(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return (times.user + times.system) * 1000.0


def run_ns(pid: int) -> int | None:
    """CPU time of the process's live threads in ns (Linux ``/proc/<pid>/task/*/schedstat``);
    precise, unlike the 10 ms ticks of ``cpu_times``, but it forgets threads that have exited, so
    it only serves the idle baseline (no thread comes or goes then). None where unavailable."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


# --- the run --------------------------------------------------------------------------------------

class Sampler:
    """Polls the edge process and the simulator while the load runs (in this process)."""

    def __init__(self, sim: PbxSimulator, edge: psutil.Process, result: LoadResult) -> None:
        self.sim, self.edge, self.result = sim, edge, result
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, edge cpu ms, talking)

    def sample(self) -> int:
        sim, r = self.sim, self.result
        talking = len(sim.records("bridged")) - len(sim.records("unbridged"))
        with sim.pbx.lock:
            r.peak_agi_sessions = max(r.peak_agi_sessions, len(sim.pbx.agi_sessions))
            r.peak_live_channels = max(r.peak_live_channels, len(sim.pbx.registry.live))
        try:
            with self.edge.oneshot():
                r.edge_peak_threads = max(r.edge_peak_threads, self.edge.num_threads())
                r.edge_peak_fds = max(r.edge_peak_fds, self.edge.num_fds())
                r.edge_peak_rss_mb = max(r.edge_peak_rss_mb, self.edge.memory_info().rss / 2**20)
                cpu = cpu_ms(self.edge)
        except psutil.Error:
            cpu = self.samples[-1][1] if self.samples else 0.0
        self.samples.append((time.monotonic(), cpu, talking))
        return talking


def run_load(spec: LoadSpec, keep: bool = False, out=sys.stdout) -> LoadResult:
    result = LoadResult(spec)
    raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="edge-load-"))
    store, log_file, config = workdir / "edge.sqlite3", workdir / "edge.log", workdir / "edge.toml"
    agi_port = free_port()
    sim = PbxSimulator(build_world(spec), edge_host="127.0.0.1", agi_port=agi_port, ami_port=0,
                       time_scale=spec.time_scale, ami_users={AMI_USER: AMI_SECRET})
    proc: subprocess.Popen | None = None
    try:
        sim.start(scripts=False)
        config.write_text(edge_toml(spec, sim.ami_port, agi_port, store), encoding="utf-8")
        proc = start_edge(config, log_file, spec.log_level, workdir)
        edge = psutil.Process(proc.pid)
        result.edge_nofile = tuple(edge.rlimit(psutil.RLIMIT_NOFILE))  # inherited from us
        login = sim.wait_for(lambda: sim.records("ami", what="login", user=AMI_USER) or proc.poll() is not None,
                             timeout=30)
        if proc.poll() is not None or not login:
            output = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
            raise RuntimeError(f"edge did not start and log in to AMI (exit {proc.poll()}): {output[-2000:]}")
        time.sleep(0.3)  # let the start-up settle (store open, first ticks)

        # idle baseline: the edge up, logged in, no calls
        idle_ns0, idle_cpu0, idle_t0 = run_ns(proc.pid), cpu_ms(edge), time.monotonic()
        time.sleep(spec.idle_s)
        idle_ns1, idle_cpu1, idle_wall = run_ns(proc.pid), cpu_ms(edge), time.monotonic() - idle_t0
        if idle_ns0 is not None and idle_ns1 is not None:
            result.idle_cpu_ms_per_s, result.idle_precise = (idle_ns1 - idle_ns0) / 1e6 / idle_wall, True
        else:
            result.idle_cpu_ms_per_s = (idle_cpu1 - idle_cpu0) / idle_wall

        sampler = Sampler(sim, edge, result)
        sampler.sample()
        t0, cpu0 = sampler.samples[0][0], sampler.samples[0][1]
        sim.start_world()
        real = spec.time_scale / 1000.0
        deadline = t0 + (spec.arrive_ms + spec.answer_ms + spec.talk_ms) * real + 60 + spec.calls * 0.05
        done = False
        while time.monotonic() < deadline:
            sampler.sample()
            if proc.poll() is not None:
                result.problems.append(f"edge exited early with status {proc.returncode}")
                break
            ended = {r.get("call") for r in sim.records("hung_up", role="customer")}
            ended |= {r.get("call") for r in sim.records("call_rejected")}
            if len(ended) >= spec.calls and sim.idle():
                done = True
                break
            time.sleep(0.2)
        if not done and not result.problems:
            result.problems.append(f"calls still running at the deadline ({deadline - t0:.0f} s)")
        cdr_deadline = time.monotonic() + 15
        while count_cdrs(store) < spec.calls and time.monotonic() < cdr_deadline and proc.poll() is None:
            time.sleep(0.05)
        sampler.sample()
        t_end, cpu_end = sampler.samples[-1][0], sampler.samples[-1][1]
        result.wall_s = t_end - t0
        result.edge_cpu_ms = cpu_end - cpu0
        result.phases = phases(sampler.samples, spec.calls)
    except BaseException:
        print(f"edge work directory kept: {workdir}", file=sys.stderr)
        raise
    finally:  # the edge first, so it does not see its AMI link drop
        if proc is not None:
            result.edge_exit = stop_edge(proc)
        sim.stop()
    analyse(sim, spec, result)
    read_cdrs(sim, store, result)
    read_log(log_file, result)
    check(result)
    if result.ok and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"edge work directory kept: {workdir} (edge.toml, edge.log, edge.sqlite3)", file=out)
    return result


def phases(samples: list[tuple[float, float, int]], calls: int) -> list[tuple[str, float, float]]:
    """Split the window at the first sample with every call talking and at the first one after
    that with fewer: set-up (offers, rings, answers), steady talk, tear-down (hang-ups, CDRs)."""
    if len(samples) < 2:
        return []
    peak = max(s[2] for s in samples)
    full = next((i for i, s in enumerate(samples) if s[2] == peak), 0)
    drop = next((i for i in range(full, len(samples)) if samples[i][2] < peak), len(samples) - 1)
    drop = max(full, drop - 1)
    cuts = [("set-up", 0, full), (f"talk ({peak} live)", full, drop), ("tear-down", drop, len(samples) - 1)]
    return [(name, samples[b][0] - samples[a][0], samples[b][1] - samples[a][1]) for name, a, b in cuts]


def analyse(sim: PbxSimulator, spec: LoadSpec, result: LoadResult) -> None:
    """Peak concurrency and call-seconds from the simulator's records (scripted milliseconds)."""
    result.calls_arrived = len(sim.records("call_arrived"))
    result.calls_rejected = len(sim.records("call_rejected"))
    result.agi_failed = len(sim.records("agi_failed"))
    opened: dict[str, float] = {}
    talking = peak = 0
    events = sorted(sim.records("bridged") + sim.records("unbridged"), key=lambda r: r.seq)
    for record in events:
        call = record.get("call")
        if record.kind == "bridged":
            opened[call] = record.t_ms
            talking += 1
            peak = max(peak, talking)
        elif call in opened:
            talking -= 1
            result.talk_virtual_s += (record.t_ms - opened.pop(call)) / 1000.0
    result.calls_bridged = len({r.get("call") for r in sim.records("bridged")})
    rang = sim.records("rang")
    result.rings = len(rang)
    result.ring_statuses = Counter(r.get("status") for r in sim.records("dial_end") if r.get("extension"))
    first_ring: dict[str, float] = {}
    for record in rang:
        first_ring.setdefault(record.get("call"), record.t_ms)
    lags = sorted((r.t_ms - first_ring[r.get("call")] - spec.answer_ms) * spec.time_scale
                  for r in sim.records("answered") if r.get("call") in first_ring)
    if lags:
        result.answer_lag_ms_p90 = lags[int(len(lags) * 0.9)]
    result.peak_talking = peak
    result.talk_real_s = result.talk_virtual_s * spec.time_scale


def read_cdrs(sim: PbxSimulator, store: Path, result: LoadResult) -> None:
    """Every trunk call's channel uniqueid (the edge's call_id) must have a CDR row."""
    uniqueids = {ch.uniqueid: ch.call for ch in sim.channels(live=False) if ch.role == "customer"}
    if not store.exists():
        result.missing_cdrs = sorted(uniqueids.values())
        return
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT call_id, disposition, answered_at, talk_s FROM cdrs").fetchall()
    result.cdrs = len(rows)
    seen = set()
    for call_id, disposition, answered_at, talk_s in rows:
        seen.add(call_id)
        result.dispositions[disposition] += 1
        if answered_at is not None:
            result.cdrs_answered += 1
            result.cdr_talk_s += talk_s or 0.0
    result.missing_cdrs = sorted(call for uid, call in uniqueids.items() if uid not in seen)


def read_log(log_file: Path, result: LoadResult) -> None:
    if not log_file.exists():
        return
    samples: dict[str, str] = {}
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match is None:  # traceback lines
            continue
        level = match["level"]
        result.edge_log_levels[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL"):
            thread_and_logger = match["rest"].split(" ", 2)
            samples.setdefault(" ".join(thread_and_logger[1:])[:70], line)
    result.edge_log_samples = list(samples.values())[:8]


def check(result: LoadResult) -> None:
    spec = result.spec
    if result.calls_arrived < spec.calls:
        result.problems.append(f"only {result.calls_arrived} of {spec.calls} calls arrived "
                               f"({result.calls_rejected} rejected: no free trunk)")
    if result.agi_failed:
        result.problems.append(f"{result.agi_failed} FastAGI connections to the edge failed")
    if result.calls_bridged < spec.calls:
        result.problems.append(f"only {result.calls_bridged} of {spec.calls} calls reached an agent")
    if result.rings > spec.calls:
        result.problems.append(
            f"{result.rings} rings for {spec.calls} calls (Dial results: {dict(result.ring_statuses)}): "
            "the simulator fell behind its script (answers came after the ring timeout); the edge "
            "did extra work, so use a larger --time-scale or fewer calls")
    if result.peak_talking < spec.calls:
        result.problems.append(f"peak concurrency {result.peak_talking} < {spec.calls} calls")
    if result.missing_cdrs:
        result.problems.append(f"{len(result.missing_cdrs)} calls have no CDR "
                               f"(e.g. {', '.join(result.missing_cdrs[:5])})")
    if result.cdrs != spec.calls:
        result.problems.append(f"{result.cdrs} CDRs written for {spec.calls} calls")
    if result.edge_exit not in (0, None):
        result.problems.append(f"edge exited with status {result.edge_exit}")


# --- report ---------------------------------------------------------------------------------------

def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(result: LoadResult, out=sys.stdout) -> None:
    spec = result.spec
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"Edge under load ({spec.label}): {spec.calls} trunk calls over {spec.arrive_ms / 1000:g} s "
      f"(scripted), {spec.agents} agents, answer after {spec.answer_ms / 1000:g} s, talk "
      f"{spec.talk_ms / 1000:g} s, time_scale {spec.time_scale:g}, FastAGI workers {spec.workers}")
    rows = [
        ("calls arrived / reached an agent", f"{result.calls_arrived} / {result.calls_bridged}"),
        ("peak concurrent calls (bridged)", f"{result.peak_talking}"),
        ("rings (Dial attempts) / Dial results", f"{result.rings} / "
                                                 + ", ".join(f"{k}={v}" for k, v in sorted(result.ring_statuses.items()))),
        ("simulator answer lag p90, real ms", fmt(result.answer_lag_ms_p90, ".0f")),
        ("peak FastAGI sessions / live channels", f"{result.peak_agi_sessions} / {result.peak_live_channels}"),
        ("call-seconds of talk, virtual (scripted)", f"{result.talk_virtual_s:,.1f}"),
        ("call-seconds of talk, real (wall)", f"{result.talk_real_s:,.1f}"),
        ("measured window, wall s", f"{result.wall_s:.1f}"),
        ("edge CPU ms in the window (user+sys)", f"{result.edge_cpu_ms:,.0f}"),
        ("edge CPU, mean % of one core", fmt(result.edge_cpu_ms / result.wall_s / 10 if result.wall_s else None, ".1f")),
        ("edge idle CPU ms/s before the load", f"{result.idle_cpu_ms_per_s:.2f} (schedstat, {spec.idle_s:g} s)"
         if result.idle_precise else f"{result.idle_cpu_ms_per_s:.1f} (+/- {CPU_TICK_MS / spec.idle_s:.1f}: "
                                     f"{CPU_TICK_MS:g} ms ticks)"),
        ("edge CPU ms per call", fmt(result.cpu_per_call, ".2f")),
        ("edge CPU ms per real call-second", fmt(result.cpu_per_real_call_s)),
        ("edge CPU ms per virtual call-second", fmt(result.cpu_per_virtual_call_s)),
        ("CDRs written / answered / calls", f"{result.cdrs} / {result.cdrs_answered} / {spec.calls}"),
        ("CDR dispositions", ", ".join(f"{k}={v}" for k, v in sorted(result.dispositions.items())) or "-"),
        ("CDR talk_s sum (edge's clock)", f"{result.cdr_talk_s:,.1f}"),
        ("edge peak threads / fds / RSS MB", f"{result.edge_peak_threads} / {result.edge_peak_fds} / "
                                             f"{result.edge_peak_rss_mb:.0f}"),
        ("edge RLIMIT_NOFILE soft / hard", "{} / {}".format(*result.edge_nofile)),
        ("edge log lines by level", ", ".join(f"{k}={v}" for k, v in sorted(result.edge_log_levels.items()))),
    ]
    width = max(len(name) for name, _ in rows)
    p("-" * (width + 20))
    for name, value in rows:
        p(f"{name:<{width}} | {value}")
    p("-" * (width + 20))
    if result.phases:
        p(f"{'phase':<{width}} | {'wall s':>7} {'CPU ms':>9} {'CPU ms/s':>9} {'above idle, ms/s per live call':>31}")
        for name, wall, cpu in result.phases:
            rate = cpu / wall if wall > 0 else 0.0
            per_call = ""
            if name.startswith("talk") and result.peak_talking:
                per_call = f"{max(0.0, rate - result.idle_cpu_ms_per_s) / result.peak_talking:.4f}"
            p(f"{name:<{width}} | {wall:>7.1f} {cpu:>9,.0f} {rate:>9.1f} {per_call:>31}")
    for line in result.edge_log_samples:
        p(f"  edge log: {line[:200]}")
    missing_ok = "every call has a CDR (none lost)" if not result.missing_cdrs else \
        f"{len(result.missing_cdrs)} CDRs LOST"
    p(f"CDR check: {result.cdrs} CDRs for {spec.calls} calls: {missing_ok}")
    for problem in result.problems:
        p(f"PROBLEM: {problem}")


def result_line(result: LoadResult) -> str:
    return (f"RESULT edge_cpu_ms_per_call_s={fmt(result.cpu_per_real_call_s)} "
            f"concurrent_calls={result.peak_talking} cdrs_written={result.cdrs} calls={result.spec.calls}")


def measure_edge_cpu(quick: bool) -> float | None:
    """Edge CPU milliseconds per real call-second with ``spec.calls`` concurrent calls (500, or 100
    with ``quick``); prints the table. None when the edge could not be measured."""
    spec = QUICK if quick else FULL
    try:
        result = run_load(spec)
    except Exception as exc:  # noqa: BLE001 - the caller prints n/a; say why here
        print(f"edge load measurement failed: {exc}", file=sys.stderr)
        return None
    report(result)
    return result.cpu_per_real_call_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 calls, 10 s talk; about 15 s")
    parser.add_argument("--calls", type=int, help="concurrent trunk calls")
    parser.add_argument("--talk-s", type=float, help="scripted talk time per call")
    parser.add_argument("--arrive-s", type=float, help="scripted window the calls arrive in")
    parser.add_argument("--time-scale", type=float, help="real seconds per scripted second")
    parser.add_argument("--log-level", help="the edge's log level (default INFO, as the daemon)")
    parser.add_argument("--keep", action="store_true", help="keep the edge's work directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s sim %(threadName)s %(name)s: %(message)s")
    spec = QUICK if args.quick else FULL
    if args.calls:
        spec = replace(spec, calls=args.calls)
    if args.talk_s is not None:
        spec = replace(spec, talk_ms=int(args.talk_s * 1000))
    if args.arrive_s is not None:
        spec = replace(spec, arrive_ms=int(args.arrive_s * 1000))
    if args.time_scale:
        spec = replace(spec, time_scale=args.time_scale)
    if args.log_level:
        spec = replace(spec, log_level=args.log_level)
    result = run_load(spec, keep=args.keep)
    report(result)
    print(result_line(result))
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
