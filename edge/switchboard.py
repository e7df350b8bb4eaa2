"""The core's shared state and the few operations every call flow needs.

Inbound calls (``edge.inbound``) and desk-phone calls (``edge.desk``) both occupy and release
agents, send commands and close calls; doing that in one place is what makes "a CDR exactly once
per call" and "a freed agent serves the queue" hold whichever flow, event or timer ends a call.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from edge.acd import Acd, IdlePools
from edge.agents import Activity, Agent, AgentBoard, AgentState, StateChange
from edge.calls import Call
from edge.cdr import cdr_record
from edge.clock import Clock
from edge.commands import Command, Notify, WriteCdr
from edge.config import EdgeConfig
from edge.queueing import WaitQueues
from edge.regions import RegionResolver
from edge.timers import Timers

log = logging.getLogger(__name__)

NORMAL_CLEARING = (16, "Normal Clearing")


class Switchboard:
    def __init__(self, config: EdgeConfig, clock: Clock, regions: RegionResolver,
                 initial_counts: Mapping[str, int] | None = None,
                 last_agents: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.regions = regions
        self.groups = {g.name: g for g in config.groups}
        self.pools = IdlePools(config.groups)
        self.board = AgentBoard(config.agents, clock, listener=self.pools)
        self.board.load_counts(initial_counts or {})
        self.acd = Acd(config, self.board, self.pools, last_agents)
        self.queues = WaitQueues(self.groups)
        self.timers = Timers()
        self.calls: dict[str, Call] = {}
        self.waiting_for_agent: dict[str, list[str]] = {}  # agent id -> sticky call ids, in order
        self.pickups: dict[str, str] = {}  # ringing extension -> agent id picking it up (##6)
        self.out: list[Command] = []
        self.on_agent_idle: Callable[[Agent], None] = lambda agent: None
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- output -------------------------------------------------------------------------------

    def emit(self, *commands: Command) -> None:
        self.out.extend(commands)

    def notify(self, topic: str, **data: Any) -> None:
        self.out.append(Notify(topic, data))

    # --- agents -------------------------------------------------------------------------------

    def agent_changed(self, change: StateChange | None) -> None:
        """Publish a state change; an agent who just became idle takes the next waiting call."""
        if change is None:
            return
        agent = change.agent
        self.notify("agent.state", agent_id=agent.id, extension=agent.extension,
                    state=change.after.value, previous=change.before.value,
                    calls_today=agent.calls_today, call_id=agent.call_id or "")
        if change.after is AgentState.IDLE:
            self.on_agent_idle(agent)

    def occupy(self, agent: Agent, call: Call, activity: Activity) -> None:
        self.timers.cancel(("wrap_up", agent.id))
        self.agent_changed(self.board.occupy(agent, call.call_id, activity))

    def release(self, agent: Agent, call: Call, wrap_up: bool) -> None:
        change = self.board.release(agent, call.call_id, wrap_up)
        if agent.activity is Activity.WRAP_UP and agent.call_id == call.call_id:
            # also when the change is invisible (a logged-out agent): wrap-up must still end
            self.timers.set(("wrap_up", agent.id), self.clock.now() + agent.config.wrap_up_s)
        self.agent_changed(change)

    def end_wrap_up(self, agent: Agent) -> None:
        self.agent_changed(self.board.end_wrap_up(agent))

    # --- ending a call ------------------------------------------------------------------------

    def close(self, call: Call, hung_up_by: str, cause: int = NORMAL_CLEARING[0],
              cause_txt: str = NORMAL_CLEARING[1]) -> None:
        """Forget the call, write its CDR (the only place one is written), then free its agents."""
        if self.calls.pop(call.call_id, None) is None:
            return
        self.queues.remove(call.call_id)
        self.timers.cancel(("max_wait", call.call_id))
        self.timers.cancel(("sticky", call.call_id))
        if call.waiting_for:
            waiting = self.waiting_for_agent.get(call.waiting_for, [])
            if call.call_id in waiting:
                waiting.remove(call.call_id)
        if call.target_extension:
            self.pickups.pop(call.target_extension, None)
        record = cdr_record(call, self.clock.now(), hung_up_by, cause, cause_txt)
        self.emit(WriteCdr(record))
        log.info("call %s closed: %s by %s", call.call_id, record["disposition"], hung_up_by)
        self._free_agents_of(call)

    def _free_agents_of(self, call: Call) -> None:
        """Every agent this call holds goes free; one who talked wraps up first."""
        for agent in (self.board.agents.get(call.agent_id),
                      self.board.by_extension.get(call.target_extension)):
            if agent is not None and agent.call_id == call.call_id:
                self.release(agent, call, wrap_up=agent.activity is Activity.TALKING
                             and call.direction == "inbound")
