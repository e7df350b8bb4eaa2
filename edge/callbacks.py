"""Busy callback (INB-9 遇忙处理): a caller tired of waiting leaves a number; the edge calls back
when an agent of that queue is free.

After ``callback_after_s`` in the queue the caller hears "press 1 for a callback"; 1 asks for the
number (just ``#`` or nothing keeps the caller ID). The call ends with disposition ``callback``
and a ``callback`` task (``CreateTask``, key ``callback:<call_id>``) joins its group's list. Any
other key puts the caller back in the queue at their arrival position.

Callers waiting live go first: when an agent of the group comes free and nobody is queued, the
oldest open callback is taken: the agent is held, their phone rung (``OriginateCallback``); when
they answer, FastAGI ``callback`` arrives (``CallbackAnswered``) and the customer is dialled on
the trunk. An answer makes the task ``done``; anything else counts an attempt and the task waits
``callback_retry_s`` (at most ``callback_attempts`` tries, then ``failed``). Open tasks come back
from the store at start, so a restart loses none.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from edge.agents import Activity, Agent
from edge.calls import CALLBACK, Call, Phase
from edge.commands import (Collect, CreateTask, DialOut, Hangup, OriginateCallback, Play,
                           UpdateTask)
from edge.events import CallbackAnswered, CallbackFailed, CommandDone, RemoteDialRequest
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)

OFFER_PROMPT = "cc/callback-offer"      # 等待时间较长，需要回电请按1
NUMBER_PROMPT = "cc/callback-number"    # 请输入回电号码，以井号键结束；直接按井号键使用来电号码
THANKS_PROMPT = "cc/callback-thanks"    # 我们将尽快给您回电
MIN_DIGITS = 7


@dataclass
class CallbackTask:
    key: str
    group: str
    number: str
    attempts: int = 0
    not_before: float = 0.0
    remote: bool = False  # OUT-13: the agent's mobile, not their desk phone


class Callbacks:
    def __init__(self, sb: Switchboard, open_tasks: Iterable[dict] = ()) -> None:
        self.sb = sb
        self.pending: dict[str, list[CallbackTask]] = {name: [] for name in sb.groups}
        self.dialing: dict[str, CallbackTask] = {}   # agent id -> the task their phone rings for
        self._in_call: dict[str, CallbackTask] = {}  # callback call id -> its task
        sb.on_call_closed.append(self._closed)
        for row in open_tasks:
            if row.get("group") in self.pending:
                self.pending[row["group"]].append(CallbackTask(
                    row["key"], row["group"], row["number"], int(row.get("attempts") or 0)))

    # --- the caller's side ------------------------------------------------------------------

    def queued(self, call: Call) -> None:
        """A call joined its group's queue: arm the offer if the group makes one."""
        after = self.sb.groups[call.group].callback_after_s
        if after is not None and not call.task_key:
            self.sb.timers.set(("callback_offer", call.call_id), self.sb.clock.now() + after)

    def offer_due(self, call: Call) -> None:
        if call.phase is not Phase.QUEUED:
            return
        self.sb.queues.remove(call.call_id)
        call.phase, call.music_on = Phase.CALLBACK_OFFER, False
        self.sb.emit(Collect(call.call_id, OFFER_PROMPT, 1, 6000))

    def collected(self, call: Call, event: CommandDone, requeue) -> None:
        sb = self.sb
        # GET DATA ends on # or on its timeout; digits keyed before a timeout still count
        digits = event.digits if event.ok else ""
        if call.phase is Phase.CALLBACK_OFFER:
            if digits == "1":
                call.phase = Phase.CALLBACK_NUMBER
                sb.emit(Collect(call.call_id, NUMBER_PROMPT, 12, 10000))
            else:
                call.phase = Phase.ROUTING
                requeue(call)
            return
        number = digits if len(digits) >= MIN_DIGITS else call.number
        if not number:
            call.phase = Phase.ROUTING
            requeue(call)
            return
        self._leave_number(call, number)

    def _leave_number(self, call: Call, number: str) -> None:
        sb = self.sb
        key = f"callback:{call.call_id}"
        task = CallbackTask(key, call.group, number)
        self.pending[call.group].append(task)
        sb.emit(CreateTask(key=key, kind="callback", group=call.group, call_id=call.call_id,
                           number=number, data={"caller": call.caller}))
        sb.notify("task.created", kind="callback", call_id=call.call_id, group=call.group,
                  number=number)
        call.disposition = "callback"
        sb.emit(Play(call.call_id, THANKS_PROMPT), Hangup(call.call_id, reason="callback left"))
        sb.close(call, "caller")

    # --- dialling callbacks -----------------------------------------------------------------

    def agent_free(self, agent: Agent) -> bool:
        """The agent is selectable and no live caller waits for them: take the oldest callback
        of their groups that is due. True when one was taken."""
        now = self.sb.clock.now()
        due = [task for group in agent.config.groups for task in self.pending.get(group, ())
               if task.not_before <= now]
        if not due:
            return False
        task = min(due, key=lambda t: (t.not_before, t.key))
        self.pending[task.group].remove(task)
        self.dialing[agent.id] = task
        self.sb.agent_changed(self.sb.board.occupy(agent, task.key, Activity.RINGING))
        self.sb.emit(OriginateCallback(task.key, agent.extension, agent.config.dial_string,
                                       task.number, self.sb.groups[task.group].ring_timeout_s),
                     UpdateTask(task.key, "dialing"))
        self.sb.notify("callback.dialing", task=task.key, agent_id=agent.id, number=task.number)
        return True

    def remote_dial(self, event: RemoteDialRequest) -> None:
        """OUT-13's call leg: ring the agent's mobile on a trunk, showing the company number;
        when the agent answers, dial the customer and bridge them (``answered``)."""
        sb = self.sb
        agent = sb.board.agents.get(event.agent_id)
        reason = ""
        if agent is None or not agent.config.mobile:
            reason = "the agent has no mobile number"
        elif not event.number.isdigit() or len(event.number) < MIN_DIGITS:
            reason = f"not a phone number: {event.number!r}"
        elif agent.id in self.dialing or agent.activity is not None:
            reason = "the agent is on a call"
        if reason:
            sb.notify("remote_dial.refused", agent_id=event.agent_id, number=event.number,
                      reason=reason)
            return
        key = f"remote:{agent.id}:{sb.next_seq()}"
        group = agent.config.groups[0] if agent.config.groups else sb.config.routing.default_group
        task = CallbackTask(key, group, event.number, remote=True)
        self.dialing[agent.id] = task
        sb.agent_changed(sb.board.occupy(agent, key, Activity.RINGING))
        roaming = sb.config.roaming
        sb.emit(CreateTask(key=key, kind="remote_dial", assignee=agent.id, group=group,
                           number=event.number),
                OriginateCallback(key, agent.extension, roaming.dial_string(agent.config.mobile),
                                  event.number, roaming.ring_timeout_s,
                                  caller_id=roaming.company_number),
                UpdateTask(key, "dialing"))
        sb.notify("remote_dial.dialing", agent_id=agent.id, mobile=agent.config.mobile,
                  number=event.number)

    def answered(self, event: CallbackAnswered) -> None:
        sb = self.sb
        agent = sb.board.by_extension.get(event.extension)
        if agent is None:  # a mobile leg (OUT-13) arrives on a trunk channel: match the number
            agent = next((sb.board.agents[a] for a, t in self.dialing.items()
                          if t.remote and t.number == event.number), None)
        task = self.dialing.pop(agent.id, None) if agent is not None else None
        if agent is None or task is None:
            log.warning("callback session on %s matches no callback in progress; hung up",
                        event.channel)
            sb.emit(Hangup(event.call_id, reason="no callback"))
            return
        call = Call(event.call_id, event.channel, CALLBACK, agent.extension, task.number,
                    sb.clock.now(), seq=sb.next_seq(), agent_id=agent.id,
                    extension=agent.extension, group=task.group,
                    rule="remote_dial" if task.remote else "callback",
                    task_key=task.key, phase=Phase.CALLBACK)
        if task.remote:
            call.legs.append({"kind": "mobile", "agent_id": agent.id,
                              "number": agent.config.mobile, "channel": event.channel,
                              "uniqueid": event.call_id})
        sb.calls[call.call_id] = call
        sb.board.release(agent, task.key, wrap_up=False)
        sb.occupy(agent, call, Activity.TALKING)
        sb.emit(DialOut(call.call_id, sb.config.roaming.dial_string(task.number)))
        self._in_call[call.call_id] = task

    def dial_done(self, call: Call, event: CommandDone) -> None:
        if event.command != "DialOut":
            return
        sb = self.sb
        task = self._in_call.pop(call.call_id, None)
        if event.status == "ANSWER" or call.answered_at is not None:  # AMI saw the answer
            if call.answered_at is None:
                call.answered_at = sb.clock.now() - event.talk_s
            call.reported_talk_s = event.talk_s or None
            if task is not None:
                sb.emit(UpdateTask(task.key, "done", f"answered, talked {event.talk_s:.0f} s",
                                   attempt=True))
            sb.emit(Hangup(call.call_id, reason="callback done"))
            sb.close(call, "caller")
            return
        call.disposition = "failed"
        if task is not None:
            self._attempt_failed(task, event.status or "FAILED")
        sb.emit(Hangup(call.call_id, reason=f"callback {event.status}"))
        sb.close(call, "system")

    def phone_failed(self, event: CallbackFailed) -> None:
        """The agent did not answer their phone: the task goes back, the agent backs off."""
        sb = self.sb
        agent = sb.board.by_extension.get(event.extension)
        task = self.dialing.pop(agent.id, None) if agent is not None else None
        if agent is None or task is None:
            return
        if task.remote:  # the agent asked for this call just now: tell them, do not retry
            sb.emit(UpdateTask(task.key, "failed", f"mobile {event.outcome}"))
            sb.agent_changed(sb.board.release(agent, task.key, wrap_up=False))
            sb.notify("remote_dial.failed", agent_id=agent.id, reason=event.outcome)
            return
        self.pending[task.group].insert(0, task)
        sb.emit(UpdateTask(task.key, "open", f"agent phone {event.outcome}"))
        reason = sb.ring_failed(agent, sb.groups[task.group], "NOANSWER")
        change = sb.board.release(agent, task.key, wrap_up=False)
        sb.agent_changed(change, reason)

    def _attempt_failed(self, task: CallbackTask, status: str) -> None:
        if task.remote:
            self.sb.emit(UpdateTask(task.key, "failed", status, attempt=True))
            return
        group = self.sb.groups[task.group]
        task.attempts += 1
        if task.attempts >= group.callback_attempts:
            self.sb.emit(UpdateTask(task.key, "failed", f"{status} after {task.attempts} attempts",
                                    attempt=True))
            return
        task.not_before = self.sb.clock.now() + group.callback_retry_s
        self.pending[task.group].append(task)
        self.sb.timers.set(("callback_retry", task.key), task.not_before)
        self.sb.emit(UpdateTask(task.key, "open", status, attempt=True))

    def retry_due(self, key: str) -> Iterable[str]:
        """A retry became due: the groups whose free agents could take it now."""
        return [t.group for tasks in self.pending.values() for t in tasks if t.key == key]

    def _closed(self, call: Call, record: dict) -> None:
        """A callback call that ended without its DialOut result (the agent hung up first)."""
        task = self._in_call.pop(call.call_id, None)
        if task is not None:
            self._attempt_failed(task, "agent hung up")
