"""TEL-2 through the wire and the edge's HTTP API: the CDR follows a blind transfer through both
legs, the notes reach the second agent, and bad transfer requests are refused with a reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.store import Store
from hil.harness import run_with_edge

SCENARIOS = Path(__file__).parents[2] / "hil" / "scenarios"


@pytest.mark.hil
def test_blind_transfer_links_both_legs_and_carries_the_notes(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIOS / "transfer-blind-to-extension.yaml", tmp_path)
    assert run.passed, run.report()
    assert run.api_replies == [{"post": "/api/agents/a8001/transfer", "status": 200,
                                "body": {"accepted": "TransferRequest"}}]
    [cdr] = run.cdrs
    [first] = json.loads(cdr["legs"])
    assert (first["agent_id"], first["to"], first["transfer"]) == ("a8001", "8002", "blind")
    assert first["answered_at"] == cdr["answered_at"] < first["ended_at"] < cdr["ended_at"]
    assert 18 <= cdr["talk_s"] <= 21  # ~10 s with 8001 + 10 s with 8002 (whole seconds each)
    with Store(tmp_path / "edge.sqlite3") as store:
        rings = [e["data"] for e in store.events(limit=1000, topic="call.ringing")]
        states = [e["data"] for e in store.events(limit=1000, topic="agent.state")
                  if e["data"]["agent_id"] == "a8001"]
    assert rings[-1]["agent_id"] == "a8002" and rings[-1]["data"] == {"notes": "客户要求办理信用卡挂失"}
    assert [s["state"] for s in states][-2:] == ["wrap_up", "idle"]  # 8001 freed at the transfer


@pytest.mark.hil
def test_bad_transfer_requests_are_refused_with_a_reason(tmp_path: Path) -> None:
    scenario = {
        "name": "transfer refusals", "time_scale": 0.01, "duration_ms": 60000,
        "trunks": [{"profile": "e1", "channels": "1-4"}],
        "phones": {"8001": {"answer_after_ms": 1000, "hangup_after_ms": 20000}},
        "calls": [{"id": "c1", "caller": "13800138000", "did": "88880000"}],
        "api": [
            {"at_ms": 5000, "post": "/api/agents/a8001/transfer", "body": {"target": "queue:nope"}},
            {"at_ms": 5100, "post": "/api/agents/a8001/transfer", "body": {"target": "8001"}},
            {"at_ms": 5200, "post": "/api/agents/a8002/transfer", "body": {"target": "8001"}},
            {"at_ms": 5300, "post": "/api/agents/a8001/transfer", "body": {}},
            {"at_ms": 5400, "post": "/api/agents/nobody/transfer", "body": {"target": "8002"}},
        ],
        "expect": [{"bridged": {"call": "c1", "extension": "8001"}}],
        "cdrs": [{"call": "c1", "agent_id": "a8001", "disposition": "answered", "legs": ""}],
    }
    run = run_with_edge(scenario, tmp_path)
    assert run.passed, run.report()
    assert [r["status"] for r in run.api_replies] == [200, 200, 200, 400, 404]
    assert "target" in run.api_replies[3]["body"]["error"]
    with Store(tmp_path / "edge.sqlite3") as store:
        reasons = [e["data"]["reason"] for e in store.events(limit=100, topic="transfer.refused")]
    assert reasons == ["unknown queue 'nope'", "cannot transfer a call to yourself",
                       "no answered inbound call to transfer"]


@pytest.mark.hil
def test_attended_transfer_keeps_one_cdr_with_the_consulting_agents_leg(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIOS / "transfer-attended-consult.yaml", tmp_path)
    assert run.passed, run.report()
    [cdr] = run.cdrs
    [leg] = json.loads(cdr["legs"])
    assert (leg["agent_id"], leg["to"], leg["transfer"]) == ("a8001", "8002", "attended")
    assert leg["answered_at"] == cdr["answered_at"] < leg["ended_at"] < cdr["ended_at"]
    sim = run.scenario.simulator
    consulting = sim.records("atxfer", what="consulting")
    completed = sim.records("atxfer", what="completed")
    assert consulting and completed and consulting[0].t_ms < completed[0].t_ms
    with Store(tmp_path / "edge.sqlite3") as store:
        [moved] = [e["data"] for e in store.events(limit=500, topic="call.transferred")]
    assert (moved["mode"], moved["agent_id"], moved["data"]) == \
        ("attended", "a8002", {"notes": "需要主管审批"})


@pytest.mark.hil
def test_hold_time_reaches_the_cdr(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIOS / "hold-with-music.yaml", tmp_path)
    assert run.passed, run.report()
    [cdr] = run.cdrs
    assert 3.0 <= cdr["hold_s"] <= 6.0  # 4 scripted s; at time_scale 0.02 a 20 ms stall is 1 s
