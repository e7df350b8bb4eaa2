"""DynamicFeatures through the wire: a desk phone keying ``*3`` in a bridged call runs the edge's
``record-toggle`` FastAGI on its own channel, and the call goes on. A fake FastAGI edge Dials the
agent for the caller; AMI is read raw.

Timings are scripted milliseconds at ``time_scale`` 0.01 (a scripted second is 10 real ms).
"""
from __future__ import annotations

import threading
from typing import Callable

import pytest

from hil.pbx.errors import ScriptError
from hil.pbx.features import parse_applicationmap
from hil.pbx.simulator import PbxSimulator
from tests.hil.wire_peers import AmiProbe, ScriptedEdge

CALLER = "DAHDI/1-1"
E1 = {"trunks": [{"profile": "e1", "channels": "1-4"}]}


class Edge(ScriptedEdge):
    """``incoming`` Dials 8001 for the caller, then reads DIALSTATUS; ``record-toggle`` keeps its
    env and holds the session until ``release`` is set."""

    def __init__(self, agi_server, extra: dict[str, Callable] | None = None) -> None:
        self.replies: dict[str, str] = {}
        self.release = threading.Event()
        super().__init__({"incoming": self.incoming, "record-toggle": self.record_toggle,
                          **(extra or {})}, agi_server)

    def incoming(self, send, env) -> None:
        self.replies["dial"] = send("EXEC Dial PJSIP/8001,20")
        self.replies["status"] = send("GET VARIABLE DIALSTATUS")

    def record_toggle(self, send, env) -> None:
        self.replies["feature"] = send("GET VARIABLE DYNAMIC_FEATURENAME")
        self.release.wait(5)

    def toggles(self, script: str = "record-toggle") -> list[dict[str, str]]:
        return [e for e in self.envs if e["agi_network_script"] == script]


Ami = AmiProbe


@pytest.fixture
def make(agi_server):
    made = []

    def build(phones: dict, extra: dict | None = None, **options) -> tuple[Edge, PbxSimulator, Ami]:
        edge = Edge(agi_server, extra)
        world = {**E1, "phones": phones, "calls": [{"id": "c1", "did": "1"}]}
        sim = PbxSimulator(world, agi_port=edge.port, time_scale=0.01, **options).start(scripts=False)
        made.append((edge, sim))
        ami = Ami(sim.ami_port)
        sim.start_world()
        return edge, sim, ami

    yield build
    for edge, sim in made:
        edge.release.set()
        sim.stop()


def agent(sim: PbxSimulator, extension: str = "8001") -> str:
    return next(c.name for c in sim.channels(live=False) if c.extension == extension)


def end_call(edge: Edge, sim: PbxSimulator) -> None:
    """The agent hangs up: the caller's Dial returns ANSWER, as after any answered call."""
    sim.hang_up("phone 8001", by="agent")
    sim.wait_record("agi_closed", 3, channel=CALLER)
    assert edge.replies["dial"] == "200 result=-1" and edge.replies["status"] == "200 result=1 (ANSWER)"


def test_star_3_runs_record_toggle_on_the_agents_channel_and_the_call_goes_on(make):
    edge, sim, ami = make({"8001": {"answer_after_ms": 200, "dtmf": [{"at_ms": 3000, "digits": "*3"}]}})
    assert sim.wait_for(edge.toggles, 3)
    env, phone = edge.toggles()[0], agent(sim)
    live = next(c for c in sim.channels() if c.name == phone)
    assert (env["agi_channel"], env["agi_uniqueid"], env["agi_callerid"]) == (phone, live.uniqueid, "8001")
    assert env["agi_request"].endswith("/record-toggle") and "agi_arg_1" not in env
    sim.wait_for(lambda: "feature" in edge.replies, 3)
    assert edge.replies["feature"] == "200 result=1 (edge-record)"
    # suspended, not out of the bridge: neither side hears the other, nobody left the bridge
    assert live.bridge is not None and phone not in sim.hears(CALLER) and CALLER not in sim.hears(phone)
    started = sim.records("feature", what="started")[0]
    assert (started.get("code"), started.get("channel"), started.get("call")) == ("*3", phone, "c1")

    edge.release.set()
    done = sim.wait_record("feature", 3, what="returned")
    assert done.get("agistatus") == "SUCCESS"
    assert sim.wait_for(lambda: phone in sim.hears(CALLER) and CALLER in sim.hears(phone), 3)
    assert not sim.records("unbridged") and not sim.records("hung_up")
    assert edge.hangups == 0

    end_call(edge, sim)
    ami.wait(lambda m: m.name == "Hangup" and m["Channel"] == CALLER)
    def values(variable: str) -> list[str]:
        return [m["Value"] for m in ami.named("VarSet", Channel=phone, Variable=variable)]
    assert values("DYNAMIC_WHO_ACTIVATED") == [phone] and values("AGISTATUS") == ["SUCCESS"]
    assert not ami.named("Newexten", Channel=phone, Application="AGI")  # pbx_exec keeps the CEP
    assert len(ami.named("BridgeLeave", Channel=phone)) == 1  # only when the call ended
    assert not ami.named("Hold", Channel=phone)


def test_unknown_codes_do_nothing_and_the_transfer_keys_still_work(make):
    # 8001: *9 (no such feature), then *2 8002 (attended transfer); *3 during the consultation is
    # atxferthreeway (the applicationmap hooks are gone while the transfer personality lasts);
    # *2 completes. Then 8002, now with the caller, keys *3: the applicationmap is back.
    keys = [(1000, "*9"), (3000, "*28002"), (7000, "*3"), (10_000, "*2")]
    edge, sim, ami = make({
        "8001": {"answer_after_ms": 200, "dtmf": [{"at_ms": at, "digits": d} for at, d in keys]},
        "8002": {"answer_after_ms": 300, "dtmf": [{"at_ms": 8000, "digits": "*3"}]}})
    sim.wait_record("atxfer", 3, what="completed")
    assert sim.records("atxfer", what="ignored")[0].get("result") == "threeway is not modelled"
    assert sim.wait_for(edge.toggles, 3)
    assert edge.toggles()[0]["agi_channel"] == agent(sim, "8002") and len(edge.toggles()) == 1
    assert [r.get("channel") for r in sim.records("feature", what="started")] == [agent(sim, "8002")]
    assert [r.get("digit") for r in sim.records("dtmf", channel=agent(sim))][:2] == ["*", "9"]
    edge.release.set()
    sim.wait_record("feature", 3, what="returned")
    assert sim.wait_for(lambda: agent(sim, "8002") in sim.hears(CALLER), 3)
    sim.hang_up("phone 8002", by="agent")
    sim.wait_record("agi_closed", 3, channel=CALLER)
    assert edge.replies["status"] == "200 result=1 (ANSWER)"


def test_the_agent_hanging_up_during_the_feature_ends_the_call(make):
    edge, sim, ami = make({"8001": {"answer_after_ms": 200, "dtmf": [{"at_ms": 2000, "digits": "*3"}]}})
    sim.wait_for(lambda: "feature" in edge.replies, 3)
    sim.hang_up("phone 8001", by="agent")
    sim.wait_record("agi_closed", 3, channel=CALLER)
    assert edge.replies["status"] == "200 result=1 (ANSWER)"
    edge.release.set()
    assert sim.wait_record("feature", 3, what="returned").get("agistatus") == "HANGUP"
    assert sim.wait_for(sim.idle, 3)


def test_the_applicationmap_is_the_constructors(make):
    edge, sim, ami = make({"8001": {"answer_after_ms": 200, "dtmf": [{"at_ms": 1000, "digits": "*3"},
                                                                     {"at_ms": 3000, "digits": "#7"}]}},
                          extra={"notes": lambda send, env: None}, applicationmap={"#7": "notes"})
    sim.wait_record("feature", 3, what="returned")
    assert [e["agi_network_script"] for e in edge.envs] == ["incoming", "notes"]
    assert sim.records("feature", what="started")[0].get("name") == "edge-notes"
    end_call(edge, sim)


@pytest.mark.parametrize("spec,message", [
    ({"*2": "x"}, r"applicationmap\['\*2'\]: clashes with the feature code \*2"),
    ({"*3": "x", "*33": "y"}, r"applicationmap\['\*33'\]: clashes with the feature code \*3"),
    ({"*3": ("x", "peer")}, r"applicationmap\['\*3'\]: activate_on 'peer' is not modelled"),
    ({"*x": "x"}, r"applicationmap\['\*x'\]: expected DTMF keys"),
    ({"*3": ()}, r"applicationmap\['\*3'\]: expected a script name"),
])
def test_bad_applicationmaps_name_the_entry(spec, message):
    with pytest.raises(ScriptError, match=message):
        parse_applicationmap(spec)
