"""The clock the core reads. Injected, so tests and benchmarks run in virtual time.

Real clocks (wall time, time-scaled wall time) live in ``edge/runtime.py``: the core package never
reads the system clock itself.
"""
from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (virtual or real)."""
        ...


class ManualClock:
    """A clock moved by hand: tests and benchmarks advance it explicitly."""

    def __init__(self, start: float = 1_795_392_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        self._now = when
