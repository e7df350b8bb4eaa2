"""TEL-2 in the core: blind and attended transfer, forwarding, hold time; the CDR follows."""
from __future__ import annotations

import json

from edge.commands import ConsultTransfer, DialOut, RedirectCall, RingAgent
from tests.edge.conftest import branch
from edge.events import (AgentAnswered, AttendedTransferred, CallHungUp, CallTransferred,
                         CommandDone, HoldChanged, TransferFailed, TransferRequest)


def talking(h, call_id="c1"):
    h.offer(call_id)
    h.send(AgentAnswered(call_id, "8001", peer_channel="PJSIP/8001-00000001", peer_uniqueid="u2"))
    return h.core.sb.calls[call_id]


def test_blind_transfer_redirects_then_rings_the_target_on_the_new_session(make):
    h = make()
    talking(h)
    h.clock.advance(30)
    commands = h.send(TransferRequest("wang", "8002", {"notes": "挂失"}))
    assert [c for c in commands if isinstance(c, RedirectCall)] == \
        [RedirectCall("c1", "DAHDI/2-1", "transfer", "8002")]
    h.send(CommandDone("c1", "RingAgent", status="ANSWER", talk_s=30, caller_gone=True))
    h.send(CallHungUp("c1"))  # the redirect's HANGUP: not the end of the call
    assert h.cdrs("c1") == [] and h.state("wang") == "idle"
    commands = h.send(CallTransferred("c1", "DAHDI/2-1", "8002"))
    assert [r.extension for r in h.rings(commands)] == ["8002"]
    assert h.notifies("call.ringing", commands)[0]["data"] == {"notes": "挂失"}
    h.answer("c1", "8002")
    h.clock.advance(20)
    h.agent_hangs_up("c1", talk_s=20)
    record = h.cdr("c1")
    assert (record["agent_id"], record["rule"], record["talk_s"]) == ("li", "transfer", 50)
    [leg] = json.loads(record["legs"])
    assert (leg["agent_id"], leg["to"], leg["transfer"]) == ("wang", "8002", "blind")


def test_a_transfer_to_an_outside_number_dials_it_on_the_trunk(make):
    h = make()
    talking(h)
    h.send(TransferRequest("wang", "13900000000"))
    h.send(CallHungUp("c1"))
    commands = h.send(CallTransferred("c1", "DAHDI/2-1", "13900000000"))
    assert [c for c in commands if isinstance(c, DialOut)] == [DialOut("c1", "DAHDI/g0/13900000000")]
    h.send(CommandDone("c1", "DialOut", status="ANSWER", talk_s=12))
    assert json.loads(h.cdr("c1")["legs"])[-1] == {"kind": "outside", "number": "13900000000",
                                                    "talk_s": 12}


def test_a_refused_redirect_leaves_the_call_with_its_agent(make):
    h = make()
    talking(h)
    h.send(TransferRequest("wang", "queue:cards"))
    h.send(TransferFailed("c1", "Channel does not exist"))
    assert h.core.sb.calls["c1"].phase.value == "talking" and h.core.sb.calls["c1"].legs == []
    assert h.notifies("transfer.failed")[0]["reason"] == "Channel does not exist"


def test_a_redirected_caller_who_never_comes_back_is_closed(make):
    h = make()
    talking(h)
    h.send(TransferRequest("wang", "8002"))
    h.send(CallHungUp("c1"))
    h.tick(16)
    assert h.cdr("c1")["disposition"] == "answered"  # it was answered by wang before
    assert h.state("wang") == "idle"


def test_attended_transfer_consults_then_hands_the_caller_over(make):
    h = make()
    talking(h)
    commands = h.send(TransferRequest("wang", "8002", attended=True))
    assert [c for c in commands if isinstance(c, ConsultTransfer)] == \
        [ConsultTransfer("c1", "PJSIP/8001-00000001", "8002")]
    h.clock.advance(10)
    h.send(AttendedTransferred("c1", "8002", True))
    assert h.state("wang") == "idle" and h.state("li") == "talking"
    h.clock.advance(20)
    h.agent_hangs_up("c1", talk_s=40)  # the caller's Dial answered time covers both agents
    record = h.cdr("c1")
    assert (record["agent_id"], record["talk_s"]) == ("li", 40)
    assert json.loads(record["legs"])[0]["transfer"] == "attended"


def test_a_failed_consultation_leaves_everything_as_it_was(make):
    h = make()
    talking(h)
    h.send(TransferRequest("wang", "8002", attended=True))
    h.send(AttendedTransferred("c1", "8002", False, "target did not answer"))
    assert h.state("wang") == "talking" and h.core.sb.calls["c1"].consult_to == ""
    assert h.notifies("transfer.failed")[0]["reason"] == "target did not answer"


def test_hold_time_is_counted_in_the_cdr(make):
    h = make()
    talking(h)
    h.clock.advance(5)
    h.send(HoldChanged("8001", True))
    h.clock.advance(12)
    h.send(HoldChanged("8001", False))
    h.clock.advance(3)
    h.agent_hangs_up("c1")
    assert h.cdr("c1")["hold_s"] == 12


def test_forward_on_no_answer_rings_the_forward_target(make):
    branch_data = branch(routing={"vip": [{"number": "13800138000", "owner": "wang"}]})
    branch_data["agents"][1]["forward_no_answer"] = "8101"
    h = make(data=branch_data)
    assert [r.extension for r in h.rings(h.offer("c1"))] == ["8001"]
    commands = h.no_answer("c1")
    assert [r.extension for r in h.rings(commands)] == ["8101"]
    assert h.notifies("call.forwarded", commands)[0]["status"] == "NOANSWER"
    assert isinstance(h.rings(commands)[0], RingAgent)
