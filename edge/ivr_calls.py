"""Inbound calls in an IVR flow (INB-11): the core's side of ``edge.ivr.engine.IvrSession``.

The session decides; this module turns its actions into commands on the call's FastAGI session
(``Play``, ``Collect``, ``Say``), questions to the store (``Lookup`` -> ``LookupDone``), recording
mutes around sensitive steps, and — when the flow ends — the call's next stage: a queue (the ACD
places it), the operator queue ("0 for an agent"), voicemail, or a hang-up. The CDR's ``ivr``
column keeps the session's trace, with a sensitive step's digits masked.
"""
from __future__ import annotations

import logging
from typing import Callable

from edge.call_recording import CallRecording
from edge.calls import Call, Phase
from edge.commands import Collect, Hangup, Lookup, Play, Say
from edge.events import CommandDone, LookupDone
from edge.hours import OPEN
from edge.ivr import engine
from edge.ivr.engine import IvrSession
from edge.ivr.model import Flow
from edge.speech import SpeechError, spoken
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)

VOICEMAIL_PROMPT = "cc/overflow-voicemail"


class IvrCalls:
    def __init__(self, sb: Switchboard, recording: CallRecording,
                 place: Callable[[Call], None], voicemail: Callable[[Call, str], None]) -> None:
        self.sb = sb
        self.recording = recording
        self._place = place
        self._voicemail = voicemail
        self.sessions: dict[str, IvrSession] = {}
        sb.on_call_closed.append(self._closed)

    def flow_for(self, did: str) -> Flow | None:
        routing = self.sb.config.routing
        name = routing.did_flows.get(did) or routing.default_flow
        return self.sb.config.flows.get(name) if name else None

    def start(self, call: Call, flow: Flow) -> None:
        session = IvrSession(flow, call.call_id, call.number or call.caller,
                             period_of=lambda: call.period or OPEN)
        self.sessions[call.call_id] = session
        call.phase = Phase.IVR
        self.sb.notify("call.ivr", call_id=call.call_id, flow=flow.id, version=flow.version)
        self._run(call, session, session.start())

    # --- answers from the driver and the store -----------------------------------------------

    def command_done(self, call: Call, event: CommandDone) -> None:
        session = self.sessions.get(call.call_id)
        if session is None or session.finished:
            return
        if event.command == "Collect":
            self._run(call, session, session.on_collected(event.digits, event.timed_out))
        elif event.command in ("Play", "Say"):
            self._run(call, session, session.on_played())

    def lookup_done(self, event: LookupDone) -> None:
        call = self.sb.calls.get(event.call_id)
        session = self.sessions.get(event.call_id)
        if call is None or session is None or session.finished or call.phase is not Phase.IVR:
            return
        values = dict(event.values)
        if "amount_due" in values:  # the store's column; the flow language says due_amount
            values.setdefault("due_amount", values["amount_due"])
        self._run(call, session, session.on_lookup(event.found, values))

    # --- carrying out actions ----------------------------------------------------------------

    def _run(self, call: Call, session: IvrSession, actions: list[engine.Action]) -> None:
        sb, call_id = self.sb, call.call_id
        while actions:
            action, actions = actions[0], actions[1:]
            if isinstance(action, engine.PlayPrompt):
                sb.emit(Play(call_id, action.prompt))
            elif isinstance(action, engine.CollectDigits):
                sb.emit(Collect(call_id, action.prompt, action.max_digits, action.timeout_ms))
            elif isinstance(action, engine.SayValue):
                try:
                    sb.emit(Say(call_id, spoken(action.kind, action.value)))
                except SpeechError as exc:  # bad data in the cache must not strand the caller
                    log.error("call %s: cannot read back %s: %s", call_id, action.kind, exc)
                    actions = session.on_played()
            elif isinstance(action, engine.Lookup):
                sb.emit(Lookup(call_id, action.kind, action.key, action.field))
            elif isinstance(action, engine.PauseRecording):
                self.recording.mute(call, True)
            elif isinstance(action, engine.ResumeRecording):
                self.recording.mute(call, False)
            elif isinstance(action, engine.Terminal):
                self._leave(call, session, action)
                return

    def _leave(self, call: Call, session: IvrSession, action: engine.Terminal) -> None:
        sb = self.sb
        call.ivr_trace = " > ".join(session.trace)
        if call.recording_muted:
            self.recording.mute(call, False)
        if isinstance(action, (engine.ToQueue, engine.ToOperator)):
            queue = action.queue if action.queue in sb.groups else sb.config.routing.default_group
            call.phase, call.group = Phase.ROUTING, queue
            call.group_rule = "ivr_operator" if isinstance(action, engine.ToOperator) else "ivr"
            self._place(call)
        elif isinstance(action, engine.ToVoicemail):
            self._voicemail(call, action.box)
        else:
            call.disposition = "self_service"
            sb.emit(Hangup(call.call_id, reason="ivr finished"))
            sb.close(call, "system")

    def _closed(self, call: Call, record: dict) -> None:
        session = self.sessions.pop(call.call_id, None)
        if session is not None and not session.finished:
            session.abandon()
