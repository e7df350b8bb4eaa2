"""The recording service on real files and a real store: a full disk is reported and retried,
never fatal, and the WAV is kept until its MP3 is verified."""
from __future__ import annotations

import time
import wave
from pathlib import Path

from edge.commands import EncodeRecording, StartRecording
from edge.config import RecordingSection
from edge.recordings.filing import RecordingMeta, mp3_path
from edge.recordings.service import RecordingService
from edge.store import Store
from hil.pbx.speech import render

STARTED = 1_795_392_000.0  # 2026-11-23 08:00 in Shanghai


def wait(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_full_disk_is_reported_the_wav_kept_and_the_encoding_retried(tmp_path: Path) -> None:
    spool, root = tmp_path / "spool", tmp_path / "mp3"
    spool.mkdir()
    with wave.open(str(spool / "c1-1.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(render(7, 0, 8000 * 5).tobytes())
    target = mp3_path(root, RecordingMeta(call_id="c1", leg="1", agent_id="a8001", agent_name="",
                                          caller="", callee="", direction="inbound",
                                          started_at=STARTED, duration_s=5, result="answered"),
                      "Asia/Shanghai")
    target.parent.mkdir(parents=True)
    part = target.with_name(target.name + ".part")
    part.symlink_to("/dev/full")  # every write to the MP3 really fails with ENOSPC
    notes: list[tuple[str, dict]] = []
    store = Store(tmp_path / "edge.sqlite3")
    service = RecordingService(store, RecordingSection(spool_dir=str(spool), root=str(root), settle_s=0),
                               "Asia/Shanghai", notify=lambda t, d: notes.append((t, d)),
                               live_calls=lambda: set(), real_seconds=lambda s: s,
                               workers=1, disk_full_retry_s=1.0)
    service.start()
    try:
        service.started(StartRecording("c1", "DAHDI/1-1", "c1-1.wav", 1, "a8001"))
        service.call_over(EncodeRecording("c1", "c1-1.wav", 1, {
            "agent_id": "a8001", "agent_name": "张伟", "direction": "inbound",
            "answered_at": STARTED, "talk_s": 5, "disposition": "answered"}))
        wait(lambda: any(t == "recording.disk_full" for t, _ in notes))
        row = store.recording("c1-1.wav")
        assert row["state"] == "stopped" and row["error"].startswith("disk full")
        assert (spool / "c1-1.wav").exists() and not target.exists()
        assert not part.is_symlink()  # the partial file was removed: the retry finds space again
        wait(lambda: store.recording("c1-1.wav")["state"] == "done")
        assert target.is_file() and not (spool / "c1-1.wav").exists()
        topics = [t for t, _ in notes]
        assert topics.count("recording.disk_full") == 1  # reported once, not per retry
        assert "recording.disk_ok" in topics and topics[-1] == "recording.ready"
    finally:
        service.stop()
        store.close()
