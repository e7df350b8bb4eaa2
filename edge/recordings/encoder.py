"""PCM to MP3 in-process with lameenc (LAME's library), never a ``lame`` subprocess.

16 kbit/s at 8 kHz is telephone audio's own bandwidth: a one-hour call is about 7 MB. CBR keeps
that size predictable for storage planning; ``cbr=False`` asks for ABR at the same mean bitrate.
"""
from __future__ import annotations

from dataclasses import dataclass

import lameenc
import numpy as np

from edge.recordings.errors import RecordingError

_ABR = 3  # LAME's vbr_abr


MP3_BITRATES_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320)


@dataclass(frozen=True)
class EncoderSettings:
    """LAME settings; ``quality`` is LAME's ``-q`` (0 best, 9 fastest).

    Checked here because LAME itself silently rounds a bitrate it does not know and clamps the
    quality, so a typo would change every recording without a word.
    """

    bitrate_kbps: int = 16
    quality: int = 5
    cbr: bool = True

    def __post_init__(self) -> None:
        if self.bitrate_kbps not in MP3_BITRATES_KBPS:
            raise RecordingError(f"bitrate_kbps: {self.bitrate_kbps} is not an MP3 bitrate "
                                 f"{MP3_BITRATES_KBPS}")
        if not 0 <= self.quality <= 9:
            raise RecordingError(f"quality: expected 0 (best) to 9 (fastest), got {self.quality}")


def encode(pcm: bytes, sample_rate: int, channels: int, settings: EncoderSettings) -> bytes:
    """A mono MP3 of 16-bit little-endian PCM; several channels are mixed down first."""
    if channels > 1:
        pcm = _downmix(pcm, channels)
    try:
        encoder = _encoder(sample_rate, settings)
        mp3 = encoder.encode(pcm)
        mp3 += encoder.flush()
    except RuntimeError as exc:  # lameenc reports a refused setting or a failed encode this way
        raise RecordingError(f"lameenc cannot encode {sample_rate} Hz at {settings}: {exc}") from exc
    return bytes(mp3)


def _encoder(sample_rate: int, settings: EncoderSettings) -> lameenc.Encoder:
    encoder = lameenc.Encoder()
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(1)
    encoder.set_quality(settings.quality)
    if settings.cbr:
        encoder.set_bit_rate(settings.bitrate_kbps)
    else:
        encoder.set_vbr(_ABR)
        encoder.set_vbr_mean_bitrate_kbps(settings.bitrate_kbps)
    return encoder


def _downmix(pcm: bytes, channels: int) -> bytes:
    frames = np.frombuffer(pcm, dtype="<i2")[: len(pcm) // 2 // channels * channels]
    mono = frames.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return np.round(mono).astype("<i2").tobytes()
