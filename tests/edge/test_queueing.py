"""Waiting callers: FIFO in arrival order, positions, VIP priority, and overflow."""
from __future__ import annotations

from edge.commands import EncodeRecording, Hangup, HoldMusic, Play, RecordMessage
from edge.events import AgentLogout, CommandDone
from edge.queueing import NORMAL_PRIORITY, VIP_PRIORITY, WaitQueues


def occupy_general(h) -> None:
    """wang, li and zhang all on a call (t1, t2, t3)."""
    for n, ext in enumerate(("8001", "8002", "8003"), start=1):
        h.offer(f"t{n}", caller=f"1300000000{n}")
        h.answer(f"t{n}", ext)


def test_twenty_concurrent_callers_are_served_in_arrival_order(h):
    occupy_general(h)
    for n in range(20):
        commands = h.offer(f"q{n}", caller=f"139{n:08d}")
        assert HoldMusic(f"q{n}") in commands
        assert h.notifies("queue.position", commands)[0]["position"] == n + 1
    h.caller_hangs_up("q5")  # one abandons in the middle
    assert h.core.queue_position("q6") == 6
    served = []
    for n in range(19):
        talking = ["t1", "t2", "t3"][n % 3] if n < 3 else served[n - 3]
        commands = h.agent_hangs_up(talking)
        (call_id, extension), = h.rung(commands).items()
        h.answer(call_id, extension)
        served.append(call_id)
    assert served == [f"q{n}" for n in range(20) if n != 5]
    assert h.cdr("q5")["disposition"] == "abandoned"


def test_queue_view_shows_positions_and_waits(h):
    occupy_general(h)
    h.offer("q1")
    h.clock.advance(30)
    h.offer("q2")
    view = {q.group: q for q in h.core.queues_view()}["general"]
    assert [(w.call_id, w.position) for w in view.waiting] == [("q1", 1), ("q2", 2)]
    assert view.longest_wait_s == 30 and view.idle_agents == 0 and view.logged_in_agents == 3
    calls = {c.call_id: c for c in h.core.calls_view()}
    assert calls["q2"].queue_position == 2 and calls["q2"].phase == "queued"


def test_full_queue_overflows_to_another_group(make, data):
    data["groups"][0].update(max_queue_len=2, overflow="group:cards")
    h = make(data=data)
    occupy_general(h)
    h.offer("q1")
    h.offer("q2")
    commands = h.offer("q3")
    assert h.rung(commands) == {"q3": "8101"}
    assert h.notifies("call.overflow", commands)[0] == {
        "call_id": "q3", "caller": "13800138000", "group": "general", "action": "group:cards",
        "reason": "queue_full"}


def test_max_wait_overflows_to_voicemail_with_a_cdr(make, data):
    data["groups"][0].update(max_wait_s=60, overflow="voicemail")
    h = make(data=data)
    occupy_general(h)
    h.offer("q1")
    h.clock.advance(20)
    h.offer("q2")
    assert h.core.next_deadline() == h.clock.now() + 40
    commands = h.tick(40)
    [play, record] = [c for c in commands if isinstance(c, (Play, RecordMessage, Hangup))]
    assert play == Play("q1", "cc/overflow-voicemail")
    assert record.path.endswith("/q1-vm") and record.max_s == 120   # INB-13: the message
    assert h.core.queue_position("q2") == 1
    commands = h.send(CommandDone("q1", "RecordMessage", status="dtmf"))
    assert Play("q1", "cc/voicemail-thanks") in commands
    assert h.cdr("q1")["disposition"] == "voicemail" and h.cdr("q1")["wait_s"] == 60
    [encode] = [c for c in commands if isinstance(c, EncodeRecording)]
    assert (encode.file, encode.meta["kind"], encode.meta["box"]) == ("q1-vm.wav", "voicemail", "general")
    commands = h.tick(20)
    assert h.notifies("call.overflow", commands)[0]["action"] == "voicemail"
    assert len(h.cdrs()) == 1  # q2 is leaving its message now


def test_callback_and_hangup_overflows(make, data):
    data["groups"][0].update(max_queue_len=1, overflow="callback")
    data["groups"][2].update(max_queue_len=1)  # cards: default overflow = hangup
    h = make(data=data, routing={"did_groups": {"95555": "cards"}})
    occupy_general(h)
    h.offer("q1")
    commands = h.offer("q2")
    assert Play("q2", "cc/overflow-callback") in commands
    assert h.notifies("call.overflow", commands)[0]["caller"] == "13800138000"
    h.offer("c1", did="95555")
    h.answer("c1", "8101")
    h.offer("c2", did="95555")
    commands = h.offer("c3", did="95555")
    assert Play("c3", "cc/all-agents-busy") in commands
    assert h.cdr("c3")["disposition"] == "overflow" and h.cdr("c3")["group"] == "cards"


def test_group_without_logged_in_agents_does_not_queue(make):
    h = make(routing={"did_groups": {"95555": "cards"}})
    h.send(AgentLogout("zhao"))
    commands = h.offer("c1", did="95555")
    assert h.notifies("call.overflow", commands)[0]["reason"] == "no_agent"
    assert h.cdr("c1")["disposition"] == "no_agent"


def test_overflow_chain_moves_the_caller_on_keeping_arrival_order(make, data):
    data["groups"][0].update(max_wait_s=30, overflow="group:gd")
    h = make(data=data)
    occupy_general(h)  # li (the only gd agent) is talking too
    h.offer("q1")
    h.tick(30)
    assert h.core.calls_view()[-1].group == "gd"
    assert h.core.queue_position("q1") == 1
    assert h.rung(h.agent_hangs_up("t2")) == {"q1": "8002"}


def test_max_wait_during_a_ring_overflows_when_the_ring_fails(make, data):
    data["groups"][0].update(max_wait_s=30, overflow="hangup")
    h = make(data=data)
    occupy_general(h)
    h.offer("q1")
    h.tick(25)
    h.agent_hangs_up("t1")  # wang frees up and rings q1
    h.tick(10)  # the deadline passes while ringing: nothing happens yet
    assert h.cdrs("q1") == []
    commands = h.no_answer("q1")
    assert Play("q1", "cc/all-agents-busy") in commands and h.cdr("q1")["disposition"] == "overflow"


def test_wait_queues_order_positions_and_removal():
    queues = WaitQueues(["g", "h"])
    assert queues.add("g", "a", NORMAL_PRIORITY, 1) == 1
    assert queues.add("g", "b", NORMAL_PRIORITY, 2) == 2
    assert queues.add("g", "v", VIP_PRIORITY, 3) == 1
    assert queues.add("h", "x", NORMAL_PRIORITY, 0) == 1
    assert queues.waiting("g") == ["v", "a", "b"]
    assert queues.best_for(["g", "h"]) == "v"
    assert queues.remove("v") == "g" and queues.remove("v") is None
    assert queues.best_for(["g", "h"]) == "x"  # earlier arrival across groups
    assert queues.position("b") == 2 and queues.length("g") == 2
