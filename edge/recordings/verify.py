"""Proof that an MP3 holds the call: decode it in-process and compare its length (and, for QA, its
waveform) with the WAV it came from.

LAME starts every stream with 576 samples of encoder delay and pads the end to whole frames. A
LAME/Xing tag could tell decoders to trim both, but lameenc writes none (nor does the ``lame`` CLI
at 16 kbit/s and 8 kHz: the tag does not fit in a 144-byte frame), so the decoded audio is
144-216 ms longer than the WAV at 8 kHz: more than 200 ms for some short calls.
The length check therefore leaves out the fixed 576-sample delay and allows max(1 %, 200 ms) for the
rest (the end padding, 72-144 ms at 8 kHz), so it never fails a good file and still catches a
truncated one.
"""
from __future__ import annotations

from dataclasses import dataclass

import miniaudio
import numpy as np

from edge.recordings.errors import VerifyError

ENCODER_DELAY_SAMPLES = 576
TOLERANCE_FRACTION = 0.01
TOLERANCE_MIN_S = 0.2


@dataclass(frozen=True)
class VerifyResult:
    """What the decoder made of the MP3; ``delta_s`` leaves out the encoder delay."""

    decoded_samples: int
    duration_s: float
    delta_s: float


def decode(mp3: bytes) -> tuple[np.ndarray, int]:
    """All the samples (int16, channels interleaved) and the sample rate; ID3v2 tags are skipped."""
    sound = _decode(mp3)
    return np.frombuffer(sound.samples, dtype=np.int16), sound.sample_rate


def verify(mp3: bytes, expected_samples: int, sample_rate: int) -> VerifyResult:
    """Decode the whole MP3 and check its length against the WAV's; VerifyError if it is off.

    A real decode, not ``miniaudio.mp3_get_info``: that one only walks the frame headers (about 1 %
    of the cost) and would pass a file whose audio the decoder chokes on.
    """
    sound = _decode(mp3)
    decoded = sound.num_frames
    duration = decoded / sound.sample_rate
    expected = expected_samples / sample_rate
    delta = duration - ENCODER_DELAY_SAMPLES / sound.sample_rate - expected
    allowed = max(TOLERANCE_FRACTION * expected, TOLERANCE_MIN_S)
    if abs(delta) > allowed:
        raise VerifyError(f"the MP3 decodes to {duration:.3f} s but the WAV holds {expected:.3f} s "
                          f"(off by {delta:+.3f} s after the encoder delay, {allowed:.3f} s allowed)")
    return VerifyResult(decoded, duration, delta)


def correlate_aligned(reference: np.ndarray, decoded: np.ndarray, sample_rate: int,
                      max_lag_s: float = 0.2) -> tuple[float, int]:
    """Best normalised correlation of ``decoded`` against ``reference`` within ±``max_lag_s``.

    Returns (correlation, lag) where ``decoded[i + lag]`` lines up with ``reference[i]``; a lossy
    codec that kept the speech scores well above 0.9, unrelated audio near 0.
    """
    ref = np.asarray(reference, dtype=np.float64)
    dec = np.asarray(decoded, dtype=np.float64)
    if not len(ref) or not len(dec):
        return 0.0, 0
    max_lag = int(max_lag_s * sample_rate)
    lag = _best_lag(ref, dec, max_lag)
    a, b = ref[max(0, -lag):], dec[max(0, lag):]
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    norm = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return (float(np.dot(a, b) / norm) if norm else 0.0), lag


def _best_lag(ref: np.ndarray, dec: np.ndarray, max_lag: int) -> int:
    """The lag with the largest raw cross-correlation, found with one FFT product."""
    size = 1 << (len(ref) + len(dec) - 1).bit_length()
    spectrum = np.fft.irfft(np.fft.rfft(dec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.r_[0:max_lag + 1, -max_lag:0]  # circular: negative lags sit at the end
    return int(lags[np.argmax(spectrum[lags])])


def _decode(mp3: bytes) -> miniaudio.DecodedSoundFile:
    try:
        return miniaudio.mp3_read_s16(mp3 if isinstance(mp3, bytes) else bytes(mp3))
    except miniaudio.DecodeError as exc:
        raise VerifyError(f"the MP3 does not decode ({len(mp3)} bytes): {exc}") from exc
