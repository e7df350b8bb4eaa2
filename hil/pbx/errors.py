"""The simulator's one error hierarchy: callers catch ``PbxSimError`` or a subclass."""
from __future__ import annotations


class PbxSimError(Exception):
    """Base of every error the PBX simulator raises."""


class ScriptError(PbxSimError):
    """A world/scenario description is invalid; the message names the bad key."""


class ScenarioError(PbxSimError):
    """A scenario could not be run (bad file, edge unreachable, unknown expectation)."""
