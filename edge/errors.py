"""The edge package's error types: callers catch what they can handle, nothing else.

Calls hanging up, agents not answering and refused ``##codes`` are normal events, never exceptions;
these types are for things that stop the edge from starting or a caller from going on.
"""
from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the edge package raises on purpose."""


class ConfigError(EdgeError):
    """The configuration is invalid; the message starts with the offending key path.

    Example: ``agents[2].extension: expected digits, got 'abc'``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)
