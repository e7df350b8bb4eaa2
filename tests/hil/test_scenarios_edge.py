"""Every scenario file in hil/scenarios runs against a real edge (runtime, store, Asterisk driver)
through the simulator's AMI and FastAGI wire; the simulator's observations and the edge's CDRs
must both match the file's expectations."""
from __future__ import annotations

from pathlib import Path

import pytest

from hil.harness import run_with_edge

SCENARIOS = sorted((Path(__file__).parents[2] / "hil" / "scenarios").glob("*.yaml"))


@pytest.mark.hil
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_against_edge(scenario: Path, tmp_path: Path) -> None:
    run = run_with_edge(scenario, tmp_path)
    assert run.passed, run.report()
