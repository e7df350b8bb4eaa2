"""AMI ``Redirect``: send a channel elsewhere in the dialplan (``ast_async_goto``).

A channel in a bridge leaves it (the other party's Dial returns). A channel running AGI gets the
``HANGUP`` line and dead-channel answers, as Asterisk's async goto looks like a hang-up to
``res_agi.c``; when the edge closes that session the channel continues at the new place.

New places, by the simulator's dialplan convention: in the contexts the edge's generated dialplan
hands to its FastAGI (``EDGE_CONTEXTS``: ``transfer``, ``callback``) every extension opens the
script of that name with the extension as ``agi_arg_1``; elsewhere an extension that is a scripted
desk phone is dialled (a blind transfer, ``Dial(PJSIP/<ext>,60)``) and anything else opens the
edge's FastAGI script named after the context.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hil.pbx.channels import Channel

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

TRANSFER_RING_S = 60
EDGE_CONTEXTS = frozenset({"transfer", "callback"})


def redirect(pbx: "Pbx", ch: Channel, context: str, exten: str) -> None:
    with pbx.lock:
        ch.redirect = (context, exten)
        pbx.record("redirected", call=ch.call, channel=ch.name, context=context, exten=exten)
        if ch.bridge is not None:
            pbx.leave_bridge(ch.bridge)
        session = pbx.agi_sessions.get(ch.name)
        if session is not None:
            pbx.scheduler.call_later(0, session.channel_hung_up, "redirect")
        else:
            pbx.spawn(lambda: run_target(pbx, ch, context, exten), f"redirect-{ch.name}")
        pbx.changed()


def run_target(pbx: "Pbx", ch: Channel, context: str, exten: str) -> None:
    from hil.pbx.agi_client import start_agi
    from hil.pbx.apps import run_app

    with pbx.lock:
        if ch.hungup:
            return
        ch.redirect = None
        ch.context, ch.exten, ch.priority = context, exten, 1
    if exten in pbx.world.phones and context not in EDGE_CONTEXTS:
        run_app(pbx, ch, "Dial", f"PJSIP/{exten},{TRANSFER_RING_S}")
        with pbx.lock:
            if not ch.hungup and ch.redirect is None:
                pbx.hangup(ch, 16, by="system", soft=True)
        return
    start_agi(pbx, ch, context, [exten] if exten else [])
