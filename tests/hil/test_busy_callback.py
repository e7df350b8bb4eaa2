"""INB-9 through the wire: the callback task is recorded with its result, and the callback call
has its own CDR (direction ``callback``) for the agent who made it."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import Store
from hil.harness import run_with_edge

SCENARIO = Path(__file__).parents[2] / "hil" / "scenarios" / "busy-callback.yaml"


@pytest.mark.hil
def test_the_callback_task_ends_done_with_its_result(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIO, tmp_path)
    assert run.passed, run.report()
    with Store(tmp_path / "edge.sqlite3") as store:
        [task] = store.tasks(kind="callback")
    assert (task["state"], task["number"], task["group"], task["attempts"]) == \
        ("done", "13912345678", "general", 1)
    assert task["result"].startswith("answered")
    [callback_cdr] = [c for c in run.cdrs if c["direction"] == "callback"]
    assert (callback_cdr["callee"], callback_cdr["agent_id"], callback_cdr["disposition"]) == \
        ("13912345678", "a8001", "answered")
