"""Core life cycle: CDRs exactly once, wrap-up, daily reset, AMI snapshots, agent events."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.cdr import CDR_FIELDS
from edge.commands import Hangup, RingAgent
from edge.events import (AgentLogin, AgentLogout, AgentSetAway, AgentSetBusy, CallHungUp,
                         ChannelsSnapshot, CommandDone, LinkChanged, Tick)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_answered_call_cdr_has_exactly_the_store_columns(h):
    h.offer("c1", caller="02088888888", did="95555")
    h.clock.advance(8)
    h.answer("c1")
    h.clock.advance(95)
    commands = h.agent_hangs_up("c1", talk_s=95)
    assert Hangup("c1", "agent hung up") in commands
    record = h.cdr("c1")
    assert tuple(record) == CDR_FIELDS
    assert record == record | {
        "direction": "inbound", "caller": "02088888888", "callee": "95555", "trunk": 2,
        "agent_id": "wang", "extension": "8001", "group": "general", "rule": "least_calls",
        "region": "广东广州", "flagged": False, "wait_s": 8.0, "talk_s": 95.0,
        "hung_up_by": "agent", "disposition": "answered", "code": "", "hangup_cause": 16}
    assert record["answered_at"] - record["started_at"] == 8
    assert record["ended_at"] - record["answered_at"] == 95


@pytest.mark.parametrize("late_event", [
    CallHungUp("c1", by="caller"),
    CommandDone("c1", "RingAgent", status="ANSWER"),
    ChannelsSnapshot(()),
])
def test_a_cdr_is_written_exactly_once_whatever_follows(h, late_event):
    h.offer("c1")
    h.answer("c1")
    h.caller_hangs_up("c1")
    h.send(late_event)
    h.send(CallHungUp("c1", by="system"))
    assert len(h.cdrs("c1")) == 1
    assert h.cdr("c1")["hung_up_by"] == "caller"


def test_caller_abandoning_while_ringing_frees_the_agent(h):
    h.offer("c1")
    h.clock.advance(5)
    h.send(CallHungUp("c1", cause=16, by="caller"))
    assert h.state("wang") == "idle"
    record = h.cdr("c1")
    assert (record["disposition"], record["wait_s"], record["answered_at"]) == ("abandoned", 5, None)


def test_abandoned_in_queue_leaves_the_queue(h):
    for n, ext in enumerate(("8001", "8002", "8003")):
        h.offer(f"t{n}")
        h.answer(f"t{n}", ext)
    h.offer("q1")
    h.offer("q2")
    h.caller_hangs_up("q1")
    assert h.core.queue_position("q2") == 1
    assert h.rung(h.agent_hangs_up("t0")) == {"q2": "8001"}
    assert h.cdr("q1")["disposition"] == "abandoned"


def test_wrap_up_delays_the_next_call_until_its_timer(make, data):
    data["agents"][1]["wrap_up_s"] = 15  # wang
    data["groups"][0]["strategy"] = "extension_order"
    h = make(data=data)
    h.offer("c1")
    h.answer("c1", "8001")
    h.agent_hangs_up("c1")
    assert h.state("wang") == "wrap_up"
    assert h.rung(h.offer("c2")) == {"c2": "8002"}  # wang skipped while wrapping up
    assert h.core.next_deadline() == h.clock.now() + 15
    h.tick(14.9)
    assert h.state("wang") == "wrap_up"
    h.tick(0.1)
    assert h.state("wang") == "idle"


def test_wrap_up_end_serves_the_queue(make, data):
    for agent in data["agents"]:
        agent["wrap_up_s"] = 10
    h = make(data=data)
    for n, ext in enumerate(("8001", "8002", "8003")):
        h.offer(f"t{n}")
        h.answer(f"t{n}", ext)
    h.offer("q1")
    h.agent_hangs_up("t1")
    assert h.rung(h.tick(9)) == {}
    assert h.rung(h.tick(1)) == {"q1": "8002"}


def test_wrap_up_ends_even_for_an_agent_who_logged_out_mid_call(make, data):
    data["agents"][1]["wrap_up_s"] = 5  # wang
    h = make(data=data)
    h.offer("c1")
    h.answer("c1", "8001")
    h.send(AgentLogout("wang"))
    h.agent_hangs_up("c1")
    h.tick(5)
    h.send(AgentLogin("wang"))
    assert h.state("wang") == "idle"


def test_answered_counts_reset_at_local_midnight(make):
    late = datetime(2026, 11, 23, 23, 59, 0, tzinfo=SHANGHAI).timestamp()
    h = make(start=late, counts={"wang": 4, "li": 2, "zhang": 3})
    assert h.rung(h.offer("c1")) == {"c1": "8002"}
    h.caller_hangs_up("c1")
    assert h.core.next_deadline() == datetime(2026, 11, 24, tzinfo=SHANGHAI).timestamp()
    h.clock.advance(61)
    commands = h.send(Tick())
    assert h.notifies("agent.counts_reset", commands)
    assert [a.calls_today for a in h.core.agents_view()][:3] == [0, 0, 0]
    assert h.rung(h.offer("c2")) == {"c2": "8001"}  # all equal again: lowest extension


def test_reset_applies_even_without_a_tick(make):
    late = datetime(2026, 11, 23, 23, 59, 59, tzinfo=SHANGHAI).timestamp()
    h = make(start=late, counts={"wang": 4})
    h.clock.advance(2)
    assert h.rung(h.offer("c1")) == {"c1": "8001"}


def test_channels_snapshot_closes_calls_whose_channel_is_gone(h):
    h.offer("c1", trunk=1)
    h.answer("c1")
    h.offer("c2", trunk=2)
    h.send(LinkChanged("ami", up=True))
    commands = h.send(ChannelsSnapshot(("DAHDI/2-1", "PJSIP/8002-00000001")))
    assert h.cdr("c1")["hung_up_by"] == "system" and h.cdr("c1")["disposition"] == "answered"
    assert h.cdrs("c2") == [] and h.state("wang") == "idle"
    assert h.notifies("agent.state", commands)[0]["agent_id"] == "wang"


def test_agent_events_change_state_and_notify(h):
    commands = h.send(AgentSetBusy("wang", True))
    assert h.notifies("agent.state", commands) == [{
        "agent_id": "wang", "extension": "8001", "state": "busy", "previous": "idle",
        "calls_today": 0, "call_id": ""}]
    h.send(AgentSetAway("wang", True))
    assert h.state("wang") == "away"
    h.send(AgentSetAway("wang", False))
    assert h.state("wang") == "idle"
    h.send(AgentLogout("wang"))
    assert h.send(AgentSetBusy("wang", True)) == []  # logged out: nothing to set
    assert h.state("wang") == "logged_out"
    h.send(AgentLogin("wang"))
    assert h.state("wang") == "idle"
    assert h.send(AgentLogin("nobody")) == []


def test_login_serves_the_queue(make, data):
    data["agents"][3]["logged_in"] = False  # zhao, the cards agent
    data["agents"].append({"id": "qian", "name": "钱多多", "extension": "8102",
                           "groups": ["cards"], "wrap_up_s": 0})
    h = make(data=data, routing={"did_groups": {"95555": "cards"}})
    h.send(AgentSetBusy("qian", True))
    h.offer("q1", did="95555")
    assert h.core.queue_position("q1") == 1
    commands = h.send(AgentLogin("zhao"))
    assert h.rung(commands) == {"q1": "8101"}


def test_logged_out_agents_are_never_offered_calls(h):
    for agent in ("wang", "li", "zhang"):
        h.send(AgentLogout(agent))
    commands = h.offer("c1")
    assert not any(isinstance(c, RingAgent) for c in commands)
    assert h.cdr("c1")["disposition"] == "no_agent"


def test_unknown_and_late_events_are_ignored(h):
    assert h.send(CommandDone("ghost", "RingAgent", status="NOANSWER")) == []
    assert h.send(CallHungUp("ghost")) == []
    h.offer("c1")
    assert h.send(CommandDone("c1", "Answer")) == []
    assert h.send(CommandDone("c1", "Collect", digits="1")) == []  # no menu is running


def test_live_views_show_agents_and_calls(h):
    h.offer("c1", caller="075588888888")
    agents = {a.id: a for a in h.core.agents_view()}
    assert agents["wang"].state == "ringing" and agents["wang"].call_id == "c1"
    assert agents["wang"].name == "王芳"
    call, = h.core.calls_view()
    assert (call.phase, call.region, call.extension) == ("ringing", "广东深圳", "8001")


def test_next_deadline_is_midnight_when_no_timer_runs(h):
    midnight = datetime(2026, 11, 24, tzinfo=SHANGHAI).timestamp()
    assert h.core.next_deadline() == midnight


def test_a_session_that_dies_without_a_hangup_line_is_the_systems_not_an_abandon():
    """A FastAGI reset reaches the core as ``by="unknown"``: the CDR says system, disposition failed."""
    from edge.clock import ManualClock
    from edge.commands import WriteCdr
    from edge.config import example_config
    from edge.core import Core
    from edge.events import CallHungUp, CallOffered
    from edge.regions import RegionResolver

    config = example_config()
    core = Core(config, ManualClock(), RegionResolver.from_config(config))
    core.handle(CallOffered("u1", "DAHDI/3-1", "13800138000", did="95555", trunk=3))
    commands = core.handle(CallHungUp("u1", cause=0, cause_txt="Unknown", by="unknown"))
    cdrs = [c.record for c in commands if isinstance(c, WriteCdr)]
    assert len(cdrs) == 1
    assert cdrs[0]["hung_up_by"] == "system"
    assert cdrs[0]["disposition"] == "failed"


def test_an_answer_known_only_from_the_dial_outcome_still_makes_an_answered_call():
    """AMI's DialEnd never came; the caller hung up during the bridge: the Dial outcome (ANSWER,
    12 s) arrives with ``caller_gone`` just before the hang-up, and the CDR is the caller's answered call."""
    from edge.clock import ManualClock
    from edge.commands import RingAgent, WriteCdr
    from edge.config import example_config
    from edge.core import Core
    from edge.events import CallHungUp, CallOffered, CommandDone
    from edge.regions import RegionResolver

    config = example_config()
    clock = ManualClock()
    core = Core(config, clock, RegionResolver.from_config(config))
    out = core.handle(CallOffered("u2", "DAHDI/3-1", "13800138000", did="95555", trunk=3))
    out += core.handle(CommandDone("u2", "Answer"))
    ring = next(c for c in out if isinstance(c, RingAgent))
    clock.advance(15)
    done = core.handle(CommandDone("u2", "RingAgent", status="ANSWER", talk_s=12.0, caller_gone=True))
    assert not [c for c in done if isinstance(c, WriteCdr)]  # the hang-up closes it, not the Dial
    closed = core.handle(CallHungUp("u2", by="caller"))
    cdr = next(c.record for c in closed if isinstance(c, WriteCdr))
    assert cdr["disposition"] == "answered" and cdr["hung_up_by"] == "caller"
    assert cdr["extension"] == ring.extension
    assert cdr["talk_s"] == 12.0
