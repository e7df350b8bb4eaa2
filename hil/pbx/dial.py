"""The Dial application (``EXEC Dial PJSIP/8001&PJSIP/8002,20,g``) and the outgoing legs it rings.

Also used by Originate (no calling channel, so DialBegin/DialEnd carry only ``Dest*`` headers).
Outcome rules, from ``apps/app_dial.c``: the first leg to answer wins and the others are
cancelled (``DialStatus: CANCEL``, cause 26 answered elsewhere); the caller is answered and bridged
with it; Dial returns when either side hangs up, ``200 result=-1`` unless option ``g``.
Without an answer the status is BUSY / CONGESTION / CHANUNAVAIL when every leg failed that way,
NOANSWER at the timeout; a caller hanging up while legs ring gives CANCEL and ``-1``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hil.pbx.channels import Channel
from hil.pbx.timebase import Timer

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

ANSWER, BUSY, CONGESTION, NOANSWER, CHANUNAVAIL, CANCEL = (
    "ANSWER", "BUSY", "CONGESTION", "NOANSWER", "CHANUNAVAIL", "CANCEL")
_DAHDI = re.compile(r"^(?:(?P<group>[gGrR])(?P<gnum>\d+)|(?P<chan>\d+))/(?P<number>.+)$")


@dataclass(eq=False)
class Leg:
    channel: Channel
    dialstring: str          # what DialBegin prints: ``8001``, ``g0/13800138000``
    status: str | None = None
    timers: list[Timer] = field(default_factory=list)
    picked_by: Channel | None = None

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()


class DialAttempt:
    """One Dial or Originate: its legs and what happened to them. All methods run under the lock."""

    def __init__(self, pbx: "Pbx", caller: Channel | None, call: str | None) -> None:
        self.pbx, self.caller, self.call = pbx, caller, call
        self.legs: list[Leg] = []
        self.winner: Leg | None = None
        self.failures: list[str] = []

    # far ends report here -------------------------------------------------------------------
    def leg_ringing(self, leg: Leg) -> None:
        if leg.status is not None or leg.channel.hungup:
            return
        self.pbx.ringing(leg.channel)
        self.pbx.emit(self.pbx.events.dial_state(self.caller, leg.channel, "RINGING"))
        if leg.channel.extension:
            order = self.pbx.ring_order.get(self.call or "", 0) + 1
            self.pbx.ring_order[self.call or ""] = order
            self.pbx.record("rang", call=self.call, extension=leg.channel.extension,
                            channel=leg.channel.name, order=order)

    def leg_answered(self, leg: Leg) -> None:
        if leg.status is not None or leg.channel.hungup or self.winner is not None:
            return
        leg.status = ANSWER
        self.winner = leg
        self.pbx.answer(leg.channel)
        who = {"extension": leg.channel.extension} if leg.channel.extension else {"number": leg.channel.exten}
        self.pbx.record("answered", call=self.call, channel=leg.channel.name, **who)
        self.pbx.changed()

    def leg_failed(self, leg: Leg, status: str, cause: int) -> None:
        """The far end refused (busy, congestion, unallocated...): the leg hangs up with ``cause``."""
        if leg.status is not None:
            return
        leg.status = status
        leg.cancel_timers()
        self.failures.append(status)
        self.pbx.emit(self.pbx.events.dial_end(self.caller, leg.channel, status))
        self.record_end(leg, status)
        self.pbx.hangup(leg.channel, cause, by=leg.channel.role or "outside")

    def leg_picked(self, leg: Leg, picker: Channel) -> None:
        """PickupChan: ``picker`` takes the ringing leg's place; the phone stops ringing."""
        if leg.status is not None or self.winner is not None:
            return
        leg.status = CANCEL
        leg.cancel_timers()
        self.pbx.hangup(leg.channel, 26, by="system", soft=True)
        picked = Leg(picker, leg.dialstring, ANSWER, picked_by=picker)
        self.legs.append(picked)
        self.winner = picked
        self.pbx.changed()

    # outcome helpers ------------------------------------------------------------------------
    @property
    def pending(self) -> list[Leg]:
        return [leg for leg in self.legs if leg.status is None and not leg.channel.hungup]

    def cancel_pending(self, status: str, cause: int) -> None:
        for leg in self.pending:
            leg.status = status
            leg.cancel_timers()
            self.pbx.emit(self.pbx.events.dial_end(self.caller, leg.channel, status))
            self.record_end(leg, status)
            self.pbx.hangup(leg.channel, cause, by="system", soft=True)

    def failed_status(self) -> str:
        for status in (BUSY, CONGESTION, CHANUNAVAIL):
            if self.failures and all(f == status for f in self.failures):
                return status
        return NOANSWER

    def record_end(self, leg: Leg, status: str) -> None:
        who = {"extension": leg.channel.extension} if leg.channel.extension else {"number": leg.channel.exten}
        self.pbx.record("dial_end", call=self.call, channel=leg.channel.name, status=status, **who)


def parse_dial_data(data: str) -> tuple[list[str], float | None, str]:
    """``PJSIP/8001&PJSIP/8002,20,g`` -> (targets, timeout seconds or None, options)."""
    parts = data.split(",")
    targets = [t.strip() for t in parts[0].split("&") if t.strip()]
    timeout = None
    if len(parts) > 1 and parts[1].strip():
        try:
            timeout = float(parts[1])
        except ValueError:
            timeout = None
    return targets, timeout, parts[2] if len(parts) > 2 else ""


def request(pbx: "Pbx", attempt: DialAttempt, target: str) -> Leg | None:
    """Create the outgoing channel for ``PJSIP/<ext>`` or ``DAHDI/g0/<number>``, ``DAHDI/<n>/<number>``
    and start its far end; ``None`` (status already counted) when no channel could be made."""
    from hil.pbx import phones, trunks  # the far ends; they import this module too

    tech, _, resource = target.partition("/")
    caller = attempt.caller
    linkedid = caller.linkedid if caller else None
    with pbx.lock:
        if tech == "PJSIP" and resource in pbx.world.phones and pbx.world.phones[resource].registered:
            ch = pbx.new_channel(pbx.phone_channel_name(resource), "PJSIP", linkedid=linkedid,
                                 extension=resource, role="agent", call=attempt.call,
                                 context=phones.PHONE_CONTEXT, exten=resource,
                                 caller_num=resource, caller_name=pbx.world.phones[resource].name or resource,
                                 connected_num=caller.caller_num if caller else "<unknown>",
                                 connected_name=caller.caller_name if caller else "<unknown>")
            leg = _start(pbx, attempt, ch, resource)
            phones.ring(pbx, attempt, leg)
            return leg
        m = _DAHDI.match(resource) if tech == "DAHDI" else None
        if m:
            if m["chan"]:
                number = pbx.free_trunk(channel=int(m["chan"]))
                refusal = BUSY
            else:
                number = pbx.free_trunk(group=int(m["gnum"]), highest=m["group"] in "GR")
                refusal = CONGESTION
            if number is None:
                attempt.failures.append(refusal)
                return None
            span = pbx.world.span_of(number)
            pbx.busy_trunks.add(number)
            ch = pbx.new_channel(f"DAHDI/{number}-1", "DAHDI", linkedid=linkedid, trunk=number,
                                 profile=span.profile if span else None, role="outside",
                                 call=attempt.call, context=trunks.TRUNK_CONTEXT,
                                 exten=m["number"], caller_num=m["number"], caller_name="<unknown>",
                                 connected_num=caller.caller_num if caller else "<unknown>",
                                 connected_name=caller.caller_name if caller else "<unknown>")
            leg = _start(pbx, attempt, ch, resource)
            trunks.dial_out(pbx, attempt, leg, m["number"])
            return leg
        attempt.failures.append(CHANUNAVAIL)
        return None


def _start(pbx: "Pbx", attempt: DialAttempt, ch: Channel, dialstring: str) -> Leg:
    leg = Leg(ch, dialstring)
    attempt.legs.append(leg)
    pbx.emit(pbx.events.dial_begin(attempt.caller, ch, dialstring))
    return leg


def run_dial(pbx: "Pbx", caller: Channel, data: str) -> int:
    """Blocks the calling AGI thread like the real application; returns Dial's result code."""
    attempt = DialAttempt(pbx, caller, caller.call)
    with pbx.lock:
        pbx.attempts.add(attempt)
    try:
        return _dial(pbx, attempt, caller, data)
    finally:
        with pbx.lock:
            pbx.attempts.discard(attempt)


def _dial(pbx: "Pbx", attempt: DialAttempt, caller: Channel, data: str) -> int:
    targets, timeout_s, options = parse_dial_data(data)
    started = pbx.now_ms()
    with pbx.lock:
        if caller.hungup:
            return -1
        caller.application, caller.app_data = "Dial", data
        for target in targets:
            request(pbx, attempt, target)
    deadline_ms = None if timeout_s is None else timeout_s * 1000
    pbx.wait_until(lambda: caller.hungup or attempt.winner or not attempt.pending, deadline_ms)
    with pbx.lock:
        if caller.hungup:
            attempt.cancel_pending(CANCEL, 16)
            _set_dial_vars(pbx, caller, CANCEL, started)
            return -1
        if attempt.winner is None:
            if attempt.pending:
                attempt.cancel_pending(NOANSWER, 19)
                status = NOANSWER
            else:
                status = attempt.failed_status()
            _set_dial_vars(pbx, caller, status, started)
            return 0
        winner = attempt.winner
        attempt.cancel_pending(CANCEL, 26)
        pbx.emit(pbx.events.dial_end(caller, winner.channel, ANSWER))
        attempt.record_end(winner, ANSWER)
        pbx.answer(caller)
        _set_dial_vars(pbx, caller, ANSWER, started, winner)
        bridge = pbx.bridge(winner.channel, caller)
        answered = winner.channel.answered_ms or pbx.now_ms()
    pbx.wait_until(lambda: caller.hungup or winner.channel.hungup or caller.bridge is not bridge, None)
    with pbx.lock:
        _set_talk_vars(pbx, caller, answered)
        if caller.bridge is bridge:
            pbx.leave_bridge(bridge)
        callee = winner.channel
        if winner.picked_by is None and not callee.hungup and callee.redirect is None:
            pbx.hangup(callee, 16, by="system", soft=True)  # Dial hangs its outgoing leg up
    return 0 if ("g" in options and not caller.hungup) else -1


def _set_dial_vars(pbx: "Pbx", caller: Channel, status: str, started: float,
                   winner: Leg | None = None) -> None:
    pbx.set_var(caller, "DIALSTATUS", status)
    dialed_s = int((pbx.now_ms() - started) / 1000)
    pbx.set_var(caller, "DIALEDTIME", str(dialed_s), event=False)
    caller.variables.pop("ANSWEREDTIME", None)  # unset unless answered: GET VARIABLE -> result=0
    caller.variables.pop("ANSWEREDTIME_MS", None)
    if winner is not None:
        pbx.set_var(caller, "DIALEDPEERNAME", winner.channel.name)
        pbx.set_var(caller, "DIALEDPEERNUMBER", winner.dialstring)


def _set_talk_vars(pbx: "Pbx", caller: Channel, answered: float) -> None:
    talk_ms = pbx.now_ms() - answered
    pbx.set_var(caller, "ANSWEREDTIME", str(int(talk_ms / 1000)), event=False)
    pbx.set_var(caller, "ANSWEREDTIME_MS", str(int(talk_ms)), event=False)

