"""``AsteriskDriver``: Asterisk's wire (AMI + FastAGI) <-> the core's events and commands.

The contract is the table in ``docs/architecture.md``. In short:

* FastAGI ``incoming`` -> ``CallOffered``; ``dial`` -> ``ExtensionDialled``. The call's worker
  thread then runs the per-call commands the core sends (``execute``), posting ``CommandDone``,
  and exactly one ``CallHungUp`` when the channel goes away (``calls.py``).
* AMI ``DialEnd`` with ``DialStatus: ANSWER`` for a live call -> ``AgentAnswered``; link loss and
  recovery -> ``LinkChanged("ami", up)``; after a re-login, ``CoreShowChannels`` ->
  ``ChannelsSnapshot`` so the core can close calls that vanished while the link was down.
* ``ForceHangup`` -> AMI ``Hangup`` of ``/^<prefix>-.*$/``; ``StartRecording`` /
  ``StopRecording`` / ``MuteRecording`` -> AMI ``MixMonitor`` / ``StopMixMonitor`` /
  ``MixMonitorMute`` (a refused MixMonitor -> ``RecordingFailed``). All on a small AMI worker
  pool: ``execute`` is called on the core's thread and must never block on the network.

``post_event`` is called from driver threads (FastAGI workers, the AMI dispatcher, the AMI
command pool); the runtime's ``queue.Queue.put`` is thread-safe, which is all this needs.
"""
from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable

from drivers.asterisk.ami import AmiClient
from drivers.asterisk.calls import CallSession
from drivers.asterisk.codec import AmiMessage
from drivers.asterisk.errors import AmiError
from drivers.asterisk.fastagi import FastAgiRequest, FastAgiServer, FastAgiSettings
from drivers.asterisk.profiles import ASTERISK_22, AsteriskProfile
from drivers.asterisk.session import AmiSettings
from drivers.asterisk.transport import BackoffPolicy
from edge.commands import (
    CallCommand, Command, ConsultTransfer, ForceHangup, MuteRecording, Notify, OriginateCallback,
    RedirectCall, StartRecording, StopRecording, WriteCdr,
)
from edge.events import (
    AgentAnswered, CallbackAnswered, CallbackFailed, CallOffered, ChannelsSnapshot, Event,
    ExtensionDialled, LinkChanged, RecordingFailed, CallTransferred, TransferFailed,
    AttendedTransferred, HoldChanged, RecordingToggle,
)

log = logging.getLogger(__name__)

TRUNK_CHANNEL = re.compile(r"^DAHDI/(?P<n>\d+)-\d+$")
PHONE_CHANNEL = re.compile(r"^PJSIP/(?P<ext>[^/\-]+)-[0-9A-Fa-f]+$")
UNKNOWN_VALUES = frozenset({"", "unknown", "<unknown>"})


class AsteriskDriver:
    """Owns the FastAGI server, the AMI client and the live calls of one Asterisk."""

    def __init__(
        self,
        post_event: Callable[[Event], None],
        ami: AmiSettings | None,
        fastagi: FastAgiSettings,
        time_scale: float = 1.0,
        *,
        profile: AsteriskProfile = ASTERISK_22,
        sleep: Callable[[float], None] | None = None,
        idle_poll_s: float = 1.0,
    ) -> None:
        """``ami=None`` runs FastAGI only (no AgentAnswered, no ForceHangup). ``time_scale``
        speeds the AMI keepalive and reconnect back-off (HIL runs at 0.01); ``sleep`` replaces
        the back-off wait in tests."""
        self._post = post_event
        self.profile = profile
        self._idle_poll_s = idle_poll_s
        self._calls: dict[str, CallSession] = {}
        self._lock = threading.Lock()
        self._link_was_down = False
        self.fastagi = FastAgiServer(fastagi, {"incoming": self._incoming, "dial": self._dial,
                                               "callback": self._callback,
                                               "transfer": self._transfer,
                                               "record-toggle": self._record_toggle})
        self.ami: AmiClient | None = None
        if ami is not None:
            self.ami = AmiClient(ami.scaled(time_scale), on_link=self._on_link, sleep=sleep, profile=profile)
            self.ami.subscribe("DialEnd", self._on_dial_end)
            self.ami.subscribe("AttendedTransfer", self._on_attended_transfer)
            self.ami.subscribe("Hold", self._on_hold)
            self.ami.subscribe("Unhold", self._on_hold)
        self._ami_pool = ThreadPoolExecutor(2, thread_name_prefix="ami-command")

    @classmethod
    def from_config(cls, post_event: Callable[[Event], None], config: Any,
                    time_scale: float = 1.0) -> "AsteriskDriver":
        """Build from ``EdgeConfig`` (``edge/config.py``): its ``[asterisk]`` table gives
        ``ami_host``, ``ami_port``, ``ami_user``, ``ami_secret``, ``fastagi_host``,
        ``fastagi_port`` and ``fastagi_workers``; the other timers keep their defaults."""
        section = config.asterisk
        ami = AmiSettings(host=section.ami_host, port=section.ami_port, username=section.ami_user,
                          secret=section.ami_secret, backoff=BackoffPolicy(jitter=0.1))
        fastagi = FastAgiSettings(host=section.fastagi_host, port=section.fastagi_port,
                                  max_workers=section.fastagi_workers)
        return cls(post_event, ami, fastagi, time_scale)

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def fastagi_address(self) -> tuple[str, int]:
        return self.fastagi.address

    def start(self) -> None:
        """Listen for FastAGI; connect AMI in the background (retrying with back-off)."""
        self.fastagi.start()
        if self.ami is not None:
            self.ami.start()

    def stop(self) -> None:
        """End every live call's session (each posts its CallHungUp), close AMI and FastAGI."""
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            call.stop()
        self.fastagi.stop()
        if self.ami is not None:
            self.ami.close()
        self._ami_pool.shutdown(wait=True, cancel_futures=True)

    def live_calls(self) -> list[str]:
        with self._lock:
            return list(self._calls)

    # --- commands from the core ------------------------------------------------------------------

    def execute(self, commands: Iterable[Command]) -> None:
        """Hand commands over without blocking: per-call ones to their call's worker, AMI ones
        to the AMI pool. WriteCdr and Notify belong to the runtime and are ignored here."""
        for command in commands:
            if isinstance(command, CallCommand):
                self._to_call(command)
            elif isinstance(command, ForceHangup):
                self._ami_pool.submit(self._force_hangup, command.channel_prefix)
            elif isinstance(command, ConsultTransfer):
                self._ami_pool.submit(self._consult, command)
            elif isinstance(command, RedirectCall):
                self._ami_pool.submit(self._redirect, command)
            elif isinstance(command, OriginateCallback):
                self._ami_pool.submit(self._originate_callback, command)
            elif isinstance(command, (StartRecording, StopRecording, MuteRecording)):
                self._ami_pool.submit(self._recording, command)
            elif isinstance(command, (WriteCdr, Notify)):
                continue
            else:
                log.warning("AsteriskDriver cannot execute %r; ignored", command)

    def _to_call(self, command: CallCommand) -> None:
        with self._lock:
            call = self._calls.get(command.call_id)
        if call is None:
            log.info("%s for call %s, which has no FastAGI session (ended?); dropped",
                     type(command).__name__, command.call_id)
            return
        call.enqueue(command)

    def _force_hangup(self, prefix: str) -> None:
        if self.ami is None:
            log.error("ForceHangup %s: AMI is not configured", prefix)
            return
        pattern = f"/^{prefix.rstrip('-')}-.*$/"
        try:
            hung = self.ami.hangup(pattern)
            log.info("ForceHangup %s: hung up %s", pattern, ", ".join(hung) or "nothing")
        except AmiError as exc:
            log.error("ForceHangup %s failed: %s", pattern, exc)

    def _recording(self, command: StartRecording | StopRecording | MuteRecording) -> None:
        if self.ami is None:
            log.error("%s for call %s: AMI is not configured", type(command).__name__,
                      command.call_id)
            return
        try:
            if isinstance(command, StartRecording):
                self.ami.mix_monitor(command.channel, command.file, command.options)
            elif isinstance(command, StopRecording):
                self.ami.stop_mix_monitor(command.channel)
            else:
                self.ami.mix_monitor_mute(command.channel, command.muted)
        except AmiError as exc:
            log.error("%s on %s failed: %s", type(command).__name__, command.channel, exc)
            if isinstance(command, StartRecording):
                self._post(RecordingFailed(command.call_id, command.file, str(exc)))

    def _consult(self, command: ConsultTransfer) -> None:
        """Attended transfer: AMI ``Atxfer`` on the agent's channel (see docs/asterisk.md for the
        ``atxfer`` feature code it needs)."""
        if self.ami is None:
            self._post(AttendedTransferred(command.call_id, command.exten, False, "no AMI"))
            return
        try:
            self.ami.atxfer(command.agent_channel, command.exten, command.context)
        except AmiError as exc:
            log.error("Atxfer on %s failed: %s", command.agent_channel, exc)
            self._post(AttendedTransferred(command.call_id, command.exten, False, str(exc)))

    def _redirect(self, command: RedirectCall) -> None:
        """Blind transfer: the caller's channel leaves its bridge for context ``transfer``."""
        if self.ami is None:
            self._post(TransferFailed(command.call_id, "AMI is not configured"))
            return
        try:
            self.ami.redirect(command.channel, command.context, command.exten)
        except AmiError as exc:
            log.error("Redirect of %s failed: %s", command.channel, exc)
            self._post(TransferFailed(command.call_id, str(exc)))

    def _originate_callback(self, command: OriginateCallback) -> None:
        """Ring the agent; on answer Asterisk runs context ``callback`` (FastAGI ``callback``
        with the number), see docs/asterisk.md. A phone that does not answer -> CallbackFailed."""
        failed = lambda outcome: self._post(  # noqa: E731
            CallbackFailed(command.task_key, command.extension, outcome))
        if self.ami is None:
            failed("no_ami")
            return
        try:
            future = self.ami.originate_nowait(
                command.dial_string, context="callback", exten=command.number, priority=1,
                timeout_ms=command.timeout_s * 1000, caller_id=command.caller_id)
        except AmiError as exc:
            log.error("callback %s: Originate refused: %s", command.task_key, exc)
            failed("refused")
            return

        def outcome(done: "Future") -> None:
            try:
                result = done.result()
            except Exception as exc:  # the link died before OriginateResponse
                log.error("callback %s: no Originate outcome: %s", command.task_key, exc)
                failed("unknown")
                return
            if not result.success:
                failed(result.outcome)

        future.add_done_callback(outcome)

    def live_uniqueids(self) -> set[str] | None:
        """Uniqueids of every channel Asterisk has now; None when AMI cannot say (down)."""
        if self.ami is None or not self.ami.connected:
            return None
        try:
            return {info.uniqueid for info in self.ami.core_show_channels()}
        except AmiError as exc:
            log.warning("CoreShowChannels failed: %s", exc)
            return None

    # --- FastAGI scripts -------------------------------------------------------------------------

    def _incoming(self, request: FastAgiRequest) -> None:
        env = request.env
        did = request.args[0] if request.args else _known(env.get("agi_dnid"))
        event = CallOffered(
            call_id=request.uniqueid,
            channel=request.channel,
            caller=_known(env.get("agi_callerid")),
            caller_name=_known(env.get("agi_calleridname")),
            did=did,
            trunk=trunk_number(request.channel),
        )
        self._run_call(request, event)

    def _dial(self, request: FastAgiRequest) -> None:
        env = request.env
        digits = request.args[0] if request.args else _known(env.get("agi_extension"))
        event = ExtensionDialled(
            call_id=request.uniqueid,
            channel=request.channel,
            extension=phone_extension(request.channel) or _known(env.get("agi_callerid")),
            digits=digits,
        )
        self._run_call(request, event)

    def _callback(self, request: FastAgiRequest) -> None:
        """The agent answered a callback's Originate; arg1 is the customer's number."""
        number = request.args[0] if request.args else _known(request.env.get("agi_extension"))
        event = CallbackAnswered(call_id=request.uniqueid, channel=request.channel,
                                 extension=phone_extension(request.channel), number=number)
        self._run_call(request, event)

    def _record_toggle(self, request: FastAgiRequest) -> None:
        """``*3`` on a bridged desk phone (features.conf applicationmap ``edge-record``): toggle
        the recording of that agent's call. Nothing runs on this session: returning closes it
        and Asterisk puts the phone back in its call."""
        extension = phone_extension(request.channel)
        if extension:
            self._post(RecordingToggle("", None, extension))
        else:
            log.warning("record-toggle from %s, which is not a desk phone; ignored", request.channel)

    def _transfer(self, request: FastAgiRequest) -> None:
        """A redirected caller is back (context ``transfer``): arg1 is the target."""
        target = request.args[0] if request.args else _known(request.env.get("agi_extension"))
        event = CallTransferred(call_id=request.uniqueid, channel=request.channel, target=target)
        self._run_call(request, event, replaces=True)

    def _run_call(self, request: FastAgiRequest, offer: Event, replaces: bool = False) -> None:
        """Register the call before the core hears of it, so its first command finds the session."""
        call = CallSession(request, self._post, self._idle_poll_s)
        with self._lock:
            if call.call_id in self._calls and not replaces:
                log.error("call %s: a second FastAGI session for the same Uniqueid replaces the first",
                          call.call_id)
            self._calls[call.call_id] = call
        try:
            self._post(offer)
            call.run()
        finally:
            with self._lock:
                if self._calls.get(call.call_id) is call:
                    del self._calls[call.call_id]

    # --- AMI -------------------------------------------------------------------------------------

    def _on_dial_end(self, event: AmiMessage) -> None:
        if (event.get("DialStatus") or "") != "ANSWER":
            return
        call_id = event.get("Uniqueid")  # the calling channel; Originate's DialEnd has none
        dest = event.get("DestChannel") or ""
        extension = phone_extension(dest)
        if not call_id or not (extension or trunk_number(dest) is not None):
            return  # a trunk destination is a roaming agent's mobile: still an answer
        with self._lock:
            live = call_id in self._calls
        if not live:
            log.debug("DialEnd ANSWER for %s, which is not a live FastAGI call; ignored", call_id)
            return
        self._post(AgentAnswered(call_id=call_id, extension=extension, peer_channel=dest,
                                 peer_uniqueid=event.get("DestUniqueid") or ""))

    def _on_attended_transfer(self, event: AmiMessage) -> None:
        """The caller (Transferee) now talks to TransferTarget; ``Result: Fail`` when the
        caller left while the target still rang (main/stasis_bridges.c)."""
        call_id = event.get("TransfereeUniqueid") or ""
        with self._lock:
            live = call_id in self._calls
        if not live:
            return
        target = phone_extension(event.get("TransferTargetChannel") or "")
        success = (event.get("Result") or "") == "Success"
        self._post(AttendedTransferred(call_id, target, success, event.get("Result") or ""))

    def _on_hold(self, event: AmiMessage) -> None:
        extension = phone_extension(event.get("Channel") or "")
        if extension:
            self._post(HoldChanged(extension, event.name.lower() == "hold"))

    def _on_link(self, up: bool, detail: str) -> None:
        """Runs on the AMI dispatcher thread, so the snapshot may block on the reader."""
        self._post(LinkChanged("ami", up, detail))
        if not up:
            self._link_was_down = True
            return
        if self._link_was_down and self.ami is not None:
            try:
                channels = self.ami.core_show_channels()
            except AmiError as exc:  # tried again after the next re-login
                log.warning("CoreShowChannels after AMI re-login failed: %s", exc)
                return
            self._link_was_down = False
            self._post(ChannelsSnapshot(tuple(info.channel for info in channels)))


# --- parsing channel names ----------------------------------------------------------------------

def trunk_number(channel: str) -> int | None:
    """``DAHDI/3-1`` -> 3; anything else -> None."""
    match = TRUNK_CHANNEL.match(channel)
    return int(match["n"]) if match else None


def phone_extension(channel: str) -> str:
    """``PJSIP/8001-0000000a`` -> ``8001``; anything else -> ``""``."""
    match = PHONE_CHANNEL.match(channel)
    return match["ext"] if match else ""


def _known(value: str | None) -> str:
    """Asterisk writes ``unknown`` for an absent caller ID or DNID; the core wants ``""``."""
    return "" if (value or "").strip() in UNKNOWN_VALUES else (value or "")

