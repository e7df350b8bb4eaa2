"""OUT-13's call leg through the wire: the mobile leg and the customer leg in one CDR, the task
recorded done, and the company number shown on the mobile."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.store import Store
from hil.harness import run_with_edge

SCENARIO = Path(__file__).parents[2] / "hil" / "scenarios" / "remote-dial-mobile-leg.yaml"


@pytest.mark.hil
def test_the_mobile_and_customer_legs_are_one_call(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIO, tmp_path)
    assert run.passed, run.report()
    [cdr] = [c for c in run.cdrs if c["direction"] == "callback"]
    [leg] = json.loads(cdr["legs"])
    assert (leg["kind"], leg["number"], leg["agent_id"]) == ("mobile", "13900000001", "a8001")
    assert leg["channel"].startswith("DAHDI/")
    with Store(tmp_path / "edge.sqlite3") as store:
        [task] = store.tasks(kind="remote_dial")
    assert (task["state"], task["number"], task["assignee"]) == ("done", "13912345678", "a8001")
    sim = run.scenario.simulator
    mobile = [c for c in sim.channels(live=False) if c.name == leg["channel"]][0]
    assert mobile.connected_num == "075583210000"  # what the mobile shows: the company number
