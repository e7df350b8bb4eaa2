"""Ring failures: a phone that does not answer (or is busy, unreachable, congested) is held back
from selection for the group's ``ring_failure_backoff_s``; the caller waits in the queue with
music instead of the same phones being rung again and again (HIL caller-abandons-on-hold).

In the test branch, group "general" holds wang 8001, li 8002 and zhang 8003 (least calls today,
all at zero: lowest extension first); "cards" holds zhao 8101 alone.
"""
from __future__ import annotations

import pytest

from edge.commands import Command, HoldMusic, Play, RingAgent
from edge.config import parse_config
from edge.errors import ConfigError
from edge.events import AgentAnswered, AgentSetAway, AgentSetBusy, CommandDone

GENERAL = ("8001", "8002", "8003")


def music(commands: list[Command], call_id: str) -> int:
    return sum(1 for c in commands if isinstance(c, HoldMusic) and c.call_id == call_id)


def all_busy(h, call_id: str = "c1", status: str = "BUSY") -> list[Command]:
    """Offer ``call_id`` and let every general phone fail it at once; returns all commands."""
    out = h.offer(call_id)
    for _ in GENERAL:
        out += h.no_answer(call_id, status=status)
    return out


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION"])
def test_every_phone_failing_queues_the_caller_with_music_once(h, status):
    commands = all_busy(h, status=status)
    assert [r.extension for r in h.rings(commands)] == list(GENERAL)  # each rung exactly once
    assert music(commands, "c1") == 1
    position, = h.notifies("queue.position", commands)
    assert position == {"call_id": "c1", "group": "general", "position": 1, "length": 1}
    assert h.core.queue_position("c1") == 1
    assert [h.state(a) for a in ("wang", "li", "zhang")] == ["idle"] * 3
    assert {a.id: a.ring_backoff for a in h.core.agents_view()}["li"] is True
    general = h.core.queues_view()[0]
    assert (general.idle_agents, general.logged_in_agents, general.length) == (0, 3, 1)
    backoffs = h.notifies("agent.ring_backoff", commands)
    assert [(b["agent_id"], b["active"], b["status"]) for b in backoffs] == \
        [(a, True, status) for a in ("wang", "li", "zhang")]
    assert backoffs[0]["until"] == h.clock.now() + 30


def test_no_ring_until_the_back_off_timer_fires(h):
    all_busy(h)
    assert h.core.next_deadline() == h.clock.now() + 30
    for _ in range(119):  # the runtime ticks every 0.25 s
        assert h.rung(h.tick(0.25)) == {}
    assert h.core.queue_position("c1") == 1
    commands = h.tick(0.25)  # 30 s: wang's back-off ends and he takes the queue head
    assert h.rung(commands) == {"c1": "8001"}
    assert h.notifies("agent.ring_backoff", commands)[0] == {
        "agent_id": "wang", "extension": "8001", "active": False}
    assert h.core.queue_position("c1") is None


def test_phones_that_stay_busy_are_retried_once_per_back_off_not_in_a_loop(h):
    """The HIL scenario: every desk phone answers every Dial with BUSY, at once."""
    h.offer("c1")
    rings = 0
    for _ in range(479):  # 0.25 s ticks up to t=119.75
        while len(h.rings()) > rings:
            rings += 1
            h.no_answer("c1", status="BUSY")
        h.tick(0.25)
    # a round of the three phones at t=0, then one per 30 s back-off: t=30, 60, 90
    assert len(h.rings()) == rings == 12
    assert [r.extension for r in h.rings()] == list(GENERAL) * 4
    # music once per hold period: after each failed round, never while already playing
    assert music(h.log, "c1") == 4
    assert h.core.queue_position("c1") == 1
    h.caller_hangs_up("c1")
    assert h.cdr("c1")["disposition"] == "abandoned"


def test_music_is_not_sent_again_while_it_plays(make, data):
    data["groups"][0].update(max_wait_s=60, overflow="group:gd")  # gd: li alone
    h = make(data=data)
    all_busy(h)  # queued in general with music
    commands = h.tick(50)  # back-offs end: rings again, fails again
    assert h.rung(commands) == {"c1": "8001"}
    h.no_answer("c1", status="BUSY")
    h.no_answer("c1", status="BUSY")
    commands = h.no_answer("c1", status="BUSY")
    assert music(commands, "c1") == 1  # a new hold period: the ring turned the music off
    commands = h.tick(10)  # max wait (from first queueing at t=0): on to gd, li backing off
    assert h.notifies("call.overflow", commands)[0]["reason"] == "max_wait"
    assert h.core.calls_view()[0].group == "gd" and h.core.queue_position("c1") == 1
    assert music(commands, "c1") == 0  # still playing: not sent again


def test_a_back_off_holds_the_agent_back_from_every_call(h):
    h.offer("c1")
    h.no_answer("c1", status="BUSY")  # wang fails c1; li rings for c1
    assert h.rung(h.offer("c2")) == {"c2": "8003"}  # not wang, although he is idle
    commands = h.offer("c3")
    assert h.rung(commands) == {} and music(commands, "c3") == 1
    assert h.rung(h.tick(30)) == {"c3": "8001"}


def test_back_off_expiry_serves_the_queue_head_in_arrival_order(h):
    h.offer("c1")
    h.offer("c2")  # rings li
    h.offer("c3")  # rings zhang
    h.no_answer("c1", status="BUSY")  # wang fails; nobody else free: c1 queues
    h.clock.advance(1)
    h.offer("c4")  # queues behind c1
    h.no_answer("c2", status="CHANUNAVAIL")  # li fails; c2 goes back to its arrival place
    assert [w.call_id for w in h.core.queues_view()[0].waiting] == ["c1", "c2", "c4"]
    assert h.rung(h.tick(29)) == {"c1": "8001"}  # wang's back-off ends first
    assert h.rung(h.tick(1)) == {"c2": "8002"}
    assert h.core.queue_position("c4") == 1


def test_a_call_returning_from_a_failed_ring_keeps_its_arrival_position(h):
    for n, ext in enumerate(GENERAL):
        h.offer(f"t{n}")
        h.answer(f"t{n}", ext)
    h.offer("q1")
    h.offer("q2")
    assert h.rung(h.agent_hangs_up("t0")) == {"q1": "8001"}
    commands = h.no_answer("q1")
    assert h.notifies("queue.position", commands)[0]["position"] == 1
    assert [w.call_id for w in h.core.queues_view()[0].waiting] == ["q1", "q2"]
    assert h.rung(h.agent_hangs_up("t1")) == {"q1": "8002"}  # li serves the head: q1


def test_auto_busy_after_consecutive_missed_rings(make, data):
    data["groups"][2].update(auto_busy_after_misses=2, ring_failure_backoff_s=10)
    h = make(data=data, routing={"did_groups": {"95555": "cards"}})
    h.offer("c1", did="95555")
    commands = h.no_answer("c1")  # zhao's first miss
    assert h.state("zhao") == "idle" and music(commands, "c1") == 1
    assert h.rung(h.tick(10)) == {"c1": "8101"}
    commands = h.no_answer("c1")  # second miss in a row: 示忙
    assert h.state("zhao") == "busy"
    state, = h.notifies("agent.state", commands)
    assert state == {"agent_id": "zhao", "extension": "8101", "state": "busy",
                     "previous": "ringing", "calls_today": 0, "call_id": "",
                     "reason": "missed_rings"}
    assert h.rung(h.tick(60)) == {}  # the back-off ends, but a busy agent is not offered calls
    commands = h.send(AgentSetBusy("zhao", False))  # back at the desk: 示闲
    assert h.rung(commands) == {"c1": "8101"}


def test_only_no_answer_counts_and_an_answer_resets_the_count(make, data):
    data["groups"][2].update(auto_busy_after_misses=2)
    h = make(data=data, routing={"did_groups": {"95555": "cards"}})
    h.offer("c1", did="95555")
    h.no_answer("c1")  # miss 1
    h.tick(30)
    h.no_answer("c1", status="BUSY")  # a busy phone is no missed ring
    h.tick(30)
    h.answer("c1", "8101")  # answered: the run of misses is over
    h.agent_hangs_up("c1")
    h.offer("c2", did="95555")
    h.no_answer("c2")  # miss 1 again
    assert h.state("zhao") == "idle"
    h.tick(30)
    h.no_answer("c2")  # miss 2
    assert h.state("zhao") == "busy"


def test_auto_busy_is_off_by_default(h):
    h.offer("c1")
    for _ in range(5):
        for _ in GENERAL:
            h.no_answer("c1")
        h.tick(30)
    assert [h.state(a) for a in ("wang", "li", "zhang")] == ["ringing", "idle", "idle"]
    assert not [s for s in h.notifies("agent.state") if s.get("reason")]


def test_abandon_while_queued_writes_one_abandoned_cdr(h):
    all_busy(h)
    h.clock.advance(12)
    commands = h.caller_hangs_up("c1")
    assert h.rung(commands) == {}
    record = h.cdr("c1")
    assert (record["disposition"], record["hung_up_by"], record["wait_s"]) == \
        ("abandoned", "caller", 12)
    assert record["agent_id"] == "" and record["answered_at"] is None
    assert h.core.queue_position("c1") is None and h.core.calls_view() == []
    assert h.rung(h.tick(30)) == {}  # back-offs end with nobody waiting
    h.caller_hangs_up("c1")
    assert len(h.cdrs("c1")) == 1


def test_abandon_while_ringing_after_failures_writes_one_cdr(h):
    all_busy(h)
    h.tick(30)  # wang rings again
    h.no_answer("c1", status="CANCEL")  # the caller gave up during the ring
    h.caller_hangs_up("c1")
    assert h.cdr("c1")["disposition"] == "abandoned"
    assert h.state("wang") == "idle"


def test_manual_free_or_return_ends_the_back_off(h):
    all_busy(h)
    h.send(AgentSetAway("li", True))
    commands = h.send(AgentSetAway("li", False))  # back at the desk: selectable at once
    assert h.rung(commands) == {"c1": "8002"}
    assert h.send(AgentSetBusy("wang", False)) == []  # already available: nothing changes
    commands = h.tick(30)
    assert h.rung(commands) == {}  # the others' back-offs end; nobody is waiting
    assert [n["agent_id"] for n in h.notifies("agent.ring_backoff", commands)] == ["wang", "zhang"]


def test_vip_owner_backing_off_is_not_rung_directly(make):
    h = make(routing={"vip": [{"number": "13900001111", "owner": "li"}]})
    h.offer("c1")  # rings wang
    h.no_answer("c1")  # rings li
    h.no_answer("c1")  # li backs off; rings zhang
    commands = h.offer("v1", caller="13900001111")
    # li (the owner) and wang back off, zhang rings for c1: the VIP waits in the queue
    assert h.notifies("call.ringing", commands) == []
    assert h.core.queue_position("v1") == 1


def test_last_agent_backing_off_falls_back_to_the_group(make):
    h = make(routing={"sticky_last_agent": True, "sticky_wait_s": 10},
             last={"13700000000": "wang"})
    h.offer("c1")
    h.no_answer("c1", status="BUSY")  # wang backs off; li rings
    commands = h.offer("c2", caller="13700000000")
    assert h.rung(commands) == {"c2": "8003"}
    assert h.notifies("call.ringing", commands)[0]["rule"] == "least_calls"


def test_an_answer_during_a_ring_is_unaffected(h):
    all_busy(h)
    h.tick(30)
    h.send(AgentAnswered("c1", "8001"))
    h.send(CommandDone("c1", "RingAgent", status="ANSWER", talk_s=20))
    assert h.cdr("c1")["disposition"] == "answered" and h.cdr("c1")["agent_id"] == "wang"


def test_max_wait_runs_from_first_queueing_across_failed_rings(make, data):
    data["groups"][0].update(max_wait_s=45, overflow="hangup")
    h = make(data=data)
    h.clock.advance(5)
    all_busy(h)  # queued at t=5 (the three rings took no time here)
    h.tick(30)  # t=35: wang rings again ...
    h.clock.advance(5)
    h.no_answer("c1", status="BUSY")  # ... li, zhang too, the call is back in the queue at t=40
    h.no_answer("c1", status="BUSY")
    h.no_answer("c1", status="BUSY")
    assert h.cdrs("c1") == []
    commands = h.tick(10)  # t=50: 45 s since it first queued
    assert Play("c1", "cc/all-agents-busy") in commands
    assert h.cdr("c1")["disposition"] == "overflow"


def test_the_group_of_the_failed_call_sets_the_back_off(make, data):
    data["groups"][1]["ring_failure_backoff_s"] = 5  # gd: li (and in general too)
    h = make(data=data, routing={"region_groups": {"广东": "gd"}})
    h.offer("c1", caller="02088888888")  # 广东广州 -> gd -> li
    commands = h.no_answer("c1")
    assert h.rings(commands) == [] and h.core.queue_position("c1") == 1
    assert h.rung(h.tick(5)) == {"c1": "8002"}


def test_ring_agent_commands_keep_their_shape(h):
    all_busy(h)
    assert h.rings(h.tick(30)) == [RingAgent("c1", "8001", "PJSIP/8001", 20)]


# --- configuration ---------------------------------------------------------------------------

def test_group_keys_have_defaults(data):
    group = parse_config(data).groups[0]
    assert (group.ring_failure_backoff_s, group.auto_busy_after_misses) == (30.0, 0)
    data["groups"][0].update(ring_failure_backoff_s=7.5, auto_busy_after_misses=3)
    group = parse_config(data).groups[0]
    assert (group.ring_failure_backoff_s, group.auto_busy_after_misses) == (7.5, 3)


@pytest.mark.parametrize("key, value, message", [
    ("ring_failure_backoff_s", 0, "groups[0].ring_failure_backoff_s: must be greater than 0, got 0"),
    ("ring_failure_backoff_s", "30", "groups[0].ring_failure_backoff_s: expected a number, got '30'"),
    ("auto_busy_after_misses", -1, "groups[0].auto_busy_after_misses: must be at least 0, got -1"),
    ("auto_busy_after_misses", 1.5,
     "groups[0].auto_busy_after_misses: expected an integer, got float 1.5"),
])
def test_group_keys_are_validated(data, key, value, message):
    data["groups"][0][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value) == message
