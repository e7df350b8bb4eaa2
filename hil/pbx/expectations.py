"""Scenario expectations: each checks the simulator's records and audio history after a run.

Every expectation is a one-key mapping, e.g. ``{rang: {call: c1, extension: "8001", order: 1}}``.
Record-based ones accept ``before_ms`` / ``after_ms`` (scripted time since the world started).

===============  ==================================================================================
``rang``         a phone rang for a call: call, extension, order (1 = first phone rung)
``not_rang``     the phone never rang for that call: call, extension
``answered``     call, extension or number
``bridged``      the call was bridged with a phone or outside number: call, extension / number
``not_bridged``  call (with nobody), or call + extension
``dial_status``  a Dial leg ended so: call, status, extension / number
``hung_up``      a channel of the call hung up: call, by, cause, role (default ``customer``)
``heard``        listener heard speaker at some time (labels: ``customer of c1``, ``phone 8001``)
``never_heard``  listener never heard speaker during the whole run
``spied``        spyer, spyee (labels), mode (listen / whisper / barge)
``agi``          the edge sent a command on the call: call, command (prefix), reply (prefix)
``agi_sequence`` call, commands: prefixes that appear in this order (others may come between)
``moh``          the call's caller heard music on hold: call
``dtmf``         digits the call's caller keyed that a command read: call, digits
``originated``   an AMI Originate ended so: success, reason, channel (prefix)
``ami_logins``   at least ``min`` successful AMI logins (e.g. a reconnect after a fault)
``record``       any record: kind plus data keys to match
===============  ==================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from hil.pbx.errors import ScenarioError

if TYPE_CHECKING:
    from hil.pbx.records import Record
    from hil.pbx.simulator import PbxSimulator


@dataclass
class ExpectationResult:
    kind: str
    spec: dict[str, Any]
    passed: bool
    detail: str = ""

    def describe(self) -> str:
        args = ", ".join(f"{k}: {v}" for k, v in self.spec.items())
        return f"{self.kind} {{{args}}}"


def _in_time(spec: dict[str, Any], origin: float) -> Callable[["Record"], bool]:
    before, after = spec.get("before_ms"), spec.get("after_ms")
    return lambda r: ((before is None or r.t_ms - origin <= before)
                      and (after is None or r.t_ms - origin >= after))


def _find(sim: "PbxSimulator", kind: str, spec: dict[str, Any], keys: tuple[str, ...]) -> list["Record"]:
    match = {k: (str(v) if k in ("extension", "number") else v) for k, v in spec.items() if k in keys}
    timed = _in_time(spec, sim.world_started_ms)
    return [r for r in sim.records(kind, **match) if timed(r)]


def _verdict(found: list, what: str) -> tuple[bool, str]:
    return (True, f"{len(found)} matching") if found else (False, f"no {what} matched")


def check_rang(sim, spec):
    return _verdict(_find(sim, "rang", spec, ("call", "extension", "order")), "ring")


def check_not_rang(sim, spec):
    found = _find(sim, "rang", spec, ("call", "extension"))
    return (not found, f"rang at {found[0].t_ms:.0f} ms" if found else "never rang")


def check_answered(sim, spec):
    return _verdict(_find(sim, "answered", spec, ("call", "extension", "number")), "answer")


def _bridges(sim, spec) -> list["Record"]:
    found = _find(sim, "bridged", spec, ("call",))
    if "extension" in spec:
        found = [r for r in found if str(spec["extension"]) in r.get("extensions", [])]
    if "number" in spec:
        found = [r for r in found if str(spec["number"]) in r.get("numbers", [])]
    return found


def check_bridged(sim, spec):
    return _verdict(_bridges(sim, spec), "bridge")


def check_not_bridged(sim, spec):
    found = _bridges(sim, spec)
    return (not found, f"bridged at {found[0].t_ms:.0f} ms" if found else "never bridged")


def check_dial_status(sim, spec):
    return _verdict(_find(sim, "dial_end", spec, ("call", "status", "extension", "number")), "dial end")


def check_hung_up(sim, spec):
    spec = {"role": "customer", **spec}
    found = _find(sim, "hung_up", spec, ("call", "by", "cause", "role", "extension"))
    if found:
        return True, f"by {found[0].get('by')} cause {found[0].get('cause')}"
    actual = _find(sim, "hung_up", {k: v for k, v in spec.items() if k in ("call", "role")}, ("call", "role"))
    return False, ("actually " + "; ".join(f"by {r.get('by')} cause {r.get('cause')}" for r in actual)
                   if actual else "no hang-up recorded")


def check_heard(sim, spec):
    ok = sim.ever_heard(spec["listener"], spec["speaker"])
    return ok, "heard" if ok else "never heard"


def check_never_heard(sim, spec):
    listeners, speakers = set(sim.resolve(spec["listener"])), set(sim.resolve(spec["speaker"]))
    if not listeners or not speakers:
        return False, f"no channel for {spec['listener'] if not listeners else spec['speaker']!r}"
    spans = [s for s in sim.audio_history() if s.listener in listeners and s.speaker in speakers]
    if spans:
        return False, f"{spans[0].listener} heard {spans[0].speaker} from {spans[0].start_ms:.0f} ms"
    return True, f"{len(listeners)} listener / {len(speakers)} speaker channel(s), never"


def check_spied(sim, spec):
    found = _find(sim, "spy_started", spec, ("mode",))
    if "spyer" in spec:
        found = [r for r in found if r.get("spyer") in sim.resolve(spec["spyer"])]
    if "spyee" in spec:
        found = [r for r in found if r.get("spyee") in sim.resolve(spec["spyee"])]
    return _verdict(found, "spy session")


def _agi(sim, spec) -> list["Record"]:
    return _find(sim, "agi_command", spec, ("call",))


def check_agi(sim, spec):
    command, reply = str(spec.get("command", "")).upper(), str(spec.get("reply", ""))
    found = [r for r in _agi(sim, spec) if r.get("command", "").upper().startswith(command)
             and r.get("reply", "").startswith(reply)]
    return _verdict(found, "AGI command")


def check_agi_sequence(sim, spec):
    wanted = [str(c).upper() for c in spec.get("commands", [])]
    sent = [r.get("command", "").upper() for r in _agi(sim, spec)]
    i = 0
    for command in sent:
        if i < len(wanted) and command.startswith(wanted[i]):
            i += 1
    return (i == len(wanted), "in order" if i == len(wanted) else f"missing {wanted[i]!r} after {i} matched")


def check_moh(sim, spec):
    return _verdict(_find(sim, "moh", {**spec, "on": True}, ("call", "on")), "music on hold")


def check_dtmf(sim, spec):
    digits = "".join(r.get("digit") for r in _find(sim, "dtmf", {**spec, "heard": True}, ("call", "heard")))
    return (str(spec.get("digits", "")) in digits, f"read {digits!r}")


def check_originated(sim, spec):
    found = _find(sim, "originate", spec, ("success", "reason"))
    if "channel" in spec:
        found = [r for r in found if str(r.get("channel", "")).startswith(str(spec["channel"]))]
    return _verdict(found, "originate")


def check_ami_logins(sim, spec):
    count = len(sim.records("ami", what="login"))
    return count >= int(spec.get("min", 1)), f"{count} login(s)"


def check_record(sim, spec):
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind is None:
        raise ScenarioError("record expectation needs kind")
    return _verdict(_find(sim, kind, spec, tuple(k for k in spec if not k.endswith("_ms"))), kind)


CHECKS: dict[str, Callable[["PbxSimulator", dict[str, Any]], tuple[bool, str]]] = {
    name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")
}


def evaluate(sim: "PbxSimulator", expectations: list[Any]) -> list[ExpectationResult]:
    results = []
    for i, item in enumerate(expectations):
        if not isinstance(item, dict) or len(item) != 1:
            raise ScenarioError(f"expect[{i}]: expected a one-key mapping like {{rang: {{...}}}}")
        (kind, spec), = item.items()
        check = CHECKS.get(kind)
        if check is None:
            raise ScenarioError(f"expect[{i}].{kind}: unknown expectation (known: {', '.join(sorted(CHECKS))})")
        spec = dict(spec or {})
        try:
            passed, detail = check(sim, spec)
        except KeyError as exc:
            raise ScenarioError(f"expect[{i}].{kind}: missing key {exc}") from None
        results.append(ExpectationResult(kind, spec, passed, detail))
    return results
