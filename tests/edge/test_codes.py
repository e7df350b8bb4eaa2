"""Desk-phone dialling: outside numbers, extensions, and every ##code (TEL-5)."""
from __future__ import annotations

import pytest

from edge.codes import CodeAction, CodeBook, CodeRefusal
from edge.commands import (CallCommand, DialOut, ForceHangup, Hangup, PickupCall, Play, RingAgent,
                           Spy)
from edge.config import DEFAULT_CODES, AgentConfig, CodeRule
from edge.events import AgentSetBusy, CallHungUp, CommandDone, ExtensionDialled

SUPERVISOR = AgentConfig("sun", "孙主管", "8009", "PJSIP/8009", roles=("agent", "supervisor"))
AGENT = AgentConfig("wang", "王芳", "8001", "PJSIP/8001")


def dial(h, digits: str, extension: str = "8009", call_id: str = "d1"):
    return h.send(ExtensionDialled(call_id, f"PJSIP/{extension}-0000000a", extension, digits))


def calls_only(commands):
    """The commands that act on calls (recording and CDRs are checked elsewhere)."""
    return [c for c in commands if isinstance(c, (CallCommand, ForceHangup))]


@pytest.mark.parametrize("digits, options", [("##18001#", "q"), ("##28001", "qw"), ("##48001#", "qB")])
def test_supervisor_listens_whispers_and_barges(h, digits, options):
    commands = dial(h, digits)
    assert calls_only(commands) == [Spy("d1", "PJSIP/8001-", options)]
    assert h.state("sun") == "talking"  # a supervisor on ChanSpy is not offered calls
    done = h.send(CommandDone("d1", "Spy"))
    assert Hangup("d1", "Spy finished") in done
    record = h.cdr("d1")
    assert (record["direction"], record["code"], record["disposition"]) == \
        ("code", digits.rstrip("#"), "completed")
    assert h.state("sun") == "idle"


def test_team_lead_may_listen_but_a_plain_agent_is_refused(h):
    assert calls_only(dial(h, "##18001", extension="8008")) == [Spy("d1", "PJSIP/8001-", "q")]
    commands = dial(h, "##18002#", extension="8003", call_id="d2")
    assert calls_only(commands) == [Play("d2", "cc/code-refused"), Hangup("d2", commands[1].reason)]
    refused = h.notifies("code.refused", commands)[0]
    assert refused["reason"] == "listen needs the role supervisor or team_lead"
    assert h.cdr("d2")["disposition"] == "rejected" and h.cdr("d2")["code"] == "##18002"


def test_force_hangup_hangs_up_the_extension_and_confirms(h):
    commands = dial(h, "##58001#")
    assert calls_only(commands) == [ForceHangup("PJSIP/8001-"), Play("d1", "cc/code-done"),
                                    Hangup("d1", "force hang-up done")]
    assert h.notifies("code.used", commands)[0]["action"] == "force_hangup"
    assert h.cdr("d1")["disposition"] == "completed"


def test_pickup_answers_a_call_ringing_elsewhere_as_the_picker(h):
    assert h.rung(h.offer("in1")) == {"in1": "8001"}
    commands = dial(h, "##68001", extension="8003", call_id="p1")
    assert calls_only(commands) == [PickupCall("p1", "PJSIP/8001")]
    h.answer("in1", "8001")  # DialEnd still names the rung phone
    assert h.state("zhang") == "talking" and h.state("wang") == "idle"
    h.send(CommandDone("p1", "PickupCall"))  # the picker's own session ends
    assert h.state("zhang") == "talking"  # still held by the picked-up call
    h.agent_hangs_up("in1")
    assert h.cdr("in1")["agent_id"] == "zhang" and h.cdr("in1")["disposition"] == "answered"
    assert h.core.agents_view()[2].calls_today == 1  # zhang, 8003


def test_trunk_pick_dials_out_on_the_chosen_channel(h):
    commands = dial(h, "##30213800138000#", extension="8001")
    assert calls_only(commands) == [DialOut("d1", "DAHDI/2/13800138000")]
    h.send(CommandDone("d1", "DialOut", status="ANSWER", talk_s=42))
    record = h.cdr("d1")
    assert (record["direction"], record["trunk"], record["callee"], record["talk_s"]) == \
        ("outbound", 2, "13800138000", 42)
    assert record["code"] == "##30213800138000" and record["hung_up_by"] == "caller"


def test_trunk_pick_refuses_an_unknown_channel(h):
    commands = dial(h, "##30713800138000", extension="8001")
    assert h.notifies("code.refused", commands)[0]["reason"] == "no trunk channel 07"


def test_plain_number_dials_the_default_trunk_group_and_restores_busy(h):
    h.send(AgentSetBusy("wang", True))
    commands = dial(h, "13800138000#", extension="8001")
    assert calls_only(commands) == [DialOut("d1", "DAHDI/g0/13800138000")]
    assert h.state("wang") == "talking"
    assert h.rung(h.offer("in1")) == {"in1": "8002"}  # never rings a phone in use
    h.send(CommandDone("d1", "DialOut", status="BUSY"))
    assert h.state("wang") == "busy"  # back to 示忙, as chosen before the call
    record = h.cdr("d1")
    assert (record["disposition"], record["hangup_cause"], record["direction"]) == \
        ("failed", 17, "outbound")


def test_extension_to_extension_dials_the_agents_phone(h):
    commands = dial(h, "8002", extension="8001")
    assert calls_only(commands) == [DialOut("d1", "PJSIP/8002")]
    h.answer("d1", "8002")
    assert h.state("li") == "talking"
    h.send(CallHungUp("d1", by="caller"))
    record = h.cdr("d1")
    assert (record["direction"], record["disposition"], record["hung_up_by"]) == \
        ("internal", "answered", "agent")
    assert h.state("li") == "idle" and h.state("wang") == "idle"


@pytest.mark.parametrize("code, before, after, prompt", [
    ("##7", "idle", "busy", "cc/agent-busy"),
    ("##9", "idle", "away", "cc/agent-away"),
    ("##8", "idle", "logged_out", "cc/agent-logged-out"),
])
def test_toggles_change_the_dialling_agent_and_confirm(h, code, before, after, prompt):
    assert h.state("wang") == before
    commands = dial(h, code + "#", extension="8001")
    play, hangup = calls_only(commands)
    assert play == Play("d1", prompt) and isinstance(hangup, Hangup)
    assert h.state("wang") == after
    assert h.notifies("agent.state", commands)[-1]["state"] == after
    dial(h, code, extension="8001", call_id="d2")
    assert h.state("wang") == "idle"  # the same code toggles back


def test_freeing_an_agent_by_code_serves_the_queue(h):
    for ext in ("8001", "8002", "8003"):
        dial(h, "##7", extension=ext, call_id=f"b{ext}")
    h.offer("q1")
    assert h.core.queue_position("q1") == 1
    commands = dial(h, "##7", extension="8002", call_id="free")
    assert h.rung(commands) == {"q1": "8002"}


def test_busy_toggle_needs_a_logged_in_agent(h):
    dial(h, "##8", extension="8001")
    commands = dial(h, "##7", extension="8001", call_id="d2")
    assert h.notifies("code.refused", commands)[0]["reason"] == "log in first (##8)"
    assert h.state("wang") == "logged_out"


def test_unknown_code_and_unknown_extension_are_refused_clearly(h):
    commands = dial(h, "##0123")
    assert h.notifies("code.refused", commands)[0]["reason"] == "unknown code"
    commands = dial(h, "##7", extension="7777", call_id="d2")
    assert h.notifies("code.refused", commands)[0]["reason"] == "this extension belongs to no agent"
    commands = dial(h, "*72", call_id="d3")
    assert h.notifies("code.refused", commands)[0]["reason"] == "not a number or code"
    assert [h.cdr(c)["disposition"] for c in ("d1", "d2", "d3")] == ["rejected"] * 3


def test_codebook_arguments():
    book = CodeBook(DEFAULT_CODES, trunk_channels=[1, 2])
    assert book.interpret("##18001#", SUPERVISOR) == CodeAction("##1", "listen", extension="8001")
    assert book.interpret("##1", SUPERVISOR) == \
        CodeRefusal("##1", "##1 needs an extension, e.g. ##18001")
    assert book.interpret("##18009", SUPERVISOR).reason == "a code cannot act on your own extension"
    assert book.interpret("##3011380", AGENT) == \
        CodeAction("##3", "trunk_dial", channel=1, number="1380")
    assert isinstance(book.interpret("##301", AGENT), CodeRefusal)
    assert book.interpret("##712", AGENT).reason == "unexpected digits '12' after ##7"
    assert book.interpret("##68002", AGENT) == CodeAction("##6", "pickup", extension="8002")


def test_longest_prefix_wins_and_configured_roles_apply():
    rules = dict(DEFAULT_CODES)
    rules["##10"] = CodeRule("##10", "barge", frozenset({"admin"}))
    book = CodeBook(rules)
    assert book.interpret("##108001", SUPERVISOR).reason == "barge needs the role admin"
    assert book.interpret("##118001", SUPERVISOR) == CodeAction("##1", "listen", extension="18001")


def test_ring_for_dialled_extension_is_not_an_acd_ring(h):
    commands = dial(h, "8003", extension="8001")
    assert not any(isinstance(c, RingAgent) for c in commands)
