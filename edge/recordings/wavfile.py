"""Reading the WAV files Asterisk's MixMonitor leaves in the spool, including crashed ones.

Asterisk's ``format_wav`` writes a 44-byte header with the RIFF and data sizes set to 0 when it
opens the file and fills them in only when it closes it. If Asterisk (or the box) dies mid-call the
sizes stay 0, and most readers (Python's ``wave``, many players) then see an empty file. The audio
is all there, though: a header whose sizes do not add up means the writer never closed the file,
so the audio runs from the data chunk to the end of the file. ``inspect`` reads it that way and says
so (``header_ok=False``); ``repair_header`` writes the right sizes back so every other tool agrees.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from edge.recordings.errors import WavError

_RIFF = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")
_U32 = struct.Struct("<I")
_PCM = 1
_EXTENSIBLE = 0xFFFE
_EXTENSIBLE_SUBFORMAT_AT = 24  # the first two bytes of the sub-format GUID are the format code
_SAMPLE_WIDTH = 2


@dataclass(frozen=True)
class WavInfo:
    """Where the PCM is in a WAV file and how to read it."""

    path: str
    sample_rate: int
    channels: int
    sample_width: int
    data_offset: int
    data_bytes: int
    header_ok: bool
    file_bytes: int

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_width

    @property
    def frames(self) -> int:
        return self.data_bytes // self.frame_bytes


def inspect(path: str | os.PathLike[str]) -> WavInfo:
    """The layout of a 16-bit PCM WAV; a crashed writer's zero sizes are tolerated (``header_ok``)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            return _inspect(f, name, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise WavError(f"{name}: cannot read the WAV: {exc.strerror or exc}") from exc


def read_pcm(path: str | os.PathLike[str]) -> tuple[bytes, WavInfo]:
    """The PCM bytes (exactly ``data_bytes``) and the layout; a bad header is read around, not fixed."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            info = _inspect(f, name, os.fstat(f.fileno()).st_size)
            f.seek(info.data_offset)
            pcm = f.read(info.data_bytes)
    except OSError as exc:
        raise WavError(f"{name}: cannot read the WAV: {exc.strerror or exc}") from exc
    if len(pcm) != info.data_bytes:
        raise WavError(f"{name}: the file shrank while being read "
                       f"({len(pcm)} of {info.data_bytes} bytes)")
    return pcm, info


def repair_header(path: str | os.PathLike[str]) -> bool:
    """Write the RIFF and data sizes from the file's length; True if anything changed.

    A trailing half sample (the writer died mid-write) is cut off. The change is fsynced, so a WAV
    repaired once stays repaired after a power cut.
    """
    info = inspect(path)
    if info.header_ok:
        return False
    end = info.data_offset + info.data_bytes
    if end - 8 > 0xFFFFFFFF:
        raise WavError(f"{info.path}: {end} bytes is too large for a RIFF header")
    try:
        with open(info.path, "r+b") as f:
            f.truncate(end)
            f.seek(4)
            f.write(_U32.pack(end - 8))
            f.seek(info.data_offset - 4)
            f.write(_U32.pack(info.data_bytes))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise WavError(f"{info.path}: cannot repair the WAV header: {exc.strerror or exc}") from exc
    return True


def duration_s(info: WavInfo) -> float:
    """Seconds of audio in the data chunk."""
    return info.frames / info.sample_rate


def _inspect(f: BinaryIO, name: str, size: int) -> WavInfo:
    head = f.read(_RIFF.size)
    if len(head) < _RIFF.size:
        raise WavError(f"{name}: not a WAV file ({size} bytes, too short for a RIFF header)")
    riff, riff_size, wave = _RIFF.unpack(head)
    if riff != b"RIFF" or wave != b"WAVE":
        raise WavError(f"{name}: not a WAV file (starts with {head[:4]!r}, expected b'RIFF'...b'WAVE')")
    fmt: tuple[int, int] | None = None
    pos = _RIFF.size
    while pos + _CHUNK.size <= size:
        f.seek(pos)
        chunk_id, chunk_size = _CHUNK.unpack(f.read(_CHUNK.size))
        body = pos + _CHUNK.size
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(name, f.read(min(chunk_size, 40)))
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError(f"{name}: the data chunk comes before any fmt chunk")
            return _layout(name, size, riff_size, fmt, body, chunk_size)
        pos = body + chunk_size + (chunk_size & 1)
    raise WavError(f"{name}: no data chunk" + ("" if fmt else " and no fmt chunk"))


def _parse_fmt(name: str, body: bytes) -> tuple[int, int]:
    """(sample_rate, channels) of a 16-bit PCM fmt chunk; anything else is a WavError."""
    if len(body) < _FMT.size:
        raise WavError(f"{name}: fmt chunk too short ({len(body)} bytes)")
    code, channels, rate, _byte_rate, _block_align, bits = _FMT.unpack_from(body)
    if code == _EXTENSIBLE and len(body) >= _EXTENSIBLE_SUBFORMAT_AT + 2:
        code = struct.unpack_from("<H", body, _EXTENSIBLE_SUBFORMAT_AT)[0]
    if code != _PCM or bits != 8 * _SAMPLE_WIDTH:
        raise WavError(f"{name}: not 16-bit PCM (format code {code:#x}, {bits} bits per sample)")
    if channels < 1 or rate < 1:
        raise WavError(f"{name}: fmt chunk says {channels} channels at {rate} Hz")
    return rate, channels


def _layout(name: str, size: int, riff_size: int, fmt: tuple[int, int], offset: int,
            declared: int) -> WavInfo:
    """Trust the data size only when the RIFF size matches the file: the writer closed it."""
    rate, channels = fmt
    frame = channels * _SAMPLE_WIDTH
    remaining = max(0, size - offset)
    header_ok = riff_size == size - 8 and declared <= remaining and declared % frame == 0
    data_bytes = declared if header_ok else remaining - remaining % frame
    return WavInfo(name, rate, channels, _SAMPLE_WIDTH, offset, data_bytes, header_ok, size)
