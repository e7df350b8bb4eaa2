"""One recording from spool WAV to filed, verified MP3: ``process(job)``.

``process`` is a top-level function of picklable arguments so the recording service can run it in
a ``ProcessPoolExecutor`` (encoding is CPU-bound; one worker per core). It never deletes the WAV:
the service does that, and only after ``process`` has returned, which it does only once the MP3 is
on disk (fsynced, renamed into place, directory fsynced) and has been read back and decoded.

A crash at any point leaves either no MP3 or a whole one: the bytes go to ``<name>.mp3.part`` in the
target directory and are renamed only after they verified. A leftover ``.part`` is garbage from a
crash and may be removed; the job is simply run again.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge.recordings.encoder import EncoderSettings, encode
from edge.recordings.errors import DiskFullError, RecordingError
from edge.recordings.filing import RecordingMeta, mp3_path
from edge.recordings.tags import id3_tag
from edge.recordings.verify import verify
from edge.recordings.wavfile import WavInfo, duration_s, inspect, read_pcm, repair_header

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class RecordingJob:
    """Everything a worker process needs; plain data so it pickles."""

    wav_path: str
    mp3_root: str
    meta: RecordingMeta
    timezone: str
    settings: EncoderSettings = EncoderSettings()


@dataclass(frozen=True)
class RecordingResult:
    """The filed MP3.

    ``duration_s`` is the WAV's audio; ``decoded_duration_s`` what the MP3 decodes to (a little longer).
    """

    mp3_path: Path
    sha256: str
    mp3_bytes: int
    duration_s: float
    decoded_duration_s: float
    header_repaired: bool


def process(job: RecordingJob) -> RecordingResult:
    """Encode, tag, write, verify and file one recording; a RecordingError says why it was not."""
    repaired = _repair_if_needed(job.wav_path)
    pcm, info = read_pcm(job.wav_path)
    mp3 = encode(pcm, info.sample_rate, info.channels, job.settings)
    del pcm
    target = mp3_path(job.mp3_root, job.meta, job.timezone)
    part = target.with_name(target.name + PART_SUFFIX)
    data = _write_part(part, id3_tag(job.meta, job.timezone), mp3, job.wav_path)
    try:
        checked = verify(data, info.frames, info.sample_rate)
        digest = hashlib.sha256(data).hexdigest()
        os.replace(part, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        _remove(part)
        raise RecordingError(f"{target}: cannot file the MP3: {exc.strerror or exc}") from exc
    except BaseException:
        _remove(part)
        raise
    return RecordingResult(target, digest, len(data), duration_s(info), checked.duration_s, repaired)


def _repair_if_needed(wav_path: str) -> bool:
    info: WavInfo = inspect(wav_path)
    if info.header_ok:
        return False
    changed = repair_header(wav_path)
    log.warning("recording %s: WAV header sizes were wrong (writer did not close it); repaired, "
                "%.1f s of audio", wav_path, duration_s(info))
    return changed


def _write_part(part: Path, tag: bytes, mp3: bytes, wav_path: str) -> bytes:
    """Write tag + MP3 to ``part``, fsync it, and return the bytes read back from it."""
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as f:
            f.write(tag)
            f.write(mp3)
            f.flush()
            os.fsync(f.fileno())
        with open(part, "rb") as f:
            return f.read()
    except OSError as exc:
        _remove(part)
        if exc.errno in _DISK_FULL:
            raise DiskFullError(f"{part}: disk full writing the MP3 ({exc.strerror}); the partial "
                                f"file was removed, the WAV {wav_path} is untouched") from exc
        raise RecordingError(f"{part}: cannot write the MP3: {exc.strerror or exc}") from exc


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("recording: cannot remove the partial file %s: %s", path, exc)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable: after a power cut the MP3 is under its final name or not at all."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
