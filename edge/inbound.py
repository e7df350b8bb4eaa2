"""Inbound trunk calls, following docs/architecture.md's call-flow contract.

CallOffered -> blacklist screen -> Answer -> (customer-type menu) -> ACD decision -> RingAgent,
or HoldMusic and a queue, or a wait for the caller's last agent. An agent who answers talks; when
the bridged call ends the agent wraps up and then takes the head of the queue.

A ring that fails (Dial ``NOANSWER``, ``BUSY``, ``CHANUNAVAIL``, ``CONGESTION``; any status but
``ANSWER`` and ``CANCEL``) puts that agent in a ring back-off: no call at all is offered to them
for the group's ``ring_failure_backoff_s``, and ``NOANSWER`` counts toward the group's
``auto_busy_after_misses`` (reaching it sets the agent 示忙, ``agent.state`` with reason
``missed_rings``). The call then tries the next selectable agent it has not tried yet; when none is
left it joins (or returns to) its group's queue at its arrival position, with ``HoldMusic`` if the
music is not already playing, and ``queue.position``. When a back-off ends the agent is selectable
again and takes the best queue head, like an agent coming free. A queued call that is placed again
and finds only agents it already tried who are selectable again starts a new round with them.

Calls wait in a queue until ``max_wait_s`` passes or find it full (``max_queue_len``), and then
overflow to the group's ``overflow``. Both limits apply once per group, when the call first joins
that group's queue: ``max_wait_s`` runs from that moment (not from arrival, and not restarted when
a ring fails and the call comes back), and a call coming back after a failed ring is not refused
by ``max_queue_len``. A deadline that passes while an agent rings overflows the call if that ring
fails. The overflow actions:

* ``group:<name>`` — placed again in that group (keeping arrival order and VIP priority);
* ``voicemail`` / ``callback`` / ``hangup`` — in this slice the caller hears a prompt and the call
  ends with disposition ``overflow`` and a ``call.overflow`` notification naming the action;
  recording the message (INB-13) and the callback task (INB-9) are later issues that hook in here.

A group with no agent logged in does not queue at all: it overflows at once, and a call that ends
that way has disposition ``no_agent``.
"""
from __future__ import annotations

import logging

from edge.acd import DecisionKind
from edge.agents import Activity, Agent
from edge.call_recording import CallRecording
from edge.calls import INBOUND, Call, Phase
from edge.commands import Answer, Collect, Hangup, HoldMusic, Play, RingAgent
from edge.events import AgentAnswered, CallOffered, CommandDone
from edge.hours import BREAK, CLOSED, HOLIDAY, OPEN
from edge.ivr_calls import IvrCalls
from edge.rating import Rating
from edge.transfers import Transfers
from edge.voicemail import Voicemail
from edge.callbacks import Callbacks
from typing import Iterable
from edge.numbers import national_number
from edge.queueing import VIP_PRIORITY
from edge.config import GroupConfig
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)

ANALOG_DID = ("", "s")  # analog lines deliver no DID: the trunk's own number stands in
OVERFLOW_PROMPTS = {"voicemail": "cc/overflow-voicemail", "callback": "cc/overflow-callback",
                    "hangup": "cc/all-agents-busy"}
CALL_REJECTED = (21, "Call Rejected")
# rules that ring one chosen agent, where the agent's own forwarding (遇忙转接) applies
DIRECT_RULES = ("vip", "last_agent", "transfer", "forward_busy", "forward_noanswer")
CLOSED_PROMPTS = {BREAK: "cc/closed-break", CLOSED: "cc/closed", HOLIDAY: "cc/closed-holiday"}


class InboundFlow:
    def __init__(self, sb: Switchboard, recording: CallRecording,
                 open_callbacks: Iterable[dict] = ()) -> None:
        self.sb = sb
        self.recording = recording
        self.ivr = IvrCalls(sb, recording, self.place, self.voicemail)
        self.rating = Rating(sb)
        self.callbacks = Callbacks(sb, open_callbacks)
        self.transfers = Transfers(sb, self)
        self.voicemail_box = Voicemail(sb)
        self._trunk_numbers = {t.channel: t.number for t in sb.config.trunks if t.number}
        sb.on_agent_idle = self.agent_idle

    # --- offer --------------------------------------------------------------------------------

    def offered(self, event: CallOffered) -> None:
        sb = self.sb
        if event.call_id in sb.calls:
            log.warning("CallOffered for live call %s ignored", event.call_id)
            return
        did = event.did
        if did in ANALOG_DID and event.trunk is not None:
            did = self._trunk_numbers.get(event.trunk, did)
        number = national_number(event.caller)
        call = Call(event.call_id, event.channel, INBOUND, event.caller, did, sb.clock.now(),
                    seq=sb.next_seq(), number=number, trunk=event.trunk, did=did,
                    region=sb.regions.resolve(number) if number else None)
        sb.calls[call.call_id] = call
        screening = sb.acd.screen(number)
        if screening == "reject":
            self._reject(call)
            return
        call.flagged = screening == "flag"
        if call.flagged:
            sb.notify("call.flagged", call_id=call.call_id, caller=call.caller, reason="blacklist")
        sb.emit(Answer(call.call_id))
        self.recording.answered_by_edge(call)
        call.group, call.group_rule = sb.acd.group_for(did, call.region)
        flow = self.ivr.flow_for(did)
        if not self._within_hours(call, flow_decides=flow is not None):
            return
        owner = sb.acd.vip_owner(number)
        if owner is not None:
            call.vip_owner, call.priority = owner.id, VIP_PRIORITY
            call.group, call.group_rule = sb.acd.vip_group(owner), "vip"
            self.place(call)
            return
        if flow is not None:
            self.ivr.start(call, flow)
            return
        menu = sb.acd.menu_for(did, call.group)
        if menu is not None:
            call.phase = Phase.MENU
            sb.emit(Collect(call.call_id, menu.prompt, menu.max_digits, int(menu.timeout_s * 1000)))
            return
        self.place(call)

    def _within_hours(self, call: Call, flow_decides: bool = False) -> bool:
        """True when the call goes on to routing; False when the hours handled it. INB-7: the group's calendar picks the welcome prompt; outside "open" (a break, after
        hours, a public holiday — 调休 make-up days count as working days) the caller hears the
        period's prompt and the call ends with disposition ``closed``. An IVR flow that answers
        the call branches on the period itself (``on: period``)."""
        sb = self.sb
        group = sb.groups[call.group]
        if not group.calendar:
            return True
        period = sb.config.calendars[group.calendar].period_at(sb.clock.now())
        call.period = period.kind
        if flow_decides:
            return True
        if period.kind == OPEN:
            if group.welcome.get(OPEN):
                sb.emit(Play(call.call_id, group.welcome[OPEN]))
            return True
        prompt = (group.closed_prompts.get(period.kind) or group.welcome.get(period.kind)
                  or CLOSED_PROMPTS[period.kind])
        sb.notify("call.out_of_hours", call_id=call.call_id, caller=call.caller, group=group.name,
                  period=period.kind, label=period.label, action=group.out_of_hours)
        if group.out_of_hours == "roam" and self._roam_on_call(call, group):
            return False  # handled: ringing an on-call mobile
        call.disposition, call.rule = "closed", f"hours:{period.kind}"
        if group.out_of_hours == "voicemail":
            self.voicemail(call, group.name, prompt)
            call.disposition = "closed"  # out of hours; the message is in the recordings
            return False
        sb.emit(Play(call.call_id, prompt), Hangup(call.call_id, reason=f"closed:{period.kind}"))
        sb.close(call, "system")
        return False

    def _roam_on_call(self, call: Call, group: GroupConfig) -> bool:
        """Out of hours by rule: the first on-call agent free of calls takes it on the mobile."""
        sb = self.sb
        call.roam_only = True
        for agent_id in group.on_call:
            agent = sb.board.agents[agent_id]
            if agent_id in call.tried or agent.activity is not None or agent.ring_backoff:
                continue
            if not agent.config.mobile:
                continue
            sb.notify("call.out_of_hours", call_id=call.call_id, caller=call.caller,
                      group=group.name, period=call.period, label="", action="roam",
                      agent_id=agent.id)
            call.placements += 1
            self.ring(call, agent, f"hours_roam:{call.period}", roam=True)
            return True
        return False

    def _reject(self, call: Call) -> None:
        call.rule, call.disposition = "blacklist", "rejected"
        log.info("call %s from %s rejected: blacklisted", call.call_id, call.caller)
        self.sb.emit(Hangup(call.call_id, reason="blacklist"))
        self.sb.notify("call.rejected", call_id=call.call_id, caller=call.caller, reason="blacklist")
        self.sb.close(call, "system", *CALL_REJECTED)

    def collected(self, call: Call, event: CommandDone) -> None:
        """The customer-type menu's answer; no or an unknown choice routes as if no menu ran."""
        if call.phase is not Phase.MENU:
            return
        choice = event.digits if event.ok and not event.timed_out else ""
        call.phase = Phase.ROUTING
        if choice:
            call.group, call.group_rule = self.sb.acd.group_for(call.did, call.region, choice)
        self.place(call)

    # --- placing ------------------------------------------------------------------------------

    def place(self, call: Call) -> None:
        decision = self.sb.acd.decide(call)
        if (decision.kind is DecisionKind.QUEUE and call.tried
                and self.sb.pools.idle_count(call.group)):
            # every selectable agent was tried, and one of them is selectable again (their
            # back-off ended while others rang): a new round, best agent first
            call.tried.clear()
            decision = self.sb.acd.decide(call)
        call.placements += 1
        if decision.kind is DecisionKind.RING:
            self.ring(call, decision.agent, decision.rule, roam=decision.roam)
        elif decision.kind is DecisionKind.WAIT_FOR_AGENT:
            self._wait_for(call, decision.agent)
        else:
            self._enqueue(call)

    def ring(self, call: Call, agent: Agent, rule: str, roam: bool = False) -> None:
        sb = self.sb
        sb.queues.remove(call.call_id)
        call.phase, call.rule, call.music_on = Phase.RINGING, rule, False
        call.agent_id, call.extension = agent.id, agent.extension
        call.roaming_to = agent.config.mobile if roam else ""
        sb.occupy(agent, call, Activity.RINGING)
        if roam:
            roaming = sb.config.roaming
            present = call.caller if roaming.present == "caller" else roaming.company_number
            sb.emit(RingAgent(call.call_id, agent.extension, roaming.dial_string(agent.config.mobile),
                              roaming.ring_timeout_s, caller_id=present))
        else:
            timeout = sb.groups[call.group].ring_timeout_s
            sb.emit(RingAgent(call.call_id, agent.extension, agent.config.dial_string, timeout))
        sb.notify("call.ringing", call_id=call.call_id, agent_id=agent.id,
                  extension=agent.extension, caller=call.caller, region=str(call.region or ""),
                  group=call.group, rule=rule, flagged=call.flagged, vip=bool(call.vip_owner),
                  mobile=call.roaming_to, data=dict(call.data))

    def _wait_for(self, call: Call, agent: Agent) -> None:
        sb = self.sb
        call.phase, call.waiting_for = Phase.WAITING_FOR_AGENT, agent.id
        sb.waiting_for_agent.setdefault(agent.id, []).append(call.call_id)
        sb.timers.set(("sticky", call.call_id), sb.clock.now() + sb.config.routing.sticky_wait_s)
        self._music(call)
        sb.notify("call.waiting_for_agent", call_id=call.call_id, agent_id=agent.id)

    def _enqueue(self, call: Call) -> None:
        sb = self.sb
        group = sb.groups[call.group]
        if sb.pools.logged_in_count(group.name) == 0:
            self.overflow(call, "no_agent")
            return
        if group.name not in call.admitted:
            if group.max_queue_len is not None and sb.queues.length(group.name) >= group.max_queue_len:
                self.overflow(call, "queue_full")
                return
            call.admitted.add(group.name)
            call.queued_at = sb.clock.now()
            self.callbacks.queued(call)
            if group.max_wait_s is not None:
                sb.timers.set(("max_wait", call.call_id), call.queued_at + group.max_wait_s)
        call.phase, call.agent_id, call.extension = Phase.QUEUED, "", ""
        call.tried.clear()
        position = sb.queues.add(group.name, call.call_id, call.priority, call.seq)
        self._music(call)
        sb.notify("queue.position", call_id=call.call_id, group=group.name, position=position,
                  length=sb.queues.length(group.name))

    def _music(self, call: Call) -> None:
        if not call.music_on:
            self.sb.emit(HoldMusic(call.call_id))
            call.music_on = True

    def overflow(self, call: Call, reason: str) -> None:
        sb = self.sb
        group = sb.groups[call.group]
        sb.queues.remove(call.call_id)
        sb.timers.cancel(("max_wait", call.call_id))
        call.overflow_due = False
        call.visited.append(group.name)
        target = group.overflow_group
        sb.notify("call.overflow", call_id=call.call_id, caller=call.caller, group=group.name,
                  action=group.overflow, reason=reason)
        if target is not None and target not in call.visited:
            call.group, call.group_rule = target, sb.acd.strategy(target)
            self.place(call)
            return
        action = "hangup" if target is not None else group.overflow
        if action == "voicemail":
            self.voicemail(call, group.name, OVERFLOW_PROMPTS["voicemail"])
            return
        call.disposition = "no_agent" if reason == "no_agent" else "overflow"
        sb.emit(Play(call.call_id, OVERFLOW_PROMPTS[action]),
                Hangup(call.call_id, reason=f"overflow:{action}"))
        sb.close(call, "system")

    def _closed_after_roaming(self, call: Call) -> None:
        sb = self.sb
        prompt = sb.groups[call.group].closed_prompts.get(call.period) or CLOSED_PROMPTS.get(
            call.period, CLOSED_PROMPTS[CLOSED])
        call.disposition, call.rule = "closed", f"hours:{call.period}"
        sb.emit(Play(call.call_id, prompt), Hangup(call.call_id, reason="no on-call agent"))
        sb.close(call, "system")

    def voicemail(self, call: Call, box: str, prompt: str = "") -> None:
        """The caller leaves a message in ``box`` (an IVR step, an overflow, out of hours)."""
        self.voicemail_box.take(call, box, prompt)

    # --- agents ------------------------------------------------------------------------------

    def agent_idle(self, agent: Agent) -> None:
        """The agent became selectable (idle, no ring back-off): a caller waiting for exactly this
        agent goes first, then the best queue head."""
        sb = self.sb
        waiting = sb.waiting_for_agent.get(agent.id)
        while waiting:
            call = sb.calls.get(waiting.pop(0))
            if call is not None and call.phase is Phase.WAITING_FOR_AGENT:
                sb.timers.cancel(("sticky", call.call_id))
                call.waiting_for = ""
                self.ring(call, agent, "last_agent")
                return
        call_id = sb.queues.best_for(agent.config.groups)
        if call_id is not None:
            call = sb.calls[call_id]
            self.ring(call, agent, call.group_rule)
            return
        self.callbacks.agent_free(agent)  # nobody waits live: the oldest callback that is due

    def sticky_expired(self, call: Call) -> None:
        if call.phase is not Phase.WAITING_FOR_AGENT:
            return
        waiting = self.sb.waiting_for_agent.get(call.waiting_for, [])
        if call.call_id in waiting:
            waiting.remove(call.call_id)
        call.waiting_for = ""
        self.place(call)

    def max_wait_passed(self, call: Call) -> None:
        if call.phase is Phase.QUEUED:
            self.overflow(call, "max_wait")
        elif call.phase is Phase.RINGING:
            call.overflow_due = True

    # --- the agent's phone ----------------------------------------------------------------------

    def answered(self, call: Call, event: AgentAnswered) -> None:
        sb = self.sb
        if call.phase is not Phase.RINGING:
            return
        ringing = sb.board.agents[call.agent_id]
        picker_id = sb.pickups.pop(ringing.extension, None)
        answerer = (sb.board.agents.get(picker_id or "")
                    or sb.board.by_extension.get(event.extension) or ringing)
        call.agent_channel = event.peer_channel
        if call.roaming_to:
            call.legs.append({"kind": "mobile", "agent_id": ringing.id, "number": call.roaming_to,
                              "channel": event.peer_channel, "uniqueid": event.peer_uniqueid})
        self._talk(call, ringing, answerer, sb.clock.now())

    def _talk(self, call: Call, ringing: Agent, answerer: Agent, at: float) -> None:
        sb = self.sb
        if answerer is not ringing:
            sb.release(ringing, call, wrap_up=False)
            call.agent_id, call.extension = answerer.id, answerer.extension
        call.phase, call.overflow_due = Phase.TALKING, False
        call.answered_at = at if call.answered_at is None else call.answered_at  # first answer
        call.leg_answered_at = at
        sb.timers.cancel(("max_wait", call.call_id))
        answerer.missed_rings = 0
        sb.board.count_answered(answerer)
        sb.acd.remember(call.number, answerer.id)
        sb.occupy(answerer, call, Activity.TALKING)
        self.recording.answered(call, answerer, INBOUND)
        sb.notify("call.answered", call_id=call.call_id, agent_id=answerer.id,
                  extension=answerer.extension, wait_s=round(at - call.started_at, 3))

    def ring_done(self, call: Call, event: CommandDone) -> None:
        sb = self.sb
        if call.phase is Phase.RINGING and event.status == "ANSWER":  # AMI missed the DialEnd
            ringing = sb.board.agents[call.agent_id]
            self._talk(call, ringing, ringing, sb.clock.now() - event.talk_s)
        if call.phase is Phase.TALKING:
            call.reported_talk_s = event.talk_s or None
            if event.caller_gone:
                return  # the CallHungUp right behind this ends the call as the caller's
            if self.rating.offer(call):
                return
            sb.emit(Hangup(call.call_id, reason="agent hung up"))
            sb.close(call, "agent")
            return
        if call.phase is Phase.TRANSFERRING:
            self.transfers.dial_returned(call, event)
            return
        if call.phase is not Phase.RINGING:
            return
        agent = sb.board.agents[call.agent_id]
        call.tried.add(agent.id)
        if event.status == "CANCEL":  # the caller gave up; CallHungUp follows and closes the call
            call.phase = Phase.ENDING
            sb.release(agent, call, wrap_up=False)
            return
        status = event.status or "FAILED"
        sb.notify("call.ring_failed", call_id=call.call_id, agent_id=agent.id, status=status)
        call.agent_id, call.extension = "", ""
        if call.rule in DIRECT_RULES and status in ("BUSY", "NOANSWER") \
                and agent.config.forward_busy + agent.config.forward_no_answer:
            reason = sb.ring_failed(agent, sb.groups[call.group], status)
            call.phase = Phase.ROUTING
            forwarded = self.transfers.forward(call, agent.id, status)
            if not forwarded:
                self.place(call)
            sb.release(agent, call, wrap_up=False, reason=reason)
            return
        if call.roam_only:  # out of hours: only the on-call mobiles, then the closed prompt
            sb.release(agent, call, wrap_up=False)
            if not self._roam_on_call(call, sb.groups[call.group]):
                self._closed_after_roaming(call)
            return
        # The agent leaves selection before the call is placed again and before they are free,
        # so neither this call nor the queue rings the same failing phone again at once.
        reason = sb.ring_failed(agent, sb.groups[call.group], status)
        if call.overflow_due:
            self.overflow(call, "max_wait")
        else:
            self.place(call)
        sb.release(agent, call, wrap_up=False, reason=reason)
