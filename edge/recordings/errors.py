"""The recording pipeline's one error hierarchy.

Every error the pipeline raises on purpose is a ``RecordingError`` (itself an ``EdgeError``), so the
recording service can catch "this recording could not be filed" in one place and keep the WAV for a
retry. Each subclass names what a caller may do differently: a ``WavError`` will not get better by
retrying, a ``DiskFullError`` will once space is freed, a ``VerifyError`` means the encoder let us down.
"""
from __future__ import annotations

from edge.errors import EdgeError


class RecordingError(EdgeError):
    """Base of every error the recording pipeline raises on purpose."""


class WavError(RecordingError):
    """The WAV cannot be read, is not RIFF/WAVE, or is not 16-bit PCM; the message names the file."""


class VerifyError(RecordingError):
    """The MP3 just written does not decode, or decodes to the wrong length; it was not filed."""


class DiskFullError(RecordingError):
    """The disk (or the quota) filled while writing the MP3.

    The partial ``.part`` file has been removed and the WAV is untouched, so the job can simply be
    retried once space is freed.
    """
