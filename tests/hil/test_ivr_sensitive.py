"""INB-11's sensitive step through the wire: the PIN a caller keys never reaches the logs, the
CDR or the edge's event history (what sync will publish), while the flow still works with it."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

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
