"""The core's shared state and the few operations every call flow needs.

Inbound calls (``edge.inbound``) and desk-phone calls (``edge.desk``) both occupy and release
agents, send commands and close calls; doing that in one place is what makes "a CDR exactly once
per call" and "a freed agent serves the queue" hold whichever flow, event or timer ends a call.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from edge.acd import Acd, IdlePools
from edge.agents import Activity, Agent, AgentBoard, AgentState, Presence, StateChange
from edge.calls import Call
from edge.cdr import cdr_record
from edge.clock import Clock
from edge.commands import Command, Notify, WriteCdr
from edge.config import EdgeConfig, GroupConfig
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
        # called with (call, cdr record) after the CDR is emitted: recordings, ratings, tasks
        self.on_call_closed: list[Callable[[Call, dict[str, Any]], None]] = []
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

    def agent_changed(self, change: StateChange | None, reason: str = "") -> None:
        """Publish a state change; an agent who just became selectable takes the next waiting
        call (an idle agent in a ring back-off waits for its end). ``reason`` is added to the
        notification when the system, not the agent, caused the change (``missed_rings``)."""
        if change is None:
            return
        agent = change.agent
        data = dict(agent_id=agent.id, extension=agent.extension, state=change.after.value,
                    previous=change.before.value, calls_today=agent.calls_today,
                    call_id=agent.call_id or "")
        if reason:
            data["reason"] = reason
        self.notify("agent.state", **data)
        if change.after is AgentState.IDLE and agent.selectable:
            self.on_agent_idle(agent)

    def occupy(self, agent: Agent, call: Call, activity: Activity) -> None:
        self.timers.cancel(("wrap_up", agent.id))
        self.agent_changed(self.board.occupy(agent, call.call_id, activity))

    def release(self, agent: Agent, call: Call, wrap_up: bool, reason: str = "") -> None:
        change = self.board.release(agent, call.call_id, wrap_up)
        if agent.activity is Activity.WRAP_UP and agent.call_id == call.call_id:
            # also when the change is invisible (a logged-out agent): wrap-up must still end
            self.timers.set(("wrap_up", agent.id), self.clock.now() + agent.config.wrap_up_s)
        self.agent_changed(change, reason)

    def end_wrap_up(self, agent: Agent) -> None:
        self.agent_changed(self.board.end_wrap_up(agent))

    # --- ring failures: back-off and auto-busy ------------------------------------------------

    def ring_failed(self, agent: Agent, group: GroupConfig, status: str) -> str:
        """An agent's phone failed a ring of a ``group`` call (``status``: the Dial status).

        The agent leaves selection for every call for the group's ``ring_failure_backoff_s``
        (a ``ring_backoff`` timer brings them back); a ``NOANSWER`` counts toward the group's
        ``auto_busy_after_misses``, and reaching it sets the agent 示忙 (the presence changes now,
        the visible state when the ring is released). Call before releasing the agent; returns
        the reason to release with (``"missed_rings"`` when auto-busy struck, else ``""``).
        """
        until = self.clock.now() + group.ring_failure_backoff_s
        self.board.start_ring_backoff(agent)
        self.timers.set(("ring_backoff", agent.id), until)
        reason = ""
        if status == "NOANSWER":
            agent.missed_rings += 1
            limit = group.auto_busy_after_misses
            if limit and agent.missed_rings >= limit and agent.presence is Presence.AVAILABLE:
                log.info("agent %s set busy after %d missed rings", agent.id, agent.missed_rings)
                self.board.set_busy(agent, True)
                agent.missed_rings = 0
                reason = "missed_rings"
        self.notify("agent.ring_backoff", agent_id=agent.id, extension=agent.extension,
                    active=True, status=status, until=until, missed_rings=agent.missed_rings)
        return reason

    def end_ring_backoff(self, agent: Agent) -> None:
        """The ``ring_backoff`` timer: the agent is selectable again and, if idle, serves the queue."""
        if not self.board.end_ring_backoff(agent):
            return  # ended already: the agent made themselves available again
        self.notify("agent.ring_backoff", agent_id=agent.id, extension=agent.extension,
                    active=False)
        if agent.state is AgentState.IDLE:
            self.on_agent_idle(agent)

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
        for hook in self.on_call_closed:
            hook(call, record)
        log.info("call %s closed: %s by %s", call.call_id, record["disposition"], hung_up_by)
        self._free_agents_of(call)

    def _free_agents_of(self, call: Call) -> None:
        """Every agent this call holds goes free; one who talked wraps up first."""
        for agent in (self.board.agents.get(call.agent_id),
                      self.board.by_extension.get(call.target_extension)):
            if agent is not None and agent.call_id == call.call_id \
                    and agent.activity is not Activity.WRAP_UP:  # released already (rating)
                self.release(agent, call, wrap_up=agent.activity is Activity.TALKING
                             and call.direction == "inbound")
