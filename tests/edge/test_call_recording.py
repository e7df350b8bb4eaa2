"""The core's recording policy (REC-1): always / never / on demand, per extension and direction."""
from __future__ import annotations

from edge.commands import EncodeRecording, MuteRecording, StartRecording, StopRecording
from edge.events import CommandDone, ExtensionDialled, RecordingFailed, RecordingToggle
from tests.edge.conftest import BRANCH, branch


def of(kind, commands):
    return [c for c in commands if isinstance(c, kind)]


def agents_with(**policies):
    """BRANCH's agents with ``id=(inbound, outbound)`` record policies."""
    agents = []
    for agent in branch()["agents"]:
        agent = dict(agent)
        if agent["id"] in policies:
            inbound, outbound = policies[agent["id"]]
            agent.update(record_inbound=inbound, record_outbound=outbound)
        agents.append(agent)
    return agents


def test_always_records_from_the_answer_and_encodes_after_the_hangup(make):
    h = make(agents=agents_with(wang=("always", "never")))
    h.offer("c1")
    assert of(StartRecording, h.log) == []  # ringing is not recorded
    commands = h.answer("c1")
    assert of(StartRecording, commands) == [StartRecording("c1", "DAHDI/2-1", "c1-1.wav", 1, "wang")]
    h.clock.advance(30)
    commands = h.agent_hangs_up("c1", talk_s=30)
    [encode] = of(EncodeRecording, commands)
    assert (encode.call_id, encode.file, encode.leg) == ("c1", "c1-1.wav", 1)
    assert encode.meta["agent_id"] == "wang" and encode.meta["agent_name"] == "王芳"
    assert encode.meta["caller"] == "13800138000" and encode.meta["disposition"] == "answered"
    assert encode.meta["talk_s"] == 30 and encode.meta["direction"] == "inbound"


def test_never_records_nothing_and_refuses_a_toggle(make):
    h = make(agents=agents_with(wang=("never", "never")))
    h.offer("c1")
    h.answer("c1")
    commands = h.send(RecordingToggle("wang"))
    assert of(StartRecording, h.log) == []
    assert h.notifies("recording.refused", commands)[0]["reason"] == \
        "recording is off for this extension"
    assert of(EncodeRecording, h.agent_hangs_up("c1")) == []


def test_on_demand_toggles_make_one_leg_each(make):
    h = make(agents=agents_with(wang=("on_demand", "never")))
    h.offer("c1")
    assert of(StartRecording, h.answer("c1")) == []
    assert of(StartRecording, h.send(RecordingToggle("wang"))) == \
        [StartRecording("c1", "DAHDI/2-1", "c1-1.wav", 1, "wang")]
    assert of(StopRecording, h.send(RecordingToggle("wang", on=False))) == \
        [StopRecording("c1", "DAHDI/2-1", "c1-1.wav")]
    assert of(StopRecording, h.send(RecordingToggle("wang", on=False))) == []  # already off
    assert of(StartRecording, h.send(RecordingToggle("wang")))[0].file == "c1-2.wav"
    files = [e.file for e in of(EncodeRecording, h.caller_hangs_up("c1"))]
    assert files == ["c1-1.wav", "c1-2.wav"]


def test_toggle_without_an_answered_call_is_refused(make):
    h = make()
    commands = h.send(RecordingToggle("wang"))
    assert h.notifies("recording.refused", commands)[0]["reason"] == "no answered call"


def test_a_failed_mixmonitor_leg_is_not_encoded(make):
    h = make()
    h.offer("c1")
    h.answer("c1")
    commands = h.send(RecordingFailed("c1", "c1-1.wav", "No such channel"))
    assert h.notifies("recording.failed", commands)[0]["reason"] == "No such channel"
    assert of(EncodeRecording, h.agent_hangs_up("c1")) == []


def test_outbound_dial_records_by_the_outbound_policy(make):
    h = make(agents=agents_with(wang=("never", "always"), li=("always", "never")))
    commands = h.send(ExtensionDialled("d1", "PJSIP/8001-0000000a", "8001", "13800138000"))
    assert of(StartRecording, commands) == [StartRecording("d1", "PJSIP/8001-0000000a", "d1-1.wav",
                                                           1, "wang")]
    commands = h.send(CommandDone("d1", "DialOut", status="ANSWER", talk_s=12))
    assert [e.meta["direction"] for e in of(EncodeRecording, commands)] == ["outbound"]
    commands = h.send(ExtensionDialled("d2", "PJSIP/8002-0000000b", "8002", "13800138000"))
    assert of(StartRecording, commands) == []


def test_recording_can_be_switched_off_for_the_whole_box(make):
    data = branch()
    data["recording"] = {"enabled": False}
    h = make(data=data)
    h.offer("c1")
    assert of(StartRecording, h.answer("c1")) == []


def test_mute_only_touches_a_running_recording(make):
    h = make()
    h.offer("c1")
    h.answer("c1")
    call = h.core.sb.calls["c1"]
    h.core.recording.mute(call, True)
    h.core.recording.mute(call, True)
    h.core.recording.mute(call, False)
    out = h.core.sb.out
    assert of(MuteRecording, out) == [MuteRecording("c1", "DAHDI/2-1", True),
                                      MuteRecording("c1", "DAHDI/2-1", False)]
    assert BRANCH["agents"]  # the shared branch is untouched by agents_with
