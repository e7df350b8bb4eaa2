"""INB-12 in the core: after the agent hangs up the caller rates 1/2/3; a bad score makes a task."""
from __future__ import annotations

import pytest

from edge.commands import Collect, CreateTask, Hangup, Play
from edge.errors import ConfigError
from edge.config import parse_config
from edge.events import CommandDone
from tests.edge.conftest import branch


def rated_branch(**rating):
    data = branch()
    data["rating"] = {"enabled": True, **rating}
    data["agents"].append({"id": "lead", "name": "组长", "extension": "8100",
                           "roles": ["agent", "team_lead"], "groups": ["general"],
                           "logged_in": False})
    return data


def talk_then_agent_hangs_up(h):
    h.offer("c1")
    h.answer("c1")
    h.clock.advance(40)
    return h.agent_hangs_up("c1", talk_s=40)


def test_the_caller_is_asked_and_the_agent_wraps_up_meanwhile(make):
    h = make(data=rated_branch())
    commands = talk_then_agent_hangs_up(h)
    assert [c for c in commands if isinstance(c, Collect)] == [Collect("c1", "cc/rate-call", 1, 8000)]
    assert h.cdrs("c1") == []          # the call is not over
    assert h.state("wang") == "idle"   # wrap_up_s 0 in this branch: free for the next call at once
    commands = h.send(CommandDone("c1", "Collect", digits="1"))
    assert Play("c1", "cc/rate-thanks") in commands
    record = h.cdr("c1")
    assert (record["rating"], record["talk_s"], record["hung_up_by"]) == ("1", 40, "agent")
    assert [c for c in commands if isinstance(c, CreateTask)] == []


def test_a_bad_score_puts_a_callback_on_the_team_leads_list(make):
    h = make(data=rated_branch())
    talk_then_agent_hangs_up(h)
    commands = h.send(CommandDone("c1", "Collect", digits="3"))
    [task] = [c for c in commands if isinstance(c, CreateTask)]
    assert (task.key, task.kind, task.assignee, task.number) == \
        ("bad_rating:c1", "bad_rating_callback", "lead", "13800138000")
    assert task.data["agent_id"] == "wang" and task.data["rating"] == "3"
    assert h.cdr("c1")["rating"] == "3"


@pytest.mark.parametrize("done", [CommandDone("c1", "Collect", digits="", timed_out=True),
                                  CommandDone("c1", "Collect", digits="7")])
def test_no_or_an_unknown_score_ends_the_call_unrated(make, done):
    h = make(data=rated_branch())
    talk_then_agent_hangs_up(h)
    commands = h.send(done)
    assert [c for c in commands if isinstance(c, Hangup)] and h.cdr("c1")["rating"] == ""


def test_the_caller_hanging_up_during_the_prompt_keeps_the_call_answered(make):
    h = make(data=rated_branch())
    talk_then_agent_hangs_up(h)
    h.caller_hangs_up("c1")
    record = h.cdr("c1")
    assert (record["disposition"], record["rating"]) == ("answered", "")


def test_rating_off_hangs_up_as_before(make):
    h = make()
    commands = talk_then_agent_hangs_up(h)
    assert [c for c in commands if isinstance(c, Collect)] == []
    assert h.cdr("c1")["rating"] == ""


def test_a_bad_score_must_be_one_of_the_scores():
    data = rated_branch(bad=["4"])
    with pytest.raises(ConfigError, match=r"rating\.bad\[0\]: '4' is not one of the scores"):
        parse_config(data)
