"""Agent (坐席) states and the board that owns them.

An agent's visible state combines two things that change for different reasons:

* ``presence``, what the agent chose: logged out, available, busy (示忙) or away;
* ``activity``, what calls are doing to them: ringing, talking, wrap-up (or nothing).

Keeping them apart is why an agent who set 示忙 and then made an outbound call is busy again when
the call ends, not idle. Only an available agent with no activity is ``idle`` and may be offered a
call. Every change goes through ``AgentBoard`` so the ACD's idle index (``edge.acd.IdlePools``)
is told about it; the board never scans.

A third, short-lived thing keeps an idle agent from being offered calls: the ring back-off. When
the agent's phone fails a ring (no answer, busy, unavailable, congestion) the agent is held back
from selection for the group's ``ring_failure_backoff_s`` (``Agent.ring_backoff``) while the
wallboard still shows them idle. The index only offers agents that are *selectable*: idle and
not backing off. An agent who makes themselves available again (示闲, back, log in) ends it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping, NamedTuple, Protocol

from edge.clock import Clock
from edge.config import AgentConfig


class Presence(str, Enum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"


class Activity(str, Enum):
    RINGING = "ringing"
    TALKING = "talking"
    WRAP_UP = "wrap_up"


class AgentState(str, Enum):
    """What a wallboard shows (MON-1)."""
    LOGGED_OUT = "logged_out"
    IDLE = "idle"
    RINGING = "ringing"
    TALKING = "talking"
    WRAP_UP = "wrap_up"
    BUSY = "busy"
    AWAY = "away"


_PRESENCE_STATE = {Presence.AVAILABLE: AgentState.IDLE, Presence.BUSY: AgentState.BUSY,
                   Presence.AWAY: AgentState.AWAY, Presence.LOGGED_OUT: AgentState.LOGGED_OUT}
_ACTIVITY_STATE = {a: AgentState(a.value) for a in Activity}


_UNSET: object = object()  # "activity not given" (None means "no activity")


def effective_state(presence: Presence, activity: Activity | None) -> AgentState:
    if presence is Presence.LOGGED_OUT or activity is None:
        return _PRESENCE_STATE[presence]
    return _ACTIVITY_STATE[activity]


@dataclass(eq=False, slots=True)
class Agent:
    config: AgentConfig
    presence: Presence
    activity: Activity | None = None
    call_id: str | None = None  # the call that holds the activity; only it may release the agent
    calls_today: int = 0  # answered inbound calls since local midnight (INB-1)
    since: float = 0.0
    ring_backoff: bool = False  # a ring failed lately: not offered calls until the back-off ends
    missed_rings: int = 0  # consecutive rings not answered (NOANSWER), for auto-busy
    state: AgentState = field(init=False)
    id: str = field(init=False)
    extension: str = field(init=False)
    order: int = field(init=False)  # the extension as a number: "lowest extension first" (INB-2)

    def __post_init__(self) -> None:
        self.state = effective_state(self.presence, self.activity)
        self.id = self.config.id
        self.extension = self.config.extension
        self.order = int(self.config.extension)

    @property
    def selectable(self) -> bool:
        """May the ACD offer this agent a call now: idle, not backing off after a failed ring."""
        return self.state is AgentState.IDLE and not self.ring_backoff


class StateChange(NamedTuple):
    agent: Agent
    before: AgentState
    after: AgentState


# The only states the ACD's index cares about: ringing -> talking needs no index work.
_INDEXED = frozenset({AgentState.IDLE, AgentState.LOGGED_OUT})


class AvailabilityListener(Protocol):
    """Told when an agent becomes or stops being idle, selectable or logged out (the ACD's idle
    index). ``before`` is the state before the change; it equals ``agent.state`` when only the
    ring back-off changed."""

    def agent_changed(self, agent: Agent, before: AgentState) -> None: ...

    def rebuild(self, agents: Iterable[Agent]) -> None: ...


class AgentBoard:
    """All agents of the edge and every change to their state."""

    def __init__(self, configs: Iterable[AgentConfig], clock: Clock,
                 listener: AvailabilityListener | None = None) -> None:
        self._clock = clock
        now = clock.now()
        self.agents: dict[str, Agent] = {}
        self.by_extension: dict[str, Agent] = {}
        for config in configs:
            presence = Presence.AVAILABLE if config.logged_in else Presence.LOGGED_OUT
            agent = Agent(config, presence, since=now)
            self.agents[config.id] = agent
            self.by_extension[config.extension] = agent
        self.listener = listener

    def __iter__(self):
        return iter(self.agents.values())

    def __len__(self) -> int:
        return len(self.agents)

    # --- presence: what the agent chose -----------------------------------------------------

    def login(self, agent: Agent) -> StateChange | None:
        if agent.presence is not Presence.LOGGED_OUT:
            return None
        return self._change(agent, presence=Presence.AVAILABLE)

    def logout(self, agent: Agent) -> StateChange | None:
        return self._change(agent, presence=Presence.LOGGED_OUT)

    def set_busy(self, agent: Agent, busy: bool) -> StateChange | None:
        """示忙 / 示闲. A logged-out agent cannot be busy or free: returns None, nothing changes."""
        if agent.presence is Presence.LOGGED_OUT:
            return None
        return self._change(agent, presence=Presence.BUSY if busy else Presence.AVAILABLE)

    def set_away(self, agent: Agent, away: bool) -> StateChange | None:
        if agent.presence is Presence.LOGGED_OUT:
            return None
        if not away and agent.presence is not Presence.AWAY:
            return None  # "back" only ends an absence; it does not clear 示忙
        return self._change(agent, presence=Presence.AWAY if away else Presence.AVAILABLE)

    # --- activity: what calls do to the agent -----------------------------------------------

    def occupy(self, agent: Agent, call_id: str, activity: Activity) -> StateChange | None:
        """The call ``call_id`` now holds the agent (ringing, talking or wrapping up)."""
        agent.call_id = call_id
        return self._change(agent, activity=activity)

    def release(self, agent: Agent, call_id: str, wrap_up: bool) -> StateChange | None:
        """The call lets the agent go; ignored when another call holds the agent by now."""
        if agent.call_id != call_id:
            return None
        if wrap_up and agent.config.wrap_up_s > 0:
            return self._change(agent, activity=Activity.WRAP_UP)
        agent.call_id = None
        return self._change(agent, activity=None)

    def end_wrap_up(self, agent: Agent) -> StateChange | None:
        if agent.activity is not Activity.WRAP_UP:
            return None
        agent.call_id = None
        return self._change(agent, activity=None)

    # --- ring back-off: a failed ring holds the agent back from selection ---------------------

    def start_ring_backoff(self, agent: Agent) -> bool:
        """Hold the agent back from selection; False when already backing off."""
        return self._set_ring_backoff(agent, True)

    def end_ring_backoff(self, agent: Agent) -> bool:
        """The back-off is over; False when there was none (e.g. the agent ended it by 示闲)."""
        return self._set_ring_backoff(agent, False)

    def _set_ring_backoff(self, agent: Agent, on: bool) -> bool:
        if agent.ring_backoff == on:
            return False
        agent.ring_backoff = on
        if self.listener and agent.state is AgentState.IDLE:  # an idle agent enters/leaves the index
            self.listener.agent_changed(agent, agent.state)
        return True

    # --- answered-today counts (INB-1) ---------------------------------------------------------

    def count_answered(self, agent: Agent) -> None:
        before = agent.state
        agent.calls_today += 1
        if before is AgentState.IDLE and self.listener:  # an idle agent's index key moves
            self.listener.agent_changed(agent, before)

    def load_counts(self, counts: Mapping[str, int]) -> None:
        """Counts from the store at start-up, keyed by agent id (or extension)."""
        for key, count in counts.items():
            agent = self.agents.get(key) or self.by_extension.get(key)
            if agent is not None:
                agent.calls_today = int(count)
        if self.listener:
            self.listener.rebuild(self.agents.values())

    def reset_counts(self) -> None:
        """Local midnight: everyone starts the day at zero."""
        for agent in self.agents.values():
            agent.calls_today = 0
        if self.listener:
            self.listener.rebuild(self.agents.values())

    # --- the one place state changes ----------------------------------------------------------

    def _change(self, agent: Agent, presence: Presence | None = None,
                activity: Activity | None | object = _UNSET) -> StateChange | None:
        before = agent.state
        if presence is not None:
            if presence is Presence.AVAILABLE and agent.presence is not Presence.AVAILABLE:
                # the agent says they are ready again (示闲, back, log in): a ring back-off or a
                # run of missed rings from before no longer holds them back
                agent.ring_backoff, agent.missed_rings = False, 0
            agent.presence = presence
        if activity is not _UNSET:
            agent.activity = activity  # type: ignore[assignment]
        activity = agent.activity
        if activity is None or agent.presence is Presence.LOGGED_OUT:
            after = _PRESENCE_STATE[agent.presence]
        else:
            after = _ACTIVITY_STATE[activity]  # type: ignore[index]
        if after is before:
            return None
        agent.state = after
        agent.since = self._clock.now()
        if self.listener and (before in _INDEXED or after in _INDEXED):
            self.listener.agent_changed(agent, before)
        return StateChange(agent, before, after)
