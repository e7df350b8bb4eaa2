"""Recording benchmark: real-time channels one core encodes, the pipeline vs bare lameenc vs lame CLI.

Run from the repository root::

    .venv/bin/python tests/bench/recording.py            # 10 min of audio per run, 7 rounds (~1 min)
    .venv/bin/python tests/bench/recording.py --quick    # 2 min of audio, 5 rounds (well under 30 s)

All three encode the same generated speech-like 8 kHz mono 16-bit audio (harmonics of a gliding
pitch, syllables, pauses, a little noise) at the same setting, 16 kbit/s CBR, LAME quality 5:

* **pipeline**: ``edge.recordings.process(job)``: read the WAV, encode with lameenc, ID3 tag, write
  ``.part``, fsync, read back, decode it all with miniaudio to verify, sha256, rename, fsync the
  directory. Everything is inside the timed part;
* **lameenc**: ``encode()`` alone on PCM already in memory (the floor the pipeline builds on);
* **lame CLI**: ``lame --quiet -b 16 --cbr -q 5 -m m in.wav out.mp3``, the same WAV file;
* **decode** (informational): the miniaudio decode ``verify`` does, alone.

**Channels per core** = seconds of audio / CPU seconds (user + system) spent on them: how many
calls one core could record in real time. In-process CPU is ``time.process_time``; the CLI's is the
difference of ``resource.getrusage(RUSAGE_CHILDREN)`` around the run (process start-up included,
as in production). The methods run interleaved, round after round, and the **best** round of each
is the figure (other processes on the box only ever make a round slower); the median is shown too.

Finally the pipeline runs on a ``ProcessPoolExecutor`` with ``os.cpu_count()`` workers over several
files; its wall-clock channels are what the whole box sustains (informational, no target).

The last line is machine-readable:
``RESULT channels_per_core=... ratio_vs_lame=... ratio_vs_lameenc=...``.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.recordings import (  # noqa: E402
    EncoderSettings,
    RecordingJob,
    RecordingMeta,
    encode,
    process,
)
from edge.recordings.verify import decode  # noqa: E402

from hil.pbx.speech import render  # noqa: E402

RATE = 8000
SETTINGS = EncoderSettings(bitrate_kbps=16, quality=5, cbr=True)
LAME_ARGS = ["--quiet", "-b", str(SETTINGS.bitrate_kbps), "--cbr", "-q", str(SETTINGS.quality),
             "-m", "m"]
TARGET_CHANNELS = 800
TARGET_VS_LAME = 0.9
TARGET_VS_LAMEENC = 0.75
TIMEZONE = "Asia/Shanghai"


def speech_like(seconds: float, seed: int = 1, rate: int = RATE) -> np.ndarray:
    """Two voices of gliding pitch in syllables and pauses: the simulated PBX's own call audio
    (``hil.pbx.speech``), so encoder figures and tests see what HIL recordings hold. A pure tone
    would flatter the encoder."""
    return render(seed, 0, int(seconds * rate)).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def job(wav: Path, out: Path, call_id: str) -> RecordingJob:
    meta = RecordingMeta(call_id=call_id, agent_id="a8001", agent_name="张伟", caller="13800138000",
                         callee="8001", direction="inbound", started_at=1_795_392_000.0,
                         duration_s=0.0, result="answered", customer="李娜")
    return RecordingJob(str(wav), str(out), meta, TIMEZONE, SETTINGS)


# --- measurements -----------------------------------------------------------------------------

def cpu_in_process(run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_lame_cli(lame: str, wav: Path, out: Path) -> float:
    before = children_cpu()
    subprocess.run([lame, *LAME_ARGS, str(wav), str(out)], check=True)
    return children_cpu() - before


@dataclass
class Method:
    name: str
    run: Callable[[], float]  # returns CPU seconds
    cpu_s: list[float]

    def channels(self, audio_s: float) -> tuple[float, float]:
        """(best, median) channels per core."""
        return audio_s / min(self.cpu_s), audio_s / statistics.median(self.cpu_s)


def measure(methods: list[Method], rounds: int) -> None:
    for method in methods:  # warm up: imports, first-touch allocations, page cache
        method.run()
    for _ in range(rounds):
        for method in methods:
            method.cpu_s.append(method.run())


def pool_channels(workdir: Path, files: int, seconds: float) -> tuple[int, float]:
    """(workers, wall-clock channels) of the pipeline over ``files`` WAVs on every core."""
    workers = os.cpu_count() or 1
    jobs = []
    for i in range(files):
        wav = workdir / f"pool{i}.wav"
        write_wav(wav, speech_like(seconds, seed=10 + i))
        jobs.append(job(wav, workdir / "pool-mp3", f"pool{i}"))
    warm = workdir / "warm.wav"
    write_wav(warm, speech_like(1.0))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(process, [job(warm, workdir / "warm-mp3", f"w{i}") for i in range(workers)]))
        started = time.perf_counter()
        list(pool.map(process, jobs))
        wall = time.perf_counter() - started
    return workers, files * seconds / wall


# --- report -----------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less audio, fewer rounds; under 30 s")
    args = parser.parse_args()
    lame = shutil.which("lame")
    if lame is None:
        print("error: the `lame` command is not installed; this benchmark compares against it. "
              "scripts/bootstrap.sh installs it (Debian package `lame`).", file=sys.stderr)
        return 2
    audio_s, rounds, pool_files, pool_s = (120.0, 5, 8, 60.0) if args.quick else (600.0, 7, 16, 300.0)

    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        workdir = Path(tmp)
        samples = speech_like(audio_s)
        pcm = samples.astype("<i2").tobytes()
        wav = workdir / "call.wav"
        write_wav(wav, samples)
        the_job = job(wav, workdir / "mp3", "bench")
        mp3 = encode(pcm, RATE, 1, SETTINGS)
        methods = [
            Method("pipeline process()", lambda: cpu_in_process(lambda: process(the_job)), []),
            Method("bare lameenc", lambda: cpu_in_process(lambda: encode(pcm, RATE, 1, SETTINGS)), []),
            Method("lame CLI", lambda: cpu_lame_cli(lame, wav, workdir / "cli.mp3"), []),
            Method("miniaudio decode (info)", lambda: cpu_in_process(lambda: decode(mp3)), []),
        ]
        version = subprocess.run([lame, "--version"], capture_output=True, text=True).stdout
        print(f"Recording encode, {audio_s:.0f} s of speech-like 8 kHz mono audio, "
              f"{SETTINGS.bitrate_kbps} kbit/s CBR q{SETTINGS.quality}, {rounds} rounds, best round"
              f"{' (quick)' if args.quick else ''}; {version.splitlines()[0] if version else lame}")
        measure(methods, rounds)
        workers, box = pool_channels(workdir, pool_files, pool_s)
        cli_mp3 = (workdir / "cli.mp3").read_bytes()

    header = f"{'method':<24} | {'best CPU s':>10} | {'ch/core best':>12} | {'ch/core median':>14}"
    print(header)
    print("-" * len(header))
    figures = {}
    for method in methods:
        best, median = method.channels(audio_s)
        figures[method.name] = best
        print(f"{method.name:<24} | {min(method.cpu_s):>10.3f} | {best:>12,.0f} | {median:>14,.0f}")
    pipeline, bare, cli = (figures[m.name] for m in methods[:3])
    print(f"pipeline on a pool of {workers} workers, {pool_files} files x {pool_s:.0f} s: "
          f"{box:,.0f} channels wall-clock for the box (informational)")
    tagged = any(marker in cli_mp3[:1024] for marker in (b"Xing", b"Info"))
    print(f"MP3 sizes: lameenc {len(mp3):,} bytes, lame CLI {len(cli_mp3):,} bytes "
          f"(LAME/Xing tag from the CLI: {'yes' if tagged else 'no'})")
    vs_lame, vs_bare = pipeline / cli, pipeline / bare
    print(f"{verdict(pipeline >= TARGET_CHANNELS)}  pipeline >= {TARGET_CHANNELS} channels per core: "
          f"{pipeline:,.0f}")
    print(f"{verdict(vs_lame >= TARGET_VS_LAME)}  pipeline >= {TARGET_VS_LAME}x the lame CLI: "
          f"{vs_lame:.2f}x")
    print(f"{verdict(vs_bare >= TARGET_VS_LAMEENC)}  pipeline >= {TARGET_VS_LAMEENC}x bare lameenc: "
          f"{vs_bare:.2f}x")
    print(f"RESULT channels_per_core={pipeline:.0f} ratio_vs_lame={vs_lame:.2f} "
          f"ratio_vs_lameenc={vs_bare:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
