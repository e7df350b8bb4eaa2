"""A call flow as data: one frozen dataclass per step type, and the ``Flow`` that holds them.

Steps name the steps they lead to by id; ``links()`` lists those references with the key that
holds each (``options.1``, ``on_fail``), so the validator can name the exact key of a bad one.
Three kinds of step matter to the graph checks: terminal steps end the IVR (``TERMINAL``), input
steps wait for the caller's keys (``menu``, ``collect``), and instant steps (``set``, ``branch``)
run inside one interpreter call without waiting for anything.

A menu or collect step without ``on_fail`` hands a caller who used up its retries to the
operator queue when the flow has one, and hangs up otherwise: that way out always exists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

BRANCH_ON = ("period", "caller", "var")
SAY_AS = ("number", "digits", "money", "date")
LOOKUP_FIELDS = ("balance", "due_amount", "due_date")
TERMINATORS = ("#", "*")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Step:
    id: str

    type_name: ClassVar[str] = ""
    terminal: ClassVar[bool] = False
    waits_for_input: ClassVar[bool] = False
    instant: ClassVar[bool] = False

    def links(self) -> tuple[tuple[str, str], ...]:
        """(key, step id) for every step this one can lead to."""
        return ()

    def prompts(self) -> tuple[str, ...]:
        return ()

    def writes(self) -> str | None:
        """The variable this step sets, if any."""
        return None

    def reads(self) -> tuple[tuple[str, str], ...]:
        """(key, variable) for every variable this step uses."""
        return ()


@dataclass(frozen=True)
class PlayStep(Step):
    prompt: str
    next: str

    type_name: ClassVar[str] = "play"

    def links(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),)

    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,)


@dataclass(frozen=True)
class MenuStep(Step):
    """Plays ``prompt`` and waits for one of ``options`` (digits -> step id).

    ``retries`` is how many more tries a caller gets after a timeout or an unknown choice.
    """
    prompt: str
    options: Mapping[str, str]
    retries: int = 2
    timeout_s: float = 5.0
    invalid_prompt: str | None = None
    on_fail: str | None = None

    type_name: ClassVar[str] = "menu"
    waits_for_input: ClassVar[bool] = True

    @property
    def max_digits(self) -> int:
        return max(len(key) for key in self.options)

    def links(self) -> tuple[tuple[str, str], ...]:
        links = tuple((f"options.{key}", target) for key, target in self.options.items())
        return links + ((("on_fail", self.on_fail),) if self.on_fail else ())

    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,) + ((self.invalid_prompt,) if self.invalid_prompt else ())


@dataclass(frozen=True)
class CollectStep(Step):
    """Collects ``min_digits`` to ``max_digits`` digits ended by ``terminator`` into ``into``.

    ``sensitive`` (a PIN, an ID number): the digits are masked in the trace, logs, CDRs and sync,
    and call recording pauses while the step runs.
    """
    prompt: str
    into: str
    next: str
    max_digits: int
    min_digits: int = 1
    terminator: str = "#"
    timeout_s: float = 5.0
    retries: int = 2
    invalid_prompt: str | None = None
    on_fail: str | None = None
    sensitive: bool = False

    type_name: ClassVar[str] = "collect"
    waits_for_input: ClassVar[bool] = True

    def links(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),) + ((("on_fail", self.on_fail),) if self.on_fail else ())

    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,) + ((self.invalid_prompt,) if self.invalid_prompt else ())

    def writes(self) -> str | None:
        return self.into


@dataclass(frozen=True)
class VerifyMemberStep(Step):
    """Looks the member number in variable ``source`` (``from:`` in the file) up in the store;
    once found, the customer it names is the one account look-ups read."""
    source: str
    found: str
    not_found: str

    type_name: ClassVar[str] = "verify_member"

    def links(self) -> tuple[tuple[str, str], ...]:
        return (("found", self.found), ("not_found", self.not_found))

    def reads(self) -> tuple[tuple[str, str], ...]:
        return (("from", self.source),)


@dataclass(frozen=True)
class LookupStep(Step):
    """Reads ``field`` of the verified customer's account into variable ``into``."""
    field: str
    into: str
    found: str
    not_found: str

    type_name: ClassVar[str] = "lookup"

    def links(self) -> tuple[tuple[str, str], ...]:
        return (("found", self.found), ("not_found", self.not_found))

    def writes(self) -> str | None:
        return self.into


@dataclass(frozen=True)
class SayStep(Step):
    """Plays ``prompt`` (if any), then reads ``value`` back as ``kind`` (``as:`` in the file).

    ``value`` is a template: ``{bal}`` stands for the variable ``bal``.
    """
    value: str
    kind: str
    next: str
    prompt: str | None = None

    type_name: ClassVar[str] = "say"

    def links(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),)

    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,) if self.prompt else ()

    def reads(self) -> tuple[tuple[str, str], ...]:
        return tuple(("value", name) for name in references(self.value))


@dataclass(frozen=True)
class SetStep(Step):
    """Sets variable ``var`` to ``value`` (a template like a say step's)."""
    var: str
    value: str
    next: str

    type_name: ClassVar[str] = "set"
    instant: ClassVar[bool] = True

    def links(self) -> tuple[tuple[str, str], ...]:
        return (("next", self.next),)

    def writes(self) -> str | None:
        return self.var

    def reads(self) -> tuple[tuple[str, str], ...]:
        return tuple(("value", name) for name in references(self.value))


@dataclass(frozen=True)
class BranchStep(Step):
    """Goes to the first case matching, else ``default``.

    ``on: period`` matches the current period name (``open``, ``closed``, ``holiday``...);
    ``on: caller`` searches each case's regular expression in the caller's number, in order;
    ``on: var`` compares variable ``var`` with each case's text.
    """
    on: str
    cases: Mapping[str, str]
    default: str
    var: str | None = None

    type_name: ClassVar[str] = "branch"
    instant: ClassVar[bool] = True

    def links(self) -> tuple[tuple[str, str], ...]:
        cases = tuple((f"cases.{key}", target) for key, target in self.cases.items())
        return cases + (("default", self.default),)

    def reads(self) -> tuple[tuple[str, str], ...]:
        return (("var", self.var),) if self.var else ()


@dataclass(frozen=True)
class QueueStep(Step):
    queue: str

    type_name: ClassVar[str] = "queue"
    terminal: ClassVar[bool] = True


@dataclass(frozen=True)
class VoicemailStep(Step):
    box: str

    type_name: ClassVar[str] = "voicemail"
    terminal: ClassVar[bool] = True


@dataclass(frozen=True)
class HangupStep(Step):
    type_name: ClassVar[str] = "hangup"
    terminal: ClassVar[bool] = True


@dataclass(frozen=True)
class AgentStep(Step):
    """Goes to the flow's operator queue, like "0" from a menu."""
    type_name: ClassVar[str] = "agent"
    terminal: ClassVar[bool] = True


STEP_TYPES: Mapping[str, type[Step]] = {cls.type_name: cls for cls in (
    PlayStep, MenuStep, CollectStep, VerifyMemberStep, LookupStep, SayStep, SetStep, BranchStep,
    QueueStep, VoicemailStep, HangupStep, AgentStep)}


@dataclass(frozen=True)
class Flow:
    """One version of one call flow. ``source`` (where it was loaded from) is not part of its
    identity: the same flow read from YAML and from JSON compares equal."""
    id: str
    version: int
    start: str
    steps: Mapping[str, Step]
    operator_queue: str | None = None
    description: str = ""
    source: str = field(default="", compare=False)

    def queues(self) -> frozenset[str]:
        """Every queue the flow can send a call to (to check against the configured groups)."""
        queues = {s.queue for s in self.steps.values() if isinstance(s, QueueStep)}
        return frozenset(queues | ({self.operator_queue} if self.operator_queue else set()))

    def prompts(self) -> frozenset[str]:
        return frozenset(p for step in self.steps.values() for p in step.prompts())

    def sensitive_variables(self) -> frozenset[str]:
        """Variables a sensitive collect writes, and those a ``set`` copies from one of them."""
        sensitive = {s.into for s in self.steps.values()
                     if isinstance(s, CollectStep) and s.sensitive}
        grew = True
        while grew:
            grew = False
            for step in self.steps.values():
                if (isinstance(step, SetStep) and step.var not in sensitive
                        and sensitive.intersection(references(step.value))):
                    sensitive.add(step.var)
                    grew = True
        return frozenset(sensitive)


def references(template: str) -> tuple[str, ...]:
    """The variable names a ``{name}`` template uses, in order."""
    return tuple(_REFERENCE.findall(template))


def render(template: str, variables: Mapping[str, str]) -> str:
    """Fills a template; a variable not set (yet) on this call reads as empty."""
    return _REFERENCE.sub(lambda m: variables.get(m.group(1), ""), template)


def stray_brace(template: str) -> bool:
    return "{" in _REFERENCE.sub("", template) or "}" in _REFERENCE.sub("", template)
