"""Local channel pairs for Originate ``Local/<exten>@sim-trunk``: the ``;2`` half runs the far-end
dialplan the fixtures were recorded with (README table), so fixture scenarios replay here.

Event sequence before the far end acts (fixtures ami-04/06/08): Newchannel ;1 (Down) and ;2
(Ring), Newexten ;1 ``AppDial2``, NewCallerid/NewConnectedLine for both when a CallerID was given,
LocalBridge, DialBegin (Dest ;1 only). A missing extension or context creates the pair and hangs
both up with cause 0 (ami-16): OriginateResponse Reason 0.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hil.pbx.apps import play
from hil.pbx.channels import BUSY, RING, RINGING, UP, Channel

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

SIM_TRUNK = "sim-trunk"
LOCAL_DIALPLAN: dict[str, list[tuple]] = {
    "100": [("answer",), ("playback", "acc-welcome"), ("senddtmf", "1"), ("wait", 1000), ("hangup",)],
    "101": [("answer",), ("wait", 5000), ("hangup",)],
    "102": [("answer",), ("wait", 1000), ("senddtmf", "1234#"), ("wait", 2000), ("hangup",)],
    "200": [("busy",)],
    "300": [("congestion",)],
    "400": [("ringing",), ("wait", 3_600_000)],
    "500": [("answer",), ("moh",)],
    "600": [("answer",), ("echo",)],
    "700": [("answer",), ("wait", 60_000)],
    "800": [("ringing",), ("wait", 3000), ("answer",), ("playback", "acc-welcome"), ("wait", 30_000)],
}
BUILTIN_PROMPTS = {"acc-welcome": 2389, "acc-menu": 3000}


class LocalPair:
    """Outcome for Originate: ``result`` None while pending, then (reason, success)."""

    def __init__(self, pbx: "Pbx", exten: str, context: str, cid: tuple[str, str] | None) -> None:
        self.pbx, self.exten, self.context, self.cid = pbx, exten, context, cid
        self.result: tuple[int, bool] | None = None
        suffix = pbx.registry.next_suffix()
        base = f"Local/{exten}@{context}-{suffix}"
        with pbx.lock:
            self.one = pbx.new_channel(base + ";1", "Local", context=context, exten=exten, role="local")
            self.two = pbx.new_channel(base + ";2", "Local", state=RING, linkedid=self.one.linkedid,
                                       context=context, exten=exten, role="local")
            pbx.scripted[self.one.name] = self
            pbx.scripted[self.two.name] = self
            pbx.newexten(self.one, "AppDial2", "(Outgoing Line)")
            if cid:
                for ch in (self.one, self.two):
                    ch.caller_num, ch.caller_name = cid
                    pbx.emit(pbx.events.new_callerid(ch))
                    ch.connected_num, ch.connected_name = cid
                    pbx.emit(pbx.events.new_connected_line(ch))
            pbx.emit(pbx.events.local_bridge(self.one, self.two))
            pbx.emit(pbx.events.dial_begin(None, self.one, f"{exten}@{context}"))
            pbx.audio.set_bridge(f"local-{suffix}", {self.one.name, self.two.name})

    def run_far_end(self) -> None:
        """The ;2 half's dialplan, in its own thread."""
        steps = LOCAL_DIALPLAN.get(self.exten) if self.context == SIM_TRUNK else None
        if steps is None:
            self._finish(0, False)
            with self.pbx.lock:
                self.pbx.hangup(self.two, 0, by="system", soft=True)
                self.pbx.hangup(self.one, 0, by="system", soft=True)
            return
        for step in steps:
            if self.two.hungup:
                return
            getattr(self, f"_step_{step[0]}")(*step[1:])

    def _finish(self, reason: int, success: bool) -> None:
        with self.pbx.lock:
            if self.result is None:
                self.result = (reason, success)
                self.pbx.changed()

    # far-end steps --------------------------------------------------------------------------
    def _step_answer(self) -> None:
        pbx = self.pbx
        with pbx.lock:
            pbx.newexten(self.two, "Answer", "")
            pbx.set_state(self.two, UP)
            pbx.set_state(self.one, UP)
            self._finish(4, True)

    def _step_busy(self) -> None:
        self._refuse("Busy", BUSY, "BUSY", 5, 17)

    def _step_congestion(self) -> None:
        self._refuse("Congestion", self.two.state, "CONGESTION", 8, 34)

    def _refuse(self, app: str, state: int, status: str, reason: int, cause: int) -> None:
        pbx = self.pbx
        with pbx.lock:
            self._finish(reason, False)
            pbx.newexten(self.two, app, "")
            if state != self.two.state:
                pbx.set_state(self.two, state)
            pbx.emit(pbx.events.dial_end(None, self.one, status))
            pbx.emit(pbx.events.hangup_request(self.two, 0))  # fixture ami-06 order
            pbx.hangup(self.one, 0, by="outside", request=False)
            pbx.hangup(self.two, cause, by="outside", soft=True, request_cause=16)

    def _step_ringing(self) -> None:
        pbx = self.pbx
        with pbx.lock:
            pbx.newexten(self.two, "Ringing", "")
            pbx.set_state(self.one, RINGING)
            pbx.emit(pbx.events.dial_state(None, self.one, "RINGING"))

    def _step_wait(self, ms: int) -> None:
        self.pbx.newexten(self.two, "Wait", str(ms // 1000))
        self.pbx.wait_until(lambda: self.two.hungup, ms)

    def _step_playback(self, name: str) -> None:
        pbx = self.pbx
        pbx.world.prompts.setdefault(name, BUILTIN_PROMPTS.get(name, 1000))
        pbx.newexten(self.two, "Playback", name)
        result, _ = play(pbx, self.two, name)
        pbx.set_var(self.two, "PLAYBACKSTATUS", "SUCCESS" if result == 0 else "FAILED")

    def _step_senddtmf(self, digits: str) -> None:
        self.pbx.newexten(self.two, "SendDTMF", digits)
        with self.pbx.lock:
            self.pbx.key_digits(self.one, digits, 0, 250)  # 100 ms tones 250 ms apart (ami-10)
        self.pbx.wait_until(lambda: self.two.hungup, 250 * len(digits))

    def _step_moh(self) -> None:
        self.pbx.newexten(self.two, "MusicOnHold", "")
        self.pbx.start_moh(self.two)
        self.pbx.wait_until(lambda: self.two.hungup, None)

    def _step_echo(self) -> None:
        self.pbx.newexten(self.two, "Echo", "")
        self.pbx.wait_until(lambda: self.two.hungup, None)

    def _step_hangup(self) -> None:
        with self.pbx.lock:
            self.pbx.newexten(self.two, "Hangup", "")
            self.pbx.hangup(self.two, 16, by="outside", soft=True)

    # the two halves follow each other ---------------------------------------------------------
    def on_hungup(self, ch: Channel) -> None:
        other = self.two if ch is self.one else self.one
        if other.hungup:
            return
        cause = ch.cause if ch.cause in (16, 19) else 0
        self.pbx.later(0, lambda: self.pbx.hangup(other, cause, by=ch.hangup_by or "system",
                                                  soft=other is self.two), "local-pair")

    def timeout(self) -> None:
        """Originate's Timeout hit: Reason 3 when ringing (ami-08), both halves cause 19."""
        pbx = self.pbx
        with pbx.lock:
            if self.result is not None:
                return
            self._finish(3 if self.one.state == RINGING else 0, False)
            pbx.emit(pbx.events.hangup_request(self.two, 19))  # fixture ami-08 order
            pbx.hangup(self.two, 19, by="system", soft=True, request_cause=16)
            pbx.hangup(self.one, 19, by="system", request=False)


