"""The simulated switch: channels, bridges, music on hold, DTMF, hang-ups, and the AMI events they
raise, under one lock. Everything else (Dial, phones, trunks, AGI, AMI actions) calls in here.

Threads: the scheduler runs scripted steps, each FastAGI session and each Originate runs in its
own thread, AMI sessions in theirs. ``lock`` guards the whole world; ``cond`` (on the same lock)
is notified on every change, so blocking applications (Dial, GET DATA, ChanSpy) simply
``wait_until`` their condition holds.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hil.pbx.ami_events import EventBuilder, Headers
from hil.pbx.audio import AudioModel
from hil.pbx.channels import DOWN, RINGING, UP, Bridge, Channel, Registry
from hil.pbx.mixmonitor import MixMonitors
from hil.pbx.records import Recorder
from hil.pbx.scripts import E1, World
from hil.pbx.timebase import Scheduler, TimeBase, Timer

log = logging.getLogger(__name__)

TRUNK_CONTEXT = "from-trunk"
PHONE_CONTEXT = "from-phones"


class Pbx:
    def __init__(self, world: World, *, time_scale: float = 1.0,
                 channelvars: tuple[str, ...] = ("ACC_TAG", "CUSTOMER_ID"),
                 agi_host: str = "127.0.0.1", agi_port: int = 4573,
                 spool_dir: str | Path | None = None, witness_dir: str | Path | None = None) -> None:
        self.world = world
        self.timebase = TimeBase(time_scale)
        self.scheduler = Scheduler(self.timebase)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.registry = Registry()
        self.events = EventBuilder(tuple(channelvars))
        self.audio = AudioModel(self.timebase.now_ms)
        self.recorder = Recorder(self.timebase.now_ms)
        self.agi_host, self.agi_port = agi_host, agi_port
        self.booted = time.monotonic()
        self.ami_sink: Callable[[Headers], None] | None = None
        self.agi_sessions: dict[str, Any] = {}   # channel name -> AgiSession
        self.scripted: dict[str, Any] = {}       # channel name -> InboundCall / PhoneCall hooks
        self.globals: dict[str, str] = {}
        self.astdb: dict[tuple[str, str], str] = {}
        self.busy_trunks: set[int] = set()
        self.ring_order: dict[str, int] = {}
        self.phone_rings: dict[str, int] = {}
        self.attempts: set[Any] = set()           # DialAttempts in progress (PickupChan looks here)
        self.agi_delay_ms: dict[str | None, int] = {}  # call id (None: every call) -> delay
        self.agi_reset_after: dict[str | None, int] = {}  # call id -> commands before an RST
        self.pending_scripts = 0                  # scripted arrivals / dials not yet started
        self.stopped = threading.Event()
        self._originates = 0
        self.mixmonitors = MixMonitors(self, spool_dir, witness_dir)

    def next_originate_id(self) -> int:
        """Scenario labels of Originate calls (``originate-1``...), counted per simulator."""
        with self.lock:
            self._originates += 1
            return self._originates

    # --- infrastructure ----------------------------------------------------------------------
    def emit(self, headers: Headers) -> None:
        """Hand an event to the AMI server (non-blocking: it only queues bytes)."""
        if self.ami_sink is not None:
            self.ami_sink(headers)

    def changed(self) -> None:
        with self.cond:
            self.mixmonitors.on_change()  # bridge entered or left, channel gone: the files follow
            self.cond.notify_all()
        self.recorder.poke()

    def wait_until(self, predicate: Callable[[], Any], scripted_ms: float | None) -> Any:
        """Block until ``predicate()`` (evaluated under the lock) is truthy or the time is up."""
        timeout = self.timebase.real_s(scripted_ms)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value or self.stopped.is_set():
                    return value
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return value
                self.cond.wait(0.05 if left is None else min(left, 0.05))

    def later(self, scripted_ms: float, fn: Callable[[], None], label: str = "") -> Timer:
        def locked() -> None:
            with self.lock:
                fn()
        return self.scheduler.call_later(scripted_ms, locked, label)

    def spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=self._guard(target, name), name=name, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _guard(target: Callable[[], None], name: str) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("thread %s failed", name)
        return run

    def record(self, kind: str, **data: Any) -> None:
        self.recorder.add(kind, **data)

    def now_ms(self) -> float:
        return self.timebase.now_ms()

    # --- channels ----------------------------------------------------------------------------
    def new_channel(self, name: str, tech: str, *, state: int = DOWN, linkedid: str | None = None,
                    announce: bool = True, **fields: Any) -> Channel:
        with self.lock:
            ch = self.registry.create(name, tech, linkedid, state=state, **fields)
            if announce:
                self.emit(self.events.newchannel(ch))
            self.changed()
            return ch

    def phone_channel_name(self, extension: str) -> str:
        return f"PJSIP/{extension}-{self.registry.next_suffix()}"

    def set_state(self, ch: Channel, state: int) -> None:
        with self.lock:
            if ch.hungup or ch.state == state:
                return
            ch.state = state
            self.emit(self.events.newstate(ch))
            if state == UP and ch.answered_ms is None:
                ch.answered_ms = self.now_ms()
                self._hook(ch, "on_answered")
            self.changed()

    def answer(self, ch: Channel) -> None:
        self.set_state(ch, UP)

    def set_var(self, ch: Channel | None, name: str, value: str, event: bool = True) -> None:
        with self.lock:
            if ch is None:
                self.globals[name] = value
            else:
                ch.variables[name] = value
            if event:
                self.emit(self.events.varset(ch, name, value))

    def newexten(self, ch: Channel, application: str, app_data: str) -> None:
        with self.lock:
            ch.application, ch.app_data = application, app_data
            self.emit(self.events.newexten(ch, application, app_data))

    def hangup(self, ch: Channel, cause: int, by: str, *, soft: bool = False,
               request_cause: int | None = None, request: bool = True) -> bool:
        """End a channel: leave its bridge, stop its media, tell AMI, wake everyone waiting.

        ``soft``: Asterisk itself ends it (AGI HANGUP, AMI Hangup, dialplan end), which AMI shows
        as SoftHangupRequest; otherwise the device or line went on-hook (HangupRequest).
        ``request_cause``: the request event's own cause when it differs (README #6).
        """
        with self.lock:
            if ch.hungup:
                return False
            if request:
                self.emit(self.events.hangup_request(
                    ch, cause if request_cause is None else request_cause, soft=soft))
            ch.hungup, ch.cause, ch.hangup_by = True, cause, by
            ch.dtmf_listening = False
            if ch.moh:
                self.stop_moh(ch)
            personality = getattr(ch.bridge, "personality", None)  # an attended transfer's (transfer.py)
            if ch.bridge is not None and not (personality and personality.pull(ch)):
                self.leave_bridge(ch.bridge)
            self.audio.drop_channel(ch.name)
            if ch.trunk is not None:
                self.busy_trunks.discard(ch.trunk)
            self.registry.remove(ch)
            self.emit(self.events.hangup(ch))
            self.record("hung_up", call=ch.call, channel=ch.name, role=ch.role, by=by, cause=cause,
                        extension=ch.extension, trunk=ch.trunk)
            ch.gone.set()
            self._hook(ch, "on_hungup")
            session = self.agi_sessions.get(ch.name)
            if session is not None:
                self.scheduler.call_later(0, session.channel_hung_up, "agi-hangup")
            self.changed()
            return True

    # --- bridges -----------------------------------------------------------------------------
    def bridge(self, callee: Channel, caller: Channel) -> Bridge:
        """Dial's two-party bridge; BridgeEnter for the callee first, as in agi-03.ami."""
        with self.lock:
            bridge = Bridge()
            self.emit(self.events.bridge_create(bridge))
            for ch in (callee, caller):
                if ch.moh:
                    self.stop_moh(ch)
                self.audio.set_source(ch.name, None)
                bridge.channels.append(ch)
                ch.bridge = bridge
                self.emit(self.events.bridge_enter(bridge, ch))
            self.audio.set_bridge(bridge.uniqueid, {callee.name, caller.name})
            call = caller.call or callee.call
            self.record("bridged", call=call, bridge=bridge.uniqueid,
                        channels=[callee.name, caller.name],
                        extensions=[c.extension for c in (callee, caller) if c.extension],
                        numbers=[c.exten for c in (callee, caller) if c.role == "outside"])
            for ch in (callee, caller):
                self._hook(ch, "on_bridged")
            self.changed()
            return bridge

    def leave_bridge(self, bridge: Bridge) -> None:
        """A basic bridge breaks when one party leaves: everybody leaves, then it is destroyed."""
        with self.lock:
            call = next((c.call for c in bridge.channels if c.call), None)
            for ch in list(bridge.channels):
                bridge.channels.remove(ch)
                ch.bridge = None
                self.emit(self.events.bridge_leave(bridge, ch))
            self.audio.set_bridge(bridge.uniqueid, set())
            self.emit(self.events.bridge_destroy(bridge))
            self.record("unbridged", call=call, bridge=bridge.uniqueid)
            self.changed()

    # --- media -------------------------------------------------------------------------------
    def start_moh(self, ch: Channel, moh_class: str = "default") -> None:
        with self.lock:
            if ch.hungup or ch.moh:
                return
            ch.moh = moh_class
            self.audio.set_source(ch.name, f"moh:{moh_class}")
            self.emit(self.events.moh_start(ch, moh_class))
            self.record("moh", call=ch.call, channel=ch.name, on=True, moh_class=moh_class)
            self._hook(ch, "on_moh", True)
            self.changed()

    def stop_moh(self, ch: Channel) -> None:
        with self.lock:
            if not ch.moh:
                return
            ch.moh = None
            self.audio.set_source(ch.name, None)
            self.emit(self.events.moh_stop(ch))
            self.record("moh", call=ch.call, channel=ch.name, on=False, moh_class="")
            self._hook(ch, "on_moh", False)
            self.changed()

    def key_digits(self, ch: Channel, digits: str, delay_ms: int = 0, gap_ms: int = 150) -> None:
        """The far end of ``ch`` keys ``digits``: DTMFBegin/End (``Direction: Received``) and,
        when an AGI command is reading, into its buffer. Between commands Asterisk's AGI loop
        reads and drops frames, so keys pressed then are lost (recorded with ``heard=False``)."""
        for i, digit in enumerate(digits):
            self.later(delay_ms + i * gap_ms, lambda d=digit: self._dtmf_arrives(ch, d), "dtmf")

    def _dtmf_arrives(self, ch: Channel, digit: str) -> None:
        if ch.hungup:
            return
        self.emit(self.events.dtmf_begin(ch, digit, "Received"))
        self.emit(self.events.dtmf_end(ch, digit, "Received"))
        heard = ch.dtmf_listening
        if heard:
            ch.dtmf.append(digit)
        self.record("dtmf", call=ch.call, channel=ch.name, digit=digit, direction="Received", heard=heard)
        self.changed()

    def input_wanted(self, ch: Channel) -> None:
        """A reading command (GET DATA, WAIT FOR DIGIT) started on ``ch``: tell its script."""
        self._hook(ch, "on_input_wanted")

    # --- trunks ------------------------------------------------------------------------------
    def free_trunk(self, *, channel: int | None = None, profile: str | None = None,
                   group: int | None = None, highest: bool = False) -> int | None:
        with self.lock:
            spans = [s for s in self.world.trunks
                     if (profile is None or s.profile == profile) and (group is None or s.group == group)]
            candidates = sorted((n for s in spans for n in s.channels), reverse=highest)
            if channel is not None:
                candidates = [channel] if channel in candidates else []
            return next((n for n in candidates if n not in self.busy_trunks), None)

    def trunk_cause(self, ch: Channel, q850: int) -> int:
        """An analog FXO line carries no Q.850 cause: chan_dahdi's analog signalling sets none
        when the line drops, so Asterisk reports 0 (Unknown). E1/PRI reports the real cause."""
        return q850 if ch.profile == E1 else 0

    # --- labels for tests --------------------------------------------------------------------
    def resolve(self, label: str) -> list[str]:
        """Channel names (live or gone) for ``customer of c1``, ``agent of c1``, ``outside of c1``,
        ``phone 8009``, ``trunk 3``, ``call c1``, or a channel name / device prefix."""
        label = label.strip()
        with self.lock:
            chans = list(self.registry.all)
        words = label.split()
        if len(words) == 3 and words[1] == "of":
            return [c.name for c in chans if c.role == words[0] and c.call == words[2]]
        if len(words) == 2 and words[0] == "phone":
            return [c.name for c in chans if c.extension == words[1]]
        if len(words) == 2 and words[0] == "trunk":
            return [c.name for c in chans if c.trunk == int(words[1])]
        if len(words) == 2 and words[0] == "call":
            return [c.name for c in chans if c.call == words[1]]
        return [c.name for c in chans if c.name == label or c.name.startswith(label + "-")]

    # --- hooks into scripts ------------------------------------------------------------------
    def _hook(self, ch: Channel, name: str, *args: Any) -> None:
        target = self.scripted.get(ch.name)
        fn = getattr(target, name, None)
        if fn is not None:
            fn(ch, *args)

    def ringing_legs(self) -> list[tuple[Any, Any]]:
        """(attempt, leg) for every outgoing leg still ringing."""
        return [(a, leg) for a in self.attempts for leg in a.pending if leg.channel.state == RINGING]

    def ringing(self, ch: Channel) -> None:
        self.set_state(ch, RINGING)
