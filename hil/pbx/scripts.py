"""The simulated world as data: trunks, trunk calls, outside parties, desk phones, prompts.

All timings are scripted milliseconds (scaled by the simulator's ``time_scale``). ``World.from_dict``
validates a scenario's ``world`` part and names the bad key in its error, e.g.
``calls[0].did: an analog line delivers no DID (use "s" or leave it out)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hil.pbx.errors import ScriptError
from hil.pbx.faults import Fault, parse_faults

ANALOG, E1 = "analog", "e1"
OUTSIDE_RESULTS = ("answer", "busy", "congestion", "no_answer", "unallocated")
DTMF_KEYS = "0123456789*#ABCD"
MESSAGE_ENDS = ("hangup", "silence")


@dataclass
class PhoneHold:
    """The phone puts its bridged peer on hold (a ``sendonly`` re-INVITE): the peer hears music
    on hold from ``after_answer_ms`` for ``for_ms`` (None: until the call ends)."""
    after_answer_ms: int
    for_ms: int | None = None


@dataclass
class TimedDtmf:
    at_ms: int  # after the call is answered
    digits: str


@dataclass
class RingBehaviour:
    """What a desk phone does when rung once."""
    answer_after_ms: int | None = 1000  # None: never answers
    busy: bool = False                  # rejects at once: Dial BUSY, cause 17
    hangup_after_ms: int | None = None  # talk time after which the agent hangs up
    holds: list[PhoneHold] = field(default_factory=list)
    dtmf: list[TimedDtmf] = field(default_factory=list)  # keys pressed (``*4``: swap in a transfer)


@dataclass
class PhoneDial:
    """The phone goes off-hook at ``at_ms`` and dials ``digits`` (FastAGI ``dial``)."""
    at_ms: int
    digits: str
    hangup_after_ms: int | None = None  # from going off-hook; None: until the far side ends it
    id: str | None = None


@dataclass
class PhoneScript:
    extension: str
    name: str = ""
    rings: list[RingBehaviour] = field(default_factory=lambda: [RingBehaviour()])
    dials: list[PhoneDial] = field(default_factory=list)
    registered: bool = True  # False: Dial gives CHANUNAVAIL

    def behaviour(self, ring_index: int) -> RingBehaviour:
        return self.rings[min(ring_index, len(self.rings) - 1)]


@dataclass
class TrunkSpan:
    """DAHDI channels of one profile. Analog FXO gives no answer supervision unless the line
    signals polarity reversal, and no Q.850 cause; E1/PRI gives both."""
    profile: str = ANALOG
    channels: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    polarity_reversal: bool = False
    group: int = 0


@dataclass
class TrunkCall:
    """One inbound call on a trunk, from the outside caller's point of view."""
    id: str
    caller: str = "unknown"
    caller_name: str = ""
    did: str = "s"
    at_ms: int = 0
    trunk: int | None = None           # DAHDI channel; None: lowest free on the profile
    profile: str | None = None
    menu_input: list[str] = field(default_factory=list)  # one entry per GET DATA/WAIT FOR DIGIT
    key_delay_ms: int = 300            # from the start of the reading command to the first key
    inter_digit_ms: int = 150
    dtmf: list[TimedDtmf] = field(default_factory=list)
    hangup_after_ms: int | None = None         # from arrival
    hangup_after_answer_ms: int | None = None  # from the edge's ANSWER
    hangup_after_talk_ms: int | None = None    # from being bridged to a person
    abandon_on_hold_ms: int | None = None      # from music on hold first starting, unless bridged first
    message_ms: int | None = None  # RECORD FILE: speaks this long from the recording's start, then...
    message_end: str = "#"         # ...keys this DTMF digit, or "hangup", or "silence" (stays, says nothing)


@dataclass
class OutsideParty:
    """Who answers an outbound number: ``number`` exact, or a prefix ending in ``*``."""
    number: str = "*"
    result: str = "answer"
    answer_after_ms: int = 3000
    hangup_after_ms: int | None = None  # talk time after which the far end hangs up
    announcement_ms: int = 3000         # unallocated: the vacant-number announcement's length

    def matches(self, number: str) -> bool:
        if self.number.endswith("*"):
            return number.startswith(self.number[:-1])
        return number == self.number


@dataclass
class World:
    phones: dict[str, PhoneScript] = field(default_factory=dict)
    trunks: list[TrunkSpan] = field(default_factory=lambda: [TrunkSpan()])
    calls: list[TrunkCall] = field(default_factory=list)
    outside: list[OutsideParty] = field(default_factory=list)
    prompts: dict[str, int | None] = field(default_factory=dict)
    strict_prompts: bool = False
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "World":
        r = _Reader(data, "")
        world = cls(
            phones={str(ext): parse_phone(str(ext), spec, f"phones.{ext}")
                    for ext, spec in r.dict("phones").items()},
            trunks=[parse_trunk(t, f"trunks[{i}]") for i, t in enumerate(r.list("trunks"))]
            or [TrunkSpan()],
            calls=[parse_call(c, f"calls[{i}]") for i, c in enumerate(r.list("calls"))],
            outside=[parse_outside(o, f"outside[{i}]") for i, o in enumerate(r.list("outside"))],
            prompts={str(k): (None if v is None else int(v)) for k, v in r.dict("prompts").items()},
            strict_prompts=bool(r.get("strict_prompts", False)),
            faults=parse_faults(r.list("faults")),
        )
        world.validate()
        return world

    def span_of(self, channel: int) -> TrunkSpan | None:
        return next((s for s in self.trunks if channel in s.channels), None)

    def profile_of(self, call: TrunkCall) -> str:
        if call.trunk is not None:
            span = self.span_of(call.trunk)
            if span is None:
                raise ScriptError(f"calls[{call.id}].trunk: no trunk span has channel {call.trunk}")
            return span.profile
        return call.profile or self.trunks[0].profile

    def validate(self) -> None:
        seen: set[int] = set()
        for i, span in enumerate(self.trunks):
            if seen & set(span.channels):
                raise ScriptError(f"trunks[{i}].channels: channel(s) {sorted(seen & set(span.channels))} used twice")
            seen |= set(span.channels)
        ids = [c.id for c in self.calls]
        if len(ids) != len(set(ids)):
            raise ScriptError(f"calls: duplicate call id in {ids}")
        for i, call in enumerate(self.calls):
            profile = self.profile_of(call)
            if profile == ANALOG and call.did not in ("s", ""):
                raise ScriptError(f"calls[{i}].did: an analog line delivers no DID (use \"s\" or leave it out)")


class _Reader:
    """Typed access to one mapping; unknown keys are an error naming the path."""

    def __init__(self, data: Any, path: str, allowed: tuple[str, ...] | None = None) -> None:
        if not isinstance(data, dict):
            raise ScriptError(f"{path or 'world'}: expected a mapping, got {type(data).__name__}")
        self.data, self.path = data, path
        if allowed is not None:
            unknown = sorted(set(map(str, data)) - set(allowed))
            if unknown:
                raise ScriptError(f"{self._at(unknown[0])}: unknown key (allowed: {', '.join(allowed)})")

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def int(self, key: str, default: int | None = None) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ScriptError(f"{self._at(key)}: expected milliseconds (a number >= 0), got {value!r}")
        return int(value)

    def str(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        return default if value is None else str(value)

    def list(self, key: str) -> list[Any]:
        value = self.data.get(key) or []
        if not isinstance(value, list):
            raise ScriptError(f"{self._at(key)}: expected a list")
        return value

    def dict(self, key: str) -> dict[Any, Any]:
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise ScriptError(f"{self._at(key)}: expected a mapping")
        return value


_RING_KEYS = ("answer_after_ms", "no_answer", "busy", "hangup_after_ms", "holds", "dtmf")


def parse_ring(data: dict[str, Any], path: str) -> RingBehaviour:
    r = _Reader(data, path, _RING_KEYS)
    answer = None if r.get("no_answer") else r.int("answer_after_ms", 1000)
    holds = []
    for i, h in enumerate(r.list("holds")):
        hr = _Reader(h, f"{path}.holds[{i}]", ("after_answer_ms", "for_ms"))
        if hr.int("after_answer_ms") is None:
            raise ScriptError(f"{path}.holds[{i}].after_answer_ms: required")
        holds.append(PhoneHold(hr.int("after_answer_ms") or 0, hr.int("for_ms")))
    return RingBehaviour(answer_after_ms=answer, busy=bool(r.get("busy", False)),
                         hangup_after_ms=r.int("hangup_after_ms"), holds=holds,
                         dtmf=parse_dtmf(r, path))


def parse_dtmf(r: _Reader, path: str) -> list[TimedDtmf]:
    """``dtmf: [{at_ms: 2000, digits: "*4"}]``: keys pressed ``at_ms`` after the answer."""
    keys = []
    for i, d in enumerate(r.list("dtmf")):
        dr = _Reader(d, f"{path}.dtmf[{i}]", ("at_ms", "digits"))
        digits = dr.str("digits")
        if not digits or any(c not in DTMF_KEYS for c in digits):
            raise ScriptError(f"{path}.dtmf[{i}].digits: expected DTMF keys (0-9 * # A-D), got {digits!r}")
        keys.append(TimedDtmf(dr.int("at_ms", 0) or 0, digits))
    return keys


def parse_phone(extension: str, data: dict[str, Any] | None, path: str) -> PhoneScript:
    data = data or {}
    r = _Reader(data, path, _RING_KEYS + ("rings", "dials", "name", "registered"))
    if "rings" in data:
        rings = [parse_ring(x, f"{path}.rings[{i}]") for i, x in enumerate(r.list("rings"))]
    else:
        rings = [parse_ring({k: v for k, v in data.items() if k in _RING_KEYS}, path)]
    dials = []
    for i, d in enumerate(r.list("dials")):
        dr = _Reader(d, f"{path}.dials[{i}]", ("at_ms", "digits", "hangup_after_ms", "id"))
        if not dr.str("digits"):
            raise ScriptError(f"{path}.dials[{i}].digits: required")
        dials.append(PhoneDial(dr.int("at_ms", 0) or 0, dr.str("digits"), dr.int("hangup_after_ms"),
                               dr.get("id")))
    return PhoneScript(extension, r.str("name"), rings or [RingBehaviour()], dials,
                       bool(r.get("registered", True)))


def parse_channels(value: Any, path: str) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, str) and "-" in value:
        lo, _, hi = value.partition("-")
        return list(range(int(lo), int(hi) + 1))
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return list(value)
    raise ScriptError(f"{path}: expected a channel number, a range \"1-4\" or a list, got {value!r}")


def parse_trunk(data: dict[str, Any], path: str) -> TrunkSpan:
    r = _Reader(data, path, ("profile", "channels", "polarity_reversal", "group"))
    profile = r.str("profile", ANALOG).lower()
    if profile not in (ANALOG, E1):
        raise ScriptError(f"{path}.profile: expected analog or e1, got {profile!r}")
    return TrunkSpan(profile, parse_channels(r.get("channels", "1-4"), f"{path}.channels"),
                     bool(r.get("polarity_reversal", False)), int(r.get("group", 0)))


def parse_call(data: dict[str, Any], path: str) -> TrunkCall:
    keys = tuple(TrunkCall.__dataclass_fields__)
    r = _Reader(data, path, keys)
    if not r.str("id"):
        raise ScriptError(f"{path}.id: required")
    profile = r.get("profile")
    if profile is not None and profile not in (ANALOG, E1):
        raise ScriptError(f"{path}.profile: expected analog or e1, got {profile!r}")
    dtmf = []
    for i, d in enumerate(r.list("dtmf")):
        dr = _Reader(d, f"{path}.dtmf[{i}]", ("at_ms", "digits"))
        dtmf.append(TimedDtmf(dr.int("at_ms", 0) or 0, dr.str("digits")))
    return TrunkCall(
        id=r.str("id"), caller=r.str("caller", "unknown"), caller_name=r.str("caller_name"),
        did=r.str("did", "s") or "s", at_ms=r.int("at_ms", 0) or 0,
        trunk=r.get("trunk"), profile=profile,
        menu_input=["" if x is None else str(x) for x in r.list("menu_input")],
        key_delay_ms=r.int("key_delay_ms", 300) or 0, inter_digit_ms=r.int("inter_digit_ms", 150) or 0,
        dtmf=dtmf, hangup_after_ms=r.int("hangup_after_ms"),
        hangup_after_answer_ms=r.int("hangup_after_answer_ms"),
        hangup_after_talk_ms=r.int("hangup_after_talk_ms"),
        abandon_on_hold_ms=r.int("abandon_on_hold_ms"),
        message_ms=r.int("message_ms"), message_end=parse_message_end(r, path))


def parse_message_end(r: _Reader, path: str) -> str:
    """A voicemail caller's last act: one DTMF key (quote ``"#"`` in YAML), hangup or silence."""
    end = r.str("message_end", "#")
    if end not in MESSAGE_ENDS and not (len(end) == 1 and end in DTMF_KEYS):
        raise ScriptError(f"{path}.message_end: expected one DTMF key (0-9 * # A-D), hangup or silence, "
                          f"got {end!r}")
    if r.get("message_end") is not None and r.get("message_ms") is None:
        raise ScriptError(f"{path}.message_end: needs message_ms (how long the caller speaks first)")
    return end


def parse_outside(data: dict[str, Any], path: str) -> OutsideParty:
    r = _Reader(data, path, tuple(OutsideParty.__dataclass_fields__))
    result = r.str("result", "answer")
    if result not in OUTSIDE_RESULTS:
        raise ScriptError(f"{path}.result: expected one of {', '.join(OUTSIDE_RESULTS)}, got {result!r}")
    return OutsideParty(r.str("number", "*"), result, r.int("answer_after_ms", 3000) or 0,
                        r.int("hangup_after_ms"), r.int("announcement_ms", 3000) or 0)
