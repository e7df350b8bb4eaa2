"""Core timers: ordered firing, re-arming and O(1) cancellation."""
from __future__ import annotations

from edge.timers import Timers


def test_timers_fire_in_deadline_order_and_skip_cancelled_ones():
    timers = Timers()
    timers.set(("a",), 30)
    timers.set(("b",), 10)
    timers.set(("c",), 20)
    timers.cancel(("c",))
    timers.set(("a",), 5)  # re-armed earlier: the old deadline is stale
    assert timers.next_deadline() == 5
    assert timers.pop_due(25) == ("a",)
    assert timers.pop_due(25) == ("b",)
    assert timers.pop_due(25) is None
    assert timers.next_deadline() is None and len(timers) == 0


def test_a_timer_not_yet_due_stays():
    timers = Timers()
    timers.set(("x", 1), 100)
    assert timers.pop_due(99.9) is None
    assert timers.deadline(("x", 1)) == 100
