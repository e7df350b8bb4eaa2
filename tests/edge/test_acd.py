"""ACD rules INB-1..6 and INB-10, driven through Core as a driver would."""
from __future__ import annotations

from edge.commands import Answer, Collect, Hangup, HoldMusic, RingAgent
from edge.events import AgentSetAway, AgentSetBusy, AgentLogout, CommandDone

# In the test branch, group "general" holds wang 8001, li 8002 and zhang 8003.


def test_least_calls_today_rings_the_agent_with_fewest_answered(make):
    h = make(counts={"zhang": 3, "wang": 2, "li": 1})
    commands = h.offer("c1")
    assert isinstance(commands[0], Answer)
    assert h.rung(commands) == {"c1": "8002"}
    assert h.notifies("call.ringing", commands)[0]["rule"] == "least_calls"


def test_least_calls_ties_go_to_the_lowest_extension_then_counts_move_on(h):
    assert h.rung(h.offer("c1")) == {"c1": "8001"}  # all at 0: extension order breaks the tie
    h.answer("c1")
    h.agent_hangs_up("c1", talk_s=60)
    assert h.rung(h.offer("c2")) == {"c2": "8002"}  # wang has 1 answered call now
    h.answer("c2")
    h.agent_hangs_up("c2")
    assert h.rung(h.offer("c3")) == {"c3": "8003"}
    assert h.core.agents_view()[0].calls_today == 1


def test_counts_injected_by_extension_are_accepted(make):
    h = make(counts={"8001": 5, "8002": 5})
    assert h.rung(h.offer("c1")) == {"c1": "8003"}


def test_extension_order_ignores_counts(make, data):
    data["groups"][0]["strategy"] = "extension_order"
    h = make(data=data, counts={"wang": 9, "li": 0, "zhang": 0})
    assert h.rung(h.offer("c1")) == {"c1": "8001"}
    assert h.rung(h.offer("c2")) == {"c2": "8002"}
    assert h.rung(h.offer("c3")) == {"c3": "8003"}


def test_extension_order_is_numeric_not_alphabetic(make, data):
    data["agents"] = [
        {"id": "a", "name": "甲", "extension": "8010", "groups": ["gd"]},
        {"id": "b", "name": "乙", "extension": "900", "groups": ["gd"]},
    ]
    data["routing"]["default_group"] = "gd"
    h = make(data=data)
    assert h.rung(h.offer("c1")) == {"c1": "900"}


def test_unavailable_agents_are_skipped(h):
    h.send(AgentLogout("wang"))
    h.send(AgentSetBusy("li", True))
    assert h.rung(h.offer("c1")) == {"c1": "8003"}
    h.send(AgentSetAway("zhang", True))
    commands = h.offer("c2")
    assert h.rung(commands) == {}
    assert any(isinstance(c, HoldMusic) for c in commands)


def test_caller_region_routes_to_the_region_group(make):
    h = make(routing={"region_groups": {"广东省": "gd", "深圳": "cards"}})
    commands = h.offer("c1", caller="02088888888")  # 广东广州 -> province match
    assert h.rung(commands) == {"c1": "8002"}
    assert h.notifies("call.ringing", commands)[0]["group"] == "gd"
    commands = h.offer("c2", caller="16607551234")  # 广东深圳 from the prefix table: city first
    assert h.rung(commands) == {"c2": "8101"}
    h.caller_hangs_up("c1")
    h.caller_hangs_up("c2")
    assert h.cdr("c1")["rule"] == "region" and h.cdr("c1")["region"] == "广东广州"
    assert h.cdr("c2")["group"] == "cards"


def test_unknown_region_falls_back_to_did_or_default_group(make):
    h = make(routing={"region_groups": {"广东": "gd"}, "did_groups": {"95555": "cards"}})
    assert h.rung(h.offer("c1", caller="19112345678")) == {"c1": "8001"}  # unknown -> default
    assert h.rung(h.offer("c2", caller="13800138000", did="95555")) == {"c2": "8101"}


def test_did_decides_before_region(make):
    h = make(routing={"region_groups": {"广东": "gd"}, "did_groups": {"95555": "cards"}})
    assert h.rung(h.offer("c1", caller="02088888888", did="95555")) == {"c1": "8101"}


def test_analog_line_uses_the_trunk_number_as_did(make):
    h = make(routing={"did_groups": {"075583210001": "cards"}})
    assert h.rung(h.offer("c1", did="s", trunk=1)) == {"c1": "8101"}


MENU = {"customer_type_menu": {"prompt": "cc/menu", "digits": {"1": "cards", "2": "gd"},
                               "timeout_s": 4, "dids": ["95555"]}}


def test_customer_type_menu_routes_by_the_digit_pressed(make):
    h = make(routing=MENU)
    commands = h.offer("c1", did="95555")
    assert commands[:2] == [Answer("c1"), Collect("c1", "cc/menu", 1, 4000)]
    assert h.rung(commands) == {}
    commands = h.send(CommandDone("c1", "Collect", digits="2"))
    assert h.rung(commands) == {"c1": "8002"}
    assert h.notifies("call.ringing", commands)[0]["rule"] == "customer_type"


def test_menu_timeout_or_unknown_digit_routes_normally_and_other_dids_skip_it(make):
    h = make(routing=MENU)
    h.offer("c1", did="95555")
    assert h.rung(h.send(CommandDone("c1", "Collect", digits="", timed_out=True))) == {"c1": "8001"}
    h.offer("c2", did="95555")
    assert h.rung(h.send(CommandDone("c2", "Collect", digits="9"))) == {"c2": "8002"}
    commands = h.offer("c3", did="88888888")
    assert not any(isinstance(c, Collect) for c in commands) and h.rung(commands) == {"c3": "8003"}


def test_menu_can_be_limited_to_groups(make):
    menu = {"customer_type_menu": {**MENU["customer_type_menu"], "dids": [], "groups": ["gd"]}}
    h = make(routing={**menu, "region_groups": {"广东": "gd"}})
    assert any(isinstance(c, Collect) for c in h.offer("c1", caller="02088888888"))
    assert not any(isinstance(c, Collect) for c in h.offer("c2", caller="13800138000"))
    assert h.rung(h.send(CommandDone("c1", "Collect", digits="1"))) == {"c1": "8101"}


def test_last_agent_gets_the_returning_caller(make):
    h = make(routing={"sticky_last_agent": True}, last={"13800138000": "zhang"})
    commands = h.offer("c1", caller="013800138000")  # same caller, trunk's long-distance form
    assert h.rung(commands) == {"c1": "8003"}
    assert h.notifies("call.ringing", commands)[0]["rule"] == "last_agent"


def test_last_agent_is_learnt_from_answered_calls(make):
    h = make(routing={"sticky_last_agent": True})
    h.offer("c1", caller="13911112222")
    h.answer("c1", "8001")
    h.agent_hangs_up("c1")
    h.offer("x", caller="13800000000")  # takes li (8002): wang answered one already
    assert h.rung(h.offer("c2", caller="13911112222")) == {"c2": "8001"}


def test_busy_last_agent_without_wait_falls_back_to_the_group_rule(make):
    h = make(routing={"sticky_last_agent": True}, last={"13800138000": "wang"})
    h.send(AgentSetBusy("wang", True))
    assert h.rung(h.offer("c1")) == {"c1": "8002"}


def test_sticky_wait_holds_for_the_last_agent_while_on_a_call(make):
    h = make(routing={"sticky_last_agent": True, "sticky_wait_s": 10},
             last={"13800138000": "zhang"})
    h.offer("other", caller="13011112222")
    h.answer("other", "8001")  # wang talking
    h.offer("busy", caller="13800000001")
    h.answer("busy", "8002")  # li talking
    h.offer("z", caller="13800000002")
    h.answer("z", "8003")  # zhang talking
    commands = h.offer("c1")
    assert h.rung(commands) == {} and HoldMusic("c1") in commands
    assert h.core.next_deadline() == h.clock.now() + 10
    h.clock.advance(4)
    h.send(AgentSetBusy("wang", True))
    commands = h.agent_hangs_up("z")  # zhang is free within the wait
    assert h.rung(commands) == {"c1": "8003"}
    assert h.notifies("call.ringing", commands)[0]["rule"] == "last_agent"


def test_sticky_wait_expires_into_the_group_rule(make):
    h = make(routing={"sticky_last_agent": True, "sticky_wait_s": 10},
             last={"13800138000": "zhang"})
    h.offer("z", caller="13800000002")
    h.answer("z", "8001")
    h.offer("z2", caller="13800000003")
    h.answer("z2", "8003")  # zhang talking; li (8002) stays idle
    assert h.rung(h.offer("c1")) == {}
    assert h.rung(h.tick(9.9)) == {}
    assert h.rung(h.tick(0.1)) == {"c1": "8002"}


def test_vip_rings_the_owner_directly_skipping_the_menu(make):
    h = make(routing={**MENU, "vip": [{"number": "13900001111", "owner": "zhang"}]},
             counts={"zhang": 10})
    commands = h.offer("v1", caller="+86 139 0000 1111", did="95555")
    assert not any(isinstance(c, Collect) for c in commands)
    assert h.rung(commands) == {"v1": "8003"}
    h.caller_hangs_up("v1")
    assert h.cdr("v1")["rule"] == "vip"


def test_vip_falls_back_to_the_owners_group_then_queues_ahead_of_others(make):
    h = make(routing={"vip": [{"number": "13900001111", "owner": "zhang"}]})
    h.offer("a", caller="13000000001")
    h.answer("a", "8001")
    h.offer("b", caller="13000000002")
    h.answer("b", "8003")  # the owner (zhang) is talking, li is idle
    assert h.rung(h.offer("v1", caller="13900001111")) == {"v1": "8002"}  # owner's group
    h.answer("v1", "8002")
    h.offer("n1", caller="13000000003")
    h.offer("n2", caller="13000000004")
    commands = h.offer("v2", caller="13900001111")
    assert h.notifies("queue.position", commands)[0]["position"] == 1  # ahead of n1, n2
    assert h.core.queue_position("n1") == 2
    assert h.rung(h.agent_hangs_up("a")) == {"v2": "8001"}
    assert h.notifies("call.ringing")[-1]["rule"] == "vip"


def test_blacklist_reject_hangs_up_without_answering(make):
    h = make(routing={"blacklist": [{"number": "13066666666", "action": "reject"}]})
    commands = h.offer("bad", caller="13066666666")
    assert not any(isinstance(c, (Answer, RingAgent)) for c in commands)
    assert [type(c).__name__ for c in commands if not type(c).__name__ == "Notify"] == \
        ["Hangup", "WriteCdr"]
    record = h.cdr("bad")
    assert (record["disposition"], record["rule"], record["hung_up_by"]) == \
        ("rejected", "blacklist", "system")
    assert record["hangup_cause"] == 21
    h.caller_hangs_up("bad")  # the session's hang-up after ours writes nothing more
    assert len(h.cdrs("bad")) == 1


def test_blacklist_flag_routes_normally_and_marks_the_call(make):
    h = make(routing={"blacklist": [{"number": "13177777777", "action": "flag"}]})
    commands = h.offer("f", caller="13177777777")
    assert h.rung(commands) == {"f": "8001"}
    assert h.notifies("call.flagged", commands)[0]["caller"] == "13177777777"
    assert h.notifies("call.ringing", commands)[0]["flagged"] is True
    h.answer("f")
    h.agent_hangs_up("f")
    assert h.cdr("f")["flagged"] is True and h.cdr("f")["disposition"] == "answered"


def test_ring_timeout_fails_over_to_agents_not_yet_tried(h):
    assert h.rung(h.offer("c1")) == {"c1": "8001"}
    h.clock.advance(20)
    assert h.rung(h.no_answer("c1")) == {"c1": "8002"}
    assert h.state("wang") == "idle"  # idle on the wallboard, but backing off for 30 s
    h.clock.advance(1)
    assert h.rung(h.no_answer("c1", status="BUSY")) == {"c1": "8003"}
    h.clock.advance(20)
    # a full round and every agent backing off: the caller waits with music, nobody is re-rung
    commands = h.no_answer("c1")
    assert h.rung(commands) == {} and HoldMusic("c1") in commands
    assert h.notifies("call.ring_failed", commands)[0]["agent_id"] == "zhang"
    assert h.core.queue_position("c1") == 1
    assert h.rung(h.tick(8.9)) == {}
    # wang's back-off (from t=20) ends at t=50: a new round starts with the best agent
    assert h.rung(h.tick(0.1)) == {"c1": "8001"}


def test_ring_timeout_with_nobody_else_free_queues_the_call(h):
    h.offer("a")
    h.answer("a", "8001")
    h.offer("b")
    h.answer("b", "8002")
    h.offer("c1")  # rings zhang 8003
    commands = h.no_answer("c1")
    # zhang is the only one free, but backing off: the call queues and waits
    assert HoldMusic("c1") in commands
    assert h.rung(commands) == {}
    assert h.core.queue_position("c1") == 1
    assert h.rung(h.tick(30)) == {"c1": "8003"}  # zhang's back-off is over
    assert h.rings()[-1] == RingAgent("c1", "8003", "PJSIP/8003", 20)


def test_ring_timeout_uses_the_groups_setting(make, data):
    data["groups"][0]["ring_timeout_s"] = 12
    h = make(data=data)
    assert h.rings(h.offer("c1"))[0].timeout_s == 12


def test_caller_cancel_while_ringing_frees_the_agent_and_waits_for_hangup(h):
    h.offer("c1")
    commands = h.no_answer("c1", status="CANCEL")
    assert h.rung(commands) == {} and h.state("wang") == "idle"
    assert h.cdrs("c1") == []
    h.caller_hangs_up("c1")
    assert h.cdr("c1")["disposition"] == "abandoned"
    assert not any(isinstance(c, Hangup) for c in commands)
