"""Satisfaction rating (INB-12 满意度评分): after the agent hangs up, the caller rates the call.

Asterisk's ``Dial`` returns to the caller's FastAGI session when the agent hangs up, so the call
goes on: the agent is released into wrap-up at once (the rating is not their time), the caller
hears the prompt and keys 1/2/3, the score goes into the CDR, and a score in ``bad`` creates a
callback task (差评回访) for the team lead of the agent's group — a ``team_lead`` sharing a group
with the agent, else any team lead or supervisor.
"""
from __future__ import annotations

import logging

from edge.calls import Call, Phase
from edge.commands import Collect, CreateTask, Hangup, Play
from edge.config import SUPERVISING
from edge.events import CommandDone
from edge.switchboard import Switchboard

log = logging.getLogger(__name__)


class Rating:
    def __init__(self, sb: Switchboard) -> None:
        self.sb = sb
        self.config = sb.config.rating

    def offer(self, call: Call) -> bool:
        """The agent hung up: ask the caller for a score. False when rating is off."""
        if not self.config.enabled:
            return False
        sb = self.sb
        call.phase = Phase.RATING
        agent = sb.board.agents.get(call.agent_id)
        if agent is not None:
            sb.release(agent, call, wrap_up=True)
        sb.emit(Collect(call.call_id, self.config.prompt, 1, int(self.config.timeout_s * 1000)))
        return True

    def collected(self, call: Call, event: CommandDone) -> None:
        sb = self.sb
        digits = event.digits if event.ok and not event.timed_out else ""
        score = digits if digits in self.config.scores else ""
        call.rating = score
        if score:
            sb.emit(Play(call.call_id, self.config.thanks_prompt))
            sb.notify("call.rated", call_id=call.call_id, agent_id=call.agent_id,
                      rating=score, meaning=self.config.scores[score])
        sb.emit(Hangup(call.call_id, reason="rated" if score else "no rating"))
        if score in self.config.bad:
            self._bad_rating(call, score)
        sb.close(call, "agent")

    def _bad_rating(self, call: Call, score: str) -> None:
        lead = self._team_lead(call.agent_id)
        self.sb.emit(CreateTask(
            key=f"bad_rating:{call.call_id}", kind="bad_rating_callback", assignee=lead,
            group=call.group, call_id=call.call_id, number=call.caller,
            data={"agent_id": call.agent_id, "rating": score,
                  "meaning": self.config.scores[score]}))
        self.sb.notify("task.created", kind="bad_rating_callback", call_id=call.call_id,
                       assignee=lead, number=call.caller, agent_id=call.agent_id)
        log.info("call %s rated %s: callback task for %s", call.call_id, score, lead or "nobody")

    def _team_lead(self, agent_id: str) -> str:
        agent = self.sb.board.agents.get(agent_id)
        groups = set(agent.config.groups) if agent else set()
        leads = [a for a in self.sb.board if "team_lead" in a.config.roles]
        for lead in sorted(leads, key=lambda a: a.extension):
            if groups & set(lead.config.groups):
                return lead.id
        anyone = sorted((a for a in self.sb.board if set(a.config.roles) & set(SUPERVISING)),
                        key=lambda a: a.extension)
        return anyone[0].id if anyone else ""
