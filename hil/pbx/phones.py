"""Scripted desk phones (PJSIP endpoints): ringing, answering, busy, hanging up, dialling out.

A phone already on a call is busy (no call waiting), as a 486 Busy Here from the set. Dialling
opens the ``dial`` FastAGI script with the digits, as the dialplan
``[from-phones] exten => _X.,1,AGI(agi://EDGE:4573/dial,${EXTEN})`` would.

Once it answered a ring, a phone can hang up after its talk time, put the call on hold and take
it back (``holds``: ``Hold``/``Unhold``, the peer hears music on hold) and key DTMF (``dtmf``: the
bridge features of ``hil.pbx.features``: ``*2`` attended transfer, ``*4`` swaps during one, ``*3``
runs the edge's ``record-toggle`` FastAGI on the phone's channel).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hil.pbx.channels import RING, Channel
from hil.pbx.dial import BUSY, DialAttempt, Leg
from hil.pbx.pbx import PHONE_CONTEXT
from hil.pbx.scripts import PhoneDial, PhoneScript, RingBehaviour

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

RING_DELAY_MS = 30   # INVITE -> 180 Ringing
BUSY_DELAY_MS = 50   # INVITE -> 486 Busy Here

__all__ = ["PHONE_CONTEXT", "ring", "TalkTimer", "AnsweredPhone", "start_phone"]


class TalkTimer:
    """Hangs a channel up ``after_ms`` after it is answered (an agent or far end ending the talk)."""

    def __init__(self, pbx: "Pbx", after_ms: int, by: str, cause: int) -> None:
        self.pbx, self.after_ms, self.by, self.cause = pbx, after_ms, by, cause
        self.timer = None

    def on_answered(self, ch: Channel) -> None:
        self.timer = self.pbx.later(self.after_ms, lambda: self.pbx.hangup(ch, self.cause, by=self.by),
                                    f"talk-{ch.name}")

    def on_hungup(self, ch: Channel) -> None:
        if self.timer is not None:
            self.timer.cancel()


class AnsweredPhone:
    """A rung phone's script from its answer on: talk time, holds, keys."""

    def __init__(self, pbx: "Pbx", behaviour: RingBehaviour) -> None:
        self.pbx, self.behaviour = pbx, behaviour
        self.timers: list = []

    def on_answered(self, ch: Channel) -> None:
        from hil.pbx.features import press
        from hil.pbx.transfer import phone_hold

        pbx, b = self.pbx, self.behaviour
        if b.hangup_after_ms is not None:
            self.timers.append(pbx.later(b.hangup_after_ms, lambda: pbx.hangup(ch, 16, by="agent"),
                                         f"talk-{ch.name}"))
        for hold in b.holds:
            self.timers.append(pbx.later(hold.after_answer_ms, lambda: phone_hold(pbx, ch, True), "hold"))
            if hold.for_ms is not None:
                self.timers.append(pbx.later(hold.after_answer_ms + hold.for_ms,
                                             lambda: phone_hold(pbx, ch, False), "unhold"))
        for keys in b.dtmf:
            self.timers.append(pbx.later(keys.at_ms, lambda d=keys.digits: press(pbx, ch, d), "phone-keys"))

    def on_hungup(self, ch: Channel) -> None:
        for timer in self.timers:
            timer.cancel()


def ring(pbx: "Pbx", attempt: DialAttempt, leg: Leg) -> None:
    """Start the phone's scripted answer to one ring. Called under the lock."""
    extension = leg.channel.extension or ""
    script = pbx.world.phones[extension]
    index = pbx.phone_rings.get(extension, 0)
    pbx.phone_rings[extension] = index + 1
    behaviour = script.behaviour(index)
    on_call = any(c.extension == extension and c is not leg.channel for c in pbx.registry.live.values())
    if on_call or behaviour.busy:
        leg.timers.append(pbx.later(BUSY_DELAY_MS, lambda: attempt.leg_failed(leg, BUSY, 17), "busy"))
        return
    leg.timers.append(pbx.later(RING_DELAY_MS, lambda: attempt.leg_ringing(leg), "ringing"))
    if behaviour.answer_after_ms is not None:
        leg.timers.append(pbx.later(RING_DELAY_MS + behaviour.answer_after_ms,
                                    lambda: attempt.leg_answered(leg), "answer"))
    if behaviour.hangup_after_ms is not None or behaviour.holds or behaviour.dtmf:
        pbx.scripted[leg.channel.name] = AnsweredPhone(pbx, behaviour)


def start_phone(pbx: "Pbx", script: PhoneScript) -> None:
    """Schedule the phone's scripted outgoing calls."""
    for i, dial in enumerate(script.dials):
        call_id = dial.id or f"{script.extension}-dial{i + 1}"
        with pbx.lock:
            pbx.pending_scripts += 1
        pbx.later(dial.at_ms, lambda d=dial, c=call_id: _go_off_hook(pbx, script, d, c), "phone-dial")


def _go_off_hook(pbx: "Pbx", script: PhoneScript, dial: PhoneDial, call_id: str) -> None:
    from hil.pbx.agi_client import start_agi

    pbx.pending_scripts -= 1
    name = script.name or script.extension
    ch = pbx.new_channel(pbx.phone_channel_name(script.extension), "PJSIP", state=RING,
                         extension=script.extension, role="phone", call=call_id,
                         caller_num=script.extension, caller_name=name,
                         context=PHONE_CONTEXT, exten=dial.digits)
    ch.variables["__DNID"] = dial.digits
    pbx.record("phone_dialled", call=call_id, extension=script.extension, digits=dial.digits,
               channel=ch.name)
    if dial.hangup_after_ms is not None:
        pbx.later(dial.hangup_after_ms, lambda: pbx.hangup(ch, 16, by="phone"), "phone-onhook")
    start_agi(pbx, ch, "dial", [dial.digits])
