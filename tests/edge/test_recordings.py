"""The recording pipeline on real files: MixMonitor WAVs (closed and crashed) to filed, tagged MP3s."""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import struct
import wave
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import miniaudio
import numpy as np
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from edge.errors import EdgeError
from edge.recordings import (
    DiskFullError,
    EncoderSettings,
    RecordingError,
    RecordingJob,
    RecordingMeta,
    VerifyError,
    WavError,
    correlate_aligned,
    decode,
    duration_s,
    encode,
    id3_tag,
    inspect,
    mp3_path,
    process,
    read_pcm,
    repair_header,
    verify,
)

from hil.pbx.speech import render

RATE = 8000
SHANGHAI = "Asia/Shanghai"


def speech_like(seconds: float, seed: int = 1, rate: int = RATE) -> np.ndarray:
    """Two voices of gliding pitch in syllables and pauses: the simulated PBX's own call audio
    (``hil.pbx.speech``), so encoder figures and tests see what HIL recordings hold. A pure tone
    would flatter the encoder."""
    return render(seed, 0, int(seconds * rate)).astype(np.int16)


def mixmonitor_wav(path, samples: np.ndarray, *, closed: bool = True, rate: int = RATE) -> bytes:
    """Write what Asterisk's format_wav writes: a 44-byte header, sizes 0 until the file is closed."""
    data = samples.astype("<i2").tobytes()
    riff_size, data_size = (36 + len(data), len(data)) if closed else (0, 0)
    header = (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
              + b"data" + struct.pack("<I", data_size))
    path.write_bytes(header + data)
    return header + data


def meta(**changes) -> RecordingMeta:
    fields = dict(call_id="1795392102.12", agent_id="a8001", agent_name="张伟", caller="13800138000",
                  callee="8001", direction="inbound", started_at=local(2026, 11, 23, 10, 15),
                  duration_s=42.5, result="answered", customer="李娜", campaign="信用卡回访")
    fields.update(changes)
    return RecordingMeta(**fields)


def local(*args: int, tz: str = SHANGHAI) -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def job_for(wav, root, **meta_changes) -> RecordingJob:
    return RecordingJob(str(wav), str(root), meta(**meta_changes), SHANGHAI, EncoderSettings())


def wav_reader_frames(path) -> int:
    with wave.open(str(path), "rb") as w:
        return w.getnframes()


@pytest.fixture
def spool(tmp_path):
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def root(tmp_path):
    return tmp_path / "recordings"


# --- the whole pipeline --------------------------------------------------------------------------

def test_a_call_becomes_an_mp3_of_the_same_length_and_waveform(spool, root):
    samples = speech_like(25.0)
    wav = spool / "1795392102.12.wav"
    original = mixmonitor_wav(wav, samples)

    result = process(job_for(wav, root))

    assert result.mp3_path == root / "2026-11-23" / "a8001" / "1795392102.12.mp3"
    filed = result.mp3_path.read_bytes()
    assert result.sha256 == hashlib.sha256(filed).hexdigest()
    assert result.mp3_bytes == len(filed)
    assert 25 * 16_000 / 8 <= len(filed) <= 25 * 16_000 / 8 * 1.1  # 16 kbit/s CBR plus the tag
    assert result.duration_s == 25.0 and not result.header_repaired
    decoded, rate = decode(filed)
    assert rate == RATE
    assert 0 <= len(decoded) / rate - 25.0 <= max(0.01 * 25.0, 0.2)
    assert result.decoded_duration_s == len(decoded) / rate
    correlation, lag = correlate_aligned(samples, decoded, RATE)
    assert correlation >= 0.9
    assert 0 < lag < 0.2 * RATE  # the encoder's delay: the MP3 starts a little late
    assert wav.read_bytes() == original  # never deleted, never changed
    assert [p.name for p in result.mp3_path.parent.iterdir()] == [result.mp3_path.name]


def test_correlation_tells_a_different_recording_apart(spool, root):
    wav = spool / "a.wav"
    mixmonitor_wav(wav, speech_like(10.0, seed=1))
    decoded, _ = decode(process(job_for(wav, root)).mp3_path.read_bytes())

    other = speech_like(10.0, seed=2)
    noise = np.random.default_rng(3).normal(0, 3000, RATE * 10).astype(np.int16)

    assert correlate_aligned(other, decoded, RATE)[0] < 0.3
    assert abs(correlate_aligned(noise, decoded, RATE)[0]) < 0.1


def test_jobs_pickle_and_run_in_a_process_pool(spool, root):
    jobs = []
    for i in range(3):
        wav = spool / f"c{i}.wav"
        mixmonitor_wav(wav, speech_like(3.0 + i, seed=i))
        jobs.append(job_for(wav, root, call_id=f"c{i}"))
    assert pickle.loads(pickle.dumps(jobs[0])) == jobs[0]

    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(process, jobs))

    assert [r.mp3_path.name for r in results] == ["c0.mp3", "c1.mp3", "c2.mp3"]
    assert [r.duration_s for r in results] == [3.0, 4.0, 5.0]
    assert all(r.mp3_path.exists() for r in results)


def test_a_stereo_wav_is_filed_as_mono(spool, root):
    left, right = speech_like(4.0, seed=1), speech_like(4.0, seed=2)
    wav = spool / "stereo.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes(np.column_stack([left, right]).astype("<i2").tobytes())

    result = process(job_for(wav, root))

    info = MP3(result.mp3_path).info
    assert (info.channels, info.sample_rate) == (1, RATE)
    assert result.duration_s == 4.0


# --- crashed recordings --------------------------------------------------------------------------

def test_a_crashed_recordings_zero_sizes_are_read_from_the_file_length(spool):
    samples = speech_like(6.0)
    wav = spool / "crashed.wav"
    original = mixmonitor_wav(wav, samples, closed=False)
    with pytest.raises(wave.Error):
        wav_reader_frames(wav)  # a plain WAV reader gives up on it

    info = inspect(wav)
    pcm, same = read_pcm(wav)

    assert not info.header_ok
    assert info.data_offset == 44 and info.data_bytes == len(samples) * 2
    assert (info.sample_rate, info.channels, info.sample_width) == (RATE, 1, 2)
    assert duration_s(info) == 6.0
    assert np.array_equal(np.frombuffer(pcm, "<i2"), samples) and same == info
    assert wav.read_bytes() == original  # reading does not rewrite it


def test_a_crashed_recording_is_repaired_and_filed(spool, root):
    samples = speech_like(6.0)
    wav = spool / "crashed.wav"
    mixmonitor_wav(wav, samples, closed=False)

    result = process(job_for(wav, root))

    assert result.header_repaired and result.duration_s == 6.0
    assert inspect(wav).header_ok
    assert wav_reader_frames(wav) == len(samples)
    decoded, _ = decode(result.mp3_path.read_bytes())
    assert correlate_aligned(samples, decoded, RATE)[0] >= 0.9


def test_a_trailing_half_sample_is_cut_off(spool, root):
    samples = speech_like(2.0)
    wav = spool / "torn.wav"
    original = mixmonitor_wav(wav, samples, closed=False) + b"\x7f"

    wav.write_bytes(original)
    info = inspect(wav)
    assert info.data_bytes == len(samples) * 2 and info.file_bytes == len(original)

    assert repair_header(wav) is True
    assert wav.stat().st_size == 44 + len(samples) * 2
    assert wav.read_bytes()[4:8] == struct.pack("<I", 36 + len(samples) * 2)
    assert wav.read_bytes()[40:44] == struct.pack("<I", len(samples) * 2)
    assert repair_header(wav) is False  # nothing left to fix
    assert process(job_for(wav, root)).duration_s == 2.0


def test_a_good_header_with_extra_chunks_is_trusted(spool):
    wav = spool / "tagged.wav"
    body = speech_like(1.0).astype("<i2").tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
    chunks = (fmt + b"LIST" + struct.pack("<I", 5) + b"INFO!\x00"
              + b"data" + struct.pack("<I", len(body)) + body + b"junk" + struct.pack("<I", 4) + b"1234")
    wav.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)

    info = inspect(wav)

    assert info.header_ok and info.data_bytes == len(body)
    assert info.data_offset == 12 + len(fmt) + 14 + 8
    assert repair_header(wav) is False


@pytest.mark.parametrize("content, message", [
    (b"ID3\x03\x00\x00\x00\x00\x00\x00 not audio", "not a WAV file"),
    (b"RIFF", "too short"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt " + struct.pack("<IHHIIHH", 16, 3, 1, RATE, RATE * 4, 4, 32),
     "not 16-bit PCM"),
    (b"RIFF\x00\x00\x00\x00WAVE" + b"LIST" + struct.pack("<I", 4) + b"INFO", "no data chunk"),
])
def test_what_is_not_a_16_bit_pcm_wav_is_refused_by_name(spool, root, content, message):
    wav = spool / "bad.wav"
    wav.write_bytes(content)

    with pytest.raises(WavError) as refused:
        process(job_for(wav, root))

    assert message in str(refused.value) and str(wav) in str(refused.value)
    assert isinstance(refused.value, RecordingError) and isinstance(refused.value, EdgeError)
    assert not root.exists()


def test_a_missing_wav_is_a_wav_error(spool):
    with pytest.raises(WavError, match="cannot read"):
        read_pcm(spool / "gone.wav")


# --- verification --------------------------------------------------------------------------------

def test_every_short_call_length_verifies_despite_the_encoder_delay():
    """LAME adds 144-216 ms at 8 kHz; lengths that end anywhere in a frame must all pass."""
    samples = speech_like(5.0)
    for extra in range(0, 576, 48):
        pcm = samples[: 3 * RATE + extra].tobytes()
        result = verify(encode(pcm, RATE, 1, EncoderSettings()), len(pcm) // 2, RATE)
        assert 0 < result.delta_s <= 0.2


def test_a_truncated_or_garbled_mp3_fails_verification():
    pcm = speech_like(20.0).tobytes()
    mp3 = encode(pcm, RATE, 1, EncoderSettings())

    with pytest.raises(VerifyError, match="decodes to"):
        verify(mp3[: len(mp3) // 2], len(pcm) // 2, RATE)
    with pytest.raises(VerifyError, match="does not decode"):
        verify(b"\x00" * 4096, len(pcm) // 2, RATE)
    with pytest.raises(VerifyError):
        verify(mp3, len(pcm) // 2 + RATE, RATE)  # one second longer than the MP3


def test_abr_keeps_the_mean_bitrate():
    pcm = speech_like(10.0).tobytes()

    mp3 = encode(pcm, RATE, 1, EncoderSettings(cbr=False))

    assert verify(mp3, len(pcm) // 2, RATE).decoded_samples > len(pcm) // 2
    assert 10 * 12_000 / 8 < len(mp3) < 10 * 24_000 / 8  # ABR 16 kbit/s overshoots on 10 s of two voices


@pytest.mark.parametrize("changes, key", [({"bitrate_kbps": 17}, "bitrate_kbps"),
                                          ({"quality": 12}, "quality")])
def test_settings_lame_would_silently_change_are_refused(changes, key):
    with pytest.raises(RecordingError, match=f"^{key}: "):
        EncoderSettings(**changes)


# --- tags ----------------------------------------------------------------------------------------

def test_tags_read_back_with_chinese_names(spool, root):
    wav = spool / "call.wav"
    mixmonitor_wav(wav, speech_like(3.0))

    result = process(job_for(wav, root, started_at=local(2026, 11, 23, 23, 30, 5)))

    tag = ID3(result.mp3_path)
    assert tag.version == (2, 3, 0)
    assert tag["TIT2"].text == ["inbound 13800138000 → 8001"]
    assert tag["TPE1"].text == ["张伟"]
    assert str(tag["TDRC"].text[0]).startswith("2026-11-23 23:30")
    assert tag.getall("COMM")[0].text == ["1795392102.12"]
    txxx = {frame.desc: frame.text[0] for frame in tag.getall("TXXX")}
    assert txxx["customer"] == "李娜" and txxx["campaign"] == "信用卡回访"
    assert txxx["started_at"] == "2026-11-23T23:30:05+08:00"
    assert (txxx["call_id"], txxx["agent_id"], txxx["caller"], txxx["callee"]) == (
        "1795392102.12", "a8001", "13800138000", "8001")
    assert (txxx["direction"], txxx["duration_s"], txxx["result"]) == ("inbound", "42.5", "answered")


def test_the_tag_is_skipped_by_the_decoder():
    pcm = speech_like(3.0).tobytes()
    mp3 = encode(pcm, RATE, 1, EncoderSettings())
    tag = id3_tag(meta(), SHANGHAI)
    assert tag.startswith(b"ID3\x03") and len(tag) > 200

    tagged, _ = decode(tag + mp3)
    bare, _ = decode(mp3)

    assert np.array_equal(tagged, bare)
    assert miniaudio.mp3_get_info(tag + mp3).num_frames == len(bare)


# --- filing --------------------------------------------------------------------------------------

def test_the_day_is_the_branchs_local_day_not_utcs():
    late_utc = datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc).timestamp()  # 07:30 in Shanghai
    call = meta(started_at=late_utc)

    assert mp3_path("/rec", call, SHANGHAI).parts[-3] == "2026-11-24"
    assert mp3_path("/rec", call, "UTC").parts[-3] == "2026-11-23"
    just_before_midnight = meta(started_at=local(2026, 11, 23, 23, 59, 59))
    assert mp3_path("/rec", just_before_midnight, SHANGHAI).parts[-3] == "2026-11-23"


def test_path_components_are_sanitised_and_chinese_kept():
    hostile = meta(agent_id="../../etc", call_id="a/b\x00c\n", leg="转接")
    unassigned = meta(agent_id="", leg="..")

    path = mp3_path("/rec", hostile, SHANGHAI)
    other = mp3_path("/rec", unassigned, SHANGHAI)

    assert str(path) == "/rec/2026-11-23/.._.._etc/a_b_c_-转接.mp3"
    assert str(other) == "/rec/2026-11-23/unassigned/1795392102.12-...mp3"
    assert os.path.normpath(path).startswith("/rec/2026-11-23/")
    assert mp3_path("/rec", meta(call_id=".."), SHANGHAI).name == "__.mp3"


# --- a full disk ---------------------------------------------------------------------------------

def test_a_full_disk_removes_the_part_file_and_keeps_the_wav(spool, root):
    wav = spool / "call.wav"
    original = mixmonitor_wav(wav, speech_like(5.0))
    job = job_for(wav, root)
    target = mp3_path(root, job.meta, SHANGHAI)
    target.parent.mkdir(parents=True)
    part = target.with_name(target.name + ".part")
    part.symlink_to("/dev/full")  # the kernel answers every write with ENOSPC

    with pytest.raises(DiskFullError) as full:
        process(job)

    assert full.value.__cause__.errno == errno.ENOSPC
    assert "disk full" in str(full.value) and str(wav) in str(full.value)
    assert not os.path.lexists(part) and not target.exists()
    assert wav.read_bytes() == original
    assert os.path.exists("/dev/full")
