"""The edge's recording uploader (``edge.sync.uploader``) against a real HQ over HTTP: werkzeug's
threaded server running ``create_app``, reached through a TCP proxy that can cut a connection
mid-chunk or slow it down, and an edge process killed with SIGKILL mid-file."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
import requests
from werkzeug.serving import make_server

from aggregator.auth.access import issue_edge_token, revoke_edge_tokens
from aggregator.recordings import catalog
from aggregator.recordings.storage import RecordingFiles
from edge.recordings.retention import DiskUsage, RetentionPolicy
from edge.store import Store
from edge.sync.uploader import Uploader
from tests.aggregator.helpers import db_of, make_app

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
T0 = 1_795_392_000.0


# --- HQ, and the wire to it ---------------------------------------------------------------------

class RequestLog:
    """WSGI middleware: every request HQ received (method, Content-Range) and, when asked, a
    status to answer instead for the next requests touching a checksum."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []
        self.fail: dict[str, list[int]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        self.seen.append((method, environ.get("HTTP_CONTENT_RANGE", "")))
        for sha, statuses in self.fail.items():
            if sha in path and statuses:
                status = statuses.pop(0)
                start_response(f"{status} Injected", [("Content-Type", "application/json"),
                                                      ("Connection", "close")])
                return [json.dumps({"error": "injected"}).encode()]
        return self.app(environ, start_response)

    def puts(self) -> list[str]:
        return [content_range for method, content_range in self.seen if method == "PUT"]


class Proxy:
    """A TCP proxy to HQ: ``cut_at`` closes the connection carrying the client's ``cut_at``-th
    byte (counted from when it was set), ``delay_s`` sleeps before forwarding each piece."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_at: int | None = None
        self.delay_s = 0.0
        self.cuts = 0
        self._sent = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, nbytes: int) -> None:
        with self._lock:
            self._sent, self.cut_at = 0, nbytes

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while data := src.recv(16384):
                if upward:
                    if self.delay_s:
                        time.sleep(self.delay_s)
                    with self._lock:
                        cut = self.cut_at is not None and self._sent + len(data) >= self.cut_at
                        if cut:
                            data = data[:self.cut_at - self._sent]
                            self.cut_at = None
                            self.cuts += 1
                        self._sent += len(data)
                    dst.sendall(data)
                    if cut:
                        break
                else:
                    dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[SimpleNamespace]:
    app, _clock = make_app(str(tmp_path / "hq.sqlite3"), tmp_path / "hq")
    db = db_of(app)
    with db.transaction() as tx:
        token = issue_edge_token(tx, "edge-a")
    log = RequestLog(app)
    server = make_server("127.0.0.1", 0, log, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    proxy = Proxy(server.server_port)
    yield SimpleNamespace(db=db, token=token, log=log, proxy=proxy,
                          url=f"http://127.0.0.1:{proxy.port}",
                          files=RecordingFiles(tmp_path / "hq" / "recordings"),
                          root=tmp_path / "hq" / "recordings")
    proxy.close()
    server.shutdown()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[SimpleNamespace]:
    clock = Clock()
    store = Store(tmp_path / "edge.sqlite3", outbox=True, clock=clock)
    yield SimpleNamespace(store=store, clock=clock, root=tmp_path / "recordings",
                          path=tmp_path / "edge.sqlite3")
    store.close()


def add_recording(edge: SimpleNamespace, call_id: str, size: int = 3 * CHUNK - 999, *,
                  leg: int = 1, agent: str = "wang") -> dict[str, Any]:
    """An encoded, verified MP3 as the recording service leaves it."""
    data = hashlib.shake_256(call_id.encode()).digest(size)
    path = edge.root / "2026-11-23" / agent / f"{call_id}-{leg}.mp3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    file = f"{call_id}-{leg}.wav"
    edge.store.recording_stopped(file, call_id, leg, f"/spool/{file}", {
        "agent_id": agent, "started_at": edge.clock.t, "answered_at": edge.clock.t + 5})
    edge.store.recording_done(file, {"mp3_path": str(path), "sha256":
                                     hashlib.sha256(data).hexdigest(), "mp3_bytes": len(data),
                                     "duration_s": 42.0, "decoded_duration_s": 42.0})
    edge.clock.t += 60
    return {"file": file, "data": data, "sha256": hashlib.sha256(data).hexdigest(),
            "path": path}


def uploader(hq: SimpleNamespace, edge: SimpleNamespace, **kwargs: Any) -> Uploader:
    kwargs.setdefault("retry_s", 0.05)
    return Uploader(edge.store, hq.url, kwargs.pop("token", hq.token), chunk_bytes=CHUNK,
                    clock=edge.clock, **kwargs)


def outbox(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    rows = store.db.execute("SELECT stream, type, body FROM outbox ORDER BY stream, seq")
    return [(stream, kind, json.loads(body)) for stream, kind, body in rows]


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- tests --------------------------------------------------------------------------------------

def test_a_recording_goes_up_in_three_chunks_and_is_confirmed(hq: SimpleNamespace,
                                                             edge: SimpleNamespace) -> None:
    rec = add_recording(edge, "1795392187.42")
    up = uploader(hq, edge)

    assert up.run_once() == 1

    assert hq.log.puts() == [f"bytes 0-{CHUNK - 1}/{len(rec['data'])}",
                             f"bytes {CHUNK}-{2 * CHUNK - 1}/{len(rec['data'])}",
                             f"bytes {2 * CHUNK}-{len(rec['data']) - 1}/{len(rec['data'])}"]
    row = edge.store.recording(rec["file"])
    assert (row["upload_state"], row["upload_offset"], row["uploaded_at"]) == \
        ("confirmed", len(rec["data"]), edge.clock.t)
    [stored] = catalog.recordings_for_call(hq.db, "edge-a", "1795392187.42")
    assert (hq.root / stored.path).read_bytes() == rec["data"]
    assert stored.path == "edge-a/2026-11-23/wang/1795392187.42-1.mp3"
    assert stored.started_at == T0 + 5
    assert outbox(edge.store) == [("recording", "recording.uploaded", {
        "call_id": "1795392187.42", "file": rec["file"], "sha256": rec["sha256"],
        "bytes": len(rec["data"]), "hq_path": stored.path})]
    assert up.run_once() == 0                              # nothing left to send
    assert rec["path"].exists()                            # retention decides, not the upload


def test_a_connection_cut_mid_chunk_resumes_from_hqs_offset(hq: SimpleNamespace,
                                                           edge: SimpleNamespace) -> None:
    rec = add_recording(edge, "c-cut")
    size = len(rec["data"])
    hq.proxy.cut_after(CHUNK + CHUNK // 2)                 # inside the second chunk's body
    up = uploader(hq, edge, retry_s=0.3)

    assert up.run_once() == 0
    assert up.run_once() == 0                              # backing off: nothing is sent

    assert hq.proxy.cuts == 1
    row = edge.store.recording(rec["file"])
    assert (row["upload_state"], row["upload_offset"]) == ("pending", CHUNK)
    eventually(lambda: len(hq.log.puts()) == 2)            # HQ saw the cut chunk arrive ...
    partial = hq.files.partial("edge-a", rec["sha256"])
    assert partial is not None and partial.offset == CHUNK  # ... and kept none of it
    time.sleep(0.35)

    assert up.run_once() == 1

    assert hq.log.puts()[2:] == [f"bytes {CHUNK}-{2 * CHUNK - 1}/{size}",
                                 f"bytes {2 * CHUNK}-{size - 1}/{size}"]
    [stored] = catalog.recordings_for_call(hq.db, "edge-a", "c-cut")
    assert (hq.root / stored.path).read_bytes() == rec["data"]
    assert edge.store.recording(rec["file"])["upload_state"] == "confirmed"


_EDGE_PROCESS = """
import sys, time
from edge.store import Store
from edge.sync.uploader import Uploader
store = Store(sys.argv[1], outbox=True)
up = Uploader(store, sys.argv[2], sys.argv[3], chunk_bytes=int(sys.argv[4]), retry_s=0.05)
up.start()
time.sleep(60)
"""


def test_an_edge_killed_mid_file_resumes_where_hq_stopped(hq: SimpleNamespace,
                                                         edge: SimpleNamespace) -> None:
    rec = add_recording(edge, "c-kill", size=12 * CHUNK + 5)
    hq.proxy.delay_s = 0.01                                # ~1.5 MB/s: the upload takes a while
    child = subprocess.Popen([sys.executable, "-c", _EDGE_PROCESS, str(edge.path), hq.url,
                              hq.token, str(CHUNK)], cwd=ROOT)
    try:
        def halfway() -> bool:
            partial = hq.files.partial("edge-a", rec["sha256"])
            return partial is not None and partial.offset >= 3 * CHUNK
        eventually(halfway, timeout_s=20)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    at_kill = hq.files.partial("edge-a", rec["sha256"])
    assert at_kill is not None and 0 < at_kill.offset < len(rec["data"])
    hq.proxy.delay_s = 0.0
    eventually(lambda: _settled(hq, rec["sha256"]))        # the killed process's last bytes
    resume_at = hq.files.partial("edge-a", rec["sha256"]).offset
    sent_before = len(hq.log.puts())

    restarted = Store(edge.path, outbox=True, clock=edge.clock)
    try:
        assert uploader(hq, SimpleNamespace(store=restarted, clock=edge.clock)).run_once() == 1
        resent = hq.log.puts()[sent_before:]
        assert resent[0].startswith(f"bytes {resume_at}-")  # not from 0
        assert len(resent) == -(-(len(rec["data"]) - resume_at) // CHUNK)
        [stored] = catalog.recordings_for_call(hq.db, "edge-a", "c-kill")
        assert (hq.root / stored.path).read_bytes() == rec["data"]
        assert restarted.recording(rec["file"])["upload_state"] == "confirmed"
    finally:
        restarted.close()


def _settled(hq: SimpleNamespace, sha256: str) -> bool:
    """Nothing more arrives: the proxy forwards what the killed process had already sent."""
    first = hq.files.partial("edge-a", sha256), len(hq.log.seen)
    time.sleep(0.2)
    second = hq.files.partial("edge-a", sha256), len(hq.log.seen)
    return first[0] is not None and second[0] is not None and \
        (first[0].offset, first[1]) == (second[0].offset, second[1])


def test_bytes_corrupted_on_the_way_are_sent_again_once(hq: SimpleNamespace,
                                                       edge: SimpleNamespace) -> None:
    rec = add_recording(edge, "c-flip")

    class Flipping(requests.Session):
        flipped = False

        def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
            if method == "PUT" and not self.flipped:
                self.flipped = True
                data = bytearray(kwargs["data"])
                data[100] ^= 0x40
                kwargs["data"] = bytes(data)
            return super().request(method, url, **kwargs)

    up = uploader(hq, edge, session=Flipping())

    assert up.run_once() == 1

    assert len(hq.log.puts()) == 6                         # three, refused (422), three again
    assert hq.log.puts()[3].startswith("bytes 0-")
    [stored] = catalog.recordings_for_call(hq.db, "edge-a", "c-flip")
    assert (hq.root / stored.path).read_bytes() == rec["data"]


def test_a_local_file_damaged_on_disk_is_failed_not_uploaded(hq: SimpleNamespace,
                                                            edge: SimpleNamespace,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    rec = add_recording(edge, "c-rot")
    damaged = bytearray(rec["data"])
    damaged[CHUNK * 2 + 3] ^= 0x01
    rec["path"].write_bytes(bytes(damaged))
    up = uploader(hq, edge)

    assert up.run_once() == 0

    row = edge.store.recording(rec["file"])
    assert row["upload_state"] == "failed"
    assert "no longer matches its checksum" in row["upload_error"]
    assert "c-rot-1.wav not uploaded" in caplog.text
    assert len(hq.log.puts()) == 3                         # read again, not sent again
    assert hq.db.scalar("SELECT count(*) FROM hq_recordings") == 0
    assert up.run_once() == 0 and len(hq.log.puts()) == 3  # failed rows wait for a person
    assert edge.store.upload_retry(rec["file"])


def test_a_file_hq_already_confirmed_is_not_sent_again(hq: SimpleNamespace,
                                                       edge: SimpleNamespace) -> None:
    """The edge died after HQ confirmed but before it marked its row."""
    rec = add_recording(edge, "c-twice")
    up = uploader(hq, edge)
    hq_path = up.upload(edge.store.recording(rec["file"]))
    assert edge.store.recording(rec["file"])["upload_state"] == "pending"
    puts = len(hq.log.puts())

    assert up.run_once() == 1

    assert len(hq.log.puts()) == puts
    row = edge.store.recording(rec["file"])
    assert row["upload_state"] == "confirmed"
    assert outbox(edge.store)[0][2]["hq_path"] == hq_path
    assert hq.db.scalar("SELECT count(*) FROM hq_recordings") == 1


@pytest.mark.parametrize("token", ["cce_wrong", "revoked"])
def test_a_refused_token_pauses_uploads_without_failing_files(
        hq: SimpleNamespace, edge: SimpleNamespace, token: str,
        caplog: pytest.LogCaptureFixture) -> None:
    rec = add_recording(edge, "c-token")
    if token == "revoked":
        with hq.db.transaction() as tx:
            revoke_edge_tokens(tx, "edge-a")
        token = hq.token
    up = uploader(hq, edge, token=token, retry_s=30.0)

    assert up.run_once() == 0

    assert "refused this edge's token (401" in caplog.text
    assert edge.store.recording(rec["file"])["upload_state"] in ("", None)
    seen = len(hq.log.seen)
    assert up.run_once() == 0 and len(hq.log.seen) == seen   # paused: HQ is not hammered


def test_a_file_hq_refuses_is_failed_and_the_next_one_goes(hq: SimpleNamespace,
                                                           edge: SimpleNamespace) -> None:
    bad = add_recording(edge, "c" * 200)                   # a call id HQ will not take
    good = add_recording(edge, "c-good")
    up = uploader(hq, edge)

    assert up.run_once() == 1

    row = edge.store.recording(bad["file"])
    assert row["upload_state"] == "failed"
    assert "400" in row["upload_error"] and "call_id" in row["upload_error"]
    assert edge.store.recording(good["file"])["upload_state"] == "confirmed"


def test_hq_errors_back_one_file_off_and_others_go_on(hq: SimpleNamespace,
                                                      edge: SimpleNamespace) -> None:
    first = add_recording(edge, "c-first")
    second = add_recording(edge, "c-second")
    hq.log.fail[first["sha256"]] = [503, 503]
    up = uploader(hq, edge, retry_s=0.2)

    assert up.run_once() == 1                              # the second, past the first
    assert edge.store.recording(first["file"])["upload_state"] in ("", None)
    assert up.run_once() == 0                              # the first is backing off
    time.sleep(0.25)
    assert up.run_once() == 0                              # 503 again: waits 0.4 s now
    time.sleep(0.45)
    assert up.run_once() == 1
    assert {edge.store.recording(r["file"])["upload_state"] for r in (first, second)} == \
        {"confirmed"}


def test_hq_down_pauses_and_the_oldest_goes_first_when_it_is_back(
        hq: SimpleNamespace, edge: SimpleNamespace) -> None:
    newer_first = [add_recording(edge, f"c-{n}") for n in ("old", "mid", "new")]
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    down = Uploader(edge.store, f"http://127.0.0.1:{port}", hq.token, chunk_bytes=CHUNK,
                    retry_s=0.05)
    assert down.run_once() == 0
    assert all(edge.store.recording(r["file"])["upload_state"] in ("", None)
               for r in newer_first)

    assert uploader(hq, edge).run_once() == 3

    filed = sorted(catalog.list_recordings(hq.db), key=lambda r: r.id)
    assert [r.call_id for r in filed] == ["c-old", "c-mid", "c-new"]


def test_the_thread_uploads_then_retention_frees_the_disk(hq: SimpleNamespace,
                                                          edge: SimpleNamespace) -> None:
    recs = [add_recording(edge, f"c-{n}", size=CHUNK) for n in range(3)]
    unconfirmed = add_recording(edge, "c-refused", size=CHUNK)
    hq.log.fail[unconfirmed["sha256"]] = [400] * 50
    edge.clock.t = T0 + 3600

    def usage(_path: str) -> DiskUsage:
        """The four MP3s put the disk two files' worth over its 80 %: the two oldest go."""
        on_disk = sum(p.stat().st_size for p in edge.root.rglob("*.mp3"))
        used = 798 * CHUNK + on_disk
        return DiskUsage(total=1000 * CHUNK, used=used, free=1000 * CHUNK - used)

    policy = RetentionPolicy(str(edge.root), retention_days=30, max_disk_share=0.8,
                             disk_usage=usage)
    up = uploader(hq, edge, retention=policy, retention_every_s=0.05, idle_s=0.02)
    up.start()
    try:
        eventually(lambda: up.confirmed == 3)
        eventually(lambda: not recs[1]["path"].exists())
        time.sleep(0.2)
    finally:
        up.stop()

    assert [r["path"].exists() for r in recs] == [False, False, True]
    assert unconfirmed["path"].exists()
    assert edge.store.recording(unconfirmed["file"])["upload_state"] == "failed"
    assert edge.store.recording(recs[0]["file"])["local_deleted_at"] == edge.clock.t
    assert catalog.recordings_for_call(hq.db, "edge-a", "c-0")[0].bytes == CHUNK


def test_from_config_reads_the_sync_and_upload_sections(edge: SimpleNamespace) -> None:
    sync = SimpleNamespace(hq_url="https://hq.example.cn/", api_token="cce_x")
    upload = SimpleNamespace(chunk_bytes=8192, retry_s=7.0, retention_days=10.0,
                             max_disk_share=0.5)
    up = Uploader.from_config(edge.store, sync, upload, str(edge.root))
    assert up.base_url == "https://hq.example.cn/api/v1/recordings/uploads"
    assert (up.chunk_bytes, up.retry_s) == (8192, 7.0)
    assert up.retention == RetentionPolicy(str(edge.root), 10.0, 0.5)
