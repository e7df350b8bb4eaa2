"""Calls a desk phone makes (FastAGI ``dial``): outside numbers, other extensions and ``##codes``.

* an outside number -> ``DialOut("DAHDI/g0/<number>")``: the default trunk group, lowest free
  channel first (OUT-1);
* a configured extension -> ``DialOut`` of that agent's dial string (TEL-1);
* ``##codes`` -> ``edge.codes`` decides, this module runs it: ChanSpy, PickupChan, a trunk-picked
  dial, an AMI force hang-up, or an agent state toggle confirmed by a prompt. A refused code plays
  a refusal prompt, hangs up, notifies ``code.refused`` with the reason and writes a CDR.

While their phone is in use the dialling agent counts as talking, so the ACD does not ring them;
afterwards they return to what they chose before (idle, 示忙, away), without wrap-up.
"""
from __future__ import annotations

import logging

from edge.agents import Activity, Agent, Presence
from edge.call_recording import CallRecording
from edge.calls import CODE, INTERNAL, OUTBOUND, Call, Phase
from edge.codes import SPY_OPTIONS, CodeAction, CodeBook, CodeRefusal
from edge.commands import DialOut, ForceHangup, Hangup, PickupCall, Play, Spy
from edge.events import AgentAnswered, CommandDone, ExtensionDialled
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)

PROMPT_REFUSED = "cc/code-refused"
PROMPT_DONE = "cc/code-done"
TOGGLE_PROMPTS = {
    "busy": "cc/agent-busy", "idle": "cc/agent-free", "away": "cc/agent-away",
    "logged_out": "cc/agent-logged-out", "logged_in": "cc/agent-logged-in",
}
# Q.850 causes for a Dial that did not connect, so reports can tell busy from unanswered.
DIAL_FAILURE_CAUSES = {"BUSY": (17, "User busy"), "NOANSWER": (19, "No answer"),
                       "CONGESTION": (34, "No circuit available"),
                       "CHANUNAVAIL": (20, "Subscriber absent")}


class DeskFlow:
    def __init__(self, sb: Switchboard, recording: CallRecording) -> None:
        self.sb = sb
        self.recording = recording
        self.codes = CodeBook(sb.config.codes, (t.channel for t in sb.config.trunks))

    def dialled(self, event: ExtensionDialled) -> None:
        sb = self.sb
        if event.call_id in sb.calls:
            log.warning("ExtensionDialled for live call %s ignored", event.call_id)
            return
        digits = event.digits.strip().rstrip("#")
        agent = sb.board.by_extension.get(event.extension)
        call = Call(event.call_id, event.channel, OUTBOUND, event.extension, digits,
                    sb.clock.now(), seq=sb.next_seq(), agent_id=agent.id if agent else "",
                    extension=event.extension)
        sb.calls[call.call_id] = call
        if digits.startswith("##"):
            self._code(call, digits, agent)
        elif digits in sb.board.by_extension:
            self._internal(call, agent, sb.board.by_extension[digits])
        elif digits.isdigit():
            self._dial(call, agent, f"DAHDI/g0/{digits}")
        else:
            call.direction = CODE
            self._refuse(call, digits, "not a number or code")

    # --- plain calls --------------------------------------------------------------------------

    def _internal(self, call: Call, agent: Agent | None, target: Agent) -> None:
        call.direction, call.target_extension = INTERNAL, target.extension
        self._dial(call, agent, target.config.dial_string)

    def _dial(self, call: Call, agent: Agent | None, dial_string: str) -> None:
        call.phase, call.action = Phase.DESK, "DialOut"
        self._hold(agent, call)
        if agent is not None and call.direction == OUTBOUND:
            # MixMonitor's "b" option writes nothing until the far end is bridged in
            self.recording.answered(call, agent, OUTBOUND)
        self.sb.emit(DialOut(call.call_id, dial_string))

    def _hold(self, agent: Agent | None, call: Call) -> None:
        """The dialling agent's phone is in use; a ringing or talking agent is left alone."""
        if agent is not None and agent.activity in (None, Activity.WRAP_UP):
            self.sb.occupy(agent, call, Activity.TALKING)

    def answered(self, call: Call, event: AgentAnswered) -> None:
        sb = self.sb
        if call.answered_at is None:
            call.answered_at = sb.clock.now()
        callee = sb.board.by_extension.get(call.target_extension)
        if call.direction == INTERNAL and callee is not None and callee.activity is None:
            sb.occupy(callee, call, Activity.TALKING)

    def action_done(self, call: Call, event: CommandDone) -> None:
        sb = self.sb
        if call.phase is not Phase.DESK or event.command != call.action:
            return
        if event.command == "DialOut":
            if event.status == "CANCEL":
                return  # the desk phone hung up; CallHungUp follows
            if event.status == "ANSWER":
                if call.answered_at is None:
                    call.answered_at = sb.clock.now() - event.talk_s
                call.reported_talk_s = event.talk_s or None
                sb.emit(Hangup(call.call_id, reason="far end hung up"))
                sb.close(call, "agent" if call.direction == INTERNAL else "caller")
                return
            call.disposition = "failed"
            sb.emit(Hangup(call.call_id, reason=f"dial {event.status or 'failed'}"))
            sb.close(call, "system", *DIAL_FAILURE_CAUSES.get(event.status, (16, event.status)))
            return
        if not event.ok:  # ChanSpy or PickupChan found nothing to act on
            call.disposition = "failed"
        sb.emit(Hangup(call.call_id, reason=f"{event.command} finished"))
        sb.close(call, "agent")

    # --- ##codes ------------------------------------------------------------------------------

    def _code(self, call: Call, digits: str, agent: Agent | None) -> None:
        call.direction, call.code, call.rule = CODE, digits, "code"
        outcome = self.codes.interpret(digits, agent.config if agent else None)
        if isinstance(outcome, CodeRefusal):
            self._refuse(call, digits, outcome.reason)
            return
        if outcome.action in ("toggle_busy", "toggle_away") and agent.presence is Presence.LOGGED_OUT:
            self._refuse(call, digits, "log in first (##8)")
            return
        self.sb.notify("code.used", call_id=call.call_id, extension=call.extension,
                       agent_id=call.agent_id, code=digits, action=outcome.action,
                       target=outcome.extension or outcome.number)
        if outcome.action in SPY_OPTIONS:
            self._spy(call, agent, outcome)
        elif outcome.action == "force_hangup":
            self._force_hangup(call, outcome)
        elif outcome.action == "pickup":
            self._pickup(call, agent, outcome)
        elif outcome.action == "trunk_dial":
            call.direction, call.callee, call.trunk = OUTBOUND, outcome.number, outcome.channel
            self._dial(call, agent, f"DAHDI/{outcome.channel}/{outcome.number}")
        else:
            self._toggle(call, agent, outcome.action)

    def _refuse(self, call: Call, digits: str, reason: str) -> None:
        log.info("code %r from extension %s refused: %s", digits, call.extension, reason)
        call.disposition = "rejected"
        self.sb.emit(Play(call.call_id, PROMPT_REFUSED), Hangup(call.call_id, reason=reason))
        self.sb.notify("code.refused", call_id=call.call_id, extension=call.extension,
                       agent_id=call.agent_id, code=digits, reason=reason)
        self.sb.close(call, "system")

    def _spy(self, call: Call, agent: Agent | None, outcome: CodeAction) -> None:
        call.phase, call.action, call.callee = Phase.DESK, "Spy", outcome.extension
        self._hold(agent, call)
        self.sb.emit(Spy(call.call_id, f"PJSIP/{outcome.extension}-", SPY_OPTIONS[outcome.action]))

    def _force_hangup(self, call: Call, outcome: CodeAction) -> None:
        call.callee = outcome.extension
        self.sb.emit(ForceHangup(f"PJSIP/{outcome.extension}-"), Play(call.call_id, PROMPT_DONE),
                     Hangup(call.call_id, reason="force hang-up done"))
        self.sb.close(call, "system")

    def _pickup(self, call: Call, agent: Agent | None, outcome: CodeAction) -> None:
        call.phase, call.action = Phase.DESK, "PickupCall"
        call.callee = call.target_extension = outcome.extension
        if agent is not None:
            self.sb.pickups[outcome.extension] = agent.id
        self._hold(agent, call)
        self.sb.emit(PickupCall(call.call_id, f"PJSIP/{outcome.extension}"))

    def _toggle(self, call: Call, agent: Agent | None, action: str) -> None:
        sb, board = self.sb, self.sb.board
        assert agent is not None  # CodeBook refuses codes from extensions without an agent
        if action == "toggle_login":
            change = board.login(agent) if agent.presence is Presence.LOGGED_OUT else board.logout(agent)
            result = "logged_in" if agent.presence is not Presence.LOGGED_OUT else "logged_out"
        elif action == "toggle_busy":
            change = board.set_busy(agent, agent.presence is not Presence.BUSY)
            result = "busy" if agent.presence is Presence.BUSY else "idle"
        else:
            change = board.set_away(agent, agent.presence is not Presence.AWAY)
            result = "away" if agent.presence is Presence.AWAY else "idle"
        sb.emit(Play(call.call_id, TOGGLE_PROMPTS[result]), Hangup(call.call_id, reason=action))
        sb.close(call, "agent")
        sb.agent_changed(change)
