"""Dialplan applications the edge runs through ``EXEC`` (besides Dial): ChanSpy, PickupChan,
Playback, Wait, MusicOnHold and a few one-liners. Each returns the application's result code,
which ``EXEC`` prints as ``200 result=<code>``; ``-2`` means no such application.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Callable

from hil.pbx.audio import spy_mode
from hil.pbx.channels import UP, Channel
from hil.pbx.dial import run_dial

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

NO_SUCH_APP = -2
_spy_ids = itertools.count(1)
SAMPLES_PER_MS = 8  # endpos counts 8 kHz samples: acc-welcome 2389 ms -> endpos=19112 (agi-01)


def prompt_ms(pbx: "Pbx", name: str, default_ms: int = 1000) -> int | None:
    """Length of a prompt; ``None`` when the file does not exist."""
    prompts = pbx.world.prompts
    if name in prompts:
        return prompts[name]
    return None if pbx.world.strict_prompts or name.startswith("no-such") else default_ms


def play(pbx: "Pbx", ch: Channel, name: str, escape: str = "", keep_digits: bool = False) -> tuple[int, int]:
    """Stream a prompt; returns (result, endpos): 0 done, ASCII of an escape digit, -1 hang-up or
    missing file (``200 result=-1 endpos=0``, fixture agi-01). ``keep_digits``: leave keyed digits
    in the buffer for the caller (GET DATA's prompt)."""
    length = prompt_ms(pbx, name)
    if length is None:
        return -1, 0
    with pbx.lock:
        if ch.hungup:
            return -1, 0
        pbx.stop_moh(ch)  # "stopped automatically and will not be restarted" (res_agi.c docs)
        pbx.audio.set_source(ch.name, f"prompt:{name}")
        ch.dtmf_listening = bool(escape)
        if not keep_digits:
            ch.dtmf = []
        start = pbx.now_ms()
    pbx.wait_until(lambda: ch.hungup or any(d in escape for d in ch.dtmf), length)
    with pbx.lock:
        elapsed = min(length, pbx.now_ms() - start)
        if not ch.hungup:
            pbx.audio.set_source(ch.name, None)
        ch.dtmf_listening = False
        pressed = next((d for d in ch.dtmf if d in escape), None)
        if not keep_digits:
            ch.dtmf = []
    endpos = int(elapsed * SAMPLES_PER_MS)
    if ch.hungup:
        return -1, endpos
    if pressed:
        return ord(pressed), endpos
    return 0, length * SAMPLES_PER_MS


def run_chanspy(pbx: "Pbx", spyer: Channel, data: str) -> int:
    """``ChanSpy(<prefix>,<options>)``: spy on the first live channel whose name starts with the
    prefix; scan again when it hangs up (exit instead with option ``E``); end when the spy does."""
    prefix, _, options = data.partition(",")
    mode = spy_mode(options)
    while True:
        target = pbx.wait_until(lambda: spyer.hungup or _spy_target(pbx, spyer, prefix), None)
        if spyer.hungup or not isinstance(target, Channel):
            return -1
        spy_id = f"spy-{next(_spy_ids)}"
        with pbx.lock:
            pbx.audio.add_spy(spy_id, spyer.name, target.name, mode)
            pbx.emit(pbx.events.chanspy(True, spyer, target))
            peer_call = next((c.call for c in (target.bridge.channels if target.bridge else [])
                              if c.role == "customer"), target.call)
            pbx.record("spy_started", spyer=spyer.name, spyee=target.name, mode=mode,
                       spyer_extension=spyer.extension, spyee_extension=target.extension, call=peer_call)
        pbx.wait_until(lambda: spyer.hungup or target.hungup, None)
        with pbx.lock:
            pbx.audio.remove_spy(spy_id)
            pbx.emit(pbx.events.chanspy(False, spyer, target))
            pbx.record("spy_stopped", spyer=spyer.name, spyee=target.name)
        if spyer.hungup:
            return -1
        if "E" in options:
            return 0


def _spy_target(pbx: "Pbx", spyer: Channel, prefix: str) -> Channel | None:
    candidates = [c for c in pbx.registry.live.values()
                  if c is not spyer and c.name.startswith(prefix) and c.state == UP]
    candidates.sort(key=lambda c: c.bridge is None)  # bridged channels first
    return candidates[0] if candidates else None


def run_pickup(pbx: "Pbx", picker: Channel, data: str) -> int:
    """``PickupChan(PJSIP/8001)``: take over a call ringing at that device; 0 when nothing rings.
    Simplified: the picker's own channel is bridged with the caller (Asterisk moves it instead)."""
    devices = [d.strip() for d in data.split(",")[0].split("&") if d.strip()]
    with pbx.lock:
        found = None
        for attempt, leg in list(pbx.ringing_legs()):
            if leg.channel.device in devices or any(leg.channel.name.startswith(d) for d in devices):
                found = (attempt, leg)
                break
        if found is None:
            return 0
        attempt, leg = found
        pbx.answer(picker)
        attempt.leg_picked(leg, picker)
        pbx.record("picked_up", call=attempt.call, picker=picker.name, extension=picker.extension,
                   device=leg.channel.device)
    pbx.wait_until(lambda: picker.hungup or picker.bridge is not None, 5000)
    pbx.wait_until(lambda: picker.hungup or picker.bridge is None, None)
    return -1 if picker.hungup else 0


def run_wait(pbx: "Pbx", ch: Channel, data: str) -> int:
    try:
        seconds = float(data or 0)
    except ValueError:
        seconds = 0.0
    pbx.wait_until(lambda: ch.hungup, seconds * 1000)
    return -1 if ch.hungup else 0


def run_moh(pbx: "Pbx", ch: Channel, data: str) -> int:
    moh_class, _, duration = data.partition(",")
    pbx.start_moh(ch, moh_class or "default")
    pbx.wait_until(lambda: ch.hungup, float(duration) * 1000 if duration else None)
    pbx.stop_moh(ch)
    return -1 if ch.hungup else 0


def run_playback(pbx: "Pbx", ch: Channel, data: str) -> int:
    result = 0
    for name in data.split(",")[0].split("&"):
        result, _ = play(pbx, ch, name)
        pbx.set_var(ch, "PLAYBACKSTATUS", "SUCCESS" if result == 0 else "FAILED")
        if ch.hungup:
            return -1
    return 0


def run_app(pbx: "Pbx", ch: Channel, app: str, data: str) -> int:
    """Run one application on ``ch`` (from EXEC or an Originate); -2 if unknown."""
    table: dict[str, Callable[[], int]] = {
        "dial": lambda: run_dial(pbx, ch, data),
        "chanspy": lambda: run_chanspy(pbx, ch, data),
        "pickupchan": lambda: run_pickup(pbx, ch, data),
        "wait": lambda: run_wait(pbx, ch, data),
        "musiconhold": lambda: run_moh(pbx, ch, data),
        "playback": lambda: run_playback(pbx, ch, data),
        "answer": lambda: (pbx.answer(ch), 0)[1],
        "hangup": lambda: (pbx.hangup(ch, int(data) if data.isdigit() else 16, by="edge", soft=True), -1)[1],
        "startmusiconhold": lambda: (pbx.start_moh(ch, data or "default"), 0)[1],
        "stopmusiconhold": lambda: (pbx.stop_moh(ch), 0)[1],
        "set": lambda: (_set(pbx, ch, data), 0)[1],
        "noop": lambda: 0, "verbose": lambda: 0, "log": lambda: 0, "ringing": lambda: 0,
        "senddtmf": lambda: (_send_dtmf(pbx, ch, data), 0)[1],
    }
    run = table.get(app.lower())
    if run is None:
        return NO_SUCH_APP
    if ch.hungup and app.lower() not in ("set", "noop", "verbose", "log"):
        return -1
    with pbx.lock:
        ch.application, ch.app_data = app, data
    return run()


def _set(pbx: "Pbx", ch: Channel, data: str) -> None:
    name, _, value = data.partition("=")
    pbx.set_var(ch, name.strip(), value)


def _send_dtmf(pbx: "Pbx", ch: Channel, data: str) -> None:
    with pbx.lock:
        for digit in data.split(",")[0]:
            pbx.emit(pbx.events.dtmf_begin(ch, digit, "Sent"))
            pbx.emit(pbx.events.dtmf_end(ch, digit, "Sent"))
