"""INB-12 through the wire: a bad rating leaves a 差评回访 task on the team lead's list."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import Store
from hil.harness import run_with_edge

SCENARIO = Path(__file__).parents[2] / "hil" / "scenarios" / "rating-bad-creates-task.yaml"


@pytest.mark.hil
def test_a_bad_rating_creates_the_team_leads_callback_task(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIO, tmp_path)
    assert run.passed, run.report()
    with Store(tmp_path / "edge.sqlite3") as store:
        [task] = store.tasks(kind="bad_rating_callback")
        created = store.events(topic="task.created")
    assert (task["assignee"], task["number"], task["state"]) == ("a8008", "13800138000", "open")
    assert task["data"] == {"agent_id": "a8001", "rating": "3", "meaning": "unsatisfied"}
    assert task["call_id"] == run.cdrs[0]["call_id"]
    assert created[0]["data"]["assignee"] == "a8008"
