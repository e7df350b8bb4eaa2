"""What happened, for tests: a thread-safe, append-only log of observations with waiting.

Kinds (``Record.kind``) and their data keys:

=================  ===============================================================================
``call_arrived``   call, channel, trunk, profile, caller, did
``agi_connected``  call, channel, script
``agi_command``    call, channel, command, reply (first reply line), dead (bool)
``agi_closed``     call, channel, how (``edge`` closed, ``reset`` by a fault, ``ended`` by us)
``rang``           call, extension, channel, order (1 = first phone rung for that call)
``answered``       call, channel, extension (phones) or number (outside parties)
``dial_end``       call, channel, status (``ANSWER``, ``BUSY``...), extension or number
``bridged``        call, bridge, channels, extensions, numbers
``unbridged``      call, bridge, channels
``hung_up``        call, channel, role, by (``caller``/``agent``/``outside``/``system``/``ami``/
                   ``edge``), cause, extension
``moh``            call, channel, on (bool), moh_class
``dtmf``           call, channel, digit, direction, heard (False when no command was reading)
``spy_started``    spyer, spyee, mode, spyer_extension, spyee_extension, call
``spy_stopped``    spyer, spyee
``originate``      action_id, channel, success, reason
``ami``            what (``login``, ``login_failed``, ``logoff``, ``action``), user, action
``fault``          what, details
``call_rejected``  call, reason (no free trunk channel)
``agi_failed``     call, channel, error (the edge's FastAGI port refused the connection)
``phone_dialled``  call, extension, digits, channel
``picked_up``      call, picker, extension, device
``redirected``     call, channel, context, exten
``analog_line``    call, channel, far_end (what the unsupervised line really met)
``recorded``       call, channel, file (RECORD FILE)
``mixmonitor``     call, channel, on, file (MixMonitor / StopMixMonitor)
``recording``      call, channel, file, witness (copy kept, or None), start_ms, stop_ms, muted
                   (``MuteSpan`` list), samples (8 kHz), ended (``stopped``/``hangup``/``shutdown``)
``recording_crashed``
                   call, channel, file, start_ms, stop_ms, samples (the header's sizes left 0)
=================  ===============================================================================
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str
    t_ms: float
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def matches(self, kind: str | None = None, **match: Any) -> bool:
        if kind is not None and self.kind != kind:
            return False
        return all(self.data.get(k) == v for k, v in match.items())


class Recorder:
    def __init__(self, now_ms: Callable[[], float]) -> None:
        self._now = now_ms
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self._version = 0

    def add(self, kind: str, **data: Any) -> Record:
        with self._cond:
            record = Record(len(self._records), kind, self._now(), data)
            self._records.append(record)
            self._version += 1
            self._cond.notify_all()
        return record

    def poke(self) -> None:
        """Wake waiters whose predicate reads state outside the log (audio, channels)."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def all(self, kind: str | None = None, **match: Any) -> list[Record]:
        with self._cond:
            return [r for r in self._records if r.matches(kind, **match)]

    def first(self, kind: str, **match: Any) -> Record | None:
        found = self.all(kind, **match)
        return found[0] if found else None

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Re-evaluate ``predicate`` on every new record (and every 20 ms) until truthy or timeout.

        Returns the predicate's truthy value, or ``None`` after ``timeout`` real seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._version
            value = predicate()  # outside our lock: predicates may take the PBX lock
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._cond:
                if self._version == seen:
                    self._cond.wait(min(left, 0.02))

    def wait_record(self, kind: str, timeout: float, **match: Any) -> Record:
        """The first record of ``kind`` matching ``match``; ``TimeoutError`` if none in time."""
        record = self.wait_for(lambda: self.first(kind, **match), timeout)
        if record is None:
            raise TimeoutError(f"no {kind} record matching {match} within {timeout} s")
        return record
