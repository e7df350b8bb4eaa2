"""A simulated Asterisk 22: serves AMI on TCP and opens FastAGI sessions to the edge.

Public surface: ``PbxSimulator`` (``simulator.py``), the world as data (``scripts.py``),
``run_scenario`` / ``ScenarioResult`` (``scenario.py``, imported lazily so that
``python -m hil.pbx.scenario`` runs cleanly). See each module's docstring.
"""
from typing import Any

from hil.pbx.errors import PbxSimError, ScenarioError, ScriptError
from hil.pbx.scripts import OutsideParty, PhoneScript, RingBehaviour, TrunkCall, TrunkSpan, World
from hil.pbx.simulator import PbxSimulator

__all__ = ["PbxSimulator", "World", "TrunkCall", "TrunkSpan", "PhoneScript", "RingBehaviour",
           "OutsideParty", "run_scenario", "ScenarioResult", "PbxSimError", "ScriptError", "ScenarioError"]


def __getattr__(name: str) -> Any:
    if name in ("run_scenario", "ScenarioResult"):
        from hil.pbx import scenario
        return getattr(scenario, name)
    raise AttributeError(name)
