"""Trunk lines: scripted inbound callers and the outside parties that outbound calls reach.

Profiles (ARCHITECTURE "Telephony notes"):

* ``e1`` (PRI): ALERTING/CONNECT/DISCONNECT with real Q.850 causes: 16 normal, 17 busy, 19 no
  answer, 34 congestion, 1 unallocated (after the network's vacant-number announcement, which the
  caller hears as early media). Dial maps 17 to BUSY, 34 to CONGESTION, 1 to CHANUNAVAIL
  (``handle_cause`` in ``apps/app_dial.c``).
* ``analog`` (FXO loop start): no answer supervision. Asterisk treats the line as answered once
  the digits are sent, whatever the far end does (busy tone, ringback and a vacant-number message
  are only audio), unless the trunk signals polarity reversal (``answeronpolarityswitch``): then
  the answer is real and an unanswered call rings until Dial's timeout. A far-end hang-up or a
  caller hang-up carries no Q.850 cause: Asterisk reports ``Cause: 0`` (Unknown).

Inbound dialplan modelled: ``[from-trunk] exten => <DID or s>,1,AGI(agi://EDGE:4573/incoming,<DID or s>)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hil.pbx.channels import RING, Channel
from hil.pbx.dial import BUSY, CHANUNAVAIL, CONGESTION, DialAttempt, Leg
from hil.pbx.pbx import TRUNK_CONTEXT
from hil.pbx.phones import TalkTimer
from hil.pbx.scripts import ANALOG, OutsideParty, TrunkCall
from hil.pbx.voicemail import CallerMessage

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

__all__ = ["TRUNK_CONTEXT", "InboundCall", "dial_out"]

ALERT_MS = 200        # E1: SETUP -> ALERTING
RELEASE_MS = 300      # E1: SETUP -> DISCONNECT for busy / congestion
ANALOG_DIGIT_MS = 150  # analog: DTMF dialling time per digit


class InboundCall:
    """One scripted caller on a trunk. Its hooks run under the PBX lock."""

    def __init__(self, pbx: "Pbx", call: TrunkCall) -> None:
        self.pbx, self.call = pbx, call
        self.channel: Channel | None = None
        self.inputs = list(call.menu_input)
        self.timers: list = []
        self.abandon = None
        self.queued: bool | None = None
        self.talk = None

    def start(self) -> None:
        with self.pbx.lock:
            self.pbx.pending_scripts += 1
        self.pbx.later(self.call.at_ms, self.arrive, f"call-{self.call.id}")

    def arrive(self) -> None:
        from hil.pbx.agi_client import start_agi

        pbx, call = self.pbx, self.call
        pbx.pending_scripts -= 1
        profile = pbx.world.profile_of(call)
        number = pbx.free_trunk(channel=call.trunk, profile=profile)
        if number is None:
            pbx.record("call_rejected", call=call.id, reason="no free trunk channel")
            return
        pbx.busy_trunks.add(number)
        did = "s" if profile == ANALOG else (call.did or "s")
        name = f"DAHDI/{number}-1"
        pbx.scripted[name] = self
        ch = pbx.new_channel(name, "DAHDI", state=RING, trunk=number, profile=profile,
                             role="customer", call=call.id, caller_num=call.caller,
                             caller_name=call.caller_name or "<unknown>",
                             context=TRUNK_CONTEXT, exten=did)
        ch.variables["__DNID"] = "" if did == "s" else did
        self.channel = ch
        pbx.record("call_arrived", call=call.id, channel=name, trunk=number, profile=profile,
                   caller=call.caller, did=did)
        if call.hangup_after_ms is not None:
            self.timers.append(pbx.later(call.hangup_after_ms, self.hang_up, "caller-hangup"))
        start_agi(pbx, ch, "incoming", [did])

    def hang_up(self) -> None:
        if self.channel is not None:
            self.pbx.hangup(self.channel, self.pbx.trunk_cause(self.channel, 16), by="caller")

    # hooks -----------------------------------------------------------------------------------
    def on_answered(self, ch: Channel) -> None:
        if self.call.hangup_after_answer_ms is not None:
            self.timers.append(self.pbx.later(self.call.hangup_after_answer_ms, self.hang_up, "hangup-after-answer"))
        for item in self.call.dtmf:
            self.pbx.key_digits(ch, item.digits, item.at_ms, self.call.inter_digit_ms)

    def on_bridged(self, ch: Channel) -> None:
        if self.abandon is not None:
            self.abandon.cancel()
        self.queued = False
        if self.call.hangup_after_talk_ms is not None and self.talk is None:
            self.talk = self.pbx.later(self.call.hangup_after_talk_ms, self.hang_up, "hangup-after-talk")
            self.timers.append(self.talk)

    def on_moh(self, ch: Channel, on: bool) -> None:
        """Music on hold first starting means the caller is queued; the patience runs from then
        until a person answers (the music stops while agents ring, the wait goes on)."""
        if on and self.queued is None and self.call.abandon_on_hold_ms is not None:
            self.queued = True
            self.abandon = self.pbx.later(self.call.abandon_on_hold_ms, self.hang_up, "abandon")
            self.timers.append(self.abandon)

    def on_input_wanted(self, ch: Channel) -> None:
        if not self.inputs:
            return
        keys = self.inputs.pop(0)
        if keys:
            self.pbx.key_digits(ch, keys, self.call.key_delay_ms, self.call.inter_digit_ms)

    def on_recording(self, ch: Channel) -> CallerMessage | None:
        """RECORD FILE started recording (after its beep): the caller speaks ``message_ms``, then
        keys ``message_end``, hangs up, or stays silent. None: no message scripted, the caller
        talks until the recording ends."""
        call = self.call
        if call.message_ms is None:
            return None
        if call.message_end == "hangup":
            self.timers.append(self.pbx.later(call.message_ms, self.hang_up, "message-hangup"))
        elif call.message_end != "silence":
            self.pbx.key_digits(ch, call.message_end, call.message_ms, call.inter_digit_ms)
        return CallerMessage(call.message_ms, call.message_end)

    def on_hungup(self, ch: Channel) -> None:
        for timer in self.timers:
            timer.cancel()


def dial_out(pbx: "Pbx", attempt: DialAttempt, leg: Leg, number: str) -> None:
    """Drive an outbound trunk leg by the outside party's script and the trunk's profile."""
    party = next((p for p in pbx.world.outside if p.matches(number)), OutsideParty(number))
    ch = leg.channel
    span = pbx.world.span_of(ch.trunk or 0)
    later = pbx.later

    def t(ms: int, fn, label: str) -> None:
        leg.timers.append(later(ms, fn, label))

    if ch.profile == ANALOG and not (span and span.polarity_reversal):
        dialled = len(number) * ANALOG_DIGIT_MS
        t(dialled, lambda: attempt.leg_answered(leg), "analog-dialled")
        if party.result == "answer" and party.hangup_after_ms is not None:
            after = max(0, party.answer_after_ms - dialled) + party.hangup_after_ms
            pbx.scripted[ch.name] = TalkTimer(pbx, after, "outside", 0)
        pbx.record("analog_line", call=attempt.call, channel=ch.name, far_end=party.result)
        return
    if ch.profile == ANALOG:  # polarity reversal: a real answer, but no causes
        dialled = len(number) * ANALOG_DIGIT_MS
        t(dialled, lambda: attempt.leg_ringing(leg), "analog-ringing")
        if party.result == "answer":
            t(dialled + party.answer_after_ms, lambda: attempt.leg_answered(leg), "polarity-answer")
            if party.hangup_after_ms is not None:
                pbx.scripted[ch.name] = TalkTimer(pbx, party.hangup_after_ms, "outside", 0)
        return
    if party.result == "busy":
        t(RELEASE_MS, lambda: attempt.leg_failed(leg, BUSY, 17), "busy")
    elif party.result == "congestion":
        t(RELEASE_MS, lambda: attempt.leg_failed(leg, CONGESTION, 34), "congestion")
    elif party.result == "unallocated":
        t(ALERT_MS, lambda: pbx.audio.set_source(attempt.caller.name, "announcement:vacant-number")
          if attempt.caller else None, "vacant-announcement")
        t(ALERT_MS + party.announcement_ms, lambda: _vacant_done(pbx, attempt, leg), "unallocated")
    else:
        t(ALERT_MS, lambda: attempt.leg_ringing(leg), "alerting")
        if party.result == "answer":
            t(ALERT_MS + party.answer_after_ms, lambda: attempt.leg_answered(leg), "connect")
            if party.hangup_after_ms is not None:
                pbx.scripted[ch.name] = TalkTimer(pbx, party.hangup_after_ms, "outside", 16)


def _vacant_done(pbx: "Pbx", attempt: DialAttempt, leg: Leg) -> None:
    if attempt.caller is not None:
        pbx.audio.set_source(attempt.caller.name, None)
    attempt.leg_failed(leg, CHANUNAVAIL, 1)
