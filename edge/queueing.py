"""Waiting calls (在线排队): one queue per skill group, FIFO by arrival, VIPs ahead (INB-1, INB-6).

Each entry is keyed ``(priority, seq, call_id)``: priority 0 for VIPs and 1 for everyone else,
``seq`` the call's arrival number at the edge. A caller who rang an agent in vain and comes back
keeps their arrival number, so they do not lose their place. Entries sit in a ``SortedList``, so
adding, leaving from the middle (a caller hanging up) and a caller's position are all O(log n).
"""
from __future__ import annotations

from typing import Iterable

from sortedcontainers import SortedList

VIP_PRIORITY = 0
NORMAL_PRIORITY = 1


class WaitQueues:
    def __init__(self, groups: Iterable[str]) -> None:
        self._queues: dict[str, SortedList] = {g: SortedList() for g in groups}
        self._where: dict[str, tuple[str, tuple[int, int, str]]] = {}

    def add(self, group: str, call_id: str, priority: int, seq: int) -> int:
        """Queue the call; returns its 1-based position."""
        if call_id in self._where:
            self.remove(call_id)
        key = (priority, seq, call_id)
        queue = self._queues[group]
        queue.add(key)
        self._where[call_id] = (group, key)
        return queue.bisect_left(key) + 1

    def remove(self, call_id: str) -> str | None:
        """Take the call out wherever it waits; returns the group it left, or None."""
        entry = self._where.pop(call_id, None)
        if entry is None:
            return None
        group, key = entry
        self._queues[group].remove(key)
        return group

    def position(self, call_id: str) -> int | None:
        entry = self._where.get(call_id)
        if entry is None:
            return None
        group, key = entry
        return self._queues[group].bisect_left(key) + 1

    def group_of(self, call_id: str) -> str | None:
        entry = self._where.get(call_id)
        return entry[0] if entry else None

    def length(self, group: str) -> int:
        return len(self._queues[group])

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._where

    def best_for(self, groups: Iterable[str]) -> str | None:
        """The call an agent of ``groups`` should take next: the best head among those queues."""
        best = None
        for group in groups:
            queue = self._queues.get(group)
            if queue and (best is None or queue[0] < best):
                best = queue[0]
        return best[2] if best else None

    def waiting(self, group: str) -> list[str]:
        """Call ids of the group's queue, head first (for the live view)."""
        return [key[2] for key in self._queues[group]]

    def groups(self) -> list[str]:
        return list(self._queues)
