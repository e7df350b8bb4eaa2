"""AMI ``Originate``: ring a channel, report OriginateResponse, then run its application or context.

Reasons (README #3, the AST_CONTROL_* codes): 4 answered, 5 busy, 8 congestion, 3 still ringing
when ``Timeout`` hit, 1 the far end released (e.g. unallocated number), 0 no channel at all (unknown
technology, unregistered phone, no free trunk, missing Local extension). Failure names the dial
string and ``Uniqueid: <unknown>``; success the real channel.

After the answer: ``Application: AGI`` + ``Data: agi://host:port/script,args`` opens FastAGI;
other applications run as in ``apps.py``; ``Context``/``Exten`` follow the simulator's dialplan
convention: every context hands the call to the edge's FastAGI script of the same name with the
extension as ``agi_arg_1`` (``[ctx] exten => _X.,1,AGI(agi://EDGE:4573/ctx,${EXTEN})``).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from hil.pbx.apps import run_app
from hil.pbx.channels import RINGING, UNKNOWN, Channel
from hil.pbx.dial import BUSY, CONGESTION, DialAttempt, request
from hil.pbx.local import LocalPair

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

_AGI_URL = re.compile(r"^agi://(?P<host>[^:/]+)(?::(?P<port>\d+))?/(?P<script>[^,]*)(?:,(?P<args>.*))?$")


def parse_callerid(value: str) -> tuple[str, str] | None:
    """``Acceptance <5551000>`` -> (``5551000``, ``Acceptance``); ``5551000`` -> (num, num)."""
    if not value:
        return None
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', value)
    if m:
        return m.group(2), m.group(1) or UNKNOWN
    return value.strip(), UNKNOWN


def originate(pbx: "Pbx", fields: dict[str, str], variables: list[str], action_id: str,
              on_outcome: Callable[[bool], None], asynchronous: bool = True) -> None:
    """Runs in its own thread; calls ``on_outcome`` once when answered or failed (False if this
    crashes first, so a sync Originate never hangs its AMI session). Only an async Originate
    raises the OriginateResponse event (fixtures ami-14/15 have none)."""
    told: list[bool] = []

    def tell(success: bool) -> None:
        if not told:
            told.append(success)
            on_outcome(success)
    try:
        _originate(pbx, fields, variables, action_id, tell, asynchronous)
    finally:
        tell(False)


def _originate(pbx: "Pbx", fields: dict[str, str], variables: list[str], action_id: str,
               on_outcome: Callable[[bool], None], asynchronous: bool) -> None:
    target = fields.get("Channel", "")
    app = fields.get("Application", "")
    target_headers = ([("Application", app), ("Data", fields.get("Data", ""))] if app else
                      [("Context", fields.get("Context", "")), ("Exten", fields.get("Exten", ""))])
    cid = parse_callerid(fields.get("CallerID", ""))
    timeout_ms = float(fields.get("Timeout") or 30000)
    call = next((v.split("=", 1)[1] for v in variables if v.startswith("SIM_CALL=")), "") \
        or f"originate-{pbx.next_originate_id()}"  # per simulator: labels repeat across runs
    tech, _, resource = target.partition("/")
    ch: Channel | None
    if tech == "Local" and "@" in resource:
        exten, _, context = resource.partition("@")
        pair = LocalPair(pbx, exten, context, cid)
        ch = pair.one
        ch.call = pair.two.call = call
        _apply(ch, variables)
        pbx.spawn(pair.run_far_end, f"local-{ch.name}")
        pbx.wait_until(lambda: pair.result is not None, timeout_ms)
        if pair.result is None:
            pair.timeout()
        reason, success = pair.result or (0, False)
    else:
        attempt = DialAttempt(pbx, None, call)
        with pbx.lock:
            pbx.attempts.add(attempt)
            leg = request(pbx, attempt, target) if tech in ("PJSIP", "DAHDI") else None
            if leg is not None:
                _apply(leg.channel, variables)
                if cid:
                    leg.channel.connected_num, leg.channel.connected_name = cid
        try:
            ch = leg.channel if leg else None
            if leg is not None:
                pbx.wait_until(lambda: attempt.winner or not attempt.pending, timeout_ms)
            reason, success = _outcome(pbx, attempt, leg)
        finally:
            with pbx.lock:
                pbx.attempts.discard(attempt)
    if asynchronous:
        _respond(pbx, action_id, success, target, target_headers, reason, ch, cid)
    pbx.record("originate", action_id=action_id, channel=ch.name if ch else target, success=success,
               reason=reason, call=call)
    on_outcome(success)
    if success and ch is not None:
        _run_after_answer(pbx, ch, fields)


def _apply(ch: Channel, variables: list[str]) -> None:
    for assignment in variables:
        name, _, value = assignment.partition("=")
        ch.variables[name.strip()] = value


def _outcome(pbx: "Pbx", attempt: DialAttempt, leg) -> tuple[int, bool]:
    with pbx.lock:
        if leg is None:
            return 0, False
        if attempt.winner is not None:
            pbx.emit(pbx.events.dial_end(None, leg.channel, "ANSWER"))
            attempt.record_end(leg, "ANSWER")
            return 4, True
        if attempt.pending:
            reason = 3 if leg.channel.state == RINGING else 0
            leg.cancel_timers()
            leg.status = "NOANSWER"
            pbx.hangup(leg.channel, 19, by="system", soft=True)
            return reason, False
        last = attempt.failures[-1] if attempt.failures else ""
        return {BUSY: 5, CONGESTION: 8}.get(last, 1), False


def _respond(pbx: "Pbx", action_id: str, success: bool, target: str, target_headers, reason: int,
             ch: Channel | None, cid: tuple[str, str] | None) -> None:
    num, name = cid or (UNKNOWN, UNKNOWN)
    with pbx.lock:
        pbx.emit(pbx.events.originate_response(
            action_id, success, ch.name if (success and ch) else target, target_headers, reason, ch, num, name))


def _run_after_answer(pbx: "Pbx", ch: Channel, fields: dict[str, str]) -> None:
    from hil.pbx.agi_client import start_agi

    app, data = fields.get("Application", ""), fields.get("Data", "")
    context, exten = fields.get("Context", ""), fields.get("Exten", "")
    if app.upper() == "AGI":
        m = _AGI_URL.match(data)
        if m:
            args = [a for a in (m["args"] or "").split(",") if a]
            start_agi(pbx, ch, m["script"], args, m["host"], int(m["port"] or 4573))
            return
    elif app:
        if run_app(pbx, ch, app, data) == -2:
            pbx.record("fault", what="originate", details=f"no such application {app}")
    elif context:
        with pbx.lock:
            ch.context, ch.exten = context, exten
        start_agi(pbx, ch, context, [exten] if exten else [])
        return
    with pbx.lock:
        if not ch.hungup:  # the application ended: the dialplan hangs the channel up
            pbx.hangup(ch, 0 if ch.tech == "Local" else 16, by="system", soft=True)
