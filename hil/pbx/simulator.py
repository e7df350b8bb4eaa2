"""``PbxSimulator``: a simulated Asterisk 22 for HIL tests and the demo.

It serves AMI on TCP and opens FastAGI sessions to the edge, like the real box::

    sim = PbxSimulator(edge_host="127.0.0.1", agi_port=4573, ami_port=5038, time_scale=0.01)
    sim.add_phone("8001", answer_after_ms=2000)
    sim.add_trunk_call(id="c1", caller="13800138000", did="88880000", profile="e1")
    with sim:
        sim.wait_record("bridged", timeout=5, call="c1")
        assert not sim.ever_heard("customer of c1", "phone 8009")

Recordings (AMI ``MixMonitor``) are real WAV files in ``spool_dir`` (Asterisk's monitor directory;
a temporary one by default); a copy of each finished one goes to ``witness_dir`` when given.
Voicemail (AGI ``RECORD FILE``) writes real files too (``hil.pbx.voicemail``); ``messages()`` lists
them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hil.pbx import features
from hil.pbx.ami_server import AmiServer
from hil.pbx.audio import AudioSpan
from hil.pbx.channels import Channel
from hil.pbx.faults import Fault, malformed_ami, parse_faults
from hil.pbx.mixmonitor import RecordingInfo
from hil.pbx.pbx import Pbx
from hil.pbx.phones import start_phone
from hil.pbx.records import Record
from hil.pbx.scripts import (OutsideParty, PhoneScript, TrunkCall, World, parse_call, parse_outside,
                             parse_phone)
from hil.pbx.trunks import InboundCall
from hil.pbx.voicemail import VoiceMessage

log = logging.getLogger(__name__)


class PbxSimulator:
    def __init__(self, world: World | dict[str, Any] | None = None, *, edge_host: str = "127.0.0.1",
                 agi_port: int = 4573, ami_host: str = "127.0.0.1", ami_port: int = 0,
                 time_scale: float = 1.0, ami_users: dict[str, str] | None = None,
                 channelvars: tuple[str, ...] = ("ACC_TAG", "CUSTOMER_ID"),
                 spool_dir: str | Path | None = None, witness_dir: str | Path | None = None,
                 applicationmap: Mapping[str, str | Sequence[str]] | None = None) -> None:
        """``applicationmap``: features.conf's DynamicFeatures, DTMF code -> FastAGI script run on
        the bridged desk phone that keys it, ``{"*3": "record-toggle"}`` or ``{"*3": (script,
        "self", name)}``; ``None`` keeps ``hil.pbx.features.DEFAULT_APPLICATIONMAP``, ``{}`` none."""
        if isinstance(world, dict):
            world = World.from_dict(world)
        self.world = world or World()
        self.pbx = Pbx(self.world, time_scale=time_scale, channelvars=channelvars,
                       agi_host=edge_host, agi_port=agi_port, spool_dir=spool_dir, witness_dir=witness_dir)
        features.configure(self.pbx, applicationmap)
        self.ami = AmiServer(self.pbx, ami_host, ami_port, ami_users)
        self.recorder = self.pbx.recorder
        self.running = False
        self._calls: dict[str, InboundCall] = {}
        self.world_started_ms = 0.0

    # --- life --------------------------------------------------------------------------------
    def start(self, scripts: bool = True) -> "PbxSimulator":
        """Serve AMI and (unless ``scripts=False``) start the world's scripts: their ``at_ms``
        count from now. ``start_world()`` starts them later (e.g. once the edge has logged in)."""
        self.pbx.scheduler.start()
        self.ami.start()
        self.running = True
        if scripts:
            self.start_world()
        return self

    def start_world(self) -> None:
        self.world_started_ms = self.pbx.now_ms()
        for script in self.world.phones.values():
            start_phone(self.pbx, script)
        for call in list(self.world.calls):
            self._start_call(call)
        for fault in self.world.faults:
            self._schedule_fault(fault)

    def stop(self) -> None:
        self.running = False
        self.pbx.stopped.set()
        self.pbx.changed()
        self.pbx.scheduler.stop()
        with self.pbx.lock:
            self.pbx.mixmonitors.shutdown()  # like a clean "core stop": open recordings are closed
        self.ami.stop()
        with self.pbx.lock:
            sessions = list(self.pbx.agi_sessions.values())
        for session in sessions:
            session.shutdown()

    def __enter__(self) -> "PbxSimulator":
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ami_port(self) -> int:
        return self.ami.port

    @property
    def time_scale(self) -> float:
        return self.pbx.timebase.time_scale

    @property
    def spool_dir(self) -> Path:
        """Where relative MixMonitor file names land (Asterisk's ``/var/spool/asterisk/monitor``)."""
        return self.pbx.mixmonitors.spool_dir

    @property
    def witness_dir(self) -> Path | None:
        return self.pbx.mixmonitors.witness_dir

    # --- the world ---------------------------------------------------------------------------
    def add_phone(self, extension: str | PhoneScript, **spec: Any) -> PhoneScript:
        """``add_phone("8001", answer_after_ms=2000, hangup_after_ms=30000)``, ``busy=True``,
        ``no_answer=True``, ``rings=[{...}, ...]``, ``dials=[{"at_ms": 0, "digits": "##28001"}]``."""
        script = extension if isinstance(extension, PhoneScript) else parse_phone(extension, spec, f"phones.{extension}")
        with self.pbx.lock:
            self.world.phones[script.extension] = script
        if self.running:
            start_phone(self.pbx, script)
        return script

    def add_trunk_call(self, call: TrunkCall | None = None, **spec: Any) -> str:
        """Schedule an inbound trunk call ``at_ms`` from now (or from ``start()``); returns its id."""
        call = call or parse_call(spec, "call")
        with self.pbx.lock:
            if call not in self.world.calls:
                self.world.calls.append(call)
            self.world.validate()
        if self.running:
            self._start_call(call)
        return call.id

    def add_outside_party(self, party: OutsideParty | None = None, **spec: Any) -> OutsideParty:
        party = party or parse_outside(spec, "outside")
        with self.pbx.lock:
            self.world.outside.insert(0, party)
        return party

    def set_prompt(self, name: str, length_ms: int | None) -> None:
        """A prompt's length; ``None`` makes it a missing file (``200 result=-1 endpos=0``)."""
        with self.pbx.lock:
            self.world.prompts[name] = length_ms

    def inject_fault(self, fault: Fault | None = None, **spec: Any) -> None:
        fault = fault or parse_faults([spec])[0]
        if self.running:
            self._schedule_fault(fault)
        else:
            self.world.faults.append(fault)

    def _start_call(self, call: TrunkCall) -> None:
        if call.id in self._calls:
            return
        inbound = InboundCall(self.pbx, call)
        self._calls[call.id] = inbound
        inbound.start()

    def _schedule_fault(self, fault: Fault) -> None:
        pbx = self.pbx
        if fault.kind == "agi_reset" and fault.after_commands is not None:
            pbx.agi_reset_after[fault.call] = fault.after_commands
            return
        pbx.scheduler.call_later(fault.at_ms or 0, lambda: self._fire(fault), f"fault-{fault.kind}")

    def _fire(self, fault: Fault) -> None:
        pbx = self.pbx
        if fault.kind == "ami_disconnect":
            self.ami.disconnect_all()
        elif fault.kind == "ami_malformed":
            live = self.channels()
            chunks = (malformed_ami(fault.variant, live[0].name, live[0].uniqueid) if live
                      else malformed_ami(fault.variant))
            self.ami.inject(chunks, pause_ms=fault.delay_ms or 20)
            pbx.record("fault", what="ami_malformed", details=fault.variant)
        elif fault.kind == "ami_slow":
            self.ami.response_delay_ms = fault.delay_ms
            pbx.record("fault", what="ami_slow", details=str(fault.delay_ms))
        elif fault.kind == "agi_slow":
            pbx.agi_delay_ms[fault.call] = fault.delay_ms
            pbx.record("fault", what="agi_slow", details=f"{fault.call}: {fault.delay_ms}")
        elif fault.kind == "agi_reset":
            with pbx.lock:
                sessions = [s for s in pbx.agi_sessions.values()
                            if fault.call is None or s.channel.call == fault.call]
            for session in sessions:
                session.reset()
        elif fault.kind == "mixmonitor_crash":
            crashed = self.crash_recordings()
            pbx.record("fault", what="mixmonitor_crash", details=f"{len(crashed)} recording(s)")

    # --- test drivers ------------------------------------------------------------------------
    def hang_up(self, who: str, cause: int = 16, by: str = "caller") -> int:
        """Hang up every live channel matching a label (``customer of c1``, ``phone 8001``...)."""
        names = set(self.pbx.resolve(who) or self.pbx.resolve(f"customer of {who}"))
        count = 0
        with self.pbx.lock:
            for ch in [c for c in self.pbx.registry.live.values() if c.name in names]:
                count += self.pbx.hangup(ch, self.pbx.trunk_cause(ch, cause) if ch.tech == "DAHDI" else cause, by=by)
        return count

    def crash_recordings(self) -> list[RecordingInfo]:
        """Asterisk dies mid-recording: every open recording stops where its last write left it,
        the WAV sizes stay 0 as written at open, no witness is kept (``recording_crashed``)."""
        with self.pbx.lock:
            return self.pbx.mixmonitors.crash()

    def press(self, who: str, digits: str) -> None:
        """The party on a channel keys DTMF now."""
        with self.pbx.lock:
            for ch in self._live(who):
                self.pbx.key_digits(ch, digits)

    # --- observation -------------------------------------------------------------------------
    def records(self, kind: str | None = None, **match: Any) -> list[Record]:
        return self.recorder.all(kind, **match)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait (real seconds) until ``predicate()`` is truthy; returns it, or None on timeout."""
        return self.recorder.wait_for(predicate, timeout)

    def wait_record(self, kind: str, timeout: float = 5.0, **match: Any) -> Record:
        return self.recorder.wait_record(kind, timeout, **match)

    def channels(self, live: bool = True) -> list[Channel]:
        with self.pbx.lock:
            return list(self.pbx.registry.live.values() if live else self.pbx.registry.all)

    def resolve(self, label: str) -> list[str]:
        return self.pbx.resolve(label)

    def hears(self, listener: str) -> set[str]:
        """Speakers the listener (a channel name or label) hears right now."""
        return set().union(*[self.pbx.audio.hears(n) for n in self._names(listener)])

    def heard_by(self, speaker: str) -> set[str]:
        return set().union(*[self.pbx.audio.heard_by(n) for n in self._names(speaker)])

    def ever_heard(self, listener: str, speaker: str) -> bool:
        """Whether any channel of ``listener`` ever heard any channel of ``speaker``."""
        speakers = self._names(speaker)
        return any(self.pbx.audio.ever_heard(l, s) for l in self._names(listener) for s in speakers)

    def audio_history(self) -> list[AudioSpan]:
        return self.pbx.audio.history()

    def active_recordings(self) -> list[RecordingInfo]:
        """MixMonitors still writing (their files still grow)."""
        with self.pbx.lock:
            return [r.info() for r in self.pbx.mixmonitors.active]

    def finished_recordings(self) -> list[RecordingInfo]:
        """Closed recordings, oldest first; ``ended`` says how (``crashed``: header never fixed)."""
        with self.pbx.lock:
            return [r.info() for r in self.pbx.mixmonitors.finished]

    def messages(self, **match: Any) -> list[VoiceMessage]:
        """Finished RECORD FILE messages, oldest first (``call="c1"``, ``ended="dtmf"``...)."""
        return [VoiceMessage.from_record(r) for r in self.recorder.all("recorded", **match)]

    def idle(self) -> bool:
        """No live channel, no AGI session, and every scripted call and phone dial has started."""
        with self.pbx.lock:
            return not (self.pbx.registry.live or self.pbx.agi_sessions or self.pbx.pending_scripts)

    def _names(self, label: str) -> list[str]:
        names = self.pbx.resolve(label)
        return names or [label]

    def _live(self, label: str) -> list[Channel]:
        names = set(self._names(label)) | set(self.pbx.resolve(f"customer of {label}"))
        return [c for c in self.pbx.registry.live.values() if c.name in names]
