"""ACD (智能转接): which agent, or which queue, an inbound call goes to (INB-1..6, INB-10).

Two parts:

* ``IdlePools`` keeps, per skill group, a heap of its selectable agents (idle and not in a ring
  back-off, see ``edge.agents``) keyed by the group's strategy — ``(calls_today, extension, id)``
  for least calls today, ``(extension, id)`` for extension order — updated on every agent state
  or back-off change. Picking an agent reads the top of the heap: O(log n) upkeep, no scan, so a
  decision costs about the same at 10 agents or 10,000.
* ``Acd`` applies the rules in order: blacklist screening at offer; a VIP rings the owning agent;
  a returning caller rings their last agent (or waits ``sticky_wait_s`` for them while they are on
  a call); otherwise the call's group is chosen once — customer-type menu choice, then the DID's
  group, then the caller's region, then the default group — and the group's strategy picks the
  agent. Agents already tried for this call are skipped until it is queued again; agents in a
  ring back-off are skipped for every call, direct targets included.

``Acd.decide`` only reads state; the caller applies the decision (rings, queues, waits).
"""
from __future__ import annotations

from enum import Enum
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Iterable, Mapping, NamedTuple


from edge.agents import Agent, AgentBoard, AgentState, Presence
from edge.config import EdgeConfig, GroupConfig, MenuConfig
from edge.numbers import national_number
from edge.regions import Region, place_key

if TYPE_CHECKING:
    from edge.calls import Call

IDLE = AgentState.IDLE
LOGGED_OUT = AgentState.LOGGED_OUT


class _Pool:
    """One group's selectable agents: a binary heap of ``(*strategy key, agent id, epoch)``.

    Leaving costs nothing here: the agent's epoch moves on and its entries go stale, to be
    dropped when they reach the top (or by compaction). Becoming selectable is one ``heappush``.
    """
    __slots__ = ("config", "least_calls", "heap", "idle", "logged_in")

    def __init__(self, config: GroupConfig) -> None:
        self.config = config
        self.least_calls = config.strategy == "least_calls"
        self.heap: list[tuple] = []
        self.idle = 0
        self.logged_in = 0

    def entry(self, agent: Agent, epoch: int) -> tuple:
        if self.least_calls:
            return (agent.calls_today, agent.order, agent.id, epoch)
        return (agent.order, agent.id, epoch)


class IdlePools:
    """Per-group indexes of selectable agents (idle, no ring back-off); an
    ``AvailabilityListener`` of the agent board. "Idle" counts below mean selectable."""

    def __init__(self, groups: Iterable[GroupConfig]) -> None:
        self._pools = {g.name: _Pool(g) for g in groups}
        self._agents: dict[str, Agent] = {}
        self._member_of: dict[str, tuple[_Pool, ...]] = {}
        self._epoch: dict[str, int] = {}  # an entry is live while its epoch is the agent's
        self._in: set[str] = set()  # ids of the agents the pools count as selectable now

    def _pools_of(self, agent: Agent) -> tuple[_Pool, ...]:
        pools = self._member_of.get(agent.id)
        if pools is None:
            self._agents[agent.id] = agent
            self._epoch[agent.id] = 0
            pools = tuple(self._pools[g] for g in agent.config.groups if g in self._pools)
            self._member_of[agent.id] = pools
        return pools

    def agent_changed(self, agent: Agent, before: AgentState) -> None:
        pools = self._member_of.get(agent.id) or self._pools_of(agent)
        after = agent.state
        selectable = after is IDLE and not agent.ring_backoff
        members = self._in
        was = agent.id in members
        if was or selectable:  # also idle -> idle: the strategy key (calls today) moved
            epoch = self._epoch[agent.id] + 1
            self._epoch[agent.id] = epoch
            if selectable is not was:
                if selectable:
                    members.add(agent.id)
                else:
                    members.discard(agent.id)
            step = selectable - was
            for pool in pools:
                pool.idle += step
                if selectable:
                    heappush(pool.heap, pool.entry(agent, epoch))
                    if len(pool.heap) > 2 * pool.idle + 64:
                        self._compact(pool)
        if (before is LOGGED_OUT) is not (after is LOGGED_OUT):
            step = 1 if before is LOGGED_OUT else -1
            for pool in pools:
                pool.logged_in += step

    def _compact(self, pool: _Pool) -> None:
        epoch = self._epoch
        pool.heap = [e for e in pool.heap if epoch[e[-2]] == e[-1]]
        heapify(pool.heap)

    def rebuild(self, agents: Iterable[Agent]) -> None:
        """Re-key every index (start-up counts, local midnight)."""
        for pool in self._pools.values():
            pool.heap.clear()
            pool.idle = pool.logged_in = 0
        self._in.clear()
        for agent in agents:
            self.agent_changed(agent, LOGGED_OUT)  # as if every agent appeared just now

    def first_idle(self, group: str, exclude: set[str] | frozenset[str] = frozenset()) -> Agent | None:
        """The group's best selectable agent by its strategy, skipping ``exclude`` (agent ids)."""
        heap, epoch = self._pools[group].heap, self._epoch
        while heap:
            top = heap[0]
            if epoch[top[-2]] != top[-1]:
                heappop(heap)
            elif top[-2] in exclude:
                return self._first_not_excluded(heap, exclude)
            else:
                return self._agents[top[-2]]
        return None

    def _first_not_excluded(self, heap: list[tuple], exclude: set[str] | frozenset[str]) -> Agent | None:
        """Rare path (after a ring no-answer): pop live entries aside until one is not excluded."""
        epoch, aside, found = self._epoch, [], None
        while heap:
            entry = heappop(heap)
            if epoch[entry[-2]] != entry[-1]:
                continue
            aside.append(entry)
            if entry[-2] not in exclude:
                found = self._agents[entry[-2]]
                break
        for entry in aside:
            heappush(heap, entry)
        return found

    def idle_count(self, group: str) -> int:
        """Selectable agents of the group: idle and not in a ring back-off."""
        return self._pools[group].idle

    def logged_in_count(self, group: str) -> int:
        return self._pools[group].logged_in


class DecisionKind(str, Enum):
    RING = "ring"
    QUEUE = "queue"
    WAIT_FOR_AGENT = "wait_for_agent"  # sticky: hold for the last agent, who is on a call


class Decision(NamedTuple):
    kind: DecisionKind
    group: str
    rule: str
    agent: Agent | None = None
    roam: bool = False  # ring the agent's mobile, not the desk phone (INB-8)


def roams(agent: Agent) -> bool:
    """Away with roaming on, no call holding them, phone not backing off: ring the mobile."""
    return (agent.presence is Presence.AWAY and agent.config.roam_when_away
            and bool(agent.config.mobile) and agent.activity is None and not agent.ring_backoff)


class Acd:
    """The routing rules of one edge, over the board's live state."""

    def __init__(self, config: EdgeConfig, board: AgentBoard, pools: IdlePools,
                 last_agents: Mapping[str, str] | None = None) -> None:
        routing = config.routing
        self._board = board
        self._pools = pools
        self._groups = {g.name: g for g in config.groups}
        self._default_group = routing.default_group
        self._did_groups = dict(routing.did_groups)
        self._region_groups = {place_key(k): v for k, v in routing.region_groups.items()}
        self._menu = routing.customer_type_menu
        self._sticky = routing.sticky_last_agent
        self._sticky_wait_s = routing.sticky_wait_s
        self._blacklist = {national_number(e.number): e.action for e in routing.blacklist}
        self._vip = {national_number(e.number): e.owner for e in routing.vip}
        self._last_agent: dict[str, str] = {}
        for number, agent in (last_agents or {}).items():
            self.remember(number, agent)
        # INB-8: per group, the agents who take calls on their mobile while away (config order)
        self._roamers: dict[str, list[Agent]] = {g.name: [] for g in config.groups}
        for agent_config in config.agents:
            if agent_config.roam_when_away:
                for group in agent_config.groups:
                    self._roamers[group].append(board.agents[agent_config.id])

    # --- at offer -----------------------------------------------------------------------------

    def screen(self, number: str) -> str | None:
        """Blacklist action for a national number: "reject", "flag" or None (INB-10)."""
        return self._blacklist.get(number)

    def vip_owner(self, number: str) -> Agent | None:
        owner = self._vip.get(number)
        return self._board.agents.get(owner) if owner else None

    def vip_group(self, owner: Agent) -> str:
        """Where a VIP waits when the owner is not free: the owner's first group."""
        groups = [g for g in owner.config.groups if g in self._groups]
        return groups[0] if groups else self._default_group

    def menu_for(self, did: str, group: str) -> MenuConfig | None:
        """The customer-type menu if it applies to this DID and to the group chosen without it."""
        menu = self._menu
        if menu is None or (menu.dids and did not in menu.dids) or (
                menu.groups and group not in menu.groups):
            return None
        return menu

    def group_for(self, did: str, region: Region | None, menu_choice: str = "") -> tuple[str, str]:
        """(group, rule) for a non-VIP call: menu choice > DID > region > default."""
        if menu_choice and self._menu and menu_choice in self._menu.digits:
            return self._menu.digits[menu_choice], "customer_type"
        group = self._did_groups.get(did)
        if group:
            return group, self.strategy(group)
        if region is not None:
            group = self._region_groups.get(region.city) or self._region_groups.get(region.province)
            if group:
                return group, "region"
        return self._default_group, self.strategy(self._default_group)

    def strategy(self, group: str) -> str:
        return self._groups[group].strategy

    # --- last agent (INB-5) -----------------------------------------------------------------

    def remember(self, number: str, agent_key: str) -> None:
        """``agent_key`` is an agent id or an extension (the store may keep either)."""
        agent = self._board.agents.get(agent_key) or self._board.by_extension.get(agent_key)
        national = national_number(number)
        if agent is not None and national:
            self._last_agent[national] = agent.id

    def last_agent(self, number: str) -> Agent | None:
        agent_id = self._last_agent.get(number)
        return self._board.agents.get(agent_id) if agent_id else None

    # --- the decision -----------------------------------------------------------------------

    def decide(self, call: "Call") -> Decision:
        """Where ``call`` goes now; direct targets (VIP owner, last agent) only on first placement."""
        if call.placements == 0:
            direct = self._direct(call)
            if direct is not None:
                return direct
        agent = self._pools.first_idle(call.group, call.tried)
        if agent is not None:
            return Decision(DecisionKind.RING, call.group, call.group_rule, agent)
        roamer = next((a for a in self._roamers.get(call.group, ())
                       if a.id not in call.tried and roams(a)), None)
        if roamer is not None:  # nobody at a desk is free: an away agent's mobile (INB-8)
            return Decision(DecisionKind.RING, call.group, "roam", roamer, roam=True)
        return Decision(DecisionKind.QUEUE, call.group, call.group_rule)

    def _direct(self, call: "Call") -> Decision | None:
        if call.vip_owner:
            owner = self._board.agents[call.vip_owner]
            if owner.selectable:  # idle, and not backing off after a failed ring
                return Decision(DecisionKind.RING, call.group, "vip", owner)
            if roams(owner):
                return Decision(DecisionKind.RING, call.group, "vip_roam", owner, roam=True)
            return None
        if not self._sticky:
            return None
        last = self.last_agent(call.number)
        if last is None:
            return None
        if last.state is IDLE:
            if last.ring_backoff:
                return None  # their phone just failed a ring: the group's rule decides
            return Decision(DecisionKind.RING, call.group, "last_agent", last)
        if roams(last):
            return Decision(DecisionKind.RING, call.group, "last_agent_roam", last, roam=True)
        if (self._sticky_wait_s > 0 and last.presence is Presence.AVAILABLE
                and last.activity is not None and last.state is not LOGGED_OUT):
            return Decision(DecisionKind.WAIT_FOR_AGENT, call.group, "last_agent", last)
        return None
