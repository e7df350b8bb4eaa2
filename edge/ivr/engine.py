"""The IVR interpreter: walks one call through a ``Flow``, pure and deterministic.

No I/O and no clock: the core calls an ``IvrSession`` on its single thread and carries out the
actions it returns. ``period_of()`` (open / closed / holiday...) is the core's to answer, from its
injected clock.

The contract between the core and a session
-------------------------------------------
* ``start()`` once, then exactly one answer per action that needs one, in order:
  ``PlayPrompt`` and ``SayValue`` -> ``on_played()``; ``CollectDigits`` -> ``on_collected(digits,
  timed_out)``; ``Lookup`` -> ``on_lookup(found, values)``. ``PauseRecording`` and
  ``ResumeRecording`` need no answer: carry them out and go on with the next action.
* Every list of actions returned holds at most one action that needs an answer, and it is the
  last one; or it ends with a terminal action (``ToQueue``, ``ToVoicemail``, ``ToOperator``,
  ``HangupCall``), after which the session is ``finished`` and takes no more answers.
* A ``PauseRecording`` always comes right before a sensitive ``CollectDigits``; the matching
  ``ResumeRecording`` comes before whatever the caller hears next, or before the terminal action.
  Retries of the same sensitive step stay paused.
* ``on_collected`` gets the digits as GET DATA returned them (``#`` ends GET DATA and is not in
  them) and whether it timed out; a play that failed (missing file) is answered with
  ``on_played()`` too: the flow goes on, the caller just heard nothing.
* ``on_lookup``: for ``Lookup("member", member number, "found")``, ``values`` holds at least
  ``customer_id`` (and ``name``); for ``Lookup("account", customer_id, field)`` it holds ``field``
  (``balance`` / ``due_amount`` as decimal text like ``"1234.56"``, ``due_date`` as ISO
  ``"2026-12-05"``). ``found=False`` or a missing value take the step's ``not_found``.
* If the caller hangs up, the core calls ``abandon()`` (no answer to the pending action).
* An answer out of turn raises ``SessionError``.

``trace`` (for the CDR) lists, in order: each step entered by id; each input as
``"<step>=<digits>"`` (``"(timeout)"`` for none, ``"******"`` for a sensitive step's); each
look-up result as ``"<step>=found"`` / ``"<step>=not_found"``; and ``"(operator)"`` when "0" or
a failed step sent the caller to the operator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from edge.ivr.errors import SessionError
from edge.ivr.model import (
    AgentStep, BranchStep, CollectStep, Flow, HangupStep, LookupStep, MenuStep, PlayStep,
    QueueStep, SayStep, SetStep, Step, VerifyMemberStep, VoicemailStep, render)

MASK = "******"
OPERATOR_KEY = "0"
MAX_STEPS = 200  # a silent line (an FXO call nobody hung up) must not hold a trunk for ever


# --- actions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    """Something the core does for the IVR."""


@dataclass(frozen=True)
class Terminal(Action):
    """Ends the IVR: the call leaves the flow."""


@dataclass(frozen=True)
class PlayPrompt(Action):
    prompt: str


@dataclass(frozen=True)
class CollectDigits(Action):
    prompt: str
    max_digits: int
    timeout_ms: int
    sensitive: bool = False


@dataclass(frozen=True)
class SayValue(Action):
    """Read ``value`` back as ``kind``: number, digits, money (``"1234.56"``) or date (ISO)."""
    kind: str
    value: str


@dataclass(frozen=True)
class Lookup(Action):
    """Ask the store: ``kind`` ``member`` (``key`` = member number, ``field`` = ``found``) or
    ``account`` (``key`` = customer id, ``field`` = balance / due_amount / due_date).

    ``sensitive``: the key came from a sensitive step (an ID number): never log it.
    """
    kind: str
    key: str
    field: str
    sensitive: bool = False

    def __repr__(self) -> str:
        key = MASK if self.sensitive else repr(self.key)
        return f"Lookup(kind={self.kind!r}, key={key}, field={self.field!r})"


@dataclass(frozen=True)
class PauseRecording(Action):
    pass


@dataclass(frozen=True)
class ResumeRecording(Action):
    pass


@dataclass(frozen=True)
class ToQueue(Terminal):
    queue: str


@dataclass(frozen=True)
class ToVoicemail(Terminal):
    box: str


@dataclass(frozen=True)
class ToOperator(Terminal):
    queue: str


@dataclass(frozen=True)
class HangupCall(Terminal):
    pass


_Then = Callable[..., list[Action]]


# --- the session ---------------------------------------------------------------------------------

class IvrSession:
    """One call's walk through one flow."""

    def __init__(self, flow: Flow, call_id: str, caller: str, period_of: Callable[[], str],
                 max_steps: int = MAX_STEPS) -> None:
        self.flow = flow
        self.call_id = call_id
        self.caller = caller
        self._period_of = period_of
        self._max_steps = max_steps
        self._sensitive = flow.sensitive_variables()
        self._variables: dict[str, str] = {}
        self._trace: list[str] = []
        self._customer_id = ""
        self._steps_run = 0
        self._failures = 0
        self._paused = False
        self._started = False
        self._expect: str | None = None
        self._then: _Then | None = None
        self._outcome: str | None = None

    # --- what the core reads -------------------------------------------------------------------

    @property
    def variables(self) -> dict[str, str]:
        """The values as keyed (a PIN too): for the flow's own use, never for logs."""
        return dict(self._variables)

    def masked_variables(self) -> dict[str, str]:
        """The variables fit for logs, the CDR and sync: sensitive ones read ``******``."""
        return {name: MASK if name in self._sensitive else value
                for name, value in self._variables.items()}

    @property
    def trace(self) -> list[str]:
        return list(self._trace)

    @property
    def customer_id(self) -> str:
        """The customer a verify_member step found ("" until then)."""
        return self._customer_id

    @property
    def outcome(self) -> str | None:
        """None while running; then ``queue:<q>``, ``voicemail:<box>``, ``operator:<q>``,
        ``hangup`` or ``abandoned``."""
        return self._outcome

    @property
    def finished(self) -> bool:
        return self._outcome is not None

    # --- what the core calls -------------------------------------------------------------------

    def start(self) -> list[Action]:
        if self._started:
            raise SessionError(f"call {self.call_id}: IVR session started twice")
        self._started = True
        return self._goto(self.flow.start)

    def on_played(self) -> list[Action]:
        return self._answer("played")()

    def on_collected(self, digits: str, timed_out: bool) -> list[Action]:
        return self._answer("collected")(digits, timed_out)

    def on_lookup(self, found: bool, values: Mapping[str, Any]) -> list[Action]:
        return self._answer("lookup")(found, values)

    def abandon(self) -> None:
        """The caller hung up: the session ends where it was."""
        if self._outcome is None:
            self._expect = self._then = None
            self._paused = False
            self._outcome = "abandoned"

    def _answer(self, kind: str) -> _Then:
        if self._expect != kind:
            waiting = f"waiting for {self._expect}" if self._expect else (
                f"finished ({self._outcome})" if self._outcome else "not started")
            raise SessionError(f"call {self.call_id}: on_{kind} while {waiting}")
        then = self._then
        self._expect = self._then = None
        return then

    def _ask(self, action: Action, expect: str, then: _Then) -> list[Action]:
        self._expect, self._then = expect, then
        return [action]

    # --- walking -------------------------------------------------------------------------------

    def _goto(self, step_id: str) -> list[Action]:
        """Enter ``step_id`` and run instant steps until one waits for an answer or ends the IVR."""
        while True:
            self._steps_run += 1
            if self._steps_run > self._max_steps:
                self._trace.append("(step limit)")
                return self._fail_out()
            step = self.flow.steps[step_id]
            self._trace.append(step.id)
            self._failures = 0
            if isinstance(step, SetStep):
                self._variables[step.var] = render(step.value, self._variables)
                step_id = step.next
            elif isinstance(step, BranchStep):
                step_id = self._branch(step)
            else:
                return self._recording_for(step) + self._begin(step)

    def _recording_for(self, step: Step) -> list[Action]:
        sensitive = isinstance(step, CollectStep) and step.sensitive
        if sensitive and not self._paused:
            self._paused = True
            return [PauseRecording()]
        if self._paused and not sensitive and not step.terminal:
            self._paused = False
            return [ResumeRecording()]
        return []  # a terminal step resumes in _finish

    def _begin(self, step: Step) -> list[Action]:
        if isinstance(step, PlayStep):
            return self._ask(PlayPrompt(step.prompt), "played", lambda: self._goto(step.next))
        if isinstance(step, MenuStep):
            return self._prompt_menu(step)
        if isinstance(step, CollectStep):
            return self._prompt_collect(step)
        if isinstance(step, SayStep):
            return self._say(step)
        if isinstance(step, VerifyMemberStep):
            return self._verify(step)
        if isinstance(step, LookupStep):
            return self._lookup(step)
        if isinstance(step, QueueStep):
            return self._finish(ToQueue(step.queue), f"queue:{step.queue}")
        if isinstance(step, VoicemailStep):
            return self._finish(ToVoicemail(step.box), f"voicemail:{step.box}")
        if isinstance(step, AgentStep):
            return self._to_operator()
        if isinstance(step, HangupStep):
            return self._finish(HangupCall(), "hangup")
        raise SessionError(f"call {self.call_id}: no interpreter for step {step.id!r}")

    def _finish(self, action: Terminal, outcome: str) -> list[Action]:
        actions: list[Action] = [ResumeRecording()] if self._paused else []
        self._paused = False
        self._outcome = outcome
        return actions + [action]

    def _to_operator(self) -> list[Action]:
        self._trace.append("(operator)")
        queue = self.flow.operator_queue or ""
        return self._finish(ToOperator(queue), f"operator:{queue}")

    def _fail_out(self) -> list[Action]:
        """Where a menu or collect without ``on_fail`` sends a caller out of retries."""
        if self.flow.operator_queue:
            return self._to_operator()
        return self._finish(HangupCall(), "hangup")

    def _operator_pressed(self, digits: str) -> bool:
        return self.flow.operator_queue is not None and digits == OPERATOR_KEY

    # --- input steps ---------------------------------------------------------------------------

    def _prompt_menu(self, step: MenuStep) -> list[Action]:
        action = CollectDigits(step.prompt, step.max_digits, _ms(step.timeout_s))
        return self._ask(action, "collected", lambda d, t: self._menu_answer(step, d, t))

    def _menu_answer(self, step: MenuStep, digits: str, timed_out: bool) -> list[Action]:
        self._trace.append(f"{step.id}={digits or '(timeout)'}")
        if self._operator_pressed(digits):
            return self._to_operator()
        if digits in step.options:
            return self._goto(step.options[digits])
        return self._retry(step, bool(digits), lambda: self._prompt_menu(step))

    def _prompt_collect(self, step: CollectStep) -> list[Action]:
        # GET DATA stops by itself on '#' only: another terminator takes one more digit's room
        room = step.max_digits + (0 if step.terminator == "#" else 1)
        action = CollectDigits(step.prompt, room, _ms(step.timeout_s), step.sensitive)
        return self._ask(action, "collected", lambda d, t: self._collect_answer(step, d, t))

    def _collect_answer(self, step: CollectStep, digits: str, timed_out: bool) -> list[Action]:
        digits = digits.split(step.terminator, 1)[0].replace("#", "")
        shown = MASK if step.sensitive and digits else digits or "(timeout)"
        self._trace.append(f"{step.id}={shown}")
        if self._operator_pressed(digits):
            return self._to_operator()
        if digits.isdigit() and step.min_digits <= len(digits) <= step.max_digits:
            self._variables[step.into] = digits
            return self._goto(step.next)
        return self._retry(step, bool(digits), lambda: self._prompt_collect(step))

    def _retry(self, step: MenuStep | CollectStep, invalid: bool,
               again: Callable[[], list[Action]]) -> list[Action]:
        """Another try while retries last, else ``on_fail``; an invalid entry (not a silence)
        first hears ``invalid_prompt``."""
        self._failures += 1
        if self._failures > step.retries:
            then = (lambda: self._goto(step.on_fail)) if step.on_fail else self._fail_out
        else:
            then = again
        if invalid and step.invalid_prompt:
            return self._ask(PlayPrompt(step.invalid_prompt), "played", then)
        return then()

    # --- other steps ---------------------------------------------------------------------------

    def _branch(self, step: BranchStep) -> str:
        if step.on == "period":
            return step.cases.get(self._period_of(), step.default)
        if step.on == "caller":
            return next((target for pattern, target in step.cases.items()
                         if _search(pattern, self.caller)), step.default)
        return step.cases.get(self._variables.get(step.var or "", ""), step.default)

    def _say(self, step: SayStep) -> list[Action]:
        def say() -> list[Action]:
            value = render(step.value, self._variables)
            if not value:  # nothing to read back on this call: go on rather than say nothing
                return self._goto(step.next)
            return self._ask(SayValue(step.kind, value), "played", lambda: self._goto(step.next))
        if step.prompt:
            return self._ask(PlayPrompt(step.prompt), "played", say)
        return say()

    def _verify(self, step: VerifyMemberStep) -> list[Action]:
        member = self._variables.get(step.source, "")
        if not member:
            return self._looked_up(step, step.not_found, False)
        action = Lookup("member", member, "found", step.source in self._sensitive)
        return self._ask(action, "lookup", lambda found, values: self._verified(step, found, values))

    def _verified(self, step: VerifyMemberStep, found: bool,
                  values: Mapping[str, Any]) -> list[Action]:
        customer_id = str(values.get("customer_id") or "") if found else ""
        if not customer_id:
            return self._looked_up(step, step.not_found, False)
        self._customer_id = customer_id
        return self._looked_up(step, step.found, True)

    def _lookup(self, step: LookupStep) -> list[Action]:
        if not self._customer_id:
            return self._looked_up(step, step.not_found, False)
        action = Lookup("account", self._customer_id, step.field)
        return self._ask(action, "lookup", lambda found, values: self._fetched(step, found, values))

    def _fetched(self, step: LookupStep, found: bool, values: Mapping[str, Any]) -> list[Action]:
        value = values.get(step.field) if found else None
        if value is None or value == "":
            return self._looked_up(step, step.not_found, False)
        self._variables[step.into] = str(value)
        return self._looked_up(step, step.found, True)

    def _looked_up(self, step: Step, target: str, found: bool) -> list[Action]:
        self._trace.append(f"{step.id}={'found' if found else 'not_found'}")
        return self._goto(target)


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _search(pattern: str, caller: str) -> bool:
    return re.search(pattern, caller) is not None
