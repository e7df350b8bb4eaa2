"""Scripted time: every timing is in scripted milliseconds, scaled to real time by ``time_scale``.

``time_scale`` 0.01 makes a scripted minute last 0.6 real seconds (the edge's ``ScaledClock`` uses
the same factor), so a HIL scenario that lasts minutes on a real line runs in seconds.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class TimeBase:
    """Converts scripted milliseconds to real seconds and back."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._t0 = time.monotonic()

    def real_s(self, scripted_ms: float | None) -> float | None:
        """Real seconds for ``scripted_ms``; ``None`` (wait for ever) stays ``None``."""
        if scripted_ms is None:
            return None
        return max(0.0, scripted_ms / 1000.0 * self.time_scale)

    def now_ms(self) -> float:
        """Scripted milliseconds since the simulator was created."""
        return (time.monotonic() - self._t0) / self.time_scale * 1000.0

    def scripted_ms(self, real_seconds: float) -> float:
        return real_seconds / self.time_scale * 1000.0


class Timer:
    """Handle of a scheduled callback; ``cancel()`` is safe at any time, from any thread."""

    __slots__ = ("due", "fn", "cancelled", "label")

    def __init__(self, due: float, fn: Callable[[], None], label: str) -> None:
        self.due = due
        self.fn = fn
        self.cancelled = False
        self.label = label

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """One thread running timed callbacks in due order. Callbacks must not block for long."""

    def __init__(self, timebase: TimeBase) -> None:
        self.timebase = timebase
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="pbx-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def call_later(self, scripted_ms: float, fn: Callable[[], None], label: str = "") -> Timer:
        timer = Timer(time.monotonic() + (self.timebase.real_s(scripted_ms) or 0.0), fn, label)
        with self._cond:
            heapq.heappush(self._heap, (timer.due, next(self._seq), timer))
            self._cond.notify_all()
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    wait = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception:  # a broken script step must not stop the world's clock
                log.exception("scheduled step %r failed", timer.label)
