"""INB-1's queue through the wire: with one agent and 20 callers arriving close together, callers
are served strictly in the order they reached the edge and each knows their position; nobody is lost.

Arrival order is the edge's: 20 FastAGI sessions opened milliseconds apart in real time may reach it
in a slightly different order than the script lists them, so the test compares the ring order with
the order of the CDRs' ``started_at`` (stamped when the edge took the call).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import Store
from hil.harness import call_ids, run_with_edge

CALLERS = 20


def fifo_scenario() -> dict:
    calls = [
        {"id": f"c{i:02d}", "caller": f"139{i:08d}", "did": "88880000", "at_ms": i * 200,
         "hangup_after_talk_ms": 1000}
        for i in range(1, CALLERS + 1)
    ]
    return {
        "name": f"FIFO queue under {CALLERS} concurrent callers",
        "time_scale": 0.01,
        "duration_ms": 600_000,
        "edge": {
            "groups": [{"name": "general", "strategy": "least_calls"}],
            "agents": [{"id": "a8001", "name": "张伟", "extension": "8001", "groups": ["general"],
                        "wrap_up_s": 0}],
        },
        "trunks": [{"profile": "e1", "channels": "1-30"}],
        "phones": {"8001": {"answer_after_ms": 300}},
        "calls": calls,
        "expect": [{"moh": {"call": "c20"}}],
        "cdrs": [{"call": c["id"], "agent_id": "a8001", "disposition": "answered"} for c in calls],
    }


@pytest.mark.hil
def test_twenty_concurrent_callers_are_served_in_arrival_order(tmp_path: Path) -> None:
    run = run_with_edge(fifo_scenario(), tmp_path)
    assert run.passed, run.report()
    sim = run.scenario.simulator
    rings = sorted(sim.records("rang", extension="8001"), key=lambda r: r.t_ms)
    ring_order = [r.data["call"] for r in rings]
    calls = {c["call_id"]: c for c in run.cdrs}
    ids = call_ids(sim)
    started = {name: next(calls[i]["started_at"] for i in ids[name] if i in calls) for name in ids}
    arrival_order = sorted(started, key=started.get)
    assert len(ring_order) == CALLERS
    assert ring_order == arrival_order
    # at the peak, 19 callers were waiting at once: the queue really was under load
    with Store(tmp_path / "edge.sqlite3") as store:
        positions = store.events(limit=1000, topic="queue.position")
    assert max(e["data"]["position"] for e in positions) >= CALLERS - 2
    answered = [c["answered_at"] for c in sorted(run.cdrs, key=lambda c: c["started_at"])]
    assert answered == sorted(answered)
