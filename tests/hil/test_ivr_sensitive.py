"""INB-11's sensitive step through the wire: the PIN a caller keys never reaches the logs, the
CDR or the edge's event history (what sync will publish), while the flow still works with it."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import yaml

from hil.harness import run_with_edge

SCENARIO = Path(__file__).parents[2] / "hil" / "scenarios" / "ivr-balance-pin-masked.yaml"
PIN = "246813"


@pytest.mark.hil
def test_the_pin_is_masked_everywhere_the_edge_writes(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    run = run_with_edge(SCENARIO, tmp_path)
    assert run.passed, run.report()
    [cdr] = run.cdrs
    assert "ask_pin=******" in cdr["ivr"] and "ask_member=12345678" in cdr["ivr"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) > 20  # the edge and the simulator did log the call at DEBUG
    assert PIN not in logged
    with sqlite3.connect(tmp_path / "edge.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert "12345678" in dump  # the member number is not sensitive: the dump really has content
    assert PIN not in dump


@pytest.mark.hil
def test_the_recording_is_silent_while_the_pin_is_keyed(tmp_path: Path) -> None:
    """``[recording] from_answer``: the IVR is recorded too, and MixMonitorMute silences the
    recording for exactly the sensitive step (the simulator writes zeros while muted)."""
    scenario = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    scenario["edge"]["recording"] = {"from_answer": True}
    run = run_with_edge(scenario, tmp_path)
    assert run.passed, run.report()
    sim = run.scenario.simulator
    [recording] = sim.finished_recordings()
    [span] = recording.muted
    pin = [r for r in sim.records("agi_command") if "cc/enter-pin" in r.data["command"]][0]
    balance = [r for r in sim.records("agi_command") if "cc/your-balance" in r.data["command"]][0]
    start_ms = recording.start_ms + span.start_sample / 8
    stop_ms = recording.start_ms + span.stop_sample / 8
    assert start_ms <= pin.t_ms and stop_ms <= balance.t_ms + 100  # muted around the PIN only
    assert stop_ms - start_ms >= 1000  # the caller took time to key six digits
    [row] = run.recordings
    assert row["state"] == "done" and row["agent_id"] == "a8001"  # filed under the agent who took it
    mutes = [r for r in sim.records("ami", what="action") if r.data.get("action") == "MixMonitorMute"]
    assert len(mutes) == 2  # on before the PIN prompt, off after it
