"""Graph checks on a parsed flow: what makes a flow wrong although every step reads well.

In order: every step reference exists; the operator is set where a step needs it; every step is
reachable from ``start``; from every step a terminal step (queue, voicemail, agent, hangup) can be
reached; no loop runs without asking the caller for input (it would repeat for ever, and a loop of
``set`` and ``branch`` steps would spin the core's only thread); every variable used is written
somewhere; nothing sensitive is read back aloud; no account look-up can run before a member was
verified. The first problem found raises ``FlowError`` naming its step.
"""
from __future__ import annotations

import difflib
from collections import deque

from edge.ivr.errors import FlowError
from edge.ivr.model import (
    AgentStep, CollectStep, Flow, LookupStep, MenuStep, SayStep, Step, VerifyMemberStep)

TERMINAL_NAMES = "a queue, voicemail, agent or hangup step"


def validate(flow: Flow) -> None:
    _check_references(flow)
    _check_operator(flow)
    _check_reachable(flow)
    _check_exits(flow)
    _check_input_in_loops(flow)
    _check_variables(flow)
    _check_verified_before_lookup(flow)


def _error(flow: Flow, step: str, problem: str) -> FlowError:
    return FlowError(flow.source or f"flow {flow.id!r}", step, problem)


def _check_references(flow: Flow) -> None:
    if flow.start not in flow.steps:
        raise _error(flow, "", f"start: unknown step {flow.start!r}{_hint(flow, flow.start)}")
    for step in flow.steps.values():
        for key, target in step.links():
            if target not in flow.steps:
                raise _error(flow, step.id, f"{key}: unknown step {target!r}{_hint(flow, target)}")


def _hint(flow: Flow, name: str) -> str:
    close = difflib.get_close_matches(name, list(flow.steps), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_operator(flow: Flow) -> None:
    for step in flow.steps.values():
        if isinstance(step, AgentStep) and flow.operator_queue is None:
            raise _error(flow, step.id, "an agent step needs the flow's operator queue "
                                        "(operator: {queue: ...})")
        if isinstance(step, MenuStep) and flow.operator_queue is not None and "0" in step.options:
            raise _error(flow, step.id, 'options.0: "0" goes to the operator in this flow '
                                        "(operator is set); choose another key")


def _check_reachable(flow: Flow) -> None:
    seen = {flow.start}
    todo = deque([flow.start])
    while todo:
        for _, target in flow.steps[todo.popleft()].links():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for step_id in flow.steps:
        if step_id not in seen:
            raise _error(flow, step_id, f"unreachable: no step leads here from the start step "
                                        f"{flow.start!r}")


def _has_own_exit(step: Step) -> bool:
    """Terminal steps, and menus/collects without ``on_fail`` (they fall to operator/hang-up)."""
    return step.terminal or (isinstance(step, (MenuStep, CollectStep)) and step.on_fail is None)


def _check_exits(flow: Flow) -> None:
    """A set of steps from which no terminal step can be reached is a loop the caller can never
    leave (pressing 0 aside): reported with one cycle through it."""
    can_exit = {s.id for s in flow.steps.values() if _has_own_exit(s)}
    grew = True
    while grew:
        grew = False
        for step in flow.steps.values():
            if step.id not in can_exit and any(t in can_exit for _, t in step.links()):
                can_exit.add(step.id)
                grew = True
    trapped = [step_id for step_id in flow.steps if step_id not in can_exit]
    if not trapped:
        return
    cycle = _walk_to_cycle(flow, trapped[0], set(trapped))
    others = sorted(set(trapped) - set(cycle))
    also = f" (nor can {', '.join(others)})" if others else ""
    raise _error(flow, cycle[0], f"loop without exit: {' -> '.join(cycle)} never reaches "
                                 f"{TERMINAL_NAMES}{also}")


def _walk_to_cycle(flow: Flow, first: str, within: set[str]) -> list[str]:
    """Follow links inside ``within`` (every step in it leads only into it) until one repeats."""
    path = [first]
    while True:
        nxt = next(t for _, t in flow.steps[path[-1]].links() if t in within)
        if nxt in path:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)


def _check_input_in_loops(flow: Flow) -> None:
    """Every loop must pass a menu or collect step: without one it never waits for the caller."""
    quiet = {s.id for s in flow.steps.values() if not s.waits_for_input}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in flow.steps:
        if root not in quiet or root in state:
            continue
        path = [root]
        state[root] = 1
        branches = [iter(_quiet_targets(flow, root, quiet))]
        while branches:
            target = next(branches[-1], None)
            if target is None:
                state[path.pop()] = 2
                branches.pop()
            elif state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise _error(flow, target, f"loop without exit: {' -> '.join(cycle)} never asks "
                                           "the caller for input (add a menu or collect step)")
            elif target not in state:
                state[target] = 1
                path.append(target)
                branches.append(iter(_quiet_targets(flow, target, quiet)))


def _quiet_targets(flow: Flow, step_id: str, quiet: set[str]) -> list[str]:
    return [t for _, t in flow.steps[step_id].links() if t in quiet]


def _check_variables(flow: Flow) -> None:
    written = {name for s in flow.steps.values() if (name := s.writes())}
    sensitive = flow.sensitive_variables()
    for step in flow.steps.values():
        for key, name in step.reads():
            if name not in written:
                raise _error(flow, step.id, f"{key}: variable {name!r} is never set (no collect, "
                                            "set or lookup step writes it)")
            if isinstance(step, SayStep) and name in sensitive:
                raise _error(flow, step.id, f"{key}: {name!r} is sensitive and must not be "
                                            "read back to the caller")


def _check_verified_before_lookup(flow: Flow) -> None:
    """A path from start to a look-up that skips every verify_member's ``found`` has no customer
    to look up: reported with that path."""
    came_from: dict[str, str | None] = {flow.start: None}
    todo = deque([flow.start])
    while todo:
        step = flow.steps[todo.popleft()]
        if isinstance(step, LookupStep):
            raise _error(flow, step.id, "can run before any member is verified: "
                                        f"{' -> '.join(_path_to(came_from, step.id))}")
        for key, target in step.links():
            if isinstance(step, VerifyMemberStep) and key == "found":
                continue
            if target not in came_from:
                came_from[target] = step.id
                todo.append(target)


def _path_to(came_from: dict[str, str | None], step_id: str) -> list[str]:
    path = [step_id]
    while (previous := came_from[path[-1]]) is not None:
        path.append(previous)
    return path[::-1]
