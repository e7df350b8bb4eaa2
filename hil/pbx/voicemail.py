"""AGI ``RECORD FILE``: the caller's message written to a real audio file, as Asterisk 22 does it.

The edge takes voicemail (INB-13) with ``RECORD FILE`` and encodes the file to MP3, and tests
compare the two, so the file and the reply follow Asterisk:

* derived from source, main/file.c ``build_filename``: an absolute name becomes ``<name>.<format>``;
  a relative one ``<astdatadir>/sounds/<name>.<format>``. The simulator has no data directory, so
  relative names land in its ``spool_dir`` (the MixMonitor directory) instead. ``ast_writefile``
  creates no folders: a missing one, or a format the simulator cannot write, answers
  ``200 result=-1 (writefile)``. Formats: ``wav`` (8 kHz 16-bit mono, format_wav) and ``sln`` /
  ``raw`` (headerless, format_sln registers both extensions); real Asterisk also writes ``gsm``,
  ``ulaw``, ``WAV``..., the simulator refuses them.
* derived from source, res/res_agi.c ``handle_recordfile``: argument 6 is the sample offset when it
  parses as a number; anything else there without ``=`` (``beep``, ``BEEP``), or anything without
  ``=`` in argument 7, plays ``beep`` first. A digit in the escape set during the beep answers
  ``200 result=<digit> (randomerror) endpos=<offset>``, a hang-up ``result=-1 (randomerror)``, and no
  file is written. ``s=N`` is found as the first of arguments 6..8 holding an ``s``. The file is
  opened without ``O_TRUNC``, sought to the offset (clamped to its end) and truncated there.
* the loop reads 20 ms frames until the timeout (``-1``: none): every voice frame is written and
  ``endpos`` is the file position after it (``ast_tellstream``: samples from the file's start). An
  escape digit rewinds 200 ms (``ast_stream_rewind``, "to chop off any small amount of DTMF") and
  answers ``<digit> (dtmf)``; ``ast_read`` failing (hang-up) answers ``-1 (hangup) endpos=`` with
  what was written so far, and ``ast_closestream`` keeps the file (header fixed). Silence
  detection (main/dsp.c): a frame is silent when its mean absolute sample is below 256 (dsp.conf's
  default ``silencethreshold``); the recording stops at the first frame where the running silence
  exceeds ``N`` s, rewinds ``N - 1`` s and answers ``(timeout)`` with ``result`` = what the last
  ``ast_waitfor`` returned: the milliseconds left of the timeout (fixture agi-04's odd
  ``result=18865`` after 1135 ms of a 20000 ms timeout), or about 100000 - 20 with no timeout
  (``ast_waitfor`` waits in 100000 ms slices then).
* derived from source, formats/format_wav.c: the header is rewritten at open and ``wav_trunc``
  updates it, so an unclosed message's header says the sizes of what was kept before it (0);
  ``wav_close`` fixes both sizes.

The audio is what the caller says: ``hil.pbx.speech``'s caller voice (``read``), seeded with the
file's name (``seed_of``). That voice talks 2.4 s then listens 2.4 s, which a silence detector
would hear as pauses, so a message is its talking turns back to back (``caller_voice``): a test
regenerates it with ``message_audio``. After a scripted caller's ``message_ms`` the line is silent
(zeros). The file grows as scripted time passes (like MixMonitor) and is cut and closed at the end.

Scripted time is scaled, so a thread's wake-up jitter is many scripted ms; the scripted caller's
own end (its ``#`` or hang-up at ``message_ms``) is therefore dated at the planned instant, and a
file holds exactly the frames the script implies.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from hil.pbx.channels import Channel
from hil.pbx.mixmonitor import CHUNK_MS, FRAME_SAMPLES, HEADER_SIZE, MIN_TICK_S, wav_header
from hil.pbx.scripts import MESSAGE_ENDS
from hil.pbx.speech import SAMPLE_RATE, SYLLABLE_S, TURN_SYLLABLES, render, seed_of

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx
    from hil.pbx.records import Record

log = logging.getLogger(__name__)

FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE
SAMPLES_PER_MS = SAMPLE_RATE // 1000
# estimated from fixture agi-04 (the beep's length is not in source): 3583 ms from the command to
# its reply, 24972 samples written before the 200 ms rewind (3121 ms), so the beep and the set-up
# before the first frame took ~460 ms.
# A world's ``prompts: {beep: <ms>}`` overrides it; ``beep: null`` makes the file missing.
BEEP_MS = 460
SILENCE_THRESHOLD = 256
DTMF_REWIND_MS = 200
FOREVER_RESULT = 100_000 - FRAME_MS
FORMATS = {"wav": True, "sln": False, "raw": False}  # format -> has a WAV header
_TURN = int(TURN_SYLLABLES * SYLLABLE_S * SAMPLE_RATE)  # samples the caller voice talks at a time


# --- the request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordRequest:
    name: str
    format: str
    escape: str
    timeout_ms: int        # -1: no limit
    offset: int = 0        # samples kept from an existing file
    beep: bool = False
    silence_ms: int = 0    # 0: no silence detection


def _leading_int(text: str) -> int | None:
    """``sscanf("%d")``: the number at the start of ``text``, or None."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else None


def parse_request(argv: list[str]) -> RecordRequest | None:
    """``RECORD FILE <name> <format> <escape> <timeout> [offset] [beep] [s=N]``; None: show usage."""
    if len(argv) < 6:
        return None
    timeout = _leading_int(argv[5])
    if timeout is None:
        return None
    extra = argv[6:9]
    offset = _leading_int(extra[0]) if extra else None
    beep = bool(extra) and offset is None and "=" not in extra[0]
    beep = beep or (len(extra) > 1 and "=" not in extra[1])
    silence = 0
    holder = next((arg for arg in extra if "s" in arg), None)
    if holder is not None:
        tail = holder[holder.index("s"):]
        if len(tail) > 2 and tail.startswith("s="):
            silence = max(0, _leading_int(tail[2:]) or 0) * 1000
    return RecordRequest(argv[2], argv[3], argv[4], timeout, max(0, offset or 0), beep, silence)


# --- the audio -----------------------------------------------------------------------------------
def caller_voice(name: str, start: int, count: int, speech_samples: int | None = None) -> np.ndarray:
    """Samples ``start`` .. ``start + count`` of a caller leaving a message in the file ``name``:
    the caller voice's talking turns back to back, zeros from ``speech_samples`` on."""
    seed, end = seed_of(name), start + count
    talk_end = end if speech_samples is None else max(start, min(end, speech_samples))
    pieces, at = [], start
    while at < talk_end:
        turn, into = divmod(at, _TURN)
        n = min(_TURN - into, talk_end - at)
        pieces.append(render(seed, turn * 2 * _TURN + into, n, mute_write=True))
        at += n
    pieces.append(np.zeros(end - max(start, talk_end), dtype="<i2"))
    return np.concatenate(pieces)


def message_audio(name: str, samples: int, speech_ms: int | None = None) -> np.ndarray:
    """What a message of ``samples`` samples recorded (without offset) to ``name`` holds."""
    speech = None if speech_ms is None else speech_ms * SAMPLES_PER_MS
    return caller_voice(Path(name).name, 0, samples, speech)


def file_samples(path: str | Path) -> np.ndarray:
    """The samples of a ``.wav`` (after its 44-byte header) or ``.sln`` / ``.raw`` file."""
    data = Path(path).read_bytes()
    return np.frombuffer(data[HEADER_SIZE:] if str(path).endswith(".wav") else data, dtype="<i2")


class SilenceDetector:
    """``ast_dsp_silence`` per 20 ms frame, as handle_recordfile uses it."""

    def __init__(self, limit_ms: int, threshold: int = SILENCE_THRESHOLD) -> None:
        self.limit_ms, self.threshold = limit_ms, threshold
        self.total_ms = 0

    def feed(self, frames: np.ndarray) -> int | None:
        """Index of the frame (in ``frames``, shape (n, 160)) where the silence exceeds the limit."""
        level = np.abs(frames.astype(np.int32)).sum(axis=1) // frames.shape[1]
        for i, silent in enumerate(level < self.threshold):
            self.total_ms = self.total_ms + FRAME_MS if silent else 0
            if self.total_ms > self.limit_ms:
                return i
        return None


# --- the file ------------------------------------------------------------------------------------
class MessageFile:
    """One file being recorded: opened like ``ast_writefile`` + seek to the offset + truncate."""

    def __init__(self, path: Path, file: IO[bytes], wav: bool, kept: int) -> None:
        self.path, self.file, self.wav = path, file, wav
        self.base = HEADER_SIZE if wav else 0
        self.samples = kept
        self.kept = kept

    @classmethod
    def open(cls, path: Path, fmt: str, offset: int) -> "MessageFile | None":
        if fmt not in FORMATS:
            log.warning("RECORD FILE: the simulator cannot write format %r (%s)", fmt, path)
            return None
        wav = FORMATS[fmt]
        try:
            f = open(path, "r+b" if path.exists() else "w+b")
        except OSError as exc:
            log.warning("RECORD FILE cannot open %s: %s", path, exc)
            return None
        base = HEADER_SIZE if wav else 0
        kept = max(0, min(offset, (f.seek(0, 2) - base) // 2))
        f.truncate(base + kept * 2)
        if wav:
            f.seek(0)
            f.write(wav_header(kept * 2))
        f.seek(base + kept * 2)
        f.flush()
        return cls(path, f, wav, kept)

    def write(self, pcm: np.ndarray) -> None:
        self.file.write(pcm.tobytes())
        self.file.flush()  # a message grows on disk while it is recorded
        self.samples += len(pcm)

    def rewind(self, samples: int) -> None:
        """``ast_stream_rewind`` + ``ast_truncstream``: never into the header."""
        self.samples = max(0, self.samples - samples)
        self.file.truncate(self.base + self.samples * 2)
        self.file.seek(self.base + self.samples * 2)

    def close(self) -> None:
        if self.wav:
            self.file.seek(0)
            self.file.write(wav_header(self.samples * 2))
        self.file.close()


# --- what the caller does ------------------------------------------------------------------------
@dataclass(frozen=True)
class CallerMessage:
    """A scripted caller's message: speaks ``speech_ms`` (None: until the recording ends), then
    ``end``: one DTMF key, ``hangup`` or ``silence`` (stays on the line, says nothing)."""
    speech_ms: int | None = None
    end: str = "silence"

    def planned_end(self, escape: str) -> tuple[str, int] | None:
        """(``dtmf`` / ``hangup``, ms) when the script itself ends the recording."""
        if self.speech_ms is None:
            return None
        if self.end == "hangup":
            return "hangup", self.speech_ms
        if self.end not in MESSAGE_ENDS and self.end in escape:
            return "dtmf", self.speech_ms
        return None


def _caller_message(pbx: "Pbx", ch: Channel) -> CallerMessage:
    """Ask the channel's script (``on_recording`` hook) what it says; nobody scripted: talks on."""
    hook = getattr(pbx.scripted.get(ch.name), "on_recording", None)
    message = hook(ch) if hook is not None else None
    return message or CallerMessage()


# --- one recording -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    result: int
    data: str
    endpos: int | None
    ended: str = ""          # dtmf, timeout, silence, hangup ("" for a failure)
    digit: str | None = None
    at_ms: float = 0.0       # scripted ms from the first frame to the end


class Take:
    """One recording from its first frame to its end, in the AGI session's thread."""

    def __init__(self, pbx: "Pbx", ch: Channel, request: RecordRequest, out: MessageFile,
                 message: CallerMessage, start_ms: float) -> None:
        self.pbx, self.ch, self.request, self.out = pbx, ch, request, out
        self.message, self.start_ms = message, start_ms
        self.planned = message.planned_end(request.escape)
        self.limit = request.timeout_ms // FRAME_MS if request.timeout_ms >= 0 else None
        self.detector = SilenceDetector(request.silence_ms) if request.silence_ms else None
        self.trip: int | None = None  # frames written when silence stops it
        self.pending = np.zeros((0, FRAME_SAMPLES), dtype="<i2")  # rendered, not yet written
        self.written = 0

    def run(self) -> Outcome:
        pbx, ch = self.pbx, self.ch
        while True:
            with pbx.lock:
                now = pbx.now_ms() - self.start_ms
                hung = ch.hungup or pbx.stopped.is_set()
                digit = self._escape_digit()
            self._render(int((now + CHUNK_MS) // FRAME_MS) + 1)
            outcome = self._end(now, hung, digit)
            if outcome is not None:
                return outcome
            self._write(int(now // FRAME_MS))
            pbx.wait_until(lambda: ch.hungup or self._escape_digit(), self._wait_ms(now))

    def _escape_digit(self) -> str | None:
        return next((d for d in self.ch.dtmf if d in self.request.escape), None)

    def _wait_ms(self, now: float) -> float:
        wake = now + max(CHUNK_MS, self.pbx.timebase.scripted_ms(MIN_TICK_S))
        if self.request.timeout_ms >= 0:
            wake = min(wake, self.request.timeout_ms)
        if self.trip is not None:
            wake = min(wake, self.trip * FRAME_MS)
        return max(0.0, wake - now)

    def _end(self, now: float, hung: bool, digit: str | None) -> Outcome | None:
        """The earliest end that scripted time has reached (a timeout or silence before an event
        that woke us late wins); None while recording goes on."""
        ends: list[tuple[float, int, str]] = []
        if self.request.timeout_ms >= 0 and now >= self.request.timeout_ms:
            ends.append((self.request.timeout_ms, 0, "timeout"))
        if self.trip is not None and now >= self.trip * FRAME_MS:
            ends.append((self.trip * FRAME_MS, 1, "silence"))
        if hung or digit:
            how = "hangup" if hung else "dtmf"
            at = now
            if self.planned is not None and self.planned[0] == how and now >= self.planned[1]:
                at = self.planned[1]
            ends.append((at, 2, how))
        if not ends:
            return None
        at, _, how = min(ends)
        return self._finish(at, how, digit or "")

    def _finish(self, at: float, how: str, digit: str) -> Outcome:
        timeout = self.request.timeout_ms
        if how == "timeout":
            self._write(self.limit or 0)
            return Outcome(0, "timeout", self.out.samples, how, at_ms=at)
        if how == "silence":
            self._write(self.trip or 0)
            self.out.rewind((self.request.silence_ms - 1000) * SAMPLES_PER_MS)
            left = timeout - int(at) if timeout >= 0 else FOREVER_RESULT
            return Outcome(left, "timeout", self.out.samples, how, at_ms=at)
        self._write(int(at // FRAME_MS))
        if how == "dtmf":
            self.out.rewind(DTMF_REWIND_MS * SAMPLES_PER_MS)
            return Outcome(ord(digit), "dtmf", self.out.samples, how, digit, at)
        return Outcome(-1, "hangup", self.out.samples, how, at_ms=at)

    def _render(self, frames: int) -> None:
        """Have the caller's audio up to ``frames`` ready, and find where silence would stop it."""
        for cap in (self.limit, self.trip):
            if cap is not None:
                frames = min(frames, cap)
        have = self.written + len(self.pending)
        if frames <= have:
            return
        speech = None if self.message.speech_ms is None else self.message.speech_ms * SAMPLES_PER_MS
        pcm = caller_voice(self.out.path.name, have * FRAME_SAMPLES, (frames - have) * FRAME_SAMPLES, speech)
        new = pcm.reshape(-1, FRAME_SAMPLES)
        if self.detector is not None:
            hit = self.detector.feed(new)
            if hit is not None:
                new, self.trip = new[:hit + 1], have + hit + 1
        self.pending = np.concatenate([self.pending, new])

    def _write(self, frames: int) -> None:
        self._render(frames)
        count = min(frames - self.written, len(self.pending))
        if count > 0:
            self.out.write(self.pending[:count].reshape(-1))
            self.pending, self.written = self.pending[count:], self.written + count


# --- the command ---------------------------------------------------------------------------------
def resolve(pbx: "Pbx", name: str, fmt: str) -> Path:
    """``build_filename``: absolute names stay, relative ones go to the simulator's spool_dir."""
    if name.startswith("/"):
        return Path(f"{name}.{fmt}")
    spool = pbx.mixmonitors.spool_dir
    spool.mkdir(parents=True, exist_ok=True)  # stands for Asterisk's sounds folder, which exists
    return spool / f"{name}.{fmt}"


def _beep(pbx: "Pbx", ch: Channel, escape: str) -> int:
    """``ast_streamfile("beep")`` + ``ast_waitstream``: 0, an escape digit's code, or -1."""
    length = pbx.world.prompts.get("beep", BEEP_MS)
    with pbx.lock:
        if length is None or ch.hungup:
            return -1
        pbx.stop_moh(ch)
        pbx.audio.set_source(ch.name, "prompt:beep")
        ch.dtmf_listening, ch.dtmf = True, []
    pbx.wait_until(lambda: ch.hungup or any(d in escape for d in ch.dtmf), length)
    with pbx.lock:
        if not ch.hungup:
            pbx.audio.set_source(ch.name, None)
        pressed = next((d for d in ch.dtmf if d in escape), None)
        ch.dtmf_listening, ch.dtmf = False, []
    if ch.hungup:
        return -1
    return ord(pressed) if pressed else 0


def record_file(pbx: "Pbx", ch: Channel, argv: list[str]) -> Outcome | None:
    """Run ``RECORD FILE``; None: the arguments want the usage text."""
    request = parse_request(argv)
    if request is None:
        return None
    if request.beep:
        res = _beep(pbx, ch, request.escape)
        if res:
            return Outcome(res, "randomerror", request.offset)
    path = resolve(pbx, request.name, request.format)
    out = MessageFile.open(path, request.format, request.offset)
    if out is None:
        return Outcome(-1, "writefile", None)
    with pbx.lock:
        ch.dtmf_listening, ch.dtmf = True, []
        start = pbx.now_ms()
        message = _caller_message(pbx, ch)
    try:
        outcome = Take(pbx, ch, request, out, message, start).run()
    finally:
        out.close()
        with pbx.lock:
            ch.dtmf_listening, ch.dtmf = False, []
    pbx.record("recorded", call=ch.call, channel=ch.name, file=str(path), format=request.format,
               samples=outcome.endpos, kept=out.kept, ended=outcome.ended, digit=outcome.digit,
               start_ms=start, stop_ms=start + outcome.at_ms, speech_ms=message.speech_ms)
    return outcome


# --- what tests read -----------------------------------------------------------------------------
@dataclass(frozen=True)
class VoiceMessage:
    """A finished RECORD FILE. ``samples``: in the file (``endpos``), ``kept`` of them from before
    (the offset); ``ended``: ``dtmf``, ``timeout``, ``silence`` (the reply says ``timeout``) or
    ``hangup``; ``speech_ms``: how long the scripted caller spoke (None: throughout)."""
    call: str | None
    channel: str
    file: Path
    format: str
    samples: int
    kept: int
    ended: str
    digit: str | None
    start_ms: float
    stop_ms: float
    speech_ms: int | None

    @classmethod
    def from_record(cls, record: "Record") -> "VoiceMessage":
        d: dict[str, Any] = record.data
        return cls(d["call"], d["channel"], Path(d["file"]), d["format"], d["samples"], d["kept"],
                   d["ended"], d["digit"], d["start_ms"], d["stop_ms"], d["speech_ms"])

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000 / SAMPLE_RATE

    def expected_audio(self) -> np.ndarray:
        """What the file must hold after its kept part (the caller's words, regenerated)."""
        speech = None if self.speech_ms is None else self.speech_ms * SAMPLES_PER_MS
        return caller_voice(self.file.name, 0, max(0, self.samples - self.kept), speech)
