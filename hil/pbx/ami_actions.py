"""AMI actions: what each answers, in the words of ``main/manager.c`` and the fixtures.

Each handler takes ``(session, message)`` and sends its response (and list items) through
``session.send``; events it causes reach the session after the response.
"""
from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Callable

from drivers.asterisk.codec import AmiMessage
from hil.pbx import transfer
from hil.pbx.ami_events import EventBuilder, Headers, ping_timestamp
from hil.pbx.mixmonitor import parse_options
from hil.pbx.originate import originate
from hil.pbx.redirect import redirect

if TYPE_CHECKING:
    from hil.pbx.ami_server import AmiSession

VERSION_LINE = "Asterisk 22.10.1 built by hil @ pbx-simulator on a x86_64 running Linux"


def response(msg: AmiMessage, status: str = "Success", message: str | None = None,
             extra: Headers = ()) -> Headers:
    headers: Headers = [("Response", status)]
    if msg.action_id is not None:
        headers.append(("ActionID", msg.action_id))
    if message is not None:
        headers.append(("Message", message))
    return headers + list(extra)


def list_start(msg: AmiMessage, message: str) -> Headers:
    """``Response`` / ``ActionID`` / ``EventList: start`` / ``Message`` (fixture ami-19)."""
    headers: Headers = [("Response", "Success")]
    if msg.action_id is not None:
        headers.append(("ActionID", msg.action_id))
    return headers + [("EventList", "start"), ("Message", message)]


def list_complete(msg: AmiMessage, event: str, count: int, extra: Headers = ()) -> Headers:
    headers: Headers = [("Event", event)]
    if msg.action_id is not None:
        headers.append(("ActionID", msg.action_id))
    return headers + [("EventList", "Complete"), ("ListItems", str(count))] + list(extra)


def error(session: "AmiSession", msg: AmiMessage, message: str) -> None:
    session.send([response(msg, "Error", message)])


# --- session and system -----------------------------------------------------------------------
def _login(session: "AmiSession", msg: AmiMessage) -> None:
    pbx, server = session.server.pbx, session.server
    user, secret = msg.get("Username", ""), msg.get("Secret", "")
    if server.users.get(user) != secret or not user:
        session.send([response(msg, "Error", "Authentication failed")])
        session.close()
        pbx.record("ami", what="login_failed", user=user)
        server.broadcast(EventBuilder.failed_auth(user in server.users, user, session.session_id,
                                                  session.local, session.remote), skip=session)
        return
    session.user, session.authenticated = user, True
    session.event_classes = _mask(msg.get("Events"))
    session.send([response(msg, message="Authentication accepted")])
    session.deliver(EventBuilder.fully_booted(int(time.monotonic() - pbx.booted) + 1))
    server.broadcast(EventBuilder.successful_auth(user, session.session_id, session.local, session.remote))
    pbx.record("ami", what="login", user=user)


def _mask(value: str | None) -> set[str] | None:
    if value is None or value.strip().lower() in ("on", "all", "yes", "true", "1"):
        return None
    if value.strip().lower() in ("off", "no", "false", "0", "none"):
        return set()
    return {v.strip().lower() for v in value.split(",") if v.strip()}


def _events(session: "AmiSession", msg: AmiMessage) -> None:
    session.event_classes = _mask(msg.get("EventMask", "on"))
    on = session.event_classes != set()
    session.send([response(msg, extra=[("Events", "On" if on else "Off")])])


def _logoff(session: "AmiSession", msg: AmiMessage) -> None:
    session.send([response(msg, "Goodbye", "Thanks for all the fish.")])
    session.close()
    session.server.pbx.record("ami", what="logoff", user=session.user)


def _ping(session: "AmiSession", msg: AmiMessage) -> None:
    session.send([response(msg, extra=[("Ping", "Pong"), ("Timestamp", ping_timestamp())])])


def _command(session: "AmiSession", msg: AmiMessage) -> None:
    pbx = session.server.pbx
    command = " ".join(msg.get("Command", "").split())
    with pbx.lock:
        live = list(pbx.registry.live.values())
    if command == "core show version":
        out = [VERSION_LINE]
    elif command == "core show channels":
        out = [f"{'Channel':<64} {'Location':<32} {'State':<7} {'Application(Data)':<30}"]
        out += [f"{c.name:<64} {c.exten + '@' + c.context:<32} {'Up' if c.up else 'Ring':<7} "
                f"{c.application + '(' + c.app_data + ')':<30}" for c in live]
        calls = len({c.linkedid for c in live})
        out += [f"{len(live)} active channel{'s' if len(live) != 1 else ''}",
                f"{calls} active call{'s' if calls != 1 else ''}",
                f"{len(pbx.registry.all)} calls processed"]
    else:
        words = command.split()
        out = [f"No such command '{command}' (type 'core show help {' '.join(words[:2])}' for other possible commands)"]
        session.send([response(msg, "Error", "Command output follows", [("Output", o) for o in out])])
        return
    session.send([response(msg, message="Command output follows", extra=[("Output", o) for o in out])])


# --- channels ---------------------------------------------------------------------------------
def _core_show_channels(session: "AmiSession", msg: AmiMessage) -> None:
    pbx = session.server.pbx
    with pbx.lock:
        items = [pbx.events.core_show_channel(c, msg.action_id or "") for c in pbx.registry.live.values()]
    items = [[(k, v) for k, v in item if not (k == "ActionID" and not msg.action_id)] for item in items]
    session.send([list_start(msg, "Channels will follow"), *items,
                  list_complete(msg, "CoreShowChannelsComplete", len(items))])


def _status(session: "AmiSession", msg: AmiMessage) -> None:
    pbx = session.server.pbx
    name = msg.get("Channel")
    with pbx.lock:
        chans = list(pbx.registry.live.values())
        if name:
            chans = [c for c in chans if c.name == name]
            if not chans:
                return error(session, msg, "No such channel")
        items = [pbx.events.status(c, msg.action_id or "") for c in chans]
    session.send([list_start(msg, "Channel status will follow"), *items,
                  list_complete(msg, "StatusComplete", len(items), [("Items", str(len(items)))])])


def _hangup(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: main/manager.c ast_manager_hangup_helper ("No channel specified",
    "No such channel", "Channel Hungup"; a ``/regex/`` answers with a list, fixture ami-19).
    Without ``Cause`` the channel's cause stays 0, as the fixtures show."""
    pbx = session.server.pbx
    target = msg.get("Channel", "")
    cause = int(msg.get("Cause") or 0) if (msg.get("Cause") or "0").isdigit() else 0
    if not target:
        return error(session, msg, "No channel specified")
    if not (target.startswith("/") and target.endswith("/") and len(target) > 1):
        with pbx.lock:
            ch = pbx.registry.find(target)
            if ch is None:
                return error(session, msg, "No such channel")
            session.send([response(msg, message="Channel Hungup")])
            pbx.hangup(ch, cause, by="ami", soft=True)
        return
    try:
        pattern = re.compile(target[1:-1])
    except re.error:
        return error(session, msg, "Invalid regex")
    with pbx.lock:
        matched = [c for c in pbx.registry.live.values() if pattern.search(c.name)]
        items: list[Headers] = []
        for ch in matched:
            item: Headers = [("Event", "ChannelHungup"), ("Channel", ch.name)]
            items.append(item + ([("ActionID", msg.action_id)] if msg.action_id else []))
        # derived from source: main/manager.c ast_manager_hangup_helper (and fixture ami-19)
        session.send([list_start(msg, "Channels hung up will follow"), *items,
                      list_complete(msg, "ChannelsHungupListComplete", len(items))])
        for ch in matched:
            pbx.hangup(ch, cause, by="ami", soft=True)


def _redirect(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: main/manager.c action_redirect (messages verbatim)."""
    pbx = session.server.pbx
    name = msg.get("Channel", "")
    if not name:
        return error(session, msg, "Channel not specified")
    priority = msg.get("Priority", "1") or "1"
    if not priority.isdigit():
        return error(session, msg, "Invalid priority")
    with pbx.lock:
        ch = pbx.registry.find(name)
        if ch is None:
            return error(session, msg, f"Channel does not exist: {name}")
        if ch.hungup:
            return error(session, msg, "Redirect failed, channel not up.")
        extra = pbx.registry.find(msg.get("ExtraChannel", "")) if msg.get("ExtraChannel") else None
        session.send([response(msg, message="Dual Redirect successful" if extra else "Redirect successful")])
        for target in (ch, extra):
            if target is not None:
                redirect(pbx, target, msg.get("Context", ""), msg.get("Exten", ""))


def _atxfer(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: main/manager.c action_atxfer (Asterisk 22). Its only refusals are
    these four; everything else (no bridge, an extension that does not exist) happens after the
    ``Atxfer successfully queued`` ack, as the feature runs on the queued DTMF (transfer.py)."""
    pbx = session.server.pbx
    name, exten = msg.get("Channel") or "", msg.get("Exten") or ""
    if not name:
        return error(session, msg, "No channel specified")
    if not exten:
        return error(session, msg, "No extension specified")
    with pbx.lock:
        ch = pbx.registry.find(name)
        if ch is None:
            return error(session, msg, "Channel specified does not exist")
        if not transfer.FEATURE_ATXFER:
            return error(session, msg, "No attended transfer feature code found")
        transfer.atxfer(pbx, ch, exten, msg.get("Context") or "")
        session.send([response(msg, message="Atxfer successfully queued")])


def _play_dtmf(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: apps/app_senddtmf.c manager_play_dtmf. ``Receive: yes`` queues the
    digit as if the channel's phone had keyed it (``*4`` swaps during an attended transfer);
    otherwise it is sent out (``Direction: Sent``, 100 ms when no Duration)."""
    pbx = session.server.pbx
    digit, duration = msg.get("Digit") or "", msg.get("Duration") or ""
    with pbx.lock:
        ch = pbx.registry.find(msg.get("Channel") or "")
        if ch is None:
            return error(session, msg, "Channel not found")
        if not digit:
            return error(session, msg, "No digit specified")
        if duration and not duration.isdigit():
            return error(session, msg, "Could not convert Duration parameter")
        session.send([response(msg, message="DTMF successfully queued")])
        if (msg.get("Receive") or "").strip().lower() in ("yes", "true", "y", "t", "1", "on"):
            transfer.queue_dtmf(pbx, ch, digit[0], int(duration or 0))
        else:
            pbx.emit(pbx.events.dtmf_begin(ch, digit[0], "Sent"))
            pbx.emit(pbx.events.dtmf_end(ch, digit[0], "Sent", int(duration or 100)))


def _getvar(session: "AmiSession", msg: AmiMessage) -> None:
    pbx = session.server.pbx
    variable = msg.get("Variable", "")
    if not variable:
        return error(session, msg, "No variable specified")
    with pbx.lock:
        if msg.get("Channel"):
            ch = pbx.registry.find(msg.get("Channel", ""))
            if ch is None:
                return error(session, msg, "No such channel")
            value = ch.variables.get(variable, "")
        else:
            value = pbx.globals.get(variable, "")
    session.send([response(msg, extra=[("Variable", variable), ("Value", value)])])


def _setvar(session: "AmiSession", msg: AmiMessage) -> None:
    pbx = session.server.pbx
    variable = msg.get("Variable", "")
    if not variable:
        return error(session, msg, "No variable specified")
    with pbx.lock:
        ch = None
        if msg.get("Channel"):
            ch = pbx.registry.find(msg.get("Channel", ""))
            if ch is None:
                return error(session, msg, "No such channel")
        session.send([response(msg, message="Variable Set")])
        pbx.set_var(ch, variable, msg.get("Value", ""))


def _originate(session: "AmiSession", msg: AmiMessage) -> None:
    pbx = session.server.pbx
    if not msg.get("Channel"):
        return error(session, msg, "Channel not specified")
    fields = {k: v for k, v in msg.headers if k.lower() not in ("variable", "action")}
    variables = [v for raw in msg.get_all("Variable") for v in raw.split(",") if v]
    aid = msg.action_id or ""
    if (msg.get("Async") or "").lower() in ("true", "yes", "1", "on"):
        session.send([response(msg, message="Originate successfully queued")])
        pbx.spawn(lambda: originate(pbx, fields, variables, aid, lambda ok: None), "originate")
        return
    done, outcome = threading.Event(), []

    def on_outcome(ok: bool) -> None:
        outcome.append(ok)
        done.set()

    pbx.spawn(lambda: originate(pbx, fields, variables, aid, on_outcome, asynchronous=False), "originate-sync")
    done.wait()
    if outcome and outcome[0]:
        session.send([response(msg, message="Originate successfully queued")])
    else:
        session.send([response(msg, "Error", "Originate failed")])


# --- recordings (apps/app_mixmonitor.c; the work is in mixmonitor.py) ---------------------------
def _mixmonitor(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: manager_mixmonitor ("No channel specified", "No such channel",
    "Could not start monitoring channel"; ``MixMonitorID`` only with option ``i(VAR)``).
    Fixture ami-22: Success with no Message; VarSet and MixMonitorStart follow it."""
    pbx = session.server.pbx
    name = msg.get("Channel") or ""
    if not name:
        return error(session, msg, "No channel specified")
    with pbx.lock:
        ch = pbx.registry.find(name)
        if ch is None:
            return error(session, msg, "No such channel")
        options = msg.get("Options") or ""
        mixmonitor_id = pbx.mixmonitors.start(ch, msg.get("File") or "", options)
        if mixmonitor_id is None:
            return error(session, msg, "Could not start monitoring channel")
        extra = [("MixMonitorID", mixmonitor_id)] if parse_options(options).get("i") else []
        session.send([response(msg, extra=extra)])


def _stop_mixmonitor(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: manager_stop_mixmonitor ("Could not stop monitoring channel" when
    the channel records nothing, or not under that ``MixMonitorID``)."""
    pbx = session.server.pbx
    name = msg.get("Channel") or ""
    if not name:
        return error(session, msg, "No channel specified")
    with pbx.lock:
        ch = pbx.registry.find(name)
        if ch is None:
            return error(session, msg, "No such channel")
        if not pbx.mixmonitors.stop(ch, msg.get("MixMonitorID") or ""):
            return error(session, msg, "Could not stop monitoring channel")
        session.send([response(msg)])


def _mixmonitor_mute(session: "AmiSession", msg: AmiMessage) -> None:
    """derived from source: manager_mute_mixmonitor, its checks in its order; the
    MixMonitorMute event (Direction as sent, State 1/0) is documented since 16.17/18.3."""
    pbx = session.server.pbx
    direction, name, state = msg.get("Direction") or "", msg.get("Channel") or "", msg.get("State") or ""
    if not direction:
        return error(session, msg, "No direction specified. Must be read, write or both")
    if direction.lower() not in ("read", "write", "both"):
        return error(session, msg, "Invalid direction specified. Must be read, write or both")
    if not name:
        return error(session, msg, "No channel specified")
    if not state:
        return error(session, msg, "No state specified")
    with pbx.lock:
        ch = pbx.registry.find(name)
        if ch is None:
            return error(session, msg, "No such channel")
        if pbx.mixmonitors.mute(ch, direction, state, msg.get("MixMonitorID") or "") < 0:
            return error(session, msg, "Cannot set mute flag")
        session.send([response(msg)])


ACTIONS: dict[str, Callable[["AmiSession", AmiMessage], None]] = {
    "login": _login, "logoff": _logoff, "ping": _ping, "events": _events, "command": _command,
    "coreshowchannels": _core_show_channels, "status": _status, "hangup": _hangup,
    "redirect": _redirect, "getvar": _getvar, "setvar": _setvar, "originate": _originate,
    "mixmonitor": _mixmonitor, "stopmixmonitor": _stop_mixmonitor,
    "mixmonitormute": _mixmonitor_mute, "atxfer": _atxfer, "playdtmf": _play_dtmf,
}


def handle(session: "AmiSession", msg: AmiMessage) -> None:
    server = session.server
    if server.response_delay_ms:
        time.sleep(server.pbx.timebase.real_s(server.response_delay_ms) or 0)
    action = msg.get("Action")
    if action is None or not action.strip():
        error(session, msg, "Missing action in request")
        _bad_format(session, "NONE")
        return
    name = action.strip().lower()
    if not session.authenticated and name not in ("login", "logoff", "challenge"):
        return error(session, msg, "Permission denied")
    handler = ACTIONS.get(name)
    if handler is None:
        error(session, msg, f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.")
        _bad_format(session, action)
        return
    if name not in ("login", "logoff", "ping"):
        server.pbx.record("ami", what="action", user=session.user, action=action)
    handler(session, msg)


def _bad_format(session: "AmiSession", action: str) -> None:
    if session.authenticated:
        session.server.broadcast(EventBuilder.request_bad_format(
            action, session.user, session.session_id, session.local, session.remote))
