"""INB-8 in the core: away agents with roaming on, and out-of-hours on-call mobiles."""
from __future__ import annotations

import json

import pytest

from edge.commands import Hangup, Play, RingAgent
from edge.config import parse_config
from edge.errors import ConfigError
from edge.events import AgentAnswered, AgentSetAway
from tests.edge.conftest import branch
from tests.edge.test_hours_routing import CALENDAR, at


def roaming_branch(**changes):
    data = branch(**changes)
    for agent in data["agents"]:
        if agent["id"] in ("wang", "li"):
            agent.update(mobile="1390000000" + ("1" if agent["id"] == "wang" else "2"),
                         roam_when_away=True)
    return data


def test_a_vip_whose_owner_is_away_rings_the_owners_mobile_with_the_callers_number(make):
    h = make(data=roaming_branch(routing={"vip": [{"number": "13800138000", "owner": "wang"}]}))
    h.send(AgentSetAway("wang", True))
    [ring] = h.rings(h.offer("c1"))
    assert ring == RingAgent("c1", "8001", "DAHDI/g0/13900000001", 25, caller_id="13800138000")
    h.send(AgentAnswered("c1", "", peer_channel="DAHDI/3-1", peer_uniqueid="1795392000.9"))
    assert h.state("wang") == "talking"
    h.agent_hangs_up("c1", talk_s=30)
    record = h.cdr("c1")
    assert (record["rule"], record["agent_id"], record["disposition"]) == ("vip_roam", "wang", "answered")
    assert json.loads(record["legs"]) == [{"kind": "mobile", "agent_id": "wang", "number": "13900000001",
                                           "channel": "DAHDI/3-1", "uniqueid": "1795392000.9"}]
    assert h.state("wang") == "away"  # back to what they chose


def test_an_away_agent_without_roaming_is_skipped_as_before(make):
    h = make(routing={"vip": [{"number": "13800138000", "owner": "wang"}]})
    h.send(AgentSetAway("wang", True))
    assert [r.extension for r in h.rings(h.offer("c1"))] == ["8002"]


def test_the_company_number_is_shown_where_the_trunk_refuses_the_callers(make):
    data = roaming_branch(routing={"vip": [{"number": "13800138000", "owner": "wang"}]})
    data["roaming"] = {"present": "company", "company_number": "075583210000"}
    h = make(data=data)
    h.send(AgentSetAway("wang", True))
    assert h.rings(h.offer("c1"))[0].caller_id == "075583210000"


def out_of_hours_branch():
    data = roaming_branch()
    data["calendars"] = [CALENDAR]
    data["groups"][0].update(calendar="branch", out_of_hours="roam", on_call=["li", "wang"])
    return data


def test_out_of_hours_rings_the_on_call_mobiles_in_order_then_closes(make):
    h = make(data=out_of_hours_branch(), start=at("2026-10-01 10:00"))
    assert [r.dial_string for r in h.rings(h.offer("c1"))] == ["DAHDI/g0/13900000002"]
    assert [r.dial_string for r in h.rings(h.no_answer("c1"))] == ["DAHDI/g0/13900000001"]
    commands = h.no_answer("c1")
    assert h.rings(commands) == [] and Play("c1", "cc/closed-holiday") in commands
    assert [c for c in commands if isinstance(c, Hangup)]
    assert h.cdr("c1")["disposition"] == "closed"


def test_roaming_needs_a_mobile():
    data = branch()
    data["agents"][0]["roam_when_away"] = True
    with pytest.raises(ConfigError, match=r"agents\[0\]\.roam_when_away: needs the agent's mobile"):
        parse_config(data)


def test_a_queue_call_with_no_free_desk_rings_an_away_roaming_agents_mobile(make):
    h = make(data=roaming_branch())
    h.send(AgentSetAway("wang", True))
    h.offer("c0")
    h.answer("c0")                    # li (8002) takes it
    h.offer("c1")
    h.answer("c1")                    # zhang (8003) takes it
    [ring] = h.rings(h.offer("c2"))   # desks all busy: wang's mobile, not the queue
    assert (ring.extension, ring.dial_string) == ("8001", "DAHDI/g0/13900000001")
    assert h.core.sb.calls["c2"].rule == "roam"
    h.no_answer("c2")                 # the mobile did not answer: now the queue
    assert h.core.queue_position("c2") == 1
