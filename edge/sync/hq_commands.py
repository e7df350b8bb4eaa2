"""HQ's commands (``down/command``): checked against a whitelist and queued in ``hq_commands``.

The inbox only queues a command (state ``pending``); the runtime's core thread polls
``Store.pending_hq_commands()`` about once a second, runs each and ends it with
``Store.finish_hq_command(id, ok, result)``, which reports ``command.result`` to HQ. Commands and
their arguments:

======================  ========================================================================
``agent.login``         ``{"agent_id"}``
``agent.logout``        ``{"agent_id"}``
``agent.state``         ``{"agent_id", "state": idle | busy | away | back}``
``sync.resend``         ``{"stream"?}``: send the outbox (one stream or all) again
``recording.upload``    ``{"call_id"?, "since"?}``: queue recordings for upload again
``config.reload``       ``{}``: rebuild the config from the local TOML and HQ's sections
======================  ========================================================================

HQ checks the same list before it sends (``aggregator.downlink.sections``); the edge checks again
because it is the one that acts.
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Callable, Mapping

from edge.sync.inbox import DownlinkRejected, DownMessage, register

AGENT_STATES = ("idle", "busy", "away", "back")


def _text(args: Mapping[str, Any], key: str, required: bool = True) -> None:
    if key not in args:
        if required:
            raise DownlinkRejected(f"args.{key}: required")
        return
    value = args[key]
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise DownlinkRejected(f"args.{key}: expected non-empty text, got {value!r:.80}")


def _agent(args: Mapping[str, Any]) -> None:
    _text(args, "agent_id")


def _agent_state(args: Mapping[str, Any]) -> None:
    _text(args, "agent_id")
    if args.get("state") not in AGENT_STATES:
        raise DownlinkRejected(f"args.state: expected one of {', '.join(AGENT_STATES)}, "
                               f"got {args.get('state')!r:.80}")


def _resend(args: Mapping[str, Any]) -> None:
    _text(args, "stream", required=False)


def _upload(args: Mapping[str, Any]) -> None:
    _text(args, "call_id", required=False)
    since = args.get("since", 0)
    if isinstance(since, bool) or not isinstance(since, (int, float)) or since < 0:
        raise DownlinkRejected(f"args.since: expected epoch seconds, got {since!r:.80}")


def _none(args: Mapping[str, Any]) -> None:
    pass


COMMANDS: Mapping[str, tuple[tuple[str, ...], Callable[[Mapping[str, Any]], None]]] = {
    "agent.login": (("agent_id",), _agent),
    "agent.logout": (("agent_id",), _agent),
    "agent.state": (("agent_id", "state"), _agent_state),
    "sync.resend": (("stream",), _resend),
    "recording.upload": (("call_id", "since"), _upload),
    "config.reload": ((), _none),
}


def check(name: Any, args: Any) -> None:
    if name not in COMMANDS:
        raise DownlinkRejected(f"unknown command {name!r:.80} (commands: {', '.join(COMMANDS)})")
    if not isinstance(args, dict):
        raise DownlinkRejected("args: expected an object")
    allowed, check_args = COMMANDS[name]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise DownlinkRejected(f"args: {', '.join(unknown)} not taken by {name}")
    check_args(args)


@register("command")
def queue_command(conn: sqlite3.Connection, message: DownMessage) -> None:
    name, args = message.body.get("name"), message.body.get("args", {})
    check(name, args)
    conn.execute("INSERT INTO hq_commands (id, name, args, state, received_at)"
                 " VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (id) DO NOTHING",
                 [message.id, name, json.dumps(args, ensure_ascii=False, sort_keys=True),
                  time.time()])
