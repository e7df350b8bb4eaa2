"""What HQ may push: config sections (their body's shape) and commands (a whitelist with args).

HQ checks only the shape here — it has no copy of the edge's local TOML, so the edge checks the
merged result with its own loader (``edge.sync.hq_config``) and rejects with the loader's message.
A config section's body names the keys it replaces in the edge's TOML:

=============  ====================================================================================
section        body
=============  ====================================================================================
``agents``     ``{"agents": [{"id", "name", "extension", …}, …]}`` (``[[agents]]``)
``groups``     ``{"groups": [{"name", …}, …]}`` (``[[groups]]``, the skill groups)
``queues``     ``{"default_group", "did_groups", "region_groups", "customer_type_menu",
               "sticky_last_agent", "sticky_wait_s"}``: which queue a call joins (``[routing]``)
``calendars``  ``{"calendars": [{"name", "mon", …}, …]}`` (``[[calendars]]``)
``vip``        ``{"vip": [{"number", "owner"}, …]}`` (``[[routing.vip]]``)
``blacklist``  ``{"blacklist": [{"number", "action"}, …]}`` (``[[routing.blacklist]]``)
``ivr_flows``  ``{"flows": [<flow as JSON>, …], "did_flows": {…}, "default_flow": "…"}``
=============  ====================================================================================
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from aggregator import AggregatorError

QUEUE_KEYS = ("default_group", "did_groups", "region_groups", "customer_type_menu",
              "sticky_last_agent", "sticky_wait_s")
BLACKLIST_ACTIONS = ("reject", "flag")
AGENT_STATES = ("idle", "busy", "away", "back")


class ShapeError(AggregatorError):
    """A section body or command that is not the shape HQ may send; the text names the key."""


# --- config sections ------------------------------------------------------------------------------

def _objects(body: Mapping[str, Any], key: str, required: tuple[str, ...],
             unique: str | None = None) -> None:
    items = body.get(key)
    if not isinstance(items, list):
        raise ShapeError(f"{key}: expected a list of objects")
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ShapeError(f"{key}[{i}]: expected an object")
        for field in required:
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise ShapeError(f"{key}[{i}].{field}: expected non-empty text")
        if unique is not None:
            if item[unique] in seen:
                raise ShapeError(f"{key}[{i}].{unique}: duplicate {item[unique]!r}")
            seen.add(item[unique])


def _only(body: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ShapeError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    missing = [key for key in required if key not in body]
    if missing:
        raise ShapeError(f"missing key(s): {', '.join(missing)}")


def _text_map(body: Mapping[str, Any], key: str) -> None:
    value = body.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise ShapeError(f"{key}: expected an object of text values")


def _agents(body: Mapping[str, Any]) -> None:
    _only(body, ("agents",), ("agents",))
    _objects(body, "agents", ("id", "name", "extension"), unique="id")


def _groups(body: Mapping[str, Any]) -> None:
    _only(body, ("groups",), ("groups",))
    _objects(body, "groups", ("name",), unique="name")


def _queues(body: Mapping[str, Any]) -> None:
    _only(body, QUEUE_KEYS, ())
    if not body:
        raise ShapeError(f"expected at least one of {', '.join(QUEUE_KEYS)}")
    if "default_group" in body and (not isinstance(body["default_group"], str)
                                    or not body["default_group"].strip()):
        raise ShapeError("default_group: expected a skill group name")
    for key in ("did_groups", "region_groups"):
        _text_map(body, key)
    if "customer_type_menu" in body and not isinstance(body["customer_type_menu"], dict):
        raise ShapeError("customer_type_menu: expected an object")
    if "sticky_last_agent" in body and not isinstance(body["sticky_last_agent"], bool):
        raise ShapeError("sticky_last_agent: expected true or false")
    wait = body.get("sticky_wait_s", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise ShapeError("sticky_wait_s: expected seconds >= 0")


def _calendars(body: Mapping[str, Any]) -> None:
    _only(body, ("calendars",), ("calendars",))
    _objects(body, "calendars", ("name",), unique="name")


def _vip(body: Mapping[str, Any]) -> None:
    _only(body, ("vip",), ("vip",))
    _objects(body, "vip", ("number", "owner"), unique="number")


def _blacklist(body: Mapping[str, Any]) -> None:
    _only(body, ("blacklist",), ("blacklist",))
    _objects(body, "blacklist", ("number", "action"), unique="number")
    for i, entry in enumerate(body["blacklist"]):
        if entry["action"] not in BLACKLIST_ACTIONS:
            raise ShapeError(f"blacklist[{i}].action: expected reject or flag")


def _ivr_flows(body: Mapping[str, Any]) -> None:
    _only(body, ("flows", "did_flows", "default_flow"), ("flows",))
    _objects(body, "flows", ("id", "start"))
    for i, flow in enumerate(body["flows"]):
        version = flow.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ShapeError(f"flows[{i}].version: expected an integer >= 1")
        if not isinstance(flow.get("steps"), dict) or not flow["steps"]:
            raise ShapeError(f"flows[{i}].steps: expected an object of steps")
    _text_map(body, "did_flows")
    if not isinstance(body.get("default_flow", ""), str):
        raise ShapeError("default_flow: expected a flow id or \"\"")


SECTIONS: Mapping[str, Callable[[Mapping[str, Any]], None]] = {
    "agents": _agents, "groups": _groups, "queues": _queues, "calendars": _calendars,
    "vip": _vip, "blacklist": _blacklist, "ivr_flows": _ivr_flows,
}


def check_section(section: str, body: Any) -> None:
    if section not in SECTIONS:
        raise ShapeError(f"unknown config section {section!r}; sections: {', '.join(SECTIONS)}")
    if not isinstance(body, dict):
        raise ShapeError(f"{section}: expected a JSON object body")
    try:
        SECTIONS[section](body)
    except ShapeError as exc:
        raise ShapeError(f"{section}: {exc}") from None


# --- commands -------------------------------------------------------------------------------------

def _text_arg(args: Mapping[str, Any], key: str, *, required: bool = True) -> None:
    if key not in args:
        if required:
            raise ShapeError(f"args.{key}: required")
        return
    if not isinstance(args[key], str) or not args[key].strip() or len(args[key]) > 128:
        raise ShapeError(f"args.{key}: expected non-empty text")


def _agent_only(args: Mapping[str, Any]) -> None:
    _text_arg(args, "agent_id")


def _agent_state(args: Mapping[str, Any]) -> None:
    _text_arg(args, "agent_id")
    if args.get("state") not in AGENT_STATES:
        raise ShapeError(f"args.state: expected one of {', '.join(AGENT_STATES)}")


def _sync_resend(args: Mapping[str, Any]) -> None:
    _text_arg(args, "stream", required=False)


def _recording_upload(args: Mapping[str, Any]) -> None:
    _text_arg(args, "call_id", required=False)
    since = args.get("since", 0)
    if isinstance(since, bool) or not isinstance(since, (int, float)) or since < 0:
        raise ShapeError("args.since: expected epoch seconds")


def _no_args(args: Mapping[str, Any]) -> None:
    pass


COMMANDS: Mapping[str, tuple[tuple[str, ...], Callable[[Mapping[str, Any]], None]]] = {
    "agent.logout": (("agent_id",), _agent_only),
    "agent.login": (("agent_id",), _agent_only),
    "agent.state": (("agent_id", "state"), _agent_state),
    "sync.resend": (("stream",), _sync_resend),
    "recording.upload": (("call_id", "since"), _recording_upload),
    "config.reload": ((), _no_args),
}


def check_command(name: Any, args: Any) -> None:
    if name not in COMMANDS:
        raise ShapeError(f"name: expected one of {', '.join(COMMANDS)}, got {name!r:.80}")
    if not isinstance(args, dict):
        raise ShapeError("args: expected an object")
    allowed, check = COMMANDS[name]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ShapeError(f"args: unknown key(s) {', '.join(unknown)} for {name}")
    check(args)
