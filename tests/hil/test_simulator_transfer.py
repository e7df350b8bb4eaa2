"""Attended transfer (AMI Atxfer) and hold through the wire: the driver's AMI client against the
simulator, a fake FastAGI edge running ``EXEC Dial PJSIP/8001`` for the caller.

Timings are scripted milliseconds at ``time_scale`` 0.01 (a scripted second is 10 real ms).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import BinaryIO

import pytest

from drivers.asterisk.ami import AmiClient
from drivers.asterisk.codec import AmiMessage
from drivers.asterisk.errors import AmiActionError
from drivers.asterisk.session import AmiSettings
from hil.pbx.errors import ScriptError
from hil.pbx.scripts import World
from hil.pbx.simulator import PbxSimulator

SCALE = 0.01
CALLER = "DAHDI/1-1"
TRANSFER_CONTEXT = "from-internal"


def scripted(ms: float) -> None:
    time.sleep(ms / 1000 * SCALE)


class Call:
    """The edge's side of c1: answer, Dial the agent, then read DIALSTATUS and ANSWEREDTIME."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}
        self.done = threading.Event()

    def serve(self, conn: socket.socket, reader: BinaryIO) -> None:
        while reader.readline() not in (b"\n", b""):
            pass

        def send(name: str, command: str) -> None:
            conn.sendall((command + "\n").encode())
            while (line := reader.readline().decode().rstrip("\n")) == "HANGUP":
                pass
            self.replies[name] = line
        send("answer", "ANSWER")
        send("dial", "EXEC Dial PJSIP/8001,20")
        send("status", "GET VARIABLE DIALSTATUS")
        send("talk", "GET VARIABLE ANSWEREDTIME")
        self.done.set()
        send("hangup", "HANGUP")

    def answered_s(self) -> int:
        return int(self.replies["talk"].split("(")[1].rstrip(")"))


class Rig:
    def __init__(self, sim: PbxSimulator, ami: AmiClient, call: Call) -> None:
        self.sim, self.ami, self.call = sim, ami, call
        self.events: list[AmiMessage] = []
        ami.subscribe("*", self.events.append)

    def agent(self, extension: str = "8001") -> str:
        return next(c.name for c in self.sim.channels(live=False) if c.extension == extension)

    def named(self, name: str, **match: str) -> list[AmiMessage]:
        return [e for e in self.events if e.name == name and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, name: str, **match: str) -> AmiMessage:
        found = self.sim.wait_for(lambda: self.named(name, **match), 3)
        assert found, f"no {name} {match}"
        return found[0]


@pytest.fixture
def rig(agi_server):
    made = []

    def start(phones: dict, time_scale: float = SCALE) -> Rig:
        call = Call()
        edge = agi_server(call.serve)
        world = {"trunks": [{"profile": "e1", "channels": "1-4"}], "phones": phones,
                 "calls": [{"id": "c1", "caller": "13800138000", "did": "88880000"}]}
        sim = PbxSimulator(world, agi_port=edge.port, time_scale=time_scale).start()
        ami = AmiClient(AmiSettings(port=sim.ami_port, username="acceptance", secret="acceptance",
                                    keepalive_s=0.0, action_timeout_s=3.0))
        made.append((sim, ami))
        ami.login()
        rig = Rig(sim, ami, call)
        sim.wait_record("bridged", 3, call="c1", extensions=["8001"])
        return rig

    yield start
    for sim, ami in made:
        ami.close()
        sim.stop()


def span_ms(sim: PbxSimulator, listener: str, speaker: str) -> list[tuple[float, float]]:
    return [(s.start_ms, s.end_ms if s.end_ms is not None else float("inf"))
            for s in sim.audio_history() if s.listener == listener and s.speaker == speaker]


def test_atxfer_completes_when_the_agent_hangs_up_during_the_consultation(rig):
    r = rig({"8001": {"answer_after_ms": 200}, "8002": {"answer_after_ms": 1000, "hangup_after_ms": 10_000}})
    sim, agent = r.sim, r.agent()
    scripted(5000)
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("atxfer", 3, what="consulting")
    target = r.agent("8002")
    assert sim.hears(CALLER) == {"moh:default"}
    assert sim.hears(agent) == {target} and sim.hears(target) == {agent}
    scripted(2000)
    sim.hang_up("phone 8001", by="agent")
    done = sim.wait_record("atxfer", 3, what="completed")
    assert sim.hears(CALLER) == {target} and sim.hears(target) == {CALLER}
    assert sim.records("bridged", call="c1", extensions=["8002"])[0].seq < done.seq
    assert not r.call.done.is_set()  # the caller's Dial goes on, now with 8002

    # the caller heard the music through the whole consultation, never the consultation itself
    [(consult_from, consult_to)] = span_ms(sim, agent, target)
    [(moh_from, moh_to)] = span_ms(sim, CALLER, "moh:default")
    assert moh_from <= consult_from and consult_to <= moh_to
    assert all(end <= moh_from for _, end in span_ms(sim, CALLER, agent))
    assert all(start >= moh_to for start, _ in span_ms(sim, CALLER, target))

    hold = r.wait_event("Hold", Channel=agent)
    assert hold.get("MusicClass") is None
    assert r.wait_event("MusicOnHoldStart", Channel=CALLER)["Class"] == "default"
    begin = r.wait_event("DialBegin", DestChannel=target)
    assert begin["Channel"].startswith(f"Local/8002@{TRANSFER_CONTEXT}-") and begin["Channel"].endswith(";2")
    assert begin["DialString"] == "8002" and begin["Linkedid"] == hold["Linkedid"]
    assert r.wait_event("DialEnd", DestChannel=target)["DialStatus"] == "ANSWER"
    assert not r.named("DialEnd", Channel=agent)  # the transferer dials nobody itself

    event = r.wait_event("AttendedTransfer")
    assert [k for k, _ in event.headers if not k.startswith(("OrigTransferer", "SecondTransferer",
                                                             "Transferee", "TransferTarget"))] == [
        "Event", "Privilege", "Result", "OrigBridgeUniqueid", "OrigBridgeType", "OrigBridgeTechnology",
        "OrigBridgeCreator", "OrigBridgeName", "OrigBridgeNumChannels", "OrigBridgeVideoSourceMode",
        "SecondBridgeUniqueid", "SecondBridgeType", "SecondBridgeTechnology", "SecondBridgeCreator",
        "SecondBridgeName", "SecondBridgeNumChannels", "SecondBridgeVideoSourceMode", "IsExternal",
        "DestType", "DestBridgeUniqueid"]
    assert (event["Result"], event["IsExternal"], event["DestType"]) == ("Success", "No", "Bridge")
    assert event["OrigTransfererChannel"] == event["SecondTransfererChannel"] == agent
    assert (event["TransfereeChannel"], event["TransferTargetChannel"]) == (CALLER, target)
    assert event["DestBridgeUniqueid"] == event["OrigBridgeUniqueid"] != event["SecondBridgeUniqueid"]
    assert (event["OrigBridgeNumChannels"], event["SecondBridgeNumChannels"]) == ("2", "0")
    assert event.get_all("TransfereeChanVariable") == ["ACC_TAG=", "CUSTOMER_ID="]

    # 8002 hangs up after its talk time: the bridge ends and only now the caller's Dial returns
    assert r.call.done.wait(3)
    assert r.call.replies["dial"] == "200 result=-1"
    assert r.call.replies["status"] == "200 result=1 (ANSWER)"
    assert 16 <= r.call.answered_s() <= 21  # 8001 from its answer, then 8002 until it hung up


@pytest.mark.parametrize("phone,status", [({"no_answer": True}, "CANCEL"), ({"busy": True}, "BUSY")])
def test_atxfer_to_a_target_that_does_not_answer_puts_the_agent_back(rig, phone, status):
    r = rig({"8001": {"answer_after_ms": 200}, "8002": phone})
    sim, agent = r.sim, r.agent()
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("atxfer", 3, what="rebridged")
    assert sim.hears(CALLER) == {agent} and sim.hears(agent) == {CALLER}
    r.wait_event("Unhold", Channel=agent)
    r.wait_event("MusicOnHoldStop", Channel=CALLER)
    end = r.wait_event("DialEnd", DialStatus=status)
    assert end["Channel"].startswith("Local/8002@") and end["DestChannel"].startswith("PJSIP/8002-")
    assert not r.named("AttendedTransfer")  # bridge_basic.c publishes nothing for a rebridge
    assert not [c for c in sim.channels() if c.tech == "Local" or c.extension == "8002"]
    assert not r.call.done.is_set()
    sim.hang_up("phone 8001", by="agent")
    assert r.call.done.wait(3) and r.call.replies["status"] == "200 result=1 (ANSWER)"


def test_atxfer_refusals_carry_asterisks_messages(rig):
    r = rig({"8001": {"answer_after_ms": 200}, "8002": {}})
    with pytest.raises(AmiActionError) as missing:
        r.ami.atxfer("PJSIP/8001-ffffffff", "8002", TRANSFER_CONTEXT)
    assert missing.value.message == "Channel specified does not exist"
    with pytest.raises(AmiActionError) as no_exten:
        r.ami.atxfer(r.agent(), "", TRANSFER_CONTEXT)
    assert no_exten.value.message == "No extension specified"

    r.ami.atxfer(r.agent(), "9999", TRANSFER_CONTEXT)  # no such extension: queued, then undone
    r.sim.wait_record("atxfer", 3, what="invalid")
    r.wait_event("Unhold", Channel=r.agent())
    assert [e.name for e in r.events if e.name in ("Hold", "Unhold")] == ["Hold", "Unhold"]
    assert r.sim.hears(CALLER) == {r.agent()}
    digits = r.sim.wait_for(lambda: (lambda d: d if len(d) == 6 else None)(
        [e["Digit"] for e in r.named("DTMFEnd", Channel=r.agent())]), 3)
    assert digits == list("*29999")  # queued frames: the ones after "9" reach the bridge unused
    assert {e["DurationMs"] for e in r.named("DTMFEnd")} == {"0"} and not r.named("DTMFBegin")


def test_the_transferee_hanging_up_while_the_target_rings_fails_the_transfer(rig):
    r = rig({"8001": {"answer_after_ms": 200}, "8002": {"no_answer": True}})
    sim, agent = r.sim, r.agent()
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("atxfer", 3, what="started")
    scripted(1000)
    sim.hang_up(CALLER)
    sim.wait_record("atxfer", 3, what="failed")
    event = r.wait_event("AttendedTransfer")
    assert (event["Result"], event["DestType"]) == ("Fail", "Fail")
    assert event.get("TransfereeChannel") is None and event["TransferTargetChannel"].startswith("Local/8002@")
    assert r.wait_event("DialEnd", DialStatus="CANCEL")["DestChannel"].startswith("PJSIP/8002-")
    assert sim.wait_for(lambda: not sim.channels(), 3)


def test_hanging_up_while_the_target_rings_is_a_blond_transfer(rig):
    r = rig({"8001": {"answer_after_ms": 200}, "8002": {"answer_after_ms": 4000, "hangup_after_ms": 3000}})
    sim, agent = r.sim, r.agent()
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("rang", 3, extension="8002")
    sim.hang_up("phone 8001", by="agent")
    sim.wait_record("atxfer", 3, what="blond")
    ringing = next(c.name for c in sim.channels() if c.name.endswith(";1"))
    assert sim.hears(CALLER) == {"tone:ringback", ringing}  # the Local half still stands for 8002
    event = r.wait_event("AttendedTransfer")
    assert event["Result"] == "Success" and event["TransferTargetChannel"].endswith(";1")
    sim.wait_record("atxfer", 3, what="resumed")
    assert sim.hears(CALLER) == {r.agent("8002")}
    assert r.call.done.wait(3) and r.call.replies["status"] == "200 result=1 (ANSWER)"


def test_swap_with_playdtmf_receive_toggles_who_is_on_hold(rig):
    # featuredigittimeout is a scripted second: at 0.1 the two PlayDTMF round trips fit in it
    r = rig({"8001": {"answer_after_ms": 200}, "8002": {"answer_after_ms": 500}}, time_scale=0.1)
    sim, agent = r.sim, r.agent()
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("atxfer", 3, what="consulting")
    target = r.agent("8002")
    r.ami.play_dtmf(agent, "*4", receive=True)
    sim.wait_record("atxfer", 3, what="swapped", result="with transferee")
    assert sim.hears(agent) == {CALLER} and sim.hears(target) == {"moh:default"}
    r.ami.play_dtmf(agent, "*4", receive=True)
    assert sim.wait_for(lambda: len(sim.records("atxfer", what="swapped")) == 2, 3)
    assert sim.hears(agent) == {target} and sim.hears(CALLER) == {"moh:default"}
    holds = sim.wait_for(lambda: (lambda h: h if len(h) == 5 else None)(
        [e.name for e in r.events if e.name in ("Hold", "Unhold")]), 3)
    assert holds == ["Hold", "Hold", "Unhold", "Hold", "Unhold"]
    r.ami.play_dtmf(agent, "*2", receive=True)  # atxfercomplete: the agent is dropped
    sim.wait_record("atxfer", 3, what="completed")
    assert sim.hears(CALLER) == {target}
    assert sim.records("hung_up", channel=agent)[0].get("by") == "system"


def test_a_desk_phone_holds_and_the_caller_hears_music(rig):
    r = rig({"8001": {"answer_after_ms": 200, "holds": [{"after_answer_ms": 2000, "for_ms": 3000}]}})
    sim, agent = r.sim, r.agent()
    on = sim.wait_record("hold", 3, on=True)
    assert (on.get("channel"), on.get("moh_class"), on.get("peers")) == (agent, "default", [CALLER])
    assert sim.hears(CALLER) == {"moh:default"} and sim.hears(agent) == set()
    hold = r.wait_event("Hold", Channel=agent)
    assert hold["MusicClass"] == "default" and hold["ChannelStateDesc"] == "Up"
    assert r.wait_event("MusicOnHoldStart", Channel=CALLER)["Class"] == "default"
    off = sim.wait_record("hold", 3, on=False)
    assert off.t_ms - on.t_ms >= 2000
    r.wait_event("Unhold", Channel=agent)
    r.wait_event("MusicOnHoldStop", Channel=CALLER)
    assert sim.hears(CALLER) == {agent} and sim.hears(agent) == {CALLER}
    [(moh_from, moh_to)] = span_ms(sim, CALLER, "moh:default")
    assert all(end <= moh_from or start >= moh_to for start, end in span_ms(sim, CALLER, agent))


def test_the_consultation_goes_on_when_the_transferee_hangs_up(rig):
    r = rig({"8001": {"answer_after_ms": 200}, "8002": {"answer_after_ms": 300}})
    sim, agent = r.sim, r.agent()
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("atxfer", 3, what="consulting")
    target = r.agent("8002")
    sim.hang_up(CALLER)
    sim.wait_record("atxfer", 3, what="failed")
    assert r.call.done.wait(3) and r.call.replies["status"] == "200 result=1 (ANSWER)"
    assert sim.hears(agent) == {target} and sim.hears(target) == {agent}  # bridge_basic: a normal call now
    assert not r.named("AttendedTransfer")
    sim.hang_up("phone 8001", by="agent")
    assert sim.wait_record("hung_up", 3, channel=target).get("by") == "system"


def test_a_scripted_desk_phone_swaps_with_star_4(rig):
    r = rig({"8001": {"answer_after_ms": 200, "dtmf": [{"at_ms": 20_000, "digits": "*4"}]},
             "8002": {"answer_after_ms": 300}})
    sim, agent = r.sim, r.agent()
    r.ami.atxfer(agent, "8002", TRANSFER_CONTEXT)
    sim.wait_record("atxfer", 3, what="consulting")
    sim.wait_record("atxfer", 3, what="swapped", result="with transferee")
    assert sim.hears(agent) == {CALLER} and sim.hears(r.agent("8002")) == {"moh:default"}
    r.wait_event("DTMFBegin", Channel=agent, Digit="4")
    assert [e["Digit"] for e in r.named("DTMFBegin", Channel=agent)] == ["*", "4"]


@pytest.mark.parametrize("spec,message", [
    ({"holds": [{"for_ms": 3000}]}, "phones.8001.holds[0].after_answer_ms: required"),
    ({"holds": [{"after_answer_ms": 1, "forever": True}]}, "phones.8001.holds[0].forever: unknown key"),
    ({"rings": [{"dtmf": [{"at_ms": 1, "digits": "*x"}]}]}, "phones.8001.rings[0].dtmf[0].digits: expected DTMF"),
])
def test_bad_hold_and_key_scripts_name_the_key(spec, message):
    with pytest.raises(ScriptError, match=message.replace("[", r"\[").replace("]", r"\]")):
        World.from_dict({"phones": {"8001": spec}})
