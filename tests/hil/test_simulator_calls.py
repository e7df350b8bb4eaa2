"""Call handling across both protocols: AMI Redirect / Hangup / Status / Originate to phones and
trunks, PickupChan, and the Local far ends of the fixtures (ami-04, ami-08)."""
from __future__ import annotations


import pytest

from hil.pbx.simulator import PbxSimulator
from tests.hil.wire_peers import AmiProbe, ScriptedEdge

E1 = {"trunks": [{"profile": "e1", "channels": "1-4"}]}


Edge, Ami = ScriptedEdge, AmiProbe


@pytest.fixture
def make(agi_server):
    made = []

    def build(flows, world):
        edge = Edge(flows, agi_server)
        sim = PbxSimulator(world, agi_port=edge.port, time_scale=0.01).start()
        made.append((edge, sim))
        return edge, sim

    yield build
    for edge, sim in made:
        sim.stop()
        edge.server.close()


def test_redirect_of_a_bridged_caller_is_a_blind_transfer(make):
    replies: dict[str, str] = {}

    def incoming(send, env):
        send("ANSWER")
        replies["dial"] = send("EXEC Dial PJSIP/8001,20")
        replies["after"] = send('STREAM FILE welcome ""')

    edge, sim = make({"incoming": incoming}, {**E1, "phones": {"8001": {"answer_after_ms": 200}, "8002": {"answer_after_ms": 200}},
                                              "calls": [{"id": "c1", "did": "1", "hangup_after_talk_ms": 50_000}]})
    sim.wait_record("bridged", 3, call="c1")
    ami = Ami(sim.ami_port)
    reply = ami.request("Redirect", Channel="DAHDI/1-1", Context="from-internal", Exten="8002", Priority="1")
    assert reply["Message"] == "Redirect successful"
    second = sim.wait_for(lambda: [r for r in sim.records("bridged", call="c1") if "8002" in r.get("extensions")], 3)
    assert second and replies["dial"] == "200 result=-1" and edge.hangups == 1
    assert replies["after"] == "511 Command Not Permitted on a dead channel or intercept routine"
    assert sim.records("hung_up", extension="8001")[0].get("by") == "system"
    missing = ami.request("Redirect", Channel="DAHDI/9-1", Context="x", Exten="1", Priority="1")
    assert missing["Message"] == "Channel does not exist: DAHDI/9-1"


def test_ami_hangup_of_the_agent_returns_the_callers_dial(make):
    out: dict[str, str] = {}

    def incoming(send, env):
        out["dial"] = send("EXEC Dial PJSIP/8001,20")
        out["status"] = send("GET VARIABLE DIALSTATUS")

    edge, sim = make({"incoming": incoming}, {**E1, "phones": {"8001": {"answer_after_ms": 200}},
                                              "calls": [{"id": "c1", "did": "1"}]})
    sim.wait_record("bridged", 3, call="c1")
    ami = Ami(sim.ami_port)
    status = ami.request("Status", Channel=sim.resolve("phone 8001")[0])
    assert status["EventList"] == "start"
    item = ami.wait(lambda m: m.name == "Status")
    assert item["BridgeID"] and item["Type"] == "PJSIP"
    reply = ami.request("Hangup", Channel=sim.resolve("phone 8001")[0])
    assert reply["Message"] == "Channel Hungup"
    sim.wait_record("agi_closed", 3, call="c1")
    assert out == {"dial": "200 result=-1", "status": "200 result=1 (ANSWER)"}
    agent = sim.records("hung_up", extension="8001")[0]
    assert (agent.get("by"), agent.get("cause")) == ("ami", 0)
    assert ami.request("Hangup", Channel="PJSIP/8001-ffffffff")["Message"] == "No such channel"


@pytest.mark.parametrize("phone,reason", [({"answer_after_ms": 300}, "4"), ({"busy": True}, "5"),
                                          ({"no_answer": True}, "3")])
def test_originate_to_a_desk_phone_then_context_opens_fastagi(make, phone, reason):
    edge, sim = make({"roam": lambda send, env: send("HANGUP")}, {**E1, "phones": {"8001": phone}})
    ami = Ami(sim.ami_port)
    ami.request("Originate", Channel="PJSIP/8001", Context="roam", Exten="13800138000", Priority="1",
                Async="true", Timeout="5000", CallerID="Bank <95555>", Variable="CUSTOMER_ID=42")
    response = ami.wait(lambda m: m.name == "OriginateResponse")
    assert response["Reason"] == reason
    if reason == "4":
        assert response["Channel"].startswith("PJSIP/8001-")
        assert response.get_all(f"ChanVariable({response['Channel']})") == ["ACC_TAG=", "CUSTOMER_ID=42"]
        sim.wait_for(lambda: edge.envs, 2)
        assert edge.envs[0]["agi_network_script"] == "roam" and edge.envs[0]["agi_arg_1"] == "13800138000"
    else:
        assert response["Channel"] == "PJSIP/8001" and response["Uniqueid"] == "<unknown>"
        hangup = ami.wait(lambda m: m.name == "Hangup")
        assert hangup["Cause"] == {"5": "17", "3": "19"}[reason] and hangup.chan_variables["CUSTOMER_ID"] == "42"


def test_originate_local_fixture_far_ends(make):
    edge, sim = make({}, {})
    ami = Ami(sim.ami_port)
    ami.request("Originate", Channel="Local/100@sim-trunk", Application="Wait", Data="10", Async="true",
                CallerID="Acceptance <5551000>")
    ok = ami.wait(lambda m: m.name == "OriginateResponse")
    assert ok["Reason"] == "4" and ok["Channel"].endswith(";1")
    dtmf = ami.wait(lambda m: m.name == "DTMFEnd")
    assert dtmf["Channel"].endswith(";1") and dtmf["Direction"] == "Received" and dtmf["DurationMs"] == "100"
    ami.wait(lambda m: m.name == "Hangup" and m["Channel"].endswith(";1"))
    causes = {m["Channel"][-2:]: m["Cause"] for m in ami.messages if m.name == "Hangup"}
    assert causes[";1"] == "16"
    ami.request("Originate", Channel="Local/400@sim-trunk", Application="Wait", Data="10", Async="true",
                Timeout="3000", ActionID="x")
    late = ami.wait(lambda m: m.name == "OriginateResponse" and m["Reason"] != "4")
    assert late["Reason"] == "3"
    ami.request("Originate", Channel="Bogus/123", Application="Wait", Data="2", Async="true")
    bogus = ami.wait(lambda m: m.name == "OriginateResponse" and m["Channel"] == "Bogus/123")
    assert bogus["Reason"] == "0" and bogus["Response"] == "Failure"


def test_pickup_takes_a_ringing_call(make):
    out: dict[str, str] = {}

    def incoming(send, env):
        out["dial"] = send("EXEC Dial PJSIP/8001,30")
        out["status"] = send("GET VARIABLE DIALSTATUS")

    def dial(send, env):
        out["pickup"] = send("EXEC PickupChan PJSIP/8001")

    edge, sim = make({"incoming": incoming, "dial": dial},
                     {**E1, "phones": {"8001": {"no_answer": True},
                                       "8003": {"dials": [{"at_ms": 1000, "digits": "**8001", "hangup_after_ms": 3000}]}},
                      "calls": [{"id": "c1", "did": "1"}]})
    sim.wait_record("agi_closed", 5, call="c1")
    bridged = sim.records("bridged", call="c1")[0]
    assert bridged.get("extensions") == ["8003"] and out["status"] == "200 result=1 (ANSWER)"
    assert sim.records("hung_up", extension="8001")[0].get("cause") == 26
    assert sim.ever_heard("customer of c1", "phone 8003")


def test_dial_a_given_dahdi_channel(make):
    out: dict[str, str] = {}

    def dial(send, env):
        out["dial"] = send("EXEC Dial DAHDI/3/13800138000,10")
        out["status"] = send("GET VARIABLE DIALSTATUS")

    edge, sim = make({"dial": dial}, {**E1, "outside": [{"number": "*", "answer_after_ms": 500, "hangup_after_ms": 1000}],
                                      "phones": {"8001": {"dials": [{"at_ms": 0, "digits": "13800138000"}]}}})
    sim.wait_record("agi_closed", 5)
    assert out == {"dial": "200 result=-1", "status": "200 result=1 (ANSWER)"}
    leg = sim.records("hung_up", role="outside")[0]
    assert (leg.get("channel"), leg.get("by"), leg.get("cause")) == ("DAHDI/3-1", "outside", 16)
