"""MixMonitor: call recordings written to real WAV files as scripted time passes.

The edge's recording pipeline (encode to MP3, verify, recover after a crash) is tested against
these files, so they are written the way Asterisk 22 writes them:

* derived from fixture ami-22: the ``MixMonitor`` action answers ``Response: Success`` with no
  Message, then ``VarSet MIXMONITOR_FILENAME`` (absolute path) and ``MixMonitorStart``;
  ``StopMixMonitor`` answers Success, then ``MixMonitorStop``.
* derived from source, apps/app_mixmonitor.c: a relative file name lands in the monitor
  directory, whose folders are created (``filename_parse``); the monitor thread opens the file at
  once (``mixmonitor_save_prep`` before its loop), so the header is on disk before any audio;
  option ``b`` drops each 160-sample frame while the channel is in no bridge (a per-frame test:
  recording resumes in a later bridge); ``i(VAR)`` stores the MixMonitor ID in VAR;
  ``MixMonitorStop`` is published only by ``stop_mixmonitor_full`` (StopMixMonitor), so a hang-up
  closes the file without an event; ``MixMonitorMute`` sets the audiohook's MUTE_READ / MUTE_WRITE
  flags and the muted direction's frames are zeros.
* derived from source, formats/format_wav.c: 8 kHz mono 16-bit PCM behind a 44-byte header whose
  RIFF and data sizes are 0 at open (``write_header``); ``wav_write`` leaves them alone and only
  ``wav_close`` fixes them (``update_header``: data = file length - 44, RIFF = 36 + data). A
  crash therefore leaves both sizes 0 in front of the audio.

The audio is ``hil.pbx.speech``: known, deterministic, seeded from the file's name, so a test can
regenerate what a recording must hold (``recorded_audio``). Only ``.wav`` files get a header; any
other name is written as headerless signed linear, as Asterisk writes ``.raw`` or a name without
an extension (a simplification for ``.gsm``, ``.ulaw``...).
"""
from __future__ import annotations

import logging
import shutil
import struct
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable

import numpy as np

from hil.pbx.ami_events import Headers
from hil.pbx.channels import Channel
from hil.pbx.speech import SAMPLE_RATE, render, seed_of

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

log = logging.getLogger(__name__)

HEADER_SIZE = 44
FRAME_SAMPLES = 160          # SAMPLES_PER_FRAME in app_mixmonitor.c: 20 ms at 8 kHz
CHUNK_MS = 200.0             # scripted ms between writes of a live recording
MIN_TICK_S = 0.005           # ...but never more often than this in real time
READ, WRITE, BOTH = "read", "write", "both"


# --- the file format ---------------------------------------------------------------------------
def wav_header(data_bytes: int | None = None) -> bytes:
    """format_wav's header: as ``write_header`` writes it at open (``None``: both sizes 0), or as
    ``update_header`` fixes it at close (``36 + data_bytes`` at offset 4, ``data_bytes`` at 40)."""
    riff, data = (0, 0) if data_bytes is None else (36 + data_bytes, data_bytes)
    return struct.pack("<4sI8sIHHIIHH4sI", b"RIFF", riff, b"WAVEfmt ", 16, 1, 1, SAMPLE_RATE,
                       SAMPLE_RATE * 2, 2, 16, b"data", data)


def wav_sizes(path: str | Path) -> tuple[int, int]:
    """(RIFF size, data size) as the header says; (0, 0) for a file nobody closed."""
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
    return struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]


def wav_samples(path: str | Path) -> np.ndarray:
    """The audio after the 44-byte header, whatever the header claims."""
    return np.frombuffer(Path(path).read_bytes()[HEADER_SIZE:], dtype="<i2")


@dataclass(frozen=True)
class MuteSpan:
    """Samples ``start_sample`` up to ``stop_sample`` (scripted ``start_ms``..``stop_ms``) had the
    ``direction`` muted: ``read`` (from the channel), ``write`` (to it) or ``both``."""
    direction: str
    start_ms: float
    start_sample: int
    stop_ms: float | None = None
    stop_sample: int | None = None


def recorded_audio(name: str, samples: int, muted: Iterable[MuteSpan] = ()) -> np.ndarray:
    """What a recording of ``samples`` samples to a file called ``name`` holds, mute spans zeroed."""
    spans = [(s.direction, s.start_sample, samples if s.stop_sample is None else s.stop_sample) for s in muted]
    edges = sorted({0, samples} | {min(samples, at) for _, start, stop in spans for at in (start, stop)})
    out = np.empty(samples, dtype="<i2")
    for start, stop in zip(edges, edges[1:]):
        on = {direction for direction, first, end in spans if first <= start and stop <= end}
        out[start:stop] = render(seed_of(name), start, stop - start, bool(on & {READ, BOTH}),
                                 bool(on & {WRITE, BOTH}))
    return out


# --- one recording -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordingInfo:
    """A snapshot of one MixMonitor. ``ended``: None while it records, then ``stopped``
    (StopMixMonitor), ``hangup``, ``shutdown`` (the simulator stopped) or ``crashed``."""
    id: str
    channel: str
    call: str | None
    file: Path
    bridged_only: bool
    start_ms: float
    samples: int
    muted: tuple[MuteSpan, ...]
    stop_ms: float | None = None
    ended: str | None = None
    witness: Path | None = None

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000 / SAMPLE_RATE


@dataclass(eq=False)
class Recording:
    """One MixMonitor: its open file, and how much scripted time it has written (in 20 ms frames,
    as the monitor thread reads them from the audiohook)."""
    channel: Channel
    path: Path
    bridged_only: bool
    start_ms: float
    file: IO[bytes] | None
    id: str = ""
    counted_ms: float = 0.0       # scripted time whose audio belongs in the file
    last_ms: float = 0.0
    bridged: bool = False
    samples: int = 0
    mute_read: bool = False
    mute_write: bool = False
    spans: list[MuteSpan] = field(default_factory=list)
    ended: str | None = None
    stop_ms: float | None = None
    witness: Path | None = None

    @property
    def seed(self) -> int:
        return seed_of(self.path.name)

    @property
    def is_wav(self) -> bool:
        return self.path.suffix == ".wav"

    def advance(self, now_ms: float) -> None:
        """Write the whole frames that scripted time up to ``now_ms`` owes the file."""
        if self.bridged or not self.bridged_only:
            self.counted_ms += now_ms - self.last_ms
        self.last_ms = now_ms
        due = int(self.counted_ms * SAMPLE_RATE / 1000) // FRAME_SAMPLES * FRAME_SAMPLES
        if due <= self.samples:
            return
        pcm = render(self.seed, self.samples, due - self.samples, self.mute_read, self.mute_write)
        if self.file is not None:
            self.file.write(pcm.tobytes())
            self.file.flush()  # a live recording grows on disk, as a reader polling it sees
        self.samples = due

    def set_mute(self, now_ms: float, read: bool, write: bool) -> None:
        self.advance(now_ms)
        if (read, write) == (self.mute_read, self.mute_write):
            return
        self._end_span(now_ms)
        self.mute_read, self.mute_write = read, write
        if read or write:
            direction = BOTH if read and write else READ if read else WRITE
            self.spans.append(MuteSpan(direction, now_ms, self.samples))

    def close(self, now_ms: float, ended: str, fix_header: bool = True) -> None:
        """``fix_header`` False is a crash: what was written stays, the sizes stay 0."""
        if fix_header:
            self.advance(now_ms)
        self._end_span(now_ms)
        if self.file is not None:
            if fix_header and self.is_wav:
                self.file.seek(0)
                self.file.write(wav_header(self.samples * 2))
            self.file.close()
            self.file = None
        self.ended, self.stop_ms = ended, now_ms

    def _end_span(self, now_ms: float) -> None:
        if self.spans and self.spans[-1].stop_sample is None:
            self.spans[-1] = replace(self.spans[-1], stop_ms=now_ms, stop_sample=self.samples)

    def info(self) -> RecordingInfo:
        return RecordingInfo(self.id, self.channel.name, self.channel.call, self.path, self.bridged_only,
                             self.start_ms, self.samples, tuple(self.spans), self.stop_ms, self.ended,
                             self.witness)


def parse_options(options: str) -> dict[str, str]:
    """``bi(MMID)B(15)`` -> ``{"b": "", "i": "MMID", "B": "15"}`` (ast_app_parse_options)."""
    found: dict[str, str] = {}
    i = 0
    while i < len(options):
        letter, i = options[i], i + 1
        arg = ""
        if i < len(options) and options[i] == "(":
            end = options.find(")", i)
            end = len(options) if end < 0 else end
            arg, i = options[i + 1:end], end + 1
        found[letter] = arg
    return found


def ast_true(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


def ast_false(value: str) -> bool:
    return value.strip().lower() in ("no", "false", "n", "f", "0", "off")


# --- every recording of the simulator ---------------------------------------------------------
class MixMonitors:
    """The PBX's recordings. Every method runs under the PBX lock (the AMI handlers take it,
    ``Pbx.changed`` and scheduled ticks hold it)."""

    def __init__(self, pbx: "Pbx", spool_dir: str | Path | None = None,
                 witness_dir: str | Path | None = None, chunk_ms: float = CHUNK_MS) -> None:
        self.pbx = pbx
        self._spool = Path(spool_dir) if spool_dir is not None else None
        self.witness_dir = Path(witness_dir) if witness_dir is not None else None
        self.chunk_ms = chunk_ms
        self.active: list[Recording] = []
        self.finished: list[Recording] = []
        self._ticking = False

    @property
    def spool_dir(self) -> Path:
        """Asterisk's monitor directory; a temporary one unless given (made on first use)."""
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix="hil-pbx-monitor-"))
        return self._spool

    def resolve(self, file: str) -> Path:
        return Path(file) if file.startswith("/") else self.spool_dir / file

    # --- actions -------------------------------------------------------------------------------
    def start(self, ch: Channel, file: str, options: str = "") -> str | None:
        """``mixmonitor_exec``: the MixMonitor ID, or None when it refuses (no file name)."""
        flags = parse_options(options)
        if not file:
            return None
        path = self.resolve(file)
        now = self.pbx.now_ms()
        self.pbx.set_var(ch, "MIXMONITOR_FILENAME", str(path))
        rec = Recording(ch, path, "b" in flags, now, self._open(path), last_ms=now,
                        bridged=ch.bridge is not None)
        rec.id = f"0x{id(rec):012x}"
        if rec.file is not None:
            self.active.append(rec)
            self._schedule()
        if flags.get("i"):
            self.pbx.set_var(ch, flags["i"], rec.id)
        self.pbx.emit(self._event("MixMonitorStart", ch))
        self.pbx.record("mixmonitor", call=ch.call, channel=ch.name, on=True, file=str(path))
        return rec.id

    def stop(self, ch: Channel, mixmonitor_id: str = "") -> bool:
        """``stop_mixmonitor_full``: False when the channel has no such recording."""
        rec = next((r for r in self.active if r.channel is ch and mixmonitor_id in ("", r.id)), None)
        if rec is None:
            return False
        self._finish(rec, "stopped")
        self.pbx.emit(self._event("MixMonitorStop", ch))
        self.pbx.record("mixmonitor", call=ch.call, channel=ch.name, on=False, file=str(rec.path))
        return True

    def mute(self, ch: Channel, direction: str, state: str, mixmonitor_id: str = "") -> int:
        """``manager_mute_mixmonitor``: how many recordings changed; -1 when the channel has none.

        Asterisk answers -1 only for a channel that never had an audiohook and 0 (still Success)
        for one whose recordings ended; the simulator refuses both."""
        recs = [r for r in self.active if r.channel is ch and mixmonitor_id in ("", r.id)]
        if not recs:
            return -1
        now, on = self.pbx.now_ms(), not ast_false(state)
        for rec in recs:
            read = on if direction.lower() in (READ, BOTH) else rec.mute_read
            write = on if direction.lower() in (WRITE, BOTH) else rec.mute_write
            rec.set_mute(now, read, write)
        self.pbx.emit(self._event("MixMonitorMute", ch, [("Direction", direction),
                                                         ("State", "1" if ast_true(state) else "0")]))
        return len(recs)

    # --- time and the switch -------------------------------------------------------------------
    def on_change(self) -> None:
        """After every change to the switch: a recorded channel entering or leaving a bridge gets
        its audio up to now written with the old state; a hung-up one is closed."""
        if not self.active:
            return
        now = self.pbx.now_ms()
        for rec in list(self.active):
            if rec.channel.hungup:
                self._finish(rec, "hangup")
            elif (rec.channel.bridge is not None) != rec.bridged:
                rec.advance(now)
                rec.bridged = not rec.bridged

    def crash(self) -> list[RecordingInfo]:
        """Asterisk dies: every open file stops where the last write left it, sizes unfixed."""
        now, crashed = self.pbx.now_ms(), []
        for rec in list(self.active):
            rec.close(now, "crashed", fix_header=False)
            self.active.remove(rec)
            self.finished.append(rec)
            crashed.append(rec.info())
            self.pbx.record("recording_crashed", call=rec.channel.call, channel=rec.channel.name,
                            file=str(rec.path), start_ms=rec.start_ms, stop_ms=now, samples=rec.samples)
        return crashed

    def shutdown(self) -> None:
        for rec in list(self.active):
            self._finish(rec, "shutdown")

    def _tick(self) -> None:
        now = self.pbx.now_ms()
        for rec in self.active:
            rec.advance(now)
        self._ticking = False
        self._schedule()

    def _schedule(self) -> None:
        if self._ticking or not self.active or self.pbx.stopped.is_set():
            return
        self._ticking = True
        every = max(self.chunk_ms, self.pbx.timebase.scripted_ms(MIN_TICK_S))
        self.pbx.later(every, self._tick, "mixmonitor")

    # --- files ---------------------------------------------------------------------------------
    def _open(self, path: Path) -> IO[bytes] | None:
        """Like the monitor thread: a file that cannot be opened is logged, the action still
        succeeded (its answer went out before the thread ran)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "wb")
            if path.suffix == ".wav":
                f.write(wav_header())
                f.flush()
            return f
        except OSError as exc:
            log.warning("MixMonitor cannot open %s: %s", path, exc)
            return None

    def _finish(self, rec: Recording, ended: str) -> None:
        rec.close(self.pbx.now_ms(), ended)
        self.active.remove(rec)
        self.finished.append(rec)
        rec.witness = self._witness(rec.path)
        self.pbx.record("recording", call=rec.channel.call, channel=rec.channel.name, file=str(rec.path),
                        witness=str(rec.witness) if rec.witness else None, start_ms=rec.start_ms,
                        stop_ms=rec.stop_ms, muted=list(rec.spans), samples=rec.samples, ended=ended)

    def _witness(self, path: Path) -> Path | None:
        """Keep a copy: the edge deletes its WAV once encoded, tests compare the MP3 with this."""
        if self.witness_dir is None:
            return None
        self.witness_dir.mkdir(parents=True, exist_ok=True)
        target, n = self.witness_dir / path.name, 1
        while target.exists():
            target, n = self.witness_dir / f"{path.stem}-{n}{path.suffix}", n + 1
        try:
            shutil.copyfile(path, target)
        except OSError as exc:
            log.warning("MixMonitor cannot keep a witness of %s: %s", path, exc)
            return None
        return target

    def _event(self, name: str, ch: Channel, extra: Iterable[tuple[str, str]] = ()) -> Headers:
        return [("Event", name), ("Privilege", "call,all")] + self.pbx.events.chan(ch) + list(extra)
