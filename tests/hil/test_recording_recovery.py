"""REC-1's crash safety through the wire, with real processes and real files.

1. The edge process is killed (SIGKILL) while two calls are recorded. One call ends while the edge
   is down: its WAV is complete and has no MP3 — a crash between WAV and MP3. A new edge recovers
   it at start (its channel is gone from ``CoreShowChannels``) while the other call still records,
   and never touches that live WAV; when the second call ends it is encoded too. Nothing is
   encoded twice, and each MP3 decodes to the audio the simulated Asterisk wrote.
2. Asterisk itself crashes mid-recording: the WAV keeps the zero RIFF sizes of its first write.
   The edge repairs the header and encodes what was recorded.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edge.config import load_config
from edge.recordings.verify import correlate_aligned, decode
from edge.recordings.wavfile import read_pcm
from edge.runtime import EdgeRuntime
from hil.harness import BASE_CONFIG, free_port
from hil.pbx.mixmonitor import recorded_audio
from hil.pbx.simulator import PbxSimulator

SCALE = 0.02
REPO = Path(__file__).parents[2]


def wait(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def toml_text(data: dict[str, Any]) -> str:
    """Enough TOML for an edge config: tables of scalars and lists, arrays of such tables."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for key, section in data.items():
        tables = section if isinstance(section, list) else [section]
        for table in tables:
            lines.append(f"[[{key}]]" if isinstance(section, list) else f"[{key}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
            lines.append("")
    return "\n".join(lines)


@pytest.fixture
def box(tmp_path: Path):
    """A simulated Asterisk and an edge config file pointing at it and at its spool dir."""
    ami_port, agi_port = free_port(), free_port()
    world = {"trunks": [{"profile": "e1", "channels": "1-4"}],
             "phones": {"8001": {"answer_after_ms": 500}, "8002": {"answer_after_ms": 500}}}
    sim = PbxSimulator(world, agi_port=agi_port, ami_port=ami_port, time_scale=SCALE,
                       spool_dir=tmp_path / "spool", witness_dir=tmp_path / "witness")
    data = tomllib.loads(BASE_CONFIG.read_text(encoding="utf-8"))
    data["edge"].update(store=str(tmp_path / "edge.sqlite3"), time_scale=SCALE)
    data["asterisk"].update(ami_port=ami_port, fastagi_port=agi_port, fastagi_host="127.0.0.1")
    data["recording"] = {"spool_dir": str(tmp_path / "spool"), "root": str(tmp_path / "mp3"),
                         "workers": 1}
    config = tmp_path / "edge.toml"
    config.write_text(toml_text(data), encoding="utf-8")
    sim.start(scripts=False)
    try:
        yield sim, config, tmp_path
    finally:
        sim.stop()


def rows(db: Path) -> dict[str, dict[str, Any]]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return {r["file"]: dict(r) for r in conn.execute("SELECT * FROM recordings")}
        except sqlite3.OperationalError:
            return {}


def assert_mp3_matches(mp3: Path, reference: np.ndarray, rate: int = 8000) -> None:
    decoded, decoded_rate = decode(mp3.read_bytes())
    assert decoded_rate == rate
    wav_s, mp3_s = len(reference) / rate, len(decoded) / rate
    assert abs(mp3_s - wav_s) <= max(0.01 * wav_s, 0.2) + 576 / rate, (mp3_s, wav_s)
    correlation, _ = correlate_aligned(reference, decoded, rate)
    assert correlation >= 0.9, correlation


@pytest.mark.hil
def test_edge_killed_between_wav_and_mp3_recovers_at_restart_while_another_call_records(box):
    sim, config, tmp = box
    db = tmp / "edge.sqlite3"
    edge_a = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config),
                               "--log-level", "WARNING"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    runtime_b: EdgeRuntime | None = None
    try:
        wait(lambda: sim.records("ami", what="login"), 30, "edge A's AMI login")
        sim.start_world()
        sim.add_trunk_call(id="c1", caller="13800000001", did="88880000", hangup_after_talk_ms=20_000)
        sim.add_trunk_call(id="c2", caller="13800000002", did="88880000", at_ms=300)
        wait(lambda: len(sim.active_recordings()) == 2 and len(rows(db)) == 2, 15,
             "both calls recorded, with their rows in edge A's store")
        os.kill(edge_a.pid, signal.SIGKILL)
        edge_a.wait(10)
        files = {r.call: r.file.name for r in sim.active_recordings()}
        wait(lambda: any(r.file.name == files["c1"] for r in sim.finished_recordings()), 15,
             "call 1 to end while the edge is down")
        assert {r["state"] for r in rows(db).values()} == {"recording"}  # nothing encoded yet
        assert not (tmp / "mp3").exists() or not list((tmp / "mp3").rglob("*.mp3"))

        runtime_b = EdgeRuntime(load_config(config))
        runtime_b.start()
        wait(lambda: rows(db)[files["c1"]]["state"] == "done", 20, "call 1's WAV recovered")
        live_wav = tmp / "spool" / files["c2"]
        size = live_wav.stat().st_size
        wait(lambda: live_wav.stat().st_size > size, 5, "call 2's WAV to keep growing")
        assert rows(db)[files["c2"]]["state"] == "recording"  # live: never touched
        assert not (tmp / "spool" / files["c1"]).exists()      # deleted only after verification
        first = rows(db)[files["c1"]]
        assert first["header_repaired"] == 0 and len(first["sha256"]) == 64
        assert_mp3_matches(Path(first["mp3_path"]),
                           np.frombuffer(read_pcm(tmp / "witness" / files["c1"])[0], "<i2"))

        sim.hang_up("c2")
        wait(lambda: rows(db)[files["c2"]]["state"] == "done", 20, "call 2 encoded after it ended")
        second = rows(db)[files["c2"]]
        assert_mp3_matches(Path(second["mp3_path"]),
                           np.frombuffer(read_pcm(tmp / "witness" / files["c2"])[0], "<i2"))
        assert sorted(p.name for p in (tmp / "mp3").rglob("*.mp3")) == \
            sorted(Path(r["mp3_path"]).name for r in (first, second))
        ready = runtime_b.store.events(topic="recording.ready")
        wait(lambda: len(runtime_b.store.events(topic="recording.ready")) >= 2, 5)
        ready = runtime_b.store.events(topic="recording.ready")
        assert sorted(e["data"]["file"] for e in ready) == sorted(files.values())  # once each
        assert list((tmp / "spool").glob("*.wav")) == []
    finally:
        if edge_a.poll() is None:
            edge_a.kill()
        if runtime_b is not None:
            runtime_b.stop()


@pytest.mark.hil
def test_a_wav_cut_short_by_an_asterisk_crash_is_repaired_and_encoded(box):
    sim, config, tmp = box
    runtime = EdgeRuntime(load_config(config))
    runtime.start()
    try:
        wait(lambda: sim.records("ami", what="login"), 30, "the edge's AMI login")
        sim.start_world()
        sim.add_trunk_call(id="c1", caller="13800000001", did="88880000")
        wait(lambda: sim.active_recordings(), 15, "the call to be recorded")
        time.sleep(8 * SCALE)  # let ~8 s of audio reach the file
        [crashed] = sim.crash_recordings()
        raw = crashed.file.read_bytes()
        assert raw[4:8] == b"\0\0\0\0" and raw[40:44] == b"\0\0\0\0"  # sizes as first written
        sim.hang_up("c1")  # Asterisk restarted: the channel is gone
        db = tmp / "edge.sqlite3"
        wait(lambda: rows(db).get(crashed.file.name, {}).get("state") == "done", 20,
             "the crashed WAV encoded")
        row = rows(db)[crashed.file.name]
        assert row["header_repaired"] == 1
        assert abs(row["duration_s"] - crashed.samples / 8000) < 0.05
        assert_mp3_matches(Path(row["mp3_path"]),
                           recorded_audio(crashed.file.name, crashed.samples, crashed.muted))
    finally:
        runtime.stop()
