"""Which calls are recorded, and when (REC-1): the core's half of recording.

The policy belongs to the extension: an agent's ``record_inbound``/``record_outbound`` or the
``[recording]`` default — ``always`` (recording starts when the agent answers an inbound call, or
as an outbound dial starts; MixMonitor's ``b`` option keeps the ringing out), ``never``, or
``on_demand`` (the agent switches it with ``RecordingToggle``, from the phone or the API). Every
start makes a new leg and a new WAV ``<call_id>-<leg>.wav``; when the call closes, each leg becomes
an ``EncodeRecording`` with the CDR's facts, and ``edge.recordings`` turns it into a checked MP3.

A sensitive IVR step mutes the running recording (``MuteRecording``) and unmutes it after.
"""
from __future__ import annotations

import logging
from typing import Any

from edge.agents import Agent
from edge.calls import Call
from edge.commands import EncodeRecording, MuteRecording, StartRecording, StopRecording
from edge.events import RecordingFailed, RecordingToggle
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)


class CallRecording:
    def __init__(self, sb: Switchboard) -> None:
        self.sb = sb
        sb.on_call_closed.append(self.call_closed)

    def policy(self, agent: Agent, direction: str) -> str:
        return self.sb.config.recording.policy(agent.config, direction)

    def answered(self, call: Call, agent: Agent, direction: str) -> None:
        """An agent took the call: record it if their policy says ``always``."""
        if self.policy(agent, direction) == "always" and not call.recording_file:
            self.start(call, agent)

    def answered_by_edge(self, call: Call) -> None:
        """``from_answer``: an inbound call is recorded from the trunk's answer (the IVR too, with
        its sensitive steps muted), not only once bridged; the agent is known at close."""
        section = self.sb.config.recording
        if section.enabled and section.from_answer and section.inbound == "always":
            self.start(call, None, options="")

    def start(self, call: Call, agent: Agent | None, options: str = "b") -> None:
        leg = len(call.recordings) + 1
        file = f"{call.call_id}-{leg}.wav"
        agent_id = agent.id if agent else ""
        call.recording_file = file
        call.recordings.append((leg, file, agent_id))
        self.sb.emit(StartRecording(call.call_id, call.channel, file, leg, agent_id, options))
        self.sb.notify("recording.started", call_id=call.call_id, leg=leg, file=file,
                       agent_id=agent_id)

    def stop(self, call: Call) -> None:
        if not call.recording_file:
            return
        self.sb.emit(StopRecording(call.call_id, call.channel, call.recording_file))
        self.sb.notify("recording.stopped", call_id=call.call_id, file=call.recording_file)
        call.recording_file, call.recording_muted = "", False

    def mute(self, call: Call, muted: bool) -> None:
        """Sensitive digits must never reach a recording; a call not recorded needs nothing."""
        if call.recording_file and call.recording_muted != muted:
            call.recording_muted = muted
            self.sb.emit(MuteRecording(call.call_id, call.channel, muted))

    # --- events -------------------------------------------------------------------------------

    def toggle(self, event: RecordingToggle) -> None:
        sb = self.sb
        agent = sb.board.agents.get(event.agent_id) or sb.board.by_extension.get(event.extension)
        call = sb.calls.get(agent.call_id or "") if agent is not None else None
        if agent is None or call is None or call.answered_at is None:
            self._refuse(event.agent_id or event.extension, "no answered call")
            return
        if self.policy(agent, call.direction) == "never":
            self._refuse(agent.id, "recording is off for this extension")
            return
        want = (not call.recording_file) if event.on is None else event.on
        if want and not call.recording_file:
            self.start(call, agent)
        elif not want and call.recording_file:
            self.stop(call)

    def _refuse(self, agent_id: str, reason: str) -> None:
        log.info("recording toggle by %s refused: %s", agent_id, reason)
        self.sb.notify("recording.refused", agent_id=agent_id, reason=reason)

    def failed(self, event: RecordingFailed) -> None:
        """Asterisk could not start MixMonitor: that leg has no WAV and is not encoded."""
        call = self.sb.calls.get(event.call_id)
        if call is not None:
            call.recordings = [r for r in call.recordings if r[1] != event.file]
            if call.recording_file == event.file:
                call.recording_file = ""
        self.sb.notify("recording.failed", call_id=event.call_id, file=event.file,
                       reason=event.reason)

    def call_closed(self, call: Call, record: dict[str, Any]) -> None:
        """Hang-up ends MixMonitor in Asterisk; each leg goes to the encoder with the CDR's facts."""
        call.recording_file = ""
        names = {a.id: a.config.name for a in self.sb.board}
        for leg, file, agent_id in call.recordings:
            meta = {key: record.get(key) for key in (
                "direction", "caller", "callee", "started_at", "answered_at", "ended_at",
                "talk_s", "disposition", "extension")}
            meta.update(agent_id=agent_id or record.get("agent_id") or "",
                        agent_name=names.get(agent_id or record.get("agent_id") or "", ""),
                        channel=call.channel)
            self.sb.emit(EncodeRecording(call.call_id, file, leg, meta))
