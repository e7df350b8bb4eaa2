"""Blind transfer of an inbound call (TEL-2): to an extension, a queue or an outside number.

The agent asks (``TransferRequest``, from the API); the edge sends the caller's channel out of
its bridge with AMI ``Redirect`` to context ``transfer`` (``RedirectCall``). Asterisk then ends
the caller's FastAGI session as if it hung up — the agent's phone drops and they wrap up — and
starts FastAGI ``transfer`` on the same channel (``CallTransferred``), where the call goes on
under the same ``call_id``: it rings the target agent, joins the target queue, or dials out.

The CDR stays one record per call and follows it: ``legs`` lists every agent who had it (with
when they answered and handed it on), ``agent_id`` is the last one, ``talk_s`` adds the agents'
talk times. Call data (customer, notes) given with the request travels in ``call.data`` and is
shown to the next agent in ``call.ringing``.

An extension that is busy forwards to the agent's ``forward_busy`` (遇忙转接) or, without one,
joins the agent's first group's queue; a ``forward_no_answer`` works the same when it rings out.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge.agents import Activity
from edge.calls import INBOUND, Call, Phase
from edge.commands import ConsultTransfer, DialOut, Hangup, RedirectCall
from edge.events import (AttendedTransferred, CallTransferred, CommandDone, HoldChanged,
                         TransferFailed, TransferRequest)
from edge.switchboard import Switchboard

if TYPE_CHECKING:
    from edge.inbound import InboundFlow

log = logging.getLogger(__name__)

TRANSFER_CONTEXT = "transfer"
TRANSFER_WAIT_S = 15.0  # virtual seconds for the redirected channel to come back over FastAGI
QUEUE_PREFIX = "queue:"


class Transfers:
    def __init__(self, sb: Switchboard, inbound: "InboundFlow") -> None:
        self.sb = sb
        self.inbound = inbound
        self.consults = Consults(sb)

    # --- the agent asks -----------------------------------------------------------------------

    def request(self, event: TransferRequest) -> None:
        if self.consults.request(event):
            return
        sb = self.sb
        agent = sb.board.agents.get(event.agent_id)
        call = sb.calls.get(agent.call_id or "") if agent is not None else None
        if agent is None or call is None or call.direction != INBOUND \
                or call.phase is not Phase.TALKING or call.agent_id != agent.id:
            self._refuse(event, "no answered inbound call to transfer")
            return
        problem = self._check_target(event.target, agent.extension)
        if problem:
            self._refuse(event, problem)
            return
        now = sb.clock.now()
        call.transfer_to, call.phase = event.target, Phase.TRANSFERRING
        call.data.update(event.data)
        call.legs.append({"kind": "agent", "agent_id": agent.id, "extension": agent.extension,
                          "answered_at": call.leg_answered_at, "ended_at": now,
                          "transfer": "blind", "to": event.target})
        sb.timers.set(("transfer_wait", call.call_id), now + TRANSFER_WAIT_S)
        sb.emit(RedirectCall(call.call_id, call.channel, TRANSFER_CONTEXT, _exten(event.target)))
        sb.notify("call.transferring", call_id=call.call_id, agent_id=agent.id,
                  target=event.target, data=dict(call.data))

    def _check_target(self, target: str, own_extension: str) -> str:
        if target.startswith(QUEUE_PREFIX):
            group = target[len(QUEUE_PREFIX):]
            return "" if group in self.sb.groups else f"unknown queue {group!r}"
        if not target.isdigit():
            return f"not an extension, queue:<group> or number: {target!r}"
        if target == own_extension:
            return "cannot transfer a call to yourself"
        return ""

    def _refuse(self, event: TransferRequest, reason: str) -> None:
        log.info("transfer by %s to %s refused: %s", event.agent_id, event.target, reason)
        self.sb.notify("transfer.refused", agent_id=event.agent_id, target=event.target,
                       reason=reason)

    # --- Asterisk's side ----------------------------------------------------------------------

    def dial_returned(self, call: Call, event: CommandDone) -> None:
        """The redirect ended the first agent's Dial: keep their talk time for the CDR."""
        if event.status == "ANSWER":
            call.prior_talk_s += event.talk_s

    def old_session_gone(self, call: Call) -> None:
        """The caller's first FastAGI session ended (the redirect's HANGUP): not the call."""
        sb = self.sb
        agent = sb.board.agents.get(call.agent_id)
        if agent is not None and agent.call_id == call.call_id:
            sb.release(agent, call, wrap_up=True)
        call.agent_id, call.extension, call.music_on = "", "", False

    def failed(self, event: TransferFailed) -> None:
        call = self.sb.calls.get(event.call_id)
        if call is None or call.phase is not Phase.TRANSFERRING:
            return
        self.sb.timers.cancel(("transfer_wait", call.call_id))
        call.phase, call.transfer_to = Phase.TALKING, ""
        call.legs.pop()
        self.sb.notify("transfer.failed", call_id=call.call_id, reason=event.reason)

    def wait_expired(self, call: Call) -> None:
        """The channel never came back (the caller hung up during the redirect)."""
        if call.phase is Phase.TRANSFERRING:
            self.old_session_gone(call)
            self.sb.close(call, "caller")  # answered before: the CDR says answered, by caller

    def arrived(self, event: CallTransferred) -> None:
        sb = self.sb
        call = sb.calls.get(event.call_id)
        if call is None or call.phase is not Phase.TRANSFERRING:
            log.warning("transfer session for %s, which is not being transferred; hung up",
                        event.call_id)
            sb.emit(Hangup(event.call_id, reason="no transfer pending"))
            return
        sb.timers.cancel(("transfer_wait", call.call_id))
        self.old_session_gone(call)
        target, call.transfer_to = call.transfer_to, ""
        call.channel, call.phase = event.channel, Phase.ROUTING
        call.tried.clear()
        if target.startswith(QUEUE_PREFIX):
            call.group, call.group_rule = target[len(QUEUE_PREFIX):], "transfer"
            call.placements = 1  # no VIP or last-agent shortcut: the queue's rule decides
            self.inbound.place(call)
            return
        agent = sb.board.by_extension.get(target)
        if agent is None:
            self.dial_outside(call, target)
        else:
            self.to_agent(call, agent.id, "transfer")

    def to_agent(self, call: Call, agent_id: str, rule: str) -> None:
        """Ring the agent when no call holds them; a busy one forwards or queues."""
        agent = self.sb.board.agents[agent_id]
        if agent.activity is None and not agent.ring_backoff:
            self.inbound.ring(call, agent, rule)
            return
        self.forward(call, agent_id, "BUSY")

    def forward(self, call: Call, agent_id: str, status: str) -> bool:
        """遇忙转接 / no-answer forwarding of a direct ring; False when the agent has none."""
        agent = self.sb.board.agents[agent_id]
        target = agent.config.forward_busy if status == "BUSY" else (
            agent.config.forward_no_answer if status == "NOANSWER" else "")
        if target and target not in call.forwarded:
            call.forwarded.add(target)
            self.sb.notify("call.forwarded", call_id=call.call_id, agent_id=agent_id,
                           status=status, target=target)
            other = self.sb.board.by_extension.get(target)
            if other is None:
                self.dial_outside(call, target)
            else:
                self.to_agent(call, other.id, f"forward_{status.lower()}")
            return True
        if status == "BUSY" and call.phase is Phase.ROUTING:
            call.group = agent.config.groups[0] if agent.config.groups else call.group
            call.group_rule = "transfer_busy"
            self.inbound.place(call)
            return True
        return False

    def dial_outside(self, call: Call, number: str) -> None:
        call.phase = Phase.OUTSIDE
        call.legs.append({"kind": "outside", "number": number})
        self.sb.emit(DialOut(call.call_id, self.sb.config.roaming.dial_string(number)))

    def outside_done(self, call: Call, event: CommandDone) -> None:
        if event.command != "DialOut" or call.phase is not Phase.OUTSIDE:
            return
        sb = self.sb
        if event.status == "ANSWER":
            call.reported_talk_s = event.talk_s or None
            call.legs[-1]["talk_s"] = event.talk_s
            sb.emit(Hangup(call.call_id, reason="outside party hung up"))
            sb.close(call, "agent")
            return
        call.legs[-1]["status"] = event.status
        if event.caller_gone:
            return
        sb.emit(Hangup(call.call_id, reason=f"transfer dial {event.status}"))
        sb.close(call, "system")


def _exten(target: str) -> str:
    """The dialplan extension for Asterisk's ``transfer`` context (informational: the edge
    keeps the real target)."""
    return "q-" + target[len(QUEUE_PREFIX):] if target.startswith(QUEUE_PREFIX) else target


class Consults:
    """Attended transfer and hold (TEL-2), which Asterisk carries out and reports over AMI.

    ``TransferRequest(attended=True)`` -> ``ConsultTransfer`` (AMI ``Atxfer`` on the agent's
    channel): the caller holds with music while the agent talks to the target; when the agent
    hangs up, Asterisk bridges the caller with the target and reports ``AttendedTransfer``. The
    call keeps its ``call_id`` and FastAGI session (its Dial goes on with the new peer), so the
    CDR follows it: a leg for the first agent, the target as the call's agent. Hold is the desk
    phone's own button; ``Hold``/``Unhold`` only add up ``hold_s``.
    """

    def __init__(self, sb: Switchboard) -> None:
        self.sb = sb

    def request(self, event: TransferRequest) -> bool:
        """True when this was an attended request (handled or refused here)."""
        if not event.attended:
            return False
        sb = self.sb
        agent = sb.board.agents.get(event.agent_id)
        call = sb.calls.get(agent.call_id or "") if agent is not None else None
        target = sb.board.by_extension.get(event.target)
        reason = ""
        if agent is None or call is None or call.phase is not Phase.TALKING \
                or call.agent_id != agent.id or call.direction != INBOUND:
            reason = "no answered inbound call to transfer"
        elif target is None or target.id == agent.id:
            reason = "an attended transfer consults another agent's extension"
        elif not call.agent_channel:
            reason = "the agent's channel is not known (no DialEnd seen)"
        if reason:
            log.info("attended transfer by %s to %s refused: %s", event.agent_id, event.target, reason)
            sb.notify("transfer.refused", agent_id=event.agent_id, target=event.target, reason=reason)
            return True
        call.consult_to = event.target
        call.data.update(event.data)
        sb.emit(ConsultTransfer(call.call_id, call.agent_channel, event.target))
        sb.notify("call.consulting", call_id=call.call_id, agent_id=agent.id, target=event.target,
                  data=dict(call.data))
        return True

    def done(self, event: AttendedTransferred) -> None:
        sb = self.sb
        call = sb.calls.get(event.call_id)
        if call is None:
            return
        target = call.consult_to or event.target_extension
        call.consult_to = ""
        if not event.success:
            sb.notify("transfer.failed", call_id=call.call_id, target=target, reason=event.detail)
            return
        now = sb.clock.now()
        first = sb.board.agents.get(call.agent_id)
        new = sb.board.by_extension.get(event.target_extension or target)
        call.legs.append({"kind": "agent", "agent_id": call.agent_id, "extension": call.extension,
                          "answered_at": call.leg_answered_at, "ended_at": now,
                          "transfer": "attended", "to": target})
        if first is not None and first.call_id == call.call_id:
            sb.release(first, call, wrap_up=True)
        if new is not None:
            call.agent_id, call.extension, call.leg_answered_at = new.id, new.extension, now
            sb.occupy(new, call, Activity.TALKING)
            sb.board.count_answered(new)
        sb.notify("call.transferred", call_id=call.call_id, mode="attended", target=target,
                  agent_id=call.agent_id, data=dict(call.data))

    def hold(self, event: HoldChanged) -> None:
        sb = self.sb
        agent = sb.board.by_extension.get(event.extension)
        call = sb.calls.get(agent.call_id or "") if agent is not None else None
        if call is None:
            return
        now = sb.clock.now()
        if event.on and call.hold_since is None:
            call.hold_since = now
        elif not event.on and call.hold_since is not None:
            call.hold_s += now - call.hold_since
            call.hold_since = None
        sb.notify("call.hold", call_id=call.call_id, agent_id=agent.id, on=event.on,
                  hold_s=round(call.hold_s, 3))
