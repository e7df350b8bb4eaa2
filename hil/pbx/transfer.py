"""Attended transfer (AMI ``Atxfer`` and the transfer DTMF features) and hold, as Asterisk 22 plays
them. derived from source: main/manager.c ``action_atxfer``, main/bridge_basic.c (the ``atxfer``
feature and its state machine), main/bridge_channel.c ``ast_bridge_channel_write_hold``,
res/res_pjsip_sdp_rtp.c (a phone's hold), main/features_config.c (the defaults below). The DTMF
matching itself, and the featuremap's ``atxfer`` code, are ``hil.pbx.features``'s; this module
hands it the transfer's hooks.

``Atxfer`` only queues DTMF on the transferer's channel, as if its phone had keyed them: the
featuremap ``atxfer`` code, then the extension. In a bridge the feature then runs:

1. the transferer writes a hold into its bridge: ``Hold`` for the transferer (no MusicClass) and
   the transferee hears music on hold (and nothing else from then on);
2. the digits after the code are the extension. The simulator's transfer contexts hold one
   extension per scripted phone (``exten => 8002,1,Dial(PJSIP/8002,60)``); anything else does not
   exist: ``pbx-invalid`` to the transferer, the hold is taken back (``Unhold``), nothing more;
3. ``Local/<exten>@<context>-<n>;1`` goes into a new bridge and the transferer moves there (the
   transferer hears ringback); ``;2`` runs ``Dial(PJSIP/<exten>,60)``, so DialBegin/DialState/
   DialEnd name ``;2`` as the caller, never the transferer. When the phone answers, Local channel
   optimization puts it in ``;1``'s place and both Local halves hang up (the short-lived bridge
   of ``;2`` and LocalOptimizationBegin/End are not emitted).

Then, by bridge_basic.c's states: the transferer hanging up (or keying ``*2``) completes: the
target joins the transferee's bridge, ``AttendedTransfer`` ``Result: Success``. Before the answer
that is a blond transfer (same event, the ringing ``;1`` is the TransferTarget). The target not
answering within ``atxfernoanswertimeout``, refusing or hanging up, or ``*1``, puts the transferer
back with the transferee (``Unhold``) and publishes no AttendedTransfer at all. The transferee
hanging up first publishes ``Result: Fail`` (``DestType: Fail``). ``*4`` swaps the transferer
between the two parties; the one left is on hold. Not modelled: ``*3`` (threeway) and the recall
of a blond transfer nobody answers (Asterisk rings the transferer back, atxfercallbackretries
times; here the transferee's bridge ends at once and its Dial returns).

The transferer must be the called party of the transferee's ``Dial`` (an agent the caller's Dial
reached): that Dial goes on with whoever is the transferee's peer, and returns only when the
transferee's bridge ends, with ``ANSWEREDTIME`` counting the whole answered time.

Records: ``atxfer`` (call, what, transferer, exten, context, target, result) with ``what`` one of
``started consulting swapped completed blond rebridged resumed failed invalid ignored``, ``hold``
(call, channel, on, moh_class, peers) and ``bridged`` when the transferee meets the target.
"""
from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Callable

from hil.pbx.channels import RING, RINGING, Bridge, Channel
from hil.pbx.dial import ANSWER, CANCEL, DialAttempt, Leg, request
from hil.pbx.features import FEATURE_ATXFER, queue_dtmf
from hil.pbx.timebase import Timer

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

log = logging.getLogger(__name__)

ABORT, COMPLETE, THREEWAY, SWAP = "*1", "*2", "*3", "*4"  # atxferabort/complete/threeway/swap
TRANSFER_DIGIT_MS = 3000  # transferdigittimeout
NO_ANSWER_MS = 15000      # atxfernoanswertimeout
DIAL_TIMEOUT_S = 60       # the transfer context's Dial
MOH_SUGGEST = "default"   # res_pjsip endpoint moh_suggest: the class a phone's hold asks for

COLLECTING, CALLING, HESITANT, CONSULTING, DOUBLECHECKING, BLOND, DONE = (
    "collecting", "calling", "hesitant", "consulting", "doublechecking", "blond", "done")
TRANSFEREE_HANGUP, TRANSFERER_HANGUP, TARGET_HANGUP, TARGET_ANSWER, TIMEOUT = (
    "transferee hangup", "transferer hangup", "target hangup", "target answer", "timeout")


# --- hold ------------------------------------------------------------------------------------------
def _others(ch: Channel) -> list[Channel]:
    return [c for c in (ch.bridge.channels if ch.bridge else []) if c is not ch]


def write_hold(pbx: "Pbx", ch: Channel, moh_class: str | None = None) -> None:
    """``ch`` puts its bridge on hold: ``Hold`` for ``ch``, music on hold for everyone else."""
    pbx.emit(pbx.events.hold(ch, moh_class))
    peers = _others(ch)
    for peer in peers:
        pbx.start_moh(peer, moh_class or "default")
    pbx.record("hold", call=ch.call, channel=ch.name, on=True, moh_class=moh_class or "default",
               peers=[p.name for p in peers])


def write_unhold(pbx: "Pbx", ch: Channel) -> None:
    pbx.emit(pbx.events.unhold(ch))
    peers = _others(ch)
    for peer in peers:
        pbx.stop_moh(peer)
    pbx.record("hold", call=ch.call, channel=ch.name, on=False, moh_class="", peers=[p.name for p in peers])


def phone_hold(pbx: "Pbx", ch: Channel, on: bool) -> None:
    """The desk phone on ``ch`` sends a ``sendonly`` re-INVITE (``on``) or takes it back:
    ``ast_queue_hold(chan, moh_suggest)`` -> ``Hold`` with ``MusicClass: default``; the RTP stream
    stops, so neither side hears the other while the peer hears the music."""
    with pbx.lock:
        held = _registry(pbx).held
        if ch.hungup or (ch.name in held) == on:
            return
        pbx.audio.set_held(ch.name, on)
        if on:
            held.add(ch.name)
            write_hold(pbx, ch, MOH_SUGGEST)
        else:
            held.discard(ch.name)
            write_unhold(pbx, ch)
        pbx.changed()


# --- the transfer's part of the bridge features (hil.pbx.features matches the digits) -------------
class _Registry:
    def __init__(self) -> None:
        self.transfers: dict[str, AttendedTransfer] = {}  # transferer channel name -> transfer
        self.held: set[str] = set()


_registries: "weakref.WeakKeyDictionary[Pbx, _Registry]" = weakref.WeakKeyDictionary()


def _registry(pbx: "Pbx") -> _Registry:
    registry = _registries.get(pbx)
    if registry is None:
        registry = _registries[pbx] = _Registry()
    return registry


def atxfer(pbx: "Pbx", ch: Channel, exten: str, context: str) -> None:
    """AMI ``Atxfer`` after its checks: ``TRANSFER_CONTEXT`` when given, then the feature code and
    the extension queued as received DTMF frames (``ast_queue_frame``). Called under the lock."""
    if context:
        pbx.set_var(ch, "TRANSFER_CONTEXT", context)
    pbx.later(0, lambda: queue_dtmf(pbx, ch, FEATURE_ATXFER + exten), "atxfer")


def phone_holds(pbx: "Pbx", ch: Channel) -> bool:
    """Whether the desk phone on ``ch`` has the call on hold (its own re-INVITE)."""
    return ch.name in _registry(pbx).held


def collect_digit(pbx: "Pbx", ch: Channel, digit: str) -> bool:
    """The transferer keying the extension (ast_app_dtget) takes the digit from feature matching."""
    xfer = _registry(pbx).transfers.get(ch.name)
    if xfer is None or xfer.state != COLLECTING:
        return False
    xfer.collect(digit)
    return True


def personality_hooks(pbx: "Pbx", ch: Channel) -> dict[str, Callable[[], None]] | None:
    """While a transfer runs its bridges have the atxfer personality: the transferer has the
    transfer's hooks, everyone else none; ``None`` outside a transfer (the normal hooks apply)."""
    xfer = _registry(pbx).transfers.get(ch.name)
    if xfer is not None:
        return xfer.hooks(ch)
    if isinstance(getattr(ch.bridge, "personality", None), AttendedTransfer):
        return {}
    return None


def builtin_hooks(pbx: "Pbx", ch: Channel) -> dict[str, Callable[[], None]]:
    """The featuremap hooks of a channel in a normal bridge: ``atxfer``."""
    if not FEATURE_ATXFER:
        return {}
    return {FEATURE_ATXFER: lambda: AttendedTransfer(pbx, ch).start()}


# --- the consultation call -------------------------------------------------------------------------
class ConsultDial(DialAttempt):
    """``Dial(PJSIP/<exten>,60)`` run by ``;2``: a Dial whose outcome the transfer follows."""

    def __init__(self, pbx: "Pbx", caller: Channel, xfer: "AttendedTransfer") -> None:
        super().__init__(pbx, caller, caller.call)
        self.xfer = xfer

    def leg_ringing(self, leg: Leg) -> None:
        super().leg_ringing(leg)
        self.xfer.target_ringing()

    def leg_answered(self, leg: Leg) -> None:
        first = self.winner is None and leg.status is None
        super().leg_answered(leg)
        if first and self.winner is leg:
            self.xfer.target_answered(self, leg)

    def leg_failed(self, leg: Leg, status: str, cause: int) -> None:
        super().leg_failed(leg, status, cause)
        if self.winner is None and not self.pending:
            self.xfer.local_gone()


# --- the transfer ----------------------------------------------------------------------------------
class AttendedTransfer:
    """One attended transfer by ``transferer``; every method runs under the PBX lock. It is the
    ``personality`` of both bridges while it lasts: ``Pbx.hangup`` hands it any channel leaving
    them (bridge_basic.c's atxfer personality ``pull``)."""

    def __init__(self, pbx: "Pbx", transferer: Channel) -> None:
        self.pbx, self.transferer = pbx, transferer
        self.context = (transferer.variables.get("TRANSFER_CONTEXT") or transferer.context or "default")
        self.bridge: Bridge = transferer.bridge  # the transferee's bridge: it survives the transfer
        self.transferee = next(iter(_others(transferer)), None)
        self.target_bridge: Bridge | None = None
        self.exten = ""
        self.state = COLLECTING
        self.one: Channel | None = None
        self.two: Channel | None = None
        self.recall_target: Channel | None = None  # the ringing ;1 once a blond transfer is done
        self.consult: ConsultDial | None = None
        self.timers: dict[str, Timer] = {}
        self.peer = transferer  # who the transferee's Dial has in its bridge now
        self.ringback: set[str] = set()
        self.personality = getattr(self.bridge, "personality", None)  # the bridge's before us

    # --- the feature ---------------------------------------------------------------------------
    def start(self) -> None:
        pbx, t = self.pbx, self.transferer
        if self._dial_of_transferee() is None and any(a.caller is t and a.winner for a in pbx.attempts):
            self._record("ignored", result="the transferer is the caller of a Dial (not modelled)")
            log.warning("atxfer from %s ignored: it placed its own Dial", t.name)
            return
        _registry(pbx).transfers[t.name] = self
        write_hold(pbx, t)
        self._arm("digits", TRANSFER_DIGIT_MS, self.digits_done)
        pbx.changed()

    def collect(self, digit: str) -> None:
        """ast_app_dtget: ends when no longer extension can match, or at the digit timeout."""
        self.exten += digit
        phones = self.pbx.world.phones
        if any(p != self.exten and p.startswith(self.exten) for p in phones):
            self._arm("digits", TRANSFER_DIGIT_MS, self.digits_done)
        else:
            self.digits_done()

    def digits_done(self) -> None:
        if self.state != COLLECTING:
            return
        self._cancel("digits")
        if self.transferer.hungup or self.transferer.bridge is not self.bridge:  # the call ended
            self._record("ignored", result="the bridge ended while the extension was keyed")
            self._shutdown()
            return
        if self.exten in self.pbx.world.phones:
            self.dial()
            return
        self._record("invalid")  # grab_transfer: pbx-invalid, then the hold is taken back
        write_unhold(self.pbx, self.transferer)
        self._shutdown()

    def dial(self) -> None:
        """dial_transfer + the rest of feature_attended_transfer, then the CALLING state."""
        pbx, t = self.pbx, self.transferer
        base = f"Local/{self.exten}@{self.context}-{pbx.registry.next_suffix()}"
        common = dict(linkedid=t.linkedid, context=self.context, exten=self.exten, role="local", call=t.call)
        self.one = pbx.new_channel(base + ";1", "Local", accountcode=t.accountcode,
                                   connected_num=t.caller_num, connected_name=t.caller_name, **common)
        self.two = pbx.new_channel(base + ";2", "Local", state=RING, caller_num=t.caller_num,
                                   caller_name=t.caller_name, **common)
        pbx.set_var(self.one, "TRANSFERERNAME", t.name)
        pbx.set_var(self.one, "ATTENDEDTRANSFER", t.name)
        self.target_bridge = Bridge()
        pbx.emit(pbx.events.bridge_create(self.target_bridge))
        self.bridge.personality = self.target_bridge.personality = self  # type: ignore[attr-defined]
        pbx.emit(pbx.events.local_bridge(self.one, self.two))  # ast_call
        self._enter(self.target_bridge, self.one)              # ast_bridge_impart
        self._record("started", target=self.one.name)
        self._calling()
        pbx.newexten(self.two, "Dial", f"PJSIP/{self.exten},{DIAL_TIMEOUT_S}")
        self.consult = ConsultDial(pbx, self.two, self)
        pbx.attempts.add(self.consult)
        if request(pbx, self.consult, f"PJSIP/{self.exten}") is None:  # CHANUNAVAIL: Dial returns
            pbx.later(0, self.local_gone, "consult-chanunavail")
        pbx.changed()

    def hooks(self, ch: Channel) -> dict[str, Callable[[], None]]:
        """The transferer's DTMF hooks while the transfer runs (bridge_personality_atxfer_push)."""
        if ch is not self.transferer or self.state not in (CALLING, HESITANT, CONSULTING, DOUBLECHECKING):
            return {}
        return {ABORT: lambda: self.stimulus(ABORT), COMPLETE: lambda: self.stimulus(COMPLETE),
                THREEWAY: lambda: self._record("ignored", result="threeway is not modelled"),
                SWAP: lambda: self.stimulus(SWAP)}

    # --- the far end ---------------------------------------------------------------------------
    def target_ringing(self) -> None:
        if self.one is not None and not self.one.hungup:
            self.pbx.ringing(self.one)
            self._tones()

    def target_answered(self, consult: ConsultDial, leg: Leg) -> None:
        """Dial on ;2 answered: DialEnd, ;2 and ;1 up; then Local optimization swaps the phone
        into ;1's bridge and the Local pair goes away."""
        pbx, one, two, phone = self.pbx, self.one, self.two, leg.channel
        if self.state in (COLLECTING, DONE) or one is None or two is None:
            return
        pbx.emit(pbx.events.dial_end(two, phone, ANSWER))
        consult.record_end(leg, ANSWER)
        pbx.answer(two)
        pbx.answer(one)
        pbx.attempts.discard(consult)
        bridge = one.bridge
        if bridge is not None:
            self._enter(bridge, phone)
            self._leave(one)
        if self.recall_target is one:
            self.recall_target = phone
        for local in (one, two):
            pbx.hangup(local, 16, by="system", soft=True)
        self.stimulus(TARGET_ANSWER, phone)

    def local_gone(self) -> None:
        """;2's Dial returned without an answer: the dialplan ends, ;2 and then ;1 hang up."""
        if self.consult is not None and not self.consult.pending:
            self.pbx.attempts.discard(self.consult)
        for local in (self.two, self.one):
            if local is not None and not local.hungup:
                self.pbx.hangup(local, 16, by="system", soft=True)

    # --- the bridges' personality ----------------------------------------------------------------
    def pull(self, ch: Channel) -> bool:
        """``ch`` hangs up in one of our bridges (transfer_pull / recall_pull)."""
        if self.state == DONE:
            return False
        bridge = ch.bridge
        self._leave(ch)
        if ch is self.transferer:
            self.stimulus(TRANSFERER_HANGUP)
        elif self.state == BLOND:
            if ch is self.recall_target:
                self.stimulus(TARGET_HANGUP)
            elif all(c is self.recall_target for c in bridge.channels):
                self.stimulus(TRANSFEREE_HANGUP)
        elif all(c is self.transferer for c in bridge.channels):
            self.stimulus(TRANSFEREE_HANGUP if bridge is self.bridge else TARGET_HANGUP)
        self.pbx.changed()
        return True

    # --- the state machine (bridge_basic.c *_exit functions) -------------------------------------
    def stimulus(self, what: str, target: Channel | None = None) -> None:
        state = self.state
        if what == TRANSFEREE_HANGUP:
            if state == CONSULTING:  # the consultation goes on as a normal call
                self.target_bridge.personality = _Normal(self.pbx)  # type: ignore[union-attr]
                self.target_bridge = None
                self._repoint(self.transferee)  # the transferee's Dial no longer owns the transferer
            elif state != BLOND:
                self._publish("Fail", None)
            self._fail()
        elif state == BLOND:
            if what == TARGET_ANSWER:
                self._joined(target)
                self._finish("resumed")
            elif what in (TIMEOUT, TARGET_HANGUP):  # the recall is not modelled
                self._fail()
        elif what in (TRANSFERER_HANGUP, COMPLETE):
            if state == CALLING:
                self._bridge_moh(self.bridge, False)
            if state in (CALLING, HESITANT):
                self._blond()
            elif state in (CONSULTING, DOUBLECHECKING):
                self._bridge_moh(self.bridge if state == CONSULTING else self.target_bridge, False)
                self._complete()
        elif what == TARGET_ANSWER:
            self.state = CONSULTING if state == CALLING else DOUBLECHECKING
            self._tones()
            self._record("consulting", target=target.name if target else "")
        elif what in (TARGET_HANGUP, TIMEOUT, ABORT):
            if what == TIMEOUT and state not in (CALLING, HESITANT):
                return
            if state in (CALLING, CONSULTING):  # failsound, then back to the transferee
                self._move(self.transferer, self.bridge)
                write_unhold(self.pbx, self.transferer)
                self._finish("rebridged")
            else:
                self._finish("resumed")
        elif what == SWAP:
            self._swap()
        self.pbx.changed()

    def _calling(self) -> None:
        """calling_target_enter: the transferer joins the target bridge; the no-answer timer
        starts over."""
        self.state = CALLING
        self._move(self.transferer, self.target_bridge)
        self._arm("no-answer", NO_ANSWER_MS, lambda: self.stimulus(TIMEOUT))
        self._tones()

    def _swap(self) -> None:
        t = self.transferer
        if self.state == CALLING:  # -> hesitant: back to the transferee, the target still rings
            self._move(t, self.bridge)
            write_unhold(self.pbx, t)
            self.state = HESITANT
        elif self.state == HESITANT:
            write_hold(self.pbx, t)
            self._calling()
        elif self.state in (CONSULTING, DOUBLECHECKING):
            going_to = self.bridge if self.state == CONSULTING else self.target_bridge
            write_hold(self.pbx, t)
            self._move(t, going_to)
            write_unhold(self.pbx, t)
            self.state = DOUBLECHECKING if self.state == CONSULTING else CONSULTING
        self._tones()
        self._record("swapped", result="with transferee" if t.bridge is self.bridge else "with target")

    def _complete(self) -> None:
        """complete_enter: the target bridge merges into the transferee's, the transferer is
        kicked (already gone when it hung up)."""
        transferee, target = self._parties()
        self._merge()
        self._publish("Success", self.bridge.uniqueid, transferee, target)
        if target is not None:
            self._joined(target)
        self._finish("completed")

    def _blond(self) -> None:
        """blond_nonfinal_enter: as complete, and the ringing ;1 sounds in the transferee's
        bridge; the recall superstate waits for its answer."""
        transferee, target = self._parties()
        self._merge()
        self._publish("Success", self.bridge.uniqueid, transferee, target)
        self.recall_target = self.one
        self.state = BLOND
        self._joined(self.one)
        self._tones()
        self._record("blond", target=self.one.name if self.one else "")

    def _fail(self) -> None:
        """fail_enter: the transferee's bridge is destroyed (its Dial returns)."""
        self._destroy(self.bridge)
        self._finish("failed")

    def _finish(self, what: str) -> None:
        """attended_transfer_properties_shutdown."""
        self.state = DONE
        for timer in self.timers.values():
            timer.cancel()
        self.bridge.personality = self.personality  # type: ignore[attr-defined]
        if self.target_bridge is not None:
            self._destroy(self.target_bridge)
        self._tones()
        self._record(what)
        self._shutdown()

    def _shutdown(self) -> None:
        reg = _registry(self.pbx)
        if reg.transfers.get(self.transferer.name) is self:
            del reg.transfers[self.transferer.name]
        self.state = DONE

    # --- helpers -----------------------------------------------------------------------------
    def _parties(self) -> tuple[Channel | None, Channel | None]:
        """get_transfer_parties: the peer in the transferer's bridge, the lone one in the other."""
        def lone(bridge: Bridge | None) -> Channel | None:
            return bridge.channels[0] if bridge is not None and len(bridge.channels) == 1 else None

        def peer(bridge: Bridge) -> Channel | None:
            others = [c for c in bridge.channels if c is not self.transferer]
            return others[0] if len(bridge.channels) == 2 and len(others) == 1 else None
        t = self.transferer
        if t.bridge is self.bridge:
            return peer(self.bridge), lone(self.target_bridge)
        if t.bridge is not None and t.bridge is self.target_bridge:
            return lone(self.bridge), peer(self.target_bridge)
        return lone(self.bridge), lone(self.target_bridge)

    def _publish(self, result: str, dest: str | None, transferee: Channel | None = None,
                 target: Channel | None = None) -> None:
        if dest is None:
            transferee, target = self._parties()
        t, pbx = self.transferer, self.pbx
        pbx.emit(pbx.events.attended_transfer(result, t, self.bridge, t, self.target_bridge,
                                              transferee, target, dest))

    def _merge(self) -> None:
        for ch in list(self.target_bridge.channels):
            if ch is self.transferer:
                continue
            self._leave(ch)
            self._enter(self.bridge, ch)
        if self.transferer.bridge is not None:  # *2 keyed: the transferer is kicked
            self._kick(self.transferer)

    def _repoint(self, peer: Channel | None) -> None:
        """Asterisk's Dial only waits for its caller to leave the bridge, whoever the peer has
        become; the simulator's Dial (dial.py) watches its answered leg, so the leg follows."""
        leg = self._dial_of_transferee()
        if leg is not None and peer is not None:
            leg.channel = peer
            self.peer = peer

    def _joined(self, target: Channel | None) -> None:
        """The transferee's Dial now has ``target`` in its bridge."""
        self._repoint(target)
        if target is not None and target.tech != "Local" and self.transferee is not None:
            pair = [target, self.transferee]
            self.pbx.record("bridged", call=self.transferee.call, bridge=self.bridge.uniqueid,
                            channels=[c.name for c in pair],
                            extensions=[c.extension for c in pair if c.extension],
                            numbers=[c.exten for c in pair if c.role == "outside"])

    def _dial_of_transferee(self) -> Leg | None:
        for attempt in self.pbx.attempts:
            if attempt.caller is self.transferee and attempt.winner and attempt.winner.channel is self.peer:
                return attempt.winner
        return None

    def _enter(self, bridge: Bridge, ch: Channel) -> None:
        bridge.channels.append(ch)
        ch.bridge = bridge
        self.pbx.emit(self.pbx.events.bridge_enter(bridge, ch))
        self.pbx.audio.set_bridge(bridge.uniqueid, {c.name for c in bridge.channels})

    def _leave(self, ch: Channel) -> None:
        bridge = ch.bridge
        if bridge is None:
            return
        bridge.channels.remove(ch)
        ch.bridge = None
        self.pbx.emit(self.pbx.events.bridge_leave(bridge, ch))
        self.pbx.audio.set_bridge(bridge.uniqueid, {c.name for c in bridge.channels})

    def _move(self, ch: Channel, bridge: Bridge) -> None:
        if ch.bridge is not bridge:
            self._leave(ch)
            self._enter(bridge, ch)

    def _kick(self, ch: Channel) -> None:
        """Out of the bridge; imparted channels (all but the transferee running Dial) hang up."""
        self._leave(ch)
        if ch is self.transferee:
            return
        self.pbx.hangup(ch, 16, by="system", soft=True)
        if ch is self.one or ch is self.two:
            self.local_gone()

    def _destroy(self, bridge: Bridge) -> None:
        for ch in list(bridge.channels):
            self._kick(ch)
        self.pbx.emit(self.pbx.events.bridge_destroy(bridge))
        if self.consult is not None and self.consult.pending and (self.two is None or self.two.hungup):
            self.consult.cancel_pending(CANCEL, 16)  # ;2 gone: its Dial cancels the ringing phone
            self.pbx.attempts.discard(self.consult)

    def _bridge_moh(self, bridge: Bridge | None, on: bool) -> None:
        """bridge_hold / bridge_unhold: a hold frame to everyone but the transferer (no event)."""
        for ch in (bridge.channels if bridge else []):
            if ch is not self.transferer:
                (self.pbx.start_moh if on else self.pbx.stop_moh)(ch)

    def _tones(self) -> None:
        """Whoever shares a bridge with the ringing ;1 hears ringback (the RINGING indication);
        nobody else does."""
        one = self.one
        ringing = (self.state != DONE and one is not None and not one.hungup and one.state == RINGING
                   and one.bridge is not None)
        want = {c.name for c in one.bridge.channels if c is not one and not c.moh} if ringing else set()
        for name in self.ringback - want:
            self.pbx.audio.set_source(name, None)
        for name in want - self.ringback:
            self.pbx.audio.set_source(name, "tone:ringback")
        self.ringback = want

    def _arm(self, name: str, ms: int, fn: Callable[[], None]) -> None:
        self._cancel(name)
        self.timers[name] = self.pbx.later(ms, fn, f"atxfer-{name}")

    def _cancel(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _record(self, what: str, **data: object) -> None:
        self.pbx.record("atxfer", call=self.transferer.call, what=what, transferer=self.transferer.name,
                        exten=self.exten, context=self.context, **data)


class _Normal:
    """A basic bridge again (the consultation after the transferee hung up): when one party
    leaves, the bridge dissolves and the other, imparted, hangs up."""

    def __init__(self, pbx: "Pbx") -> None:
        self.pbx = pbx

    def pull(self, ch: Channel) -> bool:
        bridge = ch.bridge
        others = [c for c in bridge.channels if c is not ch]
        self.pbx.leave_bridge(bridge)
        for other in others:
            self.pbx.hangup(other, 16, by="system", soft=True)
        return True
