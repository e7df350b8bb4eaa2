"""Who hears whom: the audio path model, with its whole history.

AMI and FastAGI carry no audio, so the simulator keeps this model instead: bridges (every member
hears every other), ChanSpy sessions, and one-way sources (music on hold, prompts, tones).

ChanSpy, as ``apps/app_chanspy.c`` documents its options:

* ``q`` (listen): the spy hears the spied channel and everything the spied channel hears (both
  parties of its bridge); nobody hears the spy.
* ``w`` (whisper): as listen, and the spied channel (the agent) hears the spy; the other party (the
  customer) never does.
* ``B`` (barge): as listen, and every member of the spied channel's bridge hears the spy.

Hold, as Asterisk plays it:

* A channel hearing music on hold hears nothing else: while res_musiconhold's generator runs,
  ``ast_write`` drops the bridge's voice frames to that channel (``AST_FLAG_WRITE_INT``). So a
  caller parked in a bridge during an attended transfer hears the music, never the consultation.
* A channel whose phone put the call on hold (``set_held``) neither hears nor is heard by its
  bridge: chan_pjsip stops the RTP stream on a ``sendonly``/``inactive`` re-INVITE.

Every ``(listener, speaker)`` pair that ever existed is kept as a span with start and end time, so a
test can assert that the customer never heard the supervisor during the whole call.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

LISTEN, WHISPER, BARGE = "listen", "whisper", "barge"


def spy_mode(options: str) -> str:
    """ChanSpy option letters to a mode: ``B`` barge wins over ``w`` whisper over listen."""
    if "B" in options:
        return BARGE
    if "w" in options:
        return WHISPER
    return LISTEN


@dataclass
class AudioSpan:
    listener: str
    speaker: str
    start_ms: float
    end_ms: float | None = None


class AudioModel:
    """Thread-safe; ``now_ms`` is the simulator's scripted clock."""

    def __init__(self, now_ms: Callable[[], float]) -> None:
        self._now = now_ms
        self._lock = threading.RLock()
        self._bridges: dict[str, set[str]] = {}
        self._spies: dict[str, tuple[str, str, str]] = {}
        self._sources: dict[str, str] = {}
        self._held: set[str] = set()
        self._open: dict[tuple[str, str], AudioSpan] = {}
        self._history: list[AudioSpan] = []

    # --- topology changes --------------------------------------------------------------------
    def set_bridge(self, bridge_id: str, members: set[str]) -> None:
        with self._lock:
            if members:
                self._bridges[bridge_id] = set(members)
            else:
                self._bridges.pop(bridge_id, None)
            self._update()

    def add_spy(self, spy_id: str, spyer: str, spyee: str, mode: str) -> None:
        with self._lock:
            self._spies[spy_id] = (spyer, spyee, mode)
            self._update()

    def remove_spy(self, spy_id: str) -> None:
        with self._lock:
            self._spies.pop(spy_id, None)
            self._update()

    def set_source(self, channel: str, source: str | None) -> None:
        """What a channel hears besides people: ``moh:default``, ``prompt:welcome``, ``tone:busy``."""
        with self._lock:
            if source is None:
                self._sources.pop(channel, None)
            else:
                self._sources[channel] = source
            self._update()

    def set_held(self, channel: str, held: bool) -> None:
        """The channel's own phone put the call on hold (or took it off hold)."""
        with self._lock:
            if held:
                self._held.add(channel)
            else:
                self._held.discard(channel)
            self._update()

    def drop_channel(self, channel: str) -> None:
        with self._lock:
            self._held.discard(channel)
            for members in self._bridges.values():
                members.discard(channel)
            self._sources.pop(channel, None)
            for spy_id, (spyer, spyee, _) in list(self._spies.items()):
                if channel in (spyer, spyee):
                    del self._spies[spy_id]
            self._update()

    # --- queries -----------------------------------------------------------------------------
    def hears(self, listener: str) -> set[str]:
        with self._lock:
            return {s for (l, s) in self._open if l == listener}

    def heard_by(self, speaker: str) -> set[str]:
        with self._lock:
            return {l for (l, s) in self._open if s == speaker}

    def ever_heard(self, listener: str, speaker: str) -> bool:
        with self._lock:
            return any(sp.listener == listener and sp.speaker == speaker for sp in self._history)

    def history(self) -> list[AudioSpan]:
        with self._lock:
            return [AudioSpan(s.listener, s.speaker, s.start_ms, s.end_ms) for s in self._history]

    # --- internals ---------------------------------------------------------------------------
    def _edges(self) -> set[tuple[str, str]]:
        base: set[tuple[str, str]] = set()
        deaf = self._held | {ch for ch, src in self._sources.items() if src.startswith("moh:")}
        for members in self._bridges.values():
            base |= {(a, b) for a in members for b in members
                     if a != b and a not in deaf and b not in self._held}
        base |= {(ch, src) for ch, src in self._sources.items()}
        edges = set(base)
        for spyer, spyee, mode in self._spies.values():
            peers = next((m for m in self._bridges.values() if spyee in m), {spyee})
            edges.add((spyer, spyee))
            edges |= {(spyer, speaker) for (listener, speaker) in base
                      if listener == spyee and speaker != spyer}
            if mode == WHISPER:
                edges.add((spyee, spyer))
            elif mode == BARGE:
                edges |= {(p, spyer) for p in peers if p != spyer}
        return edges

    def _update(self) -> None:
        now = self._now()
        edges = self._edges()
        for key in list(self._open):
            if key not in edges:
                self._open.pop(key).end_ms = now
        for key in edges:
            if key not in self._open:
                span = AudioSpan(key[0], key[1], now)
                self._open[key] = span
                self._history.append(span)
