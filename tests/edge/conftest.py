"""Fixtures for the edge core: a small branch as plain data, and a harness driving ``Core``.

The harness plays the driver's part: it posts the events Asterisk's FastAGI sessions and AMI would
cause and collects the commands, all in virtual time (``ManualClock``).
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from edge.clock import ManualClock
from edge.commands import Command, Hangup, Notify, RingAgent, WriteCdr
from edge.config import parse_config
from edge.core import Core
from edge.events import AgentAnswered, CallHungUp, CallOffered, CommandDone, Event, Tick
from edge.regions import RegionResolver

# 2026-11-23 08:00 in Asia/Shanghai
START = 1_795_392_000.0

BRANCH: dict[str, Any] = {
    "edge": {"id": "test-edge"},
    "trunks": [
        {"channel": 1, "profile": "fxo", "number": "075583210001"},
        {"channel": 2, "profile": "pri"},
    ],
    "groups": [
        {"name": "general", "strategy": "least_calls"},
        {"name": "gd", "strategy": "extension_order"},
        {"name": "cards", "strategy": "least_calls"},
    ],
    "agents": [
        {"id": "zhang", "name": "张伟", "extension": "8003", "groups": ["general"], "wrap_up_s": 0},
        {"id": "wang", "name": "王芳", "extension": "8001", "groups": ["general"], "wrap_up_s": 0},
        {"id": "li", "name": "李娜", "extension": "8002", "groups": ["general", "gd"],
         "wrap_up_s": 0},
        {"id": "zhao", "name": "赵敏", "extension": "8101", "groups": ["cards"], "wrap_up_s": 0},
        {"id": "sun", "name": "孙主管", "extension": "8009", "roles": ["agent", "supervisor"],
         "wrap_up_s": 0},
        {"id": "zhou", "name": "周组长", "extension": "8008", "roles": ["agent", "team_lead"],
         "wrap_up_s": 0},
    ],
    "routing": {"default_group": "general"},
}


def branch(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` (BRANCH); ``groups=``... replace a section, ``routing=`` extends."""
    data = copy.deepcopy(BRANCH if base is None else base)
    for key, value in changes.items():
        if key == "routing":
            data["routing"].update(value)
        else:
            data[key] = value
    return data


class Harness:
    def __init__(self, data: dict[str, Any], start: float = START,
                 counts: dict[str, int] | None = None, last: dict[str, str] | None = None) -> None:
        self.clock = ManualClock(start)
        self.config = parse_config(data)
        self.core = Core(self.config, self.clock, RegionResolver.from_files(), counts, last)
        self.log: list[Command] = []

    # --- driving -------------------------------------------------------------------------------

    def send(self, event: Event) -> list[Command]:
        commands = self.core.handle(event)
        self.log.extend(commands)
        return commands

    def tick(self, seconds: float = 0.0) -> list[Command]:
        self.clock.advance(seconds)
        return self.send(Tick())

    def offer(self, call_id: str, caller: str = "13800138000", did: str = "",
              trunk: int | None = 2) -> list[Command]:
        return self.send(CallOffered(call_id, f"DAHDI/{trunk or 1}-1", caller, did=did, trunk=trunk))

    def answer(self, call_id: str, extension: str | None = None) -> list[Command]:
        return self.send(AgentAnswered(call_id, extension or self.ringing_extension(call_id)))

    def no_answer(self, call_id: str, status: str = "NOANSWER") -> list[Command]:
        return self.send(CommandDone(call_id, "RingAgent", status=status))

    def agent_hangs_up(self, call_id: str, talk_s: float = 0.0) -> list[Command]:
        return self.send(CommandDone(call_id, "RingAgent", status="ANSWER", talk_s=talk_s))

    def caller_hangs_up(self, call_id: str, cause: int = 16) -> list[Command]:
        return self.send(CallHungUp(call_id, cause=cause, by="caller"))

    # --- reading -------------------------------------------------------------------------------

    def rings(self, commands: list[Command] | None = None) -> list[RingAgent]:
        return [c for c in (self.log if commands is None else commands) if isinstance(c, RingAgent)]

    def ringing_extension(self, call_id: str) -> str:
        return [r for r in self.rings() if r.call_id == call_id][-1].extension

    def rung(self, commands: list[Command]) -> dict[str, str]:
        """call_id -> extension for the RingAgents among ``commands``."""
        return {r.call_id: r.extension for r in self.rings(commands)}

    def cdrs(self, call_id: str | None = None) -> list[dict[str, Any]]:
        return [c.record for c in self.log if isinstance(c, WriteCdr)
                and (call_id is None or c.record["call_id"] == call_id)]

    def cdr(self, call_id: str) -> dict[str, Any]:
        records = self.cdrs(call_id)
        assert len(records) == 1, f"{len(records)} CDRs for {call_id}"
        return records[0]

    def notifies(self, topic: str, commands: list[Command] | None = None) -> list[dict[str, Any]]:
        return [c.data for c in (self.log if commands is None else commands)
                if isinstance(c, Notify) and c.topic == topic]

    def hangups(self, commands: list[Command]) -> list[Hangup]:
        return [c for c in commands if isinstance(c, Hangup)]

    def state(self, agent_id: str) -> str:
        return self.core.agent_state(agent_id)


@pytest.fixture
def make() -> Callable[..., Harness]:
    """``make(**branch_changes)`` or ``make(data=..., counts=..., last=..., start=...)``."""
    def build(data: dict[str, Any] | None = None, counts: dict[str, int] | None = None,
              last: dict[str, str] | None = None, start: float = START, **changes: Any) -> Harness:
        return Harness(branch(data, **changes), start, counts, last)
    return build


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


@pytest.fixture
def data() -> dict[str, Any]:
    """The test branch as a fresh, editable dict."""
    return branch()
