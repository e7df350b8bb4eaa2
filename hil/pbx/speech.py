"""A known, speech-like test signal for simulated call recordings.

Two voices take turns, as on a call: ``read`` (what the recorded channel's party says, a low
voice) and ``write`` (what that party hears, a higher one). Each voice is a harmonic series on a
gliding pitch, its harmonics' weights drifting like changing vowels, shaped into 200 ms syllables
(some silent, like pauses between words) with a little breath noise and a faint line-noise floor.
Not a pure tone, so an MP3 encoder and a silence detector see something like a real call.

Every sample is a closed-form function of ``(seed, sample index)``: any stretch can be rendered on
its own and equals the same stretch of a longer rendering, so a recording written in chunks can
be regenerated whole by a test. The seed comes from the recording's file name (``seed_of``).
"""
from __future__ import annotations

import math
import zlib
from functools import lru_cache
from pathlib import PurePath

import numpy as np

SAMPLE_RATE = 8000
SYLLABLE_S = 0.2
TURN_SYLLABLES = 12             # a speaker talks for 2.4 s, then listens for 2.4 s
LEVEL = 0.35                    # each voice's peak, of full scale
NOISE_FLOOR = 0.0004            # about -68 dBFS of line noise under each voice
READ_PITCH_HZ, WRITE_PITCH_HZ = 118.0, 196.0
_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_PERIOD = 2048
_FRAME = 80
_SYLLABLE = int(SYLLABLE_S * SAMPLE_RATE)
_NOISE_PERIOD = 8191            # samples: about 1 s of noise, repeated


def _period(weights: list[float]) -> np.ndarray:
    """One pitch period of a harmonic series, scaled to a peak of 1."""
    x = np.arange(_PERIOD) / _PERIOD
    wave = sum(w * np.sin(2 * math.pi * (k + 1) * x) for k, w in enumerate(weights))
    return wave / np.abs(wave).max()


# harmonic weights loosely after the formants of /a/ and /i/ (up to ~3.4 kHz at 196 Hz)
_VOWEL_A = _period([1.0, 0.8, 0.9, 1.0, 0.7, 0.5, 0.6, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05,
                    0.04])
_VOWEL_I_MINUS_A = _period([1.0, 0.5, 0.2, 0.1, 0.08, 0.1, 0.15, 0.3, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1,
                            0.08, 0.05]) - _VOWEL_A


def seed_of(name: str) -> int:
    """The seed of a recording: CRC-32 of its file name without folders."""
    return zlib.crc32(PurePath(name).name.encode())


def render(seed: int, start: int, count: int, mute_read: bool = False,
           mute_write: bool = False) -> np.ndarray:
    """Samples ``start`` .. ``start + count`` of the mixed call as little-endian int16; a muted
    direction contributes zeros, as Asterisk's audiohook mute flags make it."""
    if count <= 0:
        return np.zeros(0, dtype="<i2")
    n = np.arange(start, start + count, dtype=np.int64)
    mix = np.zeros(count)
    if not mute_read:
        mix += voice(seed * 2 + 1, READ_PITCH_HZ, 0, n)
    if not mute_write:
        mix += voice(seed * 2 + 2, WRITE_PITCH_HZ, 1, n)
    return np.clip(np.rint(mix * 32767), -32768, 32767).astype("<i2")


def voice(seed: int, pitch_hz: float, turn: int, n: np.ndarray) -> np.ndarray:
    """One speaker at sample indices ``n`` (not empty), as floats within +-``LEVEL``; it talks
    in the turns whose parity is ``turn``."""
    rng = np.random.default_rng(seed)
    at = _pitch_position(rng, pitch_hz, n)
    vowel_hz, vowel_phase = rng.uniform(0.7, 1.6), rng.uniform(0, 2 * math.pi)
    tone = _VOWEL_A[at] + _per_frame(lambda t: 0.5 + 0.5 * np.sin(2 * math.pi * vowel_hz * t + vowel_phase),
                                     n) * _VOWEL_I_MINUS_A[at]
    noise = _noise(seed)[n % _NOISE_PERIOD]
    return LEVEL * _syllables(seed, turn, n) * (0.92 * tone + 0.08 * noise) + NOISE_FLOOR * noise


def _pitch_position(rng: np.random.Generator, pitch_hz: float, n: np.ndarray) -> np.ndarray:
    """Where in the pitch period each sample falls (an index into the period tables). The pitch
    glides as ``pitch_hz * (1 + depth * sin(w t + phi))``; its phase is the closed-form integral."""
    glide_hz, depth, phi = rng.uniform(0.3, 0.7), rng.uniform(0.08, 0.15), rng.uniform(0, 2 * math.pi)
    t = n / SAMPLE_RATE
    w = 2 * math.pi * glide_hz
    cycles = pitch_hz * (t - depth / w * (np.cos(w * t + phi) - math.cos(phi)))
    return (cycles * _PERIOD).astype(np.int64) & (_PERIOD - 1)


def _per_frame(fn, n: np.ndarray) -> np.ndarray:
    """``fn`` of each 10 ms frame's start time, spread over that frame's samples."""
    frame = n // _FRAME
    first = int(frame[0])
    return fn(np.arange(first, int(frame[-1]) + 1) * (_FRAME / SAMPLE_RATE))[frame - first]


def _syllables(seed: int, turn: int, n: np.ndarray) -> np.ndarray:
    """The loudness envelope: 200 ms syllables, a fifth of them silent, in this voice's turns."""
    syllable = n // _SYLLABLE
    first = int(syllable[0])
    numbers = np.arange(first, int(syllable[-1]) + 1)
    level = _uniform(seed, numbers)
    loudness = np.where(level < 0.2, 0.0, 0.5 + 0.5 * level) * ((numbers // TURN_SYLLABLES) % 2 == turn)
    f = (n - syllable * _SYLLABLE) * (1 / _SYLLABLE)
    return loudness[syllable - first] * (4 * f * (1 - f)) ** 2


@lru_cache(maxsize=64)
def _noise(seed: int) -> np.ndarray:
    """A second of white noise in [-1, 1) for one voice."""
    return _uniform(seed ^ 0x5A5A5A5A, np.arange(_NOISE_PERIOD)) * 2 - 1


def _uniform(seed: int, keys: np.ndarray) -> np.ndarray:
    """splitmix64 of (seed, key) as floats in [0, 1): per-index randomness without state."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) * np.uint64(_GOLDEN) + np.uint64((seed * _GOLDEN) & _MASK)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
