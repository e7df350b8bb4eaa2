"""The IVR's error types.

``FlowError`` is a call flow rejected at load, naming the file and the step so whoever edited the
flow (an HQ admin in the flow editor, a technician on site) finds the line at once. ``SessionError``
is the core breaking the interpreter's call-back contract (see ``edge.ivr.engine``): a bug, not a
caller's doing, so it is raised rather than guessed around.
"""
from __future__ import annotations

from edge.errors import EdgeError


class IvrError(EdgeError):
    """Base of every error ``edge.ivr`` raises on purpose."""


class FlowError(IvrError):
    """A call flow is invalid.

    ``flow`` is where it came from (a file path, or the label given to ``parse_flow``), ``step``
    the step at fault (``""`` for the flow as a whole), ``problem`` what is wrong. Example:
    ``flows/main.yaml: step 'pin': prompt 'cc/enter-pin' not found (looked in /sounds/zh)``.
    """

    def __init__(self, flow: str, step: str, problem: str) -> None:
        self.flow = flow
        self.step = step
        self.problem = problem
        where = f"{flow}: step {step!r}" if step else flow
        super().__init__(f"{where}: {problem}" if where else problem)


class SessionError(IvrError):
    """The core called an ``IvrSession`` out of turn (an answer it was not waiting for)."""
