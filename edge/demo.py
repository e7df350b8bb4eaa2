"""``edge demo``: a branch edge driven by the HIL PBX simulator, live in the terminal, no set-up.

One process holds both sides, talking real TCP on loopback like a branch box and its Asterisk:

* the edge: ``EdgeRuntime`` with the shipped example branch (``edge/data/edge.example.toml``),
  adjusted for the demo — free loopback ports for AMI and FastAGI, a throw-away store in a temp
  dir, the demo's ``time_scale``, and a few more trunk channels so callers rarely find every line
  busy;
* the PBX: ``PbxSimulator`` serving AMI and opening a FastAGI session to the edge per call, with a
  desk phone for every configured agent (answers after 1–4 s, talks 20–90 s, sometimes lets it
  ring) and a light Poisson stream of trunk calls (``hil.pbx.cli.random_calls``) from Chinese
  mobiles and landlines of several provinces, a few VIP and blacklisted numbers from the config,
  returning callers, and callers who give up while queued. An agent the edge sets 示忙 (auto-busy
  after missed rings) takes a short break and dials ``##7`` on their desk phone to come back.

* HQ (``edge.demo_hq``, unless ``hq=False`` / ``--no-hq``): Mosquitto in dynamic-security mode,
  the aggregator under gunicorn, an ingest consumer and the downlink dispatcher
  (``hil.stack.HqStack``), with demo users and a department tree; the edge is enrolled through
  HQ's enrollment endpoint and runs with ``[sync]`` and ``[upload]`` on, so its CDRs, events and
  recordings travel to HQ as they would from a branch. HQ's URL, the broker port and the demo
  logins are printed before the live screen and again in the summary.

The screen (``rich``) shows agents, queues, live calls, the last CDRs from the store and recent
notifications, ~4 times a second. ``plain`` (or a stdout that is not a terminal) prints one line per
CDR / notification instead. Ctrl-C, SIGTERM or ``calls`` completed calls stop it; a summary follows.
All times shown are simulated (the edge's and the simulator's clocks run ``1 / time_scale`` times
faster than the wall).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import queue
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO
from zoneinfo import ZoneInfo

from edge.commands import Command, Notify, WriteCdr
from edge.config import DATA_DIR, EXAMPLE_PATH, EdgeConfig, parse_config
from edge.core import AgentView, CallView, QueueView
from edge.demo_hq import DemoHq, wait_for_drain
from edge.errors import EdgeError
from edge.numbers import national_number
from edge.runtime import EdgeRuntime
from hil.pbx.cli import random_calls
from hil.pbx.scripts import ANALOG, E1, PhoneDial, PhoneScript, RingBehaviour, TrunkSpan, World
from hil.pbx.simulator import PbxSimulator
from hil.stack import HqStack, StackError

log = logging.getLogger(__name__)

REFRESH_S = 0.25          # the live screen redraws ~4 times a second
LAST_CDRS = 8
LAST_EVENTS = 5
LOGIN_TIMEOUT_S = 10.0    # real seconds for the edge to log in to the simulator's AMI
SNAPSHOT_TIMEOUT_S = 1.0
OUTBOX_EVERY_S = 1.0      # the live screen reads the outbox depth this often
OUTBOX_BACKLOG = 20       # more rows than this waiting for HQ shows in yellow

# Trunk lines added to the example's three (1, 2 fxo; 3 pri) so a burst of callers finds a line.
EXTRA_FXO = range(4, 9)
EXTRA_PRI = range(9, 12)
PROFILES = {"fxo": ANALOG, "pri": E1}   # edge config profile -> simulator trunk profile

# 号段: 7-digit mobile prefixes and area codes whose 归属地 the edge resolves (prefix table or the
# phonenumbers geocoder); tests/edge/test_demo.py checks they still do.
MOBILE_PREFIXES = (
    "1371111",  # 广东广州
    "1892345",  # 广东深圳
    "1379876",  # 广东东莞
    "1660755",  # 广东深圳 (prefix table)
    "1380013",  # 北京
    "1592123",  # 上海
    "1802123",  # 江苏苏州
    "1398001",  # 四川成都
    "1370571",  # 浙江杭州
    "1920571",  # 浙江杭州 (prefix table)
    "1354567",  # 湖北荆州
    "1316450",  # 辽宁大连
)
AREA_CODES = ("010", "020", "021", "025", "027", "028", "029", "0571", "0755", "0769")

SHARE_VIP = 0.05          # of new calls: a VIP number from [[routing.vip]]
SHARE_BLACKLIST = 0.04    # ... a number from [[routing.blacklist]]
SHARE_RETURNING = 0.10    # ... a caller who called before (last-agent routing)
SHARE_LANDLINE = 0.30     # of the other callers
SHARE_E1 = 0.30           # calls on the PRI line (DID 95555 -> cards)
SHARE_IMPATIENT = 0.30    # callers who give up after 10–40 s on hold
RING_NO_ANSWER = 0.12     # rings a desk phone lets go unanswered
BREAK_MS = (20_000, 60_000)  # an agent set 示忙 (e.g. by missed rings) dials ##7 after this long

STATE_STYLE = {
    "idle": ("空闲 idle", "green"),
    "ringing": ("振铃 ringing", "bold yellow"),
    "talking": ("通话 talking", "bold red"),
    "wrap_up": ("话后 wrap-up", "cyan"),
    "busy": ("示忙 busy", "magenta"),
    "away": ("离开 away", "magenta"),
    "logged_out": ("未登录 logged out", "dim"),
}
PHASE_STYLE = {
    "menu": "blue", "routing": "blue", "waiting_for_agent": "cyan", "queued": "yellow",
    "ringing": "bold yellow", "talking": "bold green", "desk": "blue", "ending": "dim",
}
DISPOSITION_STYLE = {
    "answered": "green", "abandoned": "yellow", "rejected": "red", "overflow": "magenta",
    "no_agent": "magenta", "failed": "red", "completed": "green",
}
EVENT_TOPICS = ("call.overflow", "call.rejected", "call.flagged", "call.ring_failed",
                "call.waiting_for_agent", "link.state", "code.used", "code.refused",
                "agent.counts_reset")


# --- the branch and its world ------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def demo_config(*, time_scale: float, store: str | Path, ami_port: int, agi_port: int,
                hq: dict[str, dict[str, Any]] | None = None) -> EdgeConfig:
    """The shipped example branch, validated like any config, with the demo's ports, store, time
    scale and extra trunk lines; ``hq``: tables to merge in, the ``[sync]`` and ``[upload]`` of
    an enrolled edge (``DemoHq.config_tables``)."""
    data = tomllib.loads(EXAMPLE_PATH.read_text(encoding="utf-8"))
    data["edge"].update(time_scale=time_scale, store=str(store))
    for table, keys in (hq or {}).items():
        data[table] = {**data.get(table, {}), **keys}
    workdir = Path(store).parent  # recordings next to the throw-away store, never in the package
    data["recording"] = {"spool_dir": str(workdir / "spool"), "root": str(workdir / "recordings")}
    data["api"] = {"port": 0}  # a free port, shown in the header
    data["asterisk"].update(ami_host="127.0.0.1", ami_port=ami_port,
                            fastagi_host="127.0.0.1", fastagi_port=agi_port)
    pri_did = next((t.get("did") for t in data["trunks"] if t.get("profile") == "pri"), "95555")
    data["trunks"] += [{"channel": n, "profile": "fxo", "number": f"0755832100{n:02d}"}
                       for n in EXTRA_FXO]
    data["trunks"] += [{"channel": n, "profile": "pri", "did": pri_did} for n in EXTRA_PRI]
    return parse_config(data, base_dir=DATA_DIR)


@dataclass
class DemoPhone(PhoneScript):
    """A desk phone with a fresh random behaviour on every ring: answers after 1–4 s and talks
    20–90 s, or (``RING_NO_ANSWER`` of the time) lets it ring out. Deterministic per seed."""
    seed: str = ""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def behaviour(self, ring_index: int) -> RingBehaviour:
        rng = self._rng
        if rng.random() < RING_NO_ANSWER:
            return RingBehaviour(answer_after_ms=None)
        return RingBehaviour(answer_after_ms=rng.randint(1_000, 4_000),
                             hangup_after_ms=rng.randint(20_000, 90_000))


def demo_world(config: EdgeConfig, seed: int) -> World:
    """The simulator's side of the branch: the config's trunk lines, a phone per agent."""
    spans: dict[str, list[int]] = {}
    for trunk in config.trunks:
        spans.setdefault(PROFILES[trunk.profile], []).append(trunk.channel)
    world = World(trunks=[TrunkSpan(profile, sorted(channels)) for profile, channels in spans.items()])
    for agent in config.agents:
        world.phones[agent.extension] = DemoPhone(agent.extension, agent.name,
                                                  seed=f"{seed}/{agent.extension}")
    return world


class CallerBook:
    """Who calls: mobiles and landlines of several provinces, some VIPs, some blacklisted numbers,
    some callers coming back."""

    def __init__(self, config: EdgeConfig, rng: random.Random) -> None:
        self.rng = rng
        self.vip = [v.number for v in config.routing.vip]
        self.blacklist = [b.number for b in config.routing.blacklist]
        self.seen: list[str] = []

    def next(self) -> str:
        rng, roll = self.rng, self.rng.random()
        if self.vip and roll < SHARE_VIP:
            return rng.choice(self.vip)
        roll -= SHARE_VIP
        if self.blacklist and roll < SHARE_BLACKLIST:
            return rng.choice(self.blacklist)
        roll -= SHARE_BLACKLIST
        if self.seen and roll < SHARE_RETURNING:
            return rng.choice(self.seen)
        if rng.random() < SHARE_LANDLINE:
            number = rng.choice(AREA_CODES) + str(rng.randint(2, 8)) + f"{rng.randrange(10**7):07d}"
        else:
            number = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**4):04d}"
        self.seen = (self.seen + [number])[-50:]
        return number


class CallFeed:
    """Stands in for the simulator in ``hil.pbx.cli.random_calls`` (its Poisson timing and talk /
    patience draws are reused as they are) and turns each call it makes into a demo caller: a
    number from ``CallerBook``, an analog or PRI line, sometimes an impatient caller."""

    def __init__(self, sim: PbxSimulator, config: EdgeConfig, rng: random.Random,
                 on_offered: Callable[[str, str], None] = lambda call_id, caller: None) -> None:
        self.sim = sim
        self.pbx = sim.pbx                      # random_calls reads pbx.timebase
        self.rng = rng
        self.callers = CallerBook(config, rng)
        self.dids = sorted({t.number for t in config.trunks if t.profile == "pri" and t.number})
        self.on_offered = on_offered
        self.offered = 0

    def add_trunk_call(self, **spec: Any) -> str:
        rng = self.rng
        spec["caller"] = self.callers.next()
        if self.dids and rng.random() < SHARE_E1:
            spec.update(profile=E1, did=rng.choice(self.dids))
        else:
            spec.update(profile=ANALOG, did="s")
        if rng.random() < SHARE_IMPATIENT:
            spec["abandon_on_hold_ms"] = rng.randint(10_000, 40_000)
        call_id = self.sim.add_trunk_call(**spec)
        self.offered += 1
        self.on_offered(call_id, spec["caller"])
        return call_id

    def run(self, rate: float, stop: threading.Event) -> None:
        """``rate`` new calls per real second, until ``stop``."""
        per_scripted_hour = rate * 3600.0 * self.sim.time_scale
        try:
            random_calls(self, per_scripted_hour, stop, ANALOG)  # type: ignore[arg-type]
        except Exception:  # the demo goes on showing what it has
            log.exception("the call stream failed")


# --- what the edge tells us ----------------------------------------------------------------------

@dataclass
class Tally:
    """The first ``limit`` completed calls (CDRs), counted as they are written. Once ``freeze()``
    is called (the demo is stopping) later CDRs are calls the stop itself ended: ``cut_off``."""
    limit: int = 0
    cdrs: list[dict[str, Any]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    frozen: bool = False
    cut_off: int = 0

    def freeze(self) -> None:
        self.frozen = True

    def add(self, record: dict[str, Any]) -> None:
        if self.frozen:
            self.cut_off += 1
            return
        if self.limit and len(self.cdrs) >= self.limit:
            return
        self.cdrs.append(record)
        if self.limit and len(self.cdrs) >= self.limit:
            self.done.set()

    def counts(self) -> collections.Counter:
        return collections.Counter(r.get("disposition") or "?" for r in list(self.cdrs))

    def average_wait(self) -> float | None:
        waits = [float(r.get("wait_s") or 0.0) for r in list(self.cdrs)]
        return sum(waits) / len(waits) if waits else None

    def summary(self) -> str:
        counts = self.counts()
        n = len(self.cdrs)
        others = {k: v for k, v in sorted(counts.items()) if k not in ("answered", "abandoned")}
        other_txt = "".join(f", {v} {k}" for k, v in others.items())
        wait = self.average_wait()
        wait_txt = f"{wait:.1f} s" if wait is not None else "-"
        text = (f"Summary: {n} call{'s' if n != 1 else ''}, {counts['answered']} answered, "
                f"{counts['abandoned']} abandoned{other_txt}, average wait {wait_txt} (simulated)")
        if self.cut_off:
            text += f"; {self.cut_off} more ended unfinished by the stop"
        return text


@dataclass(frozen=True)
class Snapshot:
    now: float
    agents: list[AgentView]
    queues: list[QueueView]
    calls: list[CallView]


def take_snapshot(runtime: EdgeRuntime, timeout: float = SNAPSHOT_TIMEOUT_S) -> Snapshot | None:
    """The core's views, read on the core thread; ``None`` if it does not answer in time."""
    box: list[Snapshot] = []
    done = threading.Event()

    def read() -> None:
        try:  # an exception here would end the runtime's core thread
            core = runtime.core
            box.append(Snapshot(runtime.clock.now(), core.agents_view(), core.queues_view(),
                                core.calls_view()))
        except Exception:
            log.exception("reading the core's views failed")
        finally:
            done.set()

    runtime.call_soon(read)
    done.wait(timeout)
    return box[0] if box else None


class LogTail(logging.Handler):
    """Keeps warnings and errors for the screen instead of letting them scribble over it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=3)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.count += 1
            self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:
            pass


# --- formatting --------------------------------------------------------------------------------

def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{s:02d}"
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


class Names:
    """Agent ids and extensions -> display names (张伟 8001)."""

    def __init__(self, config: EdgeConfig) -> None:
        self.by_id = {a.id: a for a in config.agents}
        self.vip = {v.number for v in config.routing.vip}
        self.zone = ZoneInfo(config.edge.timezone)

    def agent(self, agent_id: str | None, extension: str | None = "") -> str:
        agent = self.by_id.get(agent_id or "")
        if agent is not None:
            return f"{agent.name} {agent.extension}"
        return extension or ""

    def clock(self, ts: float | None, millis: bool = False) -> str:
        if ts is None:
            return ""
        text = datetime.fromtimestamp(ts, self.zone).strftime("%H:%M:%S.%f" if millis else "%H:%M:%S")
        return text[:-5] if millis else text

    def caller(self, number: str) -> str:
        return f"{number} VIP" if national_number(number) in self.vip else number


def cdr_line(names: Names, record: dict[str, Any]) -> str:
    agent = names.agent(record.get("agent_id"), record.get("extension")) or "-"
    if record.get("code"):
        return f"CDR    {agent} dialled {record['code']}: {record.get('disposition')}"
    region = record.get("region") or "?"
    flagged = " flagged" if record.get("flagged") else ""
    return (f"CDR    {names.caller(record.get('caller') or '?')} ({region}) -> {agent} "
            f"group={record.get('group') or '-'} rule={record.get('rule') or '-'} "
            f"{record.get('disposition')}{flagged} wait {float(record.get('wait_s') or 0):.1f}s "
            f"talk {float(record.get('talk_s') or 0):.1f}s")


def notify_line(names: Names, topic: str, data: dict[str, Any]) -> str:
    parts = []
    for key, value in data.items():
        if key == "agent_id":
            parts.append(f"agent={names.agent(value).replace(' ', '/') or value}")
        elif value not in (None, "", False):
            parts.append(f"{key}={value}")
    return f"notify {topic:<22} {' '.join(parts)}"


# --- the live screen -------------------------------------------------------------------------------

class LiveScreen:
    """Builds one frame of the live view from a snapshot, the store's last CDRs and recent events,
    fitted to the terminal: side by side from 140 columns, fewer CDR columns under 110, and when
    rows run short the events go first, then CDR rows, then live-call rows."""

    def __init__(self, config: EdgeConfig, names: Names, time_scale: float, ports: tuple[int, int]) -> None:
        self.config, self.names, self.time_scale, self.ports = config, names, time_scale, ports

    def frame(self, snap: Snapshot | None, cdrs: list[dict[str, Any]], events: list[tuple[float, str]],
              status: dict[str, Any], width: int, height: int):
        from rich.console import Group
        from rich.text import Text

        header = self._header(snap, status, width)
        if snap is None:
            return Group(*header, Text(" waiting for the edge's core…", style="dim"))
        if width >= 140:
            top = _grid(self._agents(snap), self._queues(snap))
        else:
            top = Group(self._agents(snap), self._queue_line(snap))
        return _fit(header + [top], lambda rows: self._calls(snap, rows),
                    lambda rows: self._cdrs(cdrs[:rows], width), len(cdrs),
                    self._events(events, status), width, height)

    # --- parts ----------------------------------------------------------------------------------

    def _header(self, snap: Snapshot | None, status: dict[str, Any], width: int) -> list:
        from rich.text import Text

        names, wide = self.names, width >= 120
        line1 = Text(no_wrap=True, overflow="ellipsis")
        line1.append(" 呼叫中心 edge demo ", style="bold white on blue")
        line1.append(f"  {self.config.edge.id}", style="bold")
        if snap is not None:
            line1.append(f"  ·  simulated {names.clock(snap.now)}")
        line1.append(f" ×{1 / self.time_scale:g}")
        link_up = status.get("ami_up")
        line1.append("  ·  AMI ")
        line1.append("● up" if link_up else "● down", style="green" if link_up else "bold red")
        if wide:
            line1.append(f" 127.0.0.1:{self.ports[0]}  ·  FastAGI 127.0.0.1:{self.ports[1]}", style="dim")
            if status.get("api"):
                line1.append(f"  ·  API http://{status['api']}/api/agents", style="dim")
        tally: Tally = status["tally"]
        counts = tally.counts()
        wait = tally.average_wait()
        line2 = Text(no_wrap=True, overflow="ellipsis")
        dot = "  ·  " if wide else " · "
        limit = f"/{tally.limit}" if tally.limit else ""
        line2.append(f" calls {status['offered']}{dot}done {len(tally.cdrs)}{limit}{dot}")
        line2.append(f"answered {counts['answered']}", style="green")
        line2.append(dot)
        line2.append(f"abandoned {counts['abandoned']}", style="yellow")
        other = sum(v for k, v in counts.items() if k not in ("answered", "abandoned"))
        line2.append(f"{dot}{'overflow/rejected/other' if wide else 'other'} {other}{dot}avg wait "
                     f"{'-' if wait is None else f'{wait:.1f}s'}")
        if status.get("no_line"):
            line2.append(f"{dot}all lines busy {status['no_line']}", style="red")
        if wide:
            line2.append("   Ctrl-C stops", style="dim")
        return [line1, line2] + ([self._hq_line(status)] if status.get("hq") else [])

    def _hq_line(self, status: dict[str, Any]):
        """Where HQ is, and how much of the outbox it has not acknowledged yet."""
        from rich.text import Text

        hq, depth = status["hq"], status.get("outbox")
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" HQ ", style="bold white on dark_green")
        line.append(f" {hq['url']}  ·  outbox ")
        line.append("?" if depth is None else str(depth),
                    style="yellow" if depth is None or depth > OUTBOX_BACKLOG else "green")
        line.append(f"  ·  broker 127.0.0.1:{hq['broker_port']}  ·  sign in: {hq['login']}",
                    style="dim")
        return line

    def _agents(self, snap: Snapshot):
        from rich.text import Text

        names, now = self.names, snap.now
        live_by_agent = {c.agent_id: c for c in snap.calls if c.agent_id}
        table = _table("坐席 Agents", ("坐席", ""), ("ext", ""), ("groups", ""), ("state", ""),
                       ("for", "r"), ("today", "r"), ("caller", ""))
        for a in snap.agents:
            label, style = STATE_STYLE.get(a.state, (a.state, ""))
            call = live_by_agent.get(a.id)
            since = fmt_duration(now - a.since) if a.since and a.state != "logged_out" else ""
            table.add_row(a.name, a.extension, ",".join(a.groups) or "-", Text(label, style=style),
                          since, str(a.calls_today), names.caller(call.caller) if call else "")
        return table

    def _queues(self, snap: Snapshot):
        from rich.text import Text

        table = _table("队列 Queues", ("group", ""), ("strategy", ""), ("ready/in", "r"),
                       ("waiting", "r"), ("longest", "r"))
        for q in snap.queues:
            table.add_row(q.group, q.strategy, f"{q.idle_agents}/{q.logged_in_agents}",
                          Text(str(q.length), style="bold yellow" if q.length else ""),
                          fmt_duration(q.longest_wait_s) if q.length else "")
        return table

    def _queue_line(self, snap: Snapshot):
        from rich.text import Text

        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("队列 Queues", style="bold")
        for q in snap.queues:
            line.append("  │  " if len(line) > 12 else "  ")
            line.append(f"{q.group} ")
            line.append(f"{q.length} waiting", style="bold yellow" if q.length else "")
            if q.length:
                line.append(f" ({fmt_duration(q.longest_wait_s)})")
            line.append(f" {q.idle_agents}/{q.logged_in_agents} ready", style="dim")
        return line

    def _calls(self, snap: Snapshot, rows: int):
        from rich.text import Text

        names, now = self.names, snap.now
        table = _table(f"在线通话 Live calls ({len(snap.calls)})", ("caller", ""), ("region", ""),
                       ("group", ""), ("agent", ""), ("phase", ""), ("pos", "r"), ("duration", "r"))
        shown = snap.calls[:rows] if len(snap.calls) <= rows else snap.calls[:max(0, rows - 1)]
        for c in shown:
            caller = Text(names.caller(c.caller))
            if c.flagged:
                caller.append(" flagged", style="red")
            table.add_row(caller, c.region, c.group, names.agent(c.agent_id, c.extension),
                          Text(c.phase, style=PHASE_STYLE.get(c.phase, "")),
                          str(c.queue_position) if c.queue_position else "",
                          fmt_duration(now - c.started_at))
        if 0 < rows and len(shown) < len(snap.calls):
            table.add_row(Text(f"… {len(snap.calls) - len(shown)} more", style="dim"))
        return table

    def _cdrs(self, cdrs: list[dict[str, Any]], width: int):
        from rich.text import Text

        names, full = self.names, width >= 110
        columns = [("ended", ""), ("caller", "")] + ([("region", "")] if full else []) + [("agent", "")]
        columns += ([("group", "")] if full else []) + [("rule", ""), ("result", ""), ("wait", "r"),
                                                         ("talk", "r")]
        table = _table(f"最近通话 Last {LAST_CDRS} CDRs (from the store)", *columns)
        for r in cdrs:
            disposition = r.get("disposition") or ""
            result = Text(disposition, style=DISPOSITION_STYLE.get(disposition, ""))
            if r.get("flagged"):
                result.append(" flagged", style="red")
            caller = names.caller(r.get("caller") or "") + (f" {r['code']}" if r.get("code") else "")
            cells = [names.clock(r.get("ended_at")), caller]
            cells += [r.get("region") or ""] if full else []
            cells += [names.agent(r.get("agent_id"), r.get("extension"))]
            cells += [r.get("group") or ""] if full else []
            cells += [r.get("rule") or "", result, fmt_duration(r.get("wait_s")),
                      fmt_duration(r.get("talk_s"))]
            table.add_row(*cells)
        return table

    def _events(self, events: list[tuple[float, str]], status: dict[str, Any]) -> list:
        from rich.text import Text

        lines = []
        for ts, line in events[-LAST_EVENTS:]:
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(f" {self.names.clock(ts)} ", style="dim")
            text.append(line)
            lines.append(text)
        lines += [Text(f" {line}", style="red", no_wrap=True, overflow="ellipsis")
                  for line in status.get("log", [])]
        return [Text("事件 Events", style="bold"), *lines] if lines else []


def _table(title: str, *columns: tuple[str, str]):
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left",
                  title_style="bold", pad_edge=False)
    for name, justify in columns:
        table.add_column(name, no_wrap=True, justify="right" if justify == "r" else "left")
    return table


def _grid(*parts: Any):
    from rich.table import Table

    grid = Table.grid(padding=(0, 4))
    grid.add_row(*parts)
    return grid


def _fit(fixed: list, calls: Callable[[int], Any], cdrs: Callable[[int], Any], cdr_count: int,
         events: list, width: int, height: int):
    """Fit the frame to ``height`` rows: drop the events first, then trim CDRs to 3 rows, then
    live calls to 3 rows, then the CDRs, then live calls to 1 row."""
    from rich.console import Console, Group

    console = Console(width=width, file=_NullFile(), force_terminal=True, color_system=None)
    options = console.options.update(width=width)

    def lines(renderable: Any) -> int:
        return len(console.render_lines(renderable, options, pad=False))

    room = height - 1 - sum(lines(p) for p in fixed)  # Live keeps the cursor on the last line
    call_overhead = lines(calls(0))
    call_rows = lines(calls(10_000)) - call_overhead
    cdr_overhead, cdr_rows = lines(cdrs(0)), cdr_count
    event_lines = sum(lines(p) for p in events)

    def total() -> int:
        used = call_overhead + call_rows
        used += (cdr_overhead + cdr_rows) if cdr_rows >= 0 else 0
        return used + event_lines

    if total() > room:
        event_lines, events = 0, []
    if total() > room:
        cdr_rows = max(min(cdr_count, 3), cdr_rows - (total() - room))
    if total() > room:
        call_rows = max(min(call_rows, 3), call_rows - (total() - room))
    if total() > room:
        cdr_rows = -1  # no CDR table at all
    if total() > room:
        call_rows = max(1, call_rows - (total() - room))
    parts = [*fixed, calls(call_rows)]
    if cdr_rows >= 0:
        parts.append(cdrs(cdr_rows))
    return Group(*parts, *events)


class _NullFile:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


# --- running it -------------------------------------------------------------------------------------

def run_demo(calls: int = 0, rate: float = 0.5, time_scale: float = 0.05, seed: int = 1,
             plain: bool = False, out: TextIO | None = None, hq: bool = False,
             hq_stack: HqStack | None = None) -> int:
    """Run the demo until Ctrl-C / SIGTERM or ``calls`` completed calls (0 = for ever).

    ``hq``: also start an HQ (``hil.stack.HqStack``) and sync the edge to it (``edge demo``
    does by default); ``hq_stack``: use this running one instead, left running at the end.
    Returns the exit code: 0 after a normal run, 2 for bad arguments, 1 if the edge, the
    simulator or HQ could not be brought up.
    """
    out = out or sys.stdout
    if calls < 0 or rate <= 0 or time_scale <= 0 or not math.isfinite(rate * time_scale):
        print("edge demo: --calls must be >= 0, --rate and --time-scale > 0", file=sys.stderr)
        return 2
    plain = plain or not (hasattr(out, "isatty") and out.isatty())
    random_state = random.getstate()
    random.seed(seed)  # hil.pbx.cli.random_calls draws its gaps from the module's generator
    rng = random.Random(seed)

    tail = LogTail()  # warnings are kept for the screen (and keep Python from printing them)
    handlers: list[logging.Handler] = [tail]
    if plain:
        echo = logging.StreamHandler(sys.stderr)
        echo.setLevel(logging.WARNING)
        echo.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(echo)
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    workdir = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    stop = threading.Event()
    restore_signals = _install_stop_signals(stop)
    demo = _Demo(calls, rate, time_scale, seed, plain, out, rng, tail, stop, workdir)
    if hq or hq_stack is not None:
        demo.hq = DemoHq(workdir / "hq", hq_stack)
    try:
        if not demo.start():
            return 1
        try:
            demo.show()
        except KeyboardInterrupt:
            pass
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            with _no_interrupts():  # a second Ctrl-C must not leave threads and sockets behind
                demo.shutdown()
        finally:
            restore_signals()
            for handler in handlers:
                root.removeHandler(handler)
            random.setstate(random_state)
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM, and SIGHUP (the terminal was closed), stop the demo as Ctrl-C does: in order, so
    HQ's broker and gunicorn (which take SIGHUP as "reload") are not left running."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


class _Demo:
    def __init__(self, calls: int, rate: float, time_scale: float, seed: int, plain: bool,
                 out: TextIO, rng: random.Random, tail: LogTail, stop: threading.Event,
                 workdir: Path) -> None:
        self.calls, self.rate, self.time_scale, self.seed = calls, rate, time_scale, seed
        self.plain, self.out, self.rng, self.tail, self.stop = plain, out, rng, tail, stop
        self.workdir = workdir
        self.tally = Tally(limit=calls)
        self.lines: "queue.Queue[tuple[float, Command]]" = queue.Queue()
        self.events: collections.deque[tuple[float, str]] = collections.deque(maxlen=LAST_EVENTS)
        self.ami_up = False
        self.out_closed = False
        self.busy_agents: "queue.Queue[str]" = queue.Queue()
        self.breaks = 0
        self.break_rng = random.Random(f"{seed}/breaks")
        self.world: World | None = None
        self.sim: PbxSimulator | None = None
        self.runtime: EdgeRuntime | None = None
        self.feed: CallFeed | None = None
        self.feed_thread: threading.Thread | None = None
        self.config: EdgeConfig | None = None
        self.names: Names | None = None
        self.agi_port = 0
        self.hq: DemoHq | None = None
        self.hq_up = False
        self.outbox: int | None = None
        self.outbox_at = 0.0

    # --- bringing it up ------------------------------------------------------------------------

    def start(self) -> bool:
        hq_tables = self._start_hq() if self.hq is not None else None
        if self.hq is not None and hq_tables is None:
            return False
        base = demo_config(time_scale=self.time_scale, store=self.workdir / "demo.sqlite3",
                           ami_port=5038, agi_port=4573)
        users = {base.asterisk.ami_user: base.asterisk.ami_secret}
        for attempt in range(5):  # a free port can be taken between the probe and the bind
            self.agi_port = free_port()
            self.world = demo_world(base, self.seed)
            sim = PbxSimulator(self.world, edge_host="127.0.0.1",
                               agi_port=self.agi_port, ami_port=0, time_scale=self.time_scale,
                               ami_users=users, spool_dir=self.workdir / "spool")
            sim.start(scripts=False)
            self.sim = sim
            self.config = demo_config(time_scale=self.time_scale, store=self.workdir / "demo.sqlite3",
                                      ami_port=sim.ami_port, agi_port=self.agi_port, hq=hq_tables)
            runtime = self.runtime = EdgeRuntime(self.config)
            runtime.subscribe(self._listen)
            try:
                runtime.start()
            except Exception as exc:
                log.warning("edge did not start (attempt %d): %s", attempt + 1, exc)
                _quietly(runtime.stop)
                _quietly(sim.stop)
                self.sim = self.runtime = None
                continue
            break
        if self.runtime is None or self.sim is None or self.config is None:
            print("edge demo: could not start the edge's FastAGI server on a free port", file=sys.stderr)
            return False
        self.names = Names(self.config)
        try:
            self.sim.wait_record("ami", timeout=LOGIN_TIMEOUT_S, what="login")
        except TimeoutError:
            print("edge demo: the edge did not log in to the simulator's AMI; "
                  f"last log lines: {list(self.tail.lines)}", file=sys.stderr)
            return False
        self.sim.start_world()
        self.feed = CallFeed(self.sim, self.config, self.rng)
        self.feed_thread = threading.Thread(target=self.feed.run, args=(self.rate, self.stop),
                                            name="demo-calls", daemon=True)
        self.feed_thread.start()
        return True

    def _start_hq(self) -> dict[str, dict[str, Any]] | None:
        """Bring HQ up (unless a running one was handed in), print where it is, and return the
        edge's config tables for it; ``None`` if HQ is not usable."""
        assert self.hq is not None
        if self.hq.owned:
            self._print("edge demo: starting HQ (Mosquitto, aggregator under gunicorn, ingest, "
                        "downlink dispatcher) and enrolling the edge…")
        try:
            self.hq.start()
            tables = self.hq.config_tables()
        except (StackError, EdgeError) as exc:
            print(f"edge demo: {exc}\n(`edge demo --no-hq` runs the edge alone)", file=sys.stderr)
            return None
        self.hq_up = True
        for line in self.hq.banner():
            self._print(line)
        return tables

    def _listen(self, command: Command) -> None:
        """On the core thread: keep it short and never raise."""
        try:
            now = self.runtime.clock.now() if self.runtime else time.time()
            if isinstance(command, WriteCdr):
                if command.record.get("direction", "inbound") == "inbound":
                    self.tally.add(dict(command.record))
            elif isinstance(command, Notify) and command.topic == "link.state":
                if command.data.get("link") == "ami":
                    self.ami_up = bool(command.data.get("up"))
            elif isinstance(command, Notify) and command.topic == "agent.state":
                if command.data.get("state") == "busy" and command.data.get("previous") != "busy":
                    self.busy_agents.put(str(command.data.get("agent_id")))
            self.lines.put((now, command))
        except Exception:
            pass

    # --- showing it ---------------------------------------------------------------------------

    def _finished(self) -> bool:
        return self.stop.is_set() or self.tally.done.is_set()

    def _end_breaks(self) -> None:
        """An agent who went 示忙 (nobody in the demo does it by hand: the edge's auto-busy after
        missed rings does) takes a short break, then dials ##7 on their desk phone to come back."""
        while True:
            try:
                agent_id = self.busy_agents.get_nowait()
            except queue.Empty:
                return
            agent = next((a for a in self.config.agents if a.id == agent_id), None)
            phone = self.world.phones.get(agent.extension) if agent else None
            toggle = next((p for p, rule in self.config.codes.items() if rule.action == "toggle_busy"), None)
            if phone is None or toggle is None:
                continue
            self.breaks += 1
            phone.dials = [PhoneDial(at_ms=self.break_rng.randint(*BREAK_MS), digits=toggle,
                                     id=f"{agent.extension}-back{self.breaks}")]
            try:
                self.sim.add_phone(phone)  # schedules the phone's dials from now
            except Exception:
                log.exception("could not script %s's ##7", agent.extension)

    def show(self) -> None:
        if self.plain:
            self._show_plain()
        else:
            self._show_live()

    def _print(self, text: str) -> None:
        if self.out_closed:
            return
        try:
            print(text, file=self.out, flush=True)
        except (OSError, ValueError):  # `edge demo --plain | head`, a closed terminal: stop quietly
            self.out_closed = True
            self.stop.set()
            if self.out is sys.stdout:
                _silence_stdout()

    def _show_plain(self) -> None:
        names = self.names
        assert names is not None and self.config is not None
        self._print(f"edge demo: edge {self.config.edge.id}, AMI 127.0.0.1:{self.sim.ami_port}, "
                    f"FastAGI 127.0.0.1:{self.agi_port}, ~{self.rate:g} calls/s, time x{1 / self.time_scale:g}"
                    + (f", HQ {self.hq.stack.hq_url}" if self.hq_up else "")
                    + (f", stopping after {self.calls} calls" if self.calls else ", Ctrl-C stops"))
        while not self._finished():
            self._end_breaks()
            try:
                now, command = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self._print_command(now, command)
        self._drain_plain()

    def _drain_plain(self) -> None:
        while True:
            try:
                now, command = self.lines.get_nowait()
            except queue.Empty:
                return
            self._print_command(now, command)

    def _print_command(self, now: float, command: Command) -> None:
        names = self.names
        if isinstance(command, WriteCdr):
            text = cdr_line(names, command.record)
        elif isinstance(command, Notify):
            text = notify_line(names, command.topic, command.data)
        else:
            return
        self._print(f"{names.clock(now, millis=True)} {text}")

    def _show_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out)
        screen = LiveScreen(self.config, self.names, self.time_scale, (self.sim.ami_port, self.agi_port))
        snap: Snapshot | None = None
        no_line, no_line_at = 0, 0.0
        with Live(console=console, refresh_per_second=1 / REFRESH_S, auto_refresh=False,
                  transient=False, vertical_overflow="crop") as live:
            while True:
                started = time.monotonic()
                self._end_breaks()
                self._collect_events()
                snap = take_snapshot(self.runtime) or snap
                if started - no_line_at > 2.0:  # the simulator's log is scanned, not every frame
                    no_line, no_line_at = len(self.sim.records("call_rejected")), started
                cdrs = self._last_cdrs()
                status = {"ami_up": self.ami_up, "tally": self.tally, "offered": self.feed.offered,
                          "no_line": no_line, "log": list(self.tail.lines),
                          "api": "%s:%d" % self.runtime.api.address if self.runtime.api else "",
                          "hq": self.hq.status() if self.hq_up else None,
                          "outbox": self._outbox_depth(started)}
                live.update(screen.frame(snap, cdrs, list(self.events), status,
                                         console.width, console.height), refresh=True)
                if self._finished():
                    break
                self.stop.wait(max(0.0, REFRESH_S - (time.monotonic() - started)))

    def _outbox_depth(self, now: float) -> int | None:
        """Rows waiting for HQ's acknowledgement, read about once a second."""
        if not self.hq_up or self.runtime is None:
            return None
        if now - self.outbox_at >= OUTBOX_EVERY_S:
            self.outbox_at = now
            try:
                self.outbox = self.runtime.store.outbox_depth()
            except Exception:
                self.outbox = None
        return self.outbox

    def _collect_events(self) -> None:
        names = self.names
        while True:
            try:
                now, command = self.lines.get_nowait()
            except queue.Empty:
                return
            if isinstance(command, Notify) and command.topic in EVENT_TOPICS:
                self.events.append((now, notify_line(names, command.topic, command.data)[7:]))

    def _last_cdrs(self) -> list[dict[str, Any]]:
        """The last CDRs by end time (the store lists by start; a long call ends late)."""
        try:
            rows = self.runtime.store.cdrs(limit=LAST_CDRS * 4)
        except Exception:
            return []
        rows.sort(key=lambda r: r.get("ended_at") or 0.0, reverse=True)
        return rows[:LAST_CDRS]

    # --- taking it down -------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.tally.freeze()
        self.stop.set()
        if self.feed_thread is not None:
            self.feed_thread.join(timeout=2)
        left = None
        if self.runtime is not None and self.hq_up:
            left = wait_for_drain(self.runtime.store.outbox_depth, self.hq.broker_running)
        if self.runtime is not None:
            _quietly(self.runtime.stop)
        if self.sim is not None:
            _quietly(self.sim.stop)
        try:
            if self.feed is not None:
                self._print(self.tally.summary())
            if self.hq is not None and self.hq_up and self.feed is not None:
                self._hq_summary(left)
        finally:
            if self.hq is not None:
                _quietly(self.hq.stop)
        if self.tail.count and not self.plain:
            self._print(f"({self.tail.count} warning(s) logged; last: {self.tail.lines[-1]})")

    def _hq_summary(self, outbox_left: int | None) -> None:
        assert self.hq is not None
        stored = self.hq.stored_at_hq()
        cdrs, recordings = ("?", "?") if stored is None else stored
        line = (f"HQ: {cdrs} CDRs and {recordings} recordings of edge {self.hq.edge_id} in HQ's "
                "database")
        if outbox_left:
            line += f"; {outbox_left} outbox rows not yet acknowledged by HQ at the stop"
        self._print(line)
        for text in self.hq.banner(how_to=False):
            self._print(text)
        if self.hq.owned:
            self._print("(HQ stopped with the demo; its database and logs are removed with it)")


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so Python's exit-time flush of a closed pipe stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("error while stopping")
