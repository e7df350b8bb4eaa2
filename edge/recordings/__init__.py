"""The recording pipeline: a MixMonitor WAV becomes a tagged, verified MP3 filed per day and agent.

``process(RecordingJob(...))`` is the whole job; the other names are its parts, exported for the
recording service, QA tools and tests. The WAV is never deleted here. See ``edge.recordings.pipeline``.
"""
from edge.recordings.encoder import EncoderSettings, encode
from edge.recordings.errors import DiskFullError, RecordingError, VerifyError, WavError
from edge.recordings.filing import RecordingMeta, mp3_path, safe_component
from edge.recordings.pipeline import RecordingJob, RecordingResult, process
from edge.recordings.tags import id3_tag
from edge.recordings.verify import VerifyResult, correlate_aligned, decode, verify
from edge.recordings.wavfile import WavInfo, duration_s, inspect, read_pcm, repair_header

__all__ = [
    "DiskFullError",
    "EncoderSettings",
    "RecordingError",
    "RecordingJob",
    "RecordingMeta",
    "RecordingResult",
    "VerifyError",
    "VerifyResult",
    "WavError",
    "WavInfo",
    "correlate_aligned",
    "decode",
    "duration_s",
    "encode",
    "id3_tag",
    "inspect",
    "mp3_path",
    "process",
    "read_pcm",
    "repair_header",
    "safe_component",
    "verify",
]
