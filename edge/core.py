"""The edge core: ``Core.handle(event) -> [commands]``, deterministic and clocked.

The runtime's single core thread is the only caller. The core reads time only from the injected
``Clock``, does no I/O, and never raises on a call's normal life (hang-ups, unknown call ids, late
events): it ignores what no longer applies. ``Tick`` fires due timers (wrap-up end, sticky wait,
queue overflow, the end of an agent's ring back-off); ``next_deadline()`` tells the runtime when
the next one is due.

Inbound calls live in ``edge.inbound``, desk-phone calls in ``edge.desk``, shared state and the
CDR-once rule in ``edge.switchboard``; this module routes events to them, handles agent events,
the daily reset of answered counts, and offers read-only views for a live terminal.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from edge.agents import AgentState
from edge.call_recording import CallRecording
from edge.calls import CALLBACK, INBOUND, Call, Phase
from edge.clock import Clock
from edge.commands import Command
from edge.config import EdgeConfig
from edge.desk import DeskFlow
from edge.events import (AgentAnswered, AttendedTransferred, CallbackAnswered, CallbackFailed,
                         CallTransferred, HoldChanged, RemoteDialRequest,
                         TransferFailed, TransferRequest, AgentLogin, AgentLogout, AgentSetAway, AgentSetBusy,
                         CallHungUp, CallOffered, ChannelsSnapshot, CommandDone, Event,
                         ExtensionDialled, LinkChanged, LookupDone, RecordingFailed,
                         RecordingToggle, Tick)
from edge.inbound import InboundFlow
from edge.regions import RegionResolver
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)

CHANNEL_GONE = (0, "channel gone (AMI snapshot)")


@dataclass(frozen=True)
class AgentView:
    id: str
    name: str
    extension: str
    state: str
    calls_today: int
    call_id: str
    since: float
    groups: tuple[str, ...]
    ring_backoff: bool = False  # idle but held back from calls after a failed ring


@dataclass(frozen=True)
class WaitingView:
    call_id: str
    caller: str
    position: int
    waited_s: float
    vip: bool


@dataclass(frozen=True)
class QueueView:
    group: str
    strategy: str
    idle_agents: int
    logged_in_agents: int
    waiting: tuple[WaitingView, ...]

    @property
    def length(self) -> int:
        return len(self.waiting)

    @property
    def longest_wait_s(self) -> float:
        return max((w.waited_s for w in self.waiting), default=0.0)


@dataclass(frozen=True)
class CallView:
    call_id: str
    direction: str
    phase: str
    caller: str
    callee: str
    region: str
    flagged: bool
    group: str
    agent_id: str
    extension: str
    started_at: float
    answered_at: float | None
    queue_position: int | None


class Core:
    def __init__(self, config: EdgeConfig, clock: Clock, regions: RegionResolver,
                 initial_counts: Mapping[str, int] | None = None,
                 last_agents: Mapping[str, str] | None = None,
                 open_callbacks: Iterable[dict] = ()) -> None:
        """``initial_counts``: answered calls today per agent id (or extension), from the store;
        ``last_agents``: caller number -> agent id (or extension) who last served them;
        ``open_callbacks``: callback tasks not done yet (``Store.tasks``), kept across restarts."""
        self.config = config
        self.clock = clock
        self.sb = Switchboard(config, clock, regions, initial_counts, last_agents)
        self.recording = CallRecording(self.sb)
        self.inbound = InboundFlow(self.sb, self.recording, open_callbacks)
        self.callbacks = self.inbound.callbacks
        self.transfers = self.inbound.transfers
        self.desk = DeskFlow(self.sb, self.recording)
        self._zone = ZoneInfo(config.edge.timezone)
        self._next_midnight = self._midnight_after(clock.now())
        self._handlers: dict[type, Callable[[Event], None]] = {
            CallOffered: self.inbound.offered,
            ExtensionDialled: self.desk.dialled,
            CommandDone: self._command_done,
            AgentAnswered: self._agent_answered,
            CallHungUp: self._hung_up,
            AgentLogin: self._agent_event,
            AgentLogout: self._agent_event,
            AgentSetBusy: self._agent_event,
            AgentSetAway: self._agent_event,
            Tick: self._tick,
            LinkChanged: self._link_changed,
            RecordingToggle: self.recording.toggle,
            LookupDone: self.inbound.ivr.lookup_done,
            CallbackAnswered: self.callbacks.answered,
            CallbackFailed: self.callbacks.phone_failed,
            RemoteDialRequest: self.callbacks.remote_dial,
            TransferRequest: self.transfers.request,
            CallTransferred: self.transfers.arrived,
            TransferFailed: self.transfers.failed,
            AttendedTransferred: self.transfers.consults.done,
            HoldChanged: self.transfers.consults.hold,
            RecordingFailed: self.recording.failed,
            ChannelsSnapshot: self._channels_snapshot,
        }
        self._timer_handlers = {
            "wrap_up": lambda agent_id: self.sb.end_wrap_up(self.sb.board.agents[agent_id]),
            "sticky": lambda call_id: self._with_call(call_id, self.inbound.sticky_expired),
            "max_wait": lambda call_id: self._with_call(call_id, self.inbound.max_wait_passed),
            "ring_backoff":
                lambda agent_id: self.sb.end_ring_backoff(self.sb.board.agents[agent_id]),
            "callback_offer":
                lambda call_id: self._with_call(call_id, self.callbacks.offer_due),
            "callback_retry": self._callback_retry,
            "transfer_wait":
                lambda call_id: self._with_call(call_id, self.transfers.wait_expired),
        }

    # --- the contract ------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        """Apply one event; returns the commands it causes, in order."""
        self._roll_day_if_due()
        handler = self._handlers.get(type(event))
        if handler is None:
            log.warning("event %r not handled by the core", event)
            return []
        handler(event)
        out, self.sb.out = self.sb.out, []
        return out

    def next_deadline(self) -> float | None:
        """The earliest timer (or local midnight) the core wants a Tick for."""
        timer = self.sb.timers.next_deadline()
        return self._next_midnight if timer is None else min(timer, self._next_midnight)

    # --- calls --------------------------------------------------------------------------------

    def _with_call(self, call_id: str, action: Callable[[Call], None]) -> None:
        call = self.sb.calls.get(call_id)
        if call is not None:
            action(call)

    def _command_done(self, event: CommandDone) -> None:
        call = self.sb.calls.get(event.call_id)
        if call is None:
            return
        if call.direction == CALLBACK:
            self.callbacks.dial_done(call, event)
        elif call.direction != INBOUND:
            self.desk.action_done(call, event)
        elif call.phase is Phase.VOICEMAIL:
            self.inbound.voicemail_box.recorded(call, event)
        elif call.phase is Phase.OUTSIDE:
            self.transfers.outside_done(call, event)
        elif call.phase is Phase.IVR:
            self.inbound.ivr.command_done(call, event)
        elif call.phase in (Phase.CALLBACK_OFFER, Phase.CALLBACK_NUMBER):
            if event.command == "Collect":
                self.callbacks.collected(call, event, self.inbound.place)
        elif call.phase is Phase.RATING:
            if event.command == "Collect":
                self.inbound.rating.collected(call, event)
        elif event.command == "Collect":
            self.inbound.collected(call, event)
        elif event.command == "RingAgent":
            self.inbound.ring_done(call, event)

    def _callback_retry(self, key: str) -> None:
        """A failed callback's wait is over: a free agent of its group takes it now."""
        for group in self.callbacks.retry_due(key):
            agent = self.sb.pools.first_idle(group, set())
            if agent is not None:
                self.callbacks.agent_free(agent)

    def _agent_answered(self, event: AgentAnswered) -> None:
        call = self.sb.calls.get(event.call_id)
        if call is None:
            return
        if call.direction == INBOUND:
            self.inbound.answered(call, event)
        else:
            self.desk.answered(call, event)

    def _hung_up(self, event: CallHungUp) -> None:
        call = self.sb.calls.get(event.call_id)
        if call is None:
            return  # already closed (our own Hangup): its CDR is written
        if call.phase is Phase.TRANSFERRING:
            self.transfers.old_session_gone(call)  # the redirect, not the caller
            return
        self.sb.close(call, self._who_hung_up(call, event.by), event.cause, event.cause_txt)

    @staticmethod
    def _who_hung_up(call: Call, by: str) -> str:
        """The session's channel is the customer's on inbound calls, the desk phone's otherwise.

        ``unknown`` is a FastAGI socket that died without a hang-up line (reset, EOF): nobody on
        the line chose to end the call, so it is the system's, and never counted as abandoned.
        """
        if by in ("system", "agent", "unknown"):
            return "system" if by == "unknown" else by
        return "caller" if call.direction == INBOUND else "agent"

    def _channels_snapshot(self, event: ChannelsSnapshot) -> None:
        alive = set(event.channels)
        for call in [c for c in self.sb.calls.values() if c.channel not in alive]:
            log.info("call %s closed: channel %s gone after AMI reconnect", call.call_id, call.channel)
            self.sb.close(call, "system", *CHANNEL_GONE)

    def _link_changed(self, event: LinkChanged) -> None:
        self.sb.notify("link.state", link=event.link, up=event.up, detail=event.detail)

    # --- agents -------------------------------------------------------------------------------

    def _agent_event(self, event: AgentLogin | AgentLogout | AgentSetBusy | AgentSetAway) -> None:
        board = self.sb.board
        agent = board.agents.get(event.agent_id)
        if agent is None:
            log.warning("%s for unknown agent %r ignored", type(event).__name__, event.agent_id)
            return
        if isinstance(event, AgentLogin):
            change = board.login(agent)
        elif isinstance(event, AgentLogout):
            change = board.logout(agent)
        elif isinstance(event, AgentSetBusy):
            change = board.set_busy(agent, event.busy)
        else:
            change = board.set_away(agent, event.away)
        if change is None and agent.state is AgentState.LOGGED_OUT:
            log.info("%s for agent %s ignored: logged out", type(event).__name__, agent.id)
        self.sb.agent_changed(change)

    # --- time ---------------------------------------------------------------------------------

    def _tick(self, event: Tick) -> None:
        now = self.clock.now()
        while (key := self.sb.timers.pop_due(now)) is not None:
            kind, subject = key
            self._timer_handlers[kind](subject)

    def _roll_day_if_due(self) -> None:
        now = self.clock.now()
        if now < self._next_midnight:
            return
        day_start = self._midnight_after(now - 86400.0)
        self._next_midnight = self._midnight_after(now)
        self.sb.board.reset_counts()
        self.sb.notify("agent.counts_reset", day_start=day_start)

    def _midnight_after(self, now: float) -> float:
        """The next local midnight in the edge's time zone (INB-1's "today")."""
        tomorrow = datetime.fromtimestamp(now, self._zone).date() + timedelta(days=1)
        return datetime.combine(tomorrow, time(0), self._zone).timestamp()

    # --- read-only views for the live terminal ------------------------------------------------

    def agents_view(self) -> list[AgentView]:
        return [AgentView(a.id, a.config.name, a.extension, a.state.value, a.calls_today,
                          a.call_id or "", a.since, a.config.groups, a.ring_backoff)
                for a in sorted(self.sb.board, key=lambda a: (a.order, a.id))]

    def queues_view(self) -> list[QueueView]:
        sb, now = self.sb, self.clock.now()
        views = []
        for name, group in sb.groups.items():
            waiting = []
            for position, call_id in enumerate(sb.queues.waiting(name), start=1):
                call = sb.calls[call_id]
                waited = now - (call.queued_at if call.queued_at is not None else call.started_at)
                waiting.append(WaitingView(call_id, call.caller, position, round(waited, 3),
                                           bool(call.vip_owner)))
            views.append(QueueView(name, group.strategy, sb.pools.idle_count(name),
                                   sb.pools.logged_in_count(name), tuple(waiting)))
        return views

    def calls_view(self) -> list[CallView]:
        return [CallView(c.call_id, c.direction, c.phase.value, c.caller, c.callee,
                         str(c.region or ""), c.flagged, c.group, c.agent_id, c.extension,
                         c.started_at, c.answered_at, self.sb.queues.position(c.call_id))
                for c in sorted(self.sb.calls.values(), key=lambda c: c.seq)]

    def queue_position(self, call_id: str) -> int | None:
        return self.sb.queues.position(call_id)

    def agent_state(self, agent_id: str) -> str:
        return self.sb.board.agents[agent_id].state.value
