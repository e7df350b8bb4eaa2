"""HQ's config sections (``down/config``): checked against the local TOML, stored, merged.

The edge's config is its local TOML with the sections HQ pushed *replacing* the same sections
(HQ owns a section once it has pushed it). Section names and the TOML keys each replaces:

=============  =================================================================================
``agents``     ``[[agents]]``
``groups``     ``[[groups]]`` (skill groups)
``queues``     the ``[routing]`` keys that pick a call's queue: ``default_group``, ``did_groups``,
               ``region_groups``, ``customer_type_menu``, ``sticky_last_agent``, ``sticky_wait_s``
``calendars``  ``[[calendars]]``
``vip``        ``[[routing.vip]]``
``blacklist``  ``[[routing.blacklist]]``
``ivr_flows``  the call flows (instead of ``[ivr] flows_dir``'s files) and ``[routing]``
               ``did_flows`` / ``default_flow``; each flow is checked like a flow file
=============  =================================================================================

A section is accepted only if the whole merged config passes ``edge.config.parse_config`` (with
every other HQ section already stored): otherwise the message is rejected with the loader's
message and the section stays as it was. Accepted sections land in ``hq_config`` (section,
version, body); the runtime's core thread polls their versions and rebuilds its config with
``merged_config``. This module never calls into the runtime (the inbox may run in another process).
"""
from __future__ import annotations

import copy
import json
import logging
import sqlite3
import time
from pathlib import Path
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from edge.config import EdgeConfig, check_references, parse_config
from edge.errors import ConfigError
from edge.ivr.errors import FlowError
from edge.ivr.loader import PromptDirs, parse_flow
from edge.sync.inbox import DownlinkRejected, DownMessage, LocalConfig, local_config, register

log = logging.getLogger(__name__)

QUEUE_KEYS = ("default_group", "did_groups", "region_groups", "customer_type_menu",
              "sticky_last_agent", "sticky_wait_s")
FLOW_ROUTING_KEYS = ("did_flows", "default_flow")


def _list_section(key: str) -> Callable[[dict[str, Any], Mapping[str, Any]], None]:
    def merge(raw: dict[str, Any], body: Mapping[str, Any]) -> None:
        _keys(body, (key,), (key,))
        raw[key] = copy.deepcopy(body[key])
    return merge


def _routing_list(key: str) -> Callable[[dict[str, Any], Mapping[str, Any]], None]:
    def merge(raw: dict[str, Any], body: Mapping[str, Any]) -> None:
        _keys(body, (key,), (key,))
        raw.setdefault("routing", {})[key] = copy.deepcopy(body[key])
    return merge


def _queues(raw: dict[str, Any], body: Mapping[str, Any]) -> None:
    _keys(body, QUEUE_KEYS, ())
    routing = raw.setdefault("routing", {})
    for key in QUEUE_KEYS:
        routing.pop(key, None)
    routing.update(copy.deepcopy(dict(body)))


def _ivr_flows(raw: dict[str, Any], body: Mapping[str, Any]) -> None:
    """The flows themselves are added after the TOML is parsed (``_with_flows``): here only the
    routing keys that name flows leave the TOML, so it does not check them against local files."""
    _keys(body, ("flows", *FLOW_ROUTING_KEYS), ("flows",))
    if not isinstance(body["flows"], list):
        raise ConfigError("flows", "expected a list of flows")
    routing = raw.setdefault("routing", {})
    for key in FLOW_ROUTING_KEYS:
        routing.pop(key, None)


SECTIONS: Mapping[str, Callable[[dict[str, Any], Mapping[str, Any]], None]] = {
    "agents": _list_section("agents"),
    "groups": _list_section("groups"),
    "queues": _queues,
    "calendars": _list_section("calendars"),
    "vip": _routing_list("vip"),
    "blacklist": _routing_list("blacklist"),
    "ivr_flows": _ivr_flows,
}


def _keys(body: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ConfigError(unknown[0], f"not a key of this section (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in body:
            raise ConfigError(key, "required")


def build(local: LocalConfig, sections: Mapping[str, Mapping[str, Any]]) -> EdgeConfig:
    """The local TOML with HQ's sections in place, validated; raises ``ConfigError`` or
    ``FlowError`` (the loader's message names the key)."""
    raw = copy.deepcopy(dict(local.raw))
    for name in SECTIONS:
        if name in sections:
            SECTIONS[name](raw, sections[name])
    config = parse_config(raw, base_dir=local.base_dir)
    if "ivr_flows" in sections:
        config = _with_flows(config, sections["ivr_flows"])
    return config


def _with_flows(config: EdgeConfig, body: Mapping[str, Any]) -> EdgeConfig:
    prompts = PromptDirs(config.ivr.prompt_dirs)
    flows = {}
    for i, data in enumerate(body["flows"]):
        if not isinstance(data, dict):
            raise ConfigError(f"flows[{i}]", "expected a flow object")
        flow = parse_flow(data, f"hq flows[{i}]", prompts)
        if flow.id in flows:
            raise ConfigError(f"flows[{i}].id", f"flow {flow.id!r} is given twice")
        flows[flow.id] = flow
    did_flows = body.get("did_flows", {})
    default_flow = body.get("default_flow", "")
    if not isinstance(did_flows, dict) or not all(isinstance(v, str) for v in did_flows.values()):
        raise ConfigError("did_flows", "expected an object of flow ids")
    if not isinstance(default_flow, str):
        raise ConfigError("default_flow", "expected a flow id or \"\"")
    routing = replace(config.routing, did_flows=MappingProxyType(dict(did_flows)),
                      default_flow=default_flow)
    config = replace(config, flows=MappingProxyType(flows), routing=routing)
    check_references(config)   # the flows' queues and the routing's flow ids, as at load
    return config


# --- the handler -----------------------------------------------------------------------------------

@register("config")
def apply_section(conn: sqlite3.Connection, message: DownMessage) -> None:
    """Store one section if the merged config is valid; else ``DownlinkRejected(reason)``."""
    section = message.scope
    if section not in SECTIONS:
        raise DownlinkRejected(f"unknown config section {section!r} (sections: "
                               f"{', '.join(SECTIONS)})")
    try:
        local = local_config()
    except ConfigError as exc:
        raise DownlinkRejected(f"{section}: the local config cannot be read: {exc}") from None
    if local is None:
        raise DownlinkRejected("this edge was started without its local config, so HQ's "
                               "sections cannot be checked against it")
    sections = stored_sections(conn)
    sections[section] = dict(message.body)
    try:
        build(local, sections)
    except (ConfigError, FlowError) as exc:
        raise DownlinkRejected(f"{section}: {exc}") from None
    conn.execute("INSERT INTO hq_config (section, version, body, updated_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (section) DO UPDATE SET version = excluded.version,"
                 " body = excluded.body, updated_at = excluded.updated_at",
                 [section, message.version, json.dumps(dict(message.body), ensure_ascii=False),
                  time.time()])


def stored_sections(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {section: json.loads(body) for section, body in
            conn.execute("SELECT section, body FROM hq_config ORDER BY section")}


# --- for the runtime -------------------------------------------------------------------------------

def merged_config(local_raw: Mapping[str, Any], store: Any,
                  base_dir: str | None = None) -> EdgeConfig:
    """The config the edge runs: local TOML (``tomllib``'s dict) + HQ's stored sections.

    Every stored section passed this check when it arrived; if the local TOML has changed since
    and the two no longer fit, the edge still starts — on its local config alone, with the
    reason logged — because a branch that cannot route calls is worse than one running its own
    config. A local TOML that is itself invalid raises ``ConfigError`` as at load."""
    local = LocalConfig(local_raw, base_dir)
    sections = {name: entry["body"] for name, entry in store.hq_config_sections().items()}
    if not sections:
        return parse_config(local_raw, base_dir=base_dir)
    try:
        return build(local, sections)
    except (ConfigError, FlowError) as exc:
        log.error("HQ's config sections (%s) do not fit the local config any more: %s; running "
                  "on the local config alone", ", ".join(sorted(sections)), exc)
        return parse_config(local_raw, base_dir=base_dir)


def config_for_run(path: str | Path) -> EdgeConfig:
    """What ``edge run`` starts with: the TOML at ``path`` and, when sync is on, the sections HQ
    pushed (read from the store the TOML names)."""
    from edge.config import load_config
    from edge.store import Store

    config = load_config(path)
    if not config.sync.enabled or not Path(config.edge.store).exists():
        return config
    local = LocalConfig.load(path)
    with Store(config.edge.store, outbox=True) as store:
        return merged_config(local.raw, store, local.base_dir)
