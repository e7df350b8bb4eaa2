"""The core's timers: deadlines on the injected clock, fired by ``Tick`` events.

Keys are tuples such as ``("wrap_up", agent_id)``; setting a key again moves its deadline and
cancelling is O(1): stale heap entries are skipped when they surface (lazy deletion), which keeps a
busy edge with thousands of waiting callers from re-heapifying on every answer.
"""
from __future__ import annotations

import heapq
from itertools import count
from typing import Hashable

TimerKey = tuple[Hashable, ...]


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._live: dict[TimerKey, tuple[float, int]] = {}
        self._tokens = count()

    def set(self, key: TimerKey, deadline: float) -> None:
        token = next(self._tokens)
        self._live[key] = (deadline, token)
        heapq.heappush(self._heap, (deadline, token, key))

    def cancel(self, key: TimerKey) -> None:
        self._live.pop(key, None)

    def deadline(self, key: TimerKey) -> float | None:
        entry = self._live.get(key)
        return entry[0] if entry else None

    def pop_due(self, now: float) -> TimerKey | None:
        """The earliest live timer due at ``now`` (removed), or None. Fire one at a time:
        firing may cancel or set others."""
        self._drop_stale()
        if self._heap and self._heap[0][0] <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            return key
        return None

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._live)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            deadline, token, key = heap[0]
            if self._live.get(key) == (deadline, token):
                return
            heapq.heappop(heap)
