"""The recording service: WAVs from Asterisk's spool dir to checked MP3s, crash-safe.

The core decides what is recorded (``edge.call_recording``); this service, on a thread of its
own beside the core, does the files. Each WAV has a row in the store (``edge.store.recording_rows``)
keyed by its file name, and is encoded only when it is *over*:

* its call closed here (``EncodeRecording``, row ``stopped``), or — after a restart — its call's
  channel is no longer live in Asterisk (``CoreShowChannels``); a WAV whose call is live, or whose
  liveness cannot be asked (AMI down), is never touched;
* and it has stopped growing for ``settle_s`` (Asterisk's MixMonitor closes the file a moment
  after the hang-up; a crash leaves it with the RIFF sizes of its first write, which the pipeline
  repairs).

Encoding runs on a fixed pool of worker processes (``workers``, default one per core): never one
process per call, and a 2-core box keeps encoding while the core routes calls. The WAV is deleted
only after the row says ``done`` — the MP3 decoded back to the right length, checksum stored — so
a crash at any point either re-encodes a WAV (the MP3 was not committed) or finds it done.
A full disk is reported (``recording.disk_full``) and retried; the WAV stays.
"""
from __future__ import annotations

import concurrent.futures as futures
import logging
import signal
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge.commands import EncodeRecording, StartRecording
from edge.config import RecordingSection
from edge.recordings.encoder import EncoderSettings
from edge.recordings.errors import DiskFullError, RecordingError
from edge.recordings.filing import RecordingMeta
from edge.recordings.pipeline import RecordingJob, RecordingResult, process
from edge.store import Store, StoreError

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 0.05       # real seconds between looks while a WAV is pending
IDLE_INTERVAL_S = 1.0        # ... and while nothing is (a new EncodeRecording wakes it at once)
ORPHAN_SCAN_S = 10.0         # real seconds between listings of the spool dir for orphans
ORPHAN_BUSY_S = 0.25         # ... while some are waiting for their call to end
DISK_FULL_RETRY_S = 30.0     # real seconds before a disk-full WAV is tried again
MISSING_WAV_GRACE_S = 10.0   # virtual seconds a stopped row may wait for its WAV to appear

Notify = Callable[[str, dict[str, Any]], None]
LiveCalls = Callable[[], "set[str] | None"]


@dataclass
class _Watch:
    """What the last look at one WAV saw: growth is judged between looks."""
    size: int
    since: float      # real monotonic time the size was first seen


class RecordingService:
    def __init__(self, store: Store, config: RecordingSection, timezone: str, *,
                 notify: Notify, live_calls: LiveCalls, real_seconds: Callable[[float], float],
                 workers: int | None = None, disk_full_retry_s: float = DISK_FULL_RETRY_S) -> None:
        """``live_calls`` returns the Uniqueids of Asterisk's live channels, or None when it
        cannot tell (AMI down); ``real_seconds`` turns the config's virtual seconds into real
        ones (the runtime's time scale)."""
        self.store = store
        self.config = config
        self.timezone = timezone
        self.spool = Path(config.spool_dir)
        self.root = Path(config.root)
        self.settings = EncoderSettings(bitrate_kbps=config.bitrate_kbps, quality=config.quality)
        self._notify = notify
        self._live_calls = live_calls
        self._real = real_seconds
        self._workers = workers or config.workers or os.cpu_count() or 1
        self._disk_full_retry_s = disk_full_retry_s
        self._pool: futures.ProcessPoolExecutor | None = None
        self._watch: dict[str, _Watch] = {}
        self._in_flight: dict[str, futures.Future[RecordingResult]] = {}
        self._retry_at: dict[str, float] = {}
        self._disk_full = False
        self._next_orphan_scan = 0.0  # the first scan is the crash recovery
        self._orphans_seen: dict[str, dict[str, Any]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.encoded = 0

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the encoder pool and the scan thread; the first scan is the crash recovery."""
        self.root.mkdir(parents=True, exist_ok=True)
        context = multiprocessing.get_context("forkserver")  # the edge has threads: never fork
        self._pool = futures.ProcessPoolExecutor(self._workers, mp_context=context,
                                                 initializer=_ignore_interrupts)
        self._thread = threading.Thread(target=self._loop, name="recordings", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish what is encoding (it is quick); pending WAVs stay for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # --- from the runtime (core thread) ----------------------------------------------------------

    def started(self, command: StartRecording) -> None:
        self.store.recording_started(command.file, command.call_id, command.leg, command.channel,
                                     command.agent_id, str(self.spool / command.file))

    def call_over(self, command: EncodeRecording) -> None:
        self.store.recording_stopped(command.file, command.call_id, command.leg,
                                     str(self.spool / command.file), command.meta)
        self._wake.set()

    # --- the scan thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._collect_finished()
                self._scan()
            except StoreError:
                log.exception("recordings: store failed; trying again")
            except Exception:  # a bug here must not stop recordings for good
                log.exception("recordings: scan failed; trying again")
            busy = bool(self._watch or self._in_flight or self._orphans_seen)
            self._wake.wait(SCAN_INTERVAL_S if busy else IDLE_INTERVAL_S)
            self._wake.clear()
        self._collect_finished(wait=True)

    def _scan(self) -> None:
        rows = {row["file"]: row for row in self.store.recordings(state="stopped")}
        now_real = time.monotonic()
        orphans: dict[str, dict[str, Any]] = {}
        if now_real >= self._next_orphan_scan:
            orphans = self._orphans_seen = self._orphans(rows)
            self._next_orphan_scan = now_real + (ORPHAN_BUSY_S if orphans else ORPHAN_SCAN_S)
        live = self._live_calls() if orphans else set()
        now = time.monotonic()
        for file, row in rows.items():
            self._consider(file, row, now)
        for file, row in orphans.items():
            if live is None:
                continue  # cannot tell whether its call is live: leave it alone
            if row["call_id"] in live:
                self._watch.pop(file, None)
                continue
            self._consider(file, row, now)

    def _orphans(self, stopped: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """WAVs of calls this process did not close: from before a crash or restart.

        Rows still ``recording`` from another process and WAVs with no row at all; a row
        ``recording`` of this process's own live call is skipped because its call is live.
        """
        found: dict[str, dict[str, Any]] = {}
        try:
            names = [p.name for p in self.spool.glob("*.wav")]
        except OSError as exc:
            log.error("recordings: cannot list %s: %s", self.spool, exc)
            return found
        for name in names:
            if name in stopped or name in self._in_flight:
                continue
            row = self.store.recording(name)
            if row is None:
                call_id, leg = _parse_wav_name(name)
                row = {"file": name, "call_id": call_id, "leg": leg,
                       "state": "", "meta": {}}
            if row["state"] in ("recording", ""):
                found[name] = row
            elif row["state"] == "done":
                self._delete_wav(name)  # verified before the crash; only the unlink was lost
        return found

    def _consider(self, file: str, row: dict[str, Any], now: float) -> None:
        if file in self._in_flight or now < self._retry_at.get(file, 0.0):
            return
        path = self.spool / file
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self._wav_missing(file, row)
            return
        watch = self._watch.get(file)
        if watch is None or watch.size != size:
            self._watch[file] = _Watch(size, now)
            return
        if now - watch.since < self._real(self.config.settle_s):
            return
        self._submit(file, row)

    def _wav_missing(self, file: str, row: dict[str, Any]) -> None:
        """MixMonitor never wrote it (a refused action, a call that never bridged)."""
        age = time.time() - float(row.get("updated_at") or time.time())
        if row.get("state") == "stopped" and age > self._real(MISSING_WAV_GRACE_S):
            self.store.recording_failed(file, "no WAV was written", final=True)
            self._notify("recording.failed", {"file": file, "call_id": row["call_id"],
                                              "reason": "no WAV was written"})

    def _submit(self, file: str, row: dict[str, Any]) -> None:
        self._watch.pop(file, None)
        if row.get("state") != "stopped":  # an orphan: adopt it, so a second crash finds it
            meta = self._orphan_meta(row)
            self.store.recording_stopped(file, row["call_id"], _leg(row),
                                         str(self.spool / file), meta)
            row = dict(row, meta=meta)
            log.info("recordings: recovering %s (its call %s is over)", file, row["call_id"])
        job = RecordingJob(str(self.spool / file), str(self.root), _meta(row), self.timezone,
                           self.settings)
        assert self._pool is not None
        self._in_flight[file] = self._pool.submit(process, job)

    def _orphan_meta(self, row: dict[str, Any]) -> dict[str, Any]:
        """A recovered WAV is tagged from its CDR when the call's CDR was written."""
        cdr = self.store.cdr(row["call_id"]) or {}
        meta = {key: cdr.get(key) for key in ("direction", "caller", "callee", "started_at",
                                              "answered_at", "ended_at", "talk_s", "disposition",
                                              "extension")}
        meta["agent_id"] = row.get("agent_id") or cdr.get("agent_id") or ""
        meta["recovered"] = True
        return meta

    def _collect_finished(self, wait: bool = False) -> None:
        if wait and self._in_flight:
            futures.wait(list(self._in_flight.values()), timeout=30)
        for file, future in list(self._in_flight.items()):
            if not future.done():
                continue
            del self._in_flight[file]
            try:
                result = future.result()
            except DiskFullError as exc:
                self._disk_full_hit(file, exc)
            except RecordingError as exc:
                log.error("recordings: %s failed: %s (WAV kept)", file, exc)
                self.store.recording_failed(file, str(exc), final=True)
                self._notify("recording.failed", {"file": file, "reason": str(exc)})
            except Exception as exc:  # a worker that died (killed, out of memory): try again
                log.error("recordings: encoder for %s failed: %r; will retry", file, exc)
                self._retry_at[file] = time.monotonic() + DISK_FULL_RETRY_S
            else:
                self._finished(file, result)

    def _finished(self, file: str, result: RecordingResult) -> None:
        self.store.recording_done(file, {
            "mp3_path": result.mp3_path, "sha256": result.sha256, "mp3_bytes": result.mp3_bytes,
            "duration_s": result.duration_s, "decoded_duration_s": result.decoded_duration_s,
            "header_repaired": result.header_repaired})
        self._delete_wav(file)
        self.encoded += 1
        self._retry_at.pop(file, None)
        if self._disk_full:
            self._disk_full = False
            self._notify("recording.disk_ok", {})
        row = self.store.recording(file) or {}
        meta = row.get("meta") or {}
        if meta.get("kind") == "voicemail":
            self._notify("voicemail.new", {
                "box": meta.get("box", ""), "call_id": row.get("call_id", ""),
                "caller": meta.get("caller", ""), "mp3_path": str(result.mp3_path),
                "duration_s": round(result.duration_s, 3), "recovered": bool(meta.get("recovered"))})
        self._notify("recording.ready", {
            "file": file, "call_id": row.get("call_id", ""), "leg": row.get("leg", 1),
            "agent_id": row.get("agent_id", ""), "mp3_path": str(result.mp3_path),
            "sha256": result.sha256, "duration_s": round(result.duration_s, 3),
            "header_repaired": result.header_repaired})

    def _disk_full_hit(self, file: str, exc: DiskFullError) -> None:
        log.error("recordings: disk full writing the MP3 of %s: %s; WAV kept, retrying", file, exc)
        self.store.recording_failed(file, f"disk full: {exc}", final=False)
        self._retry_at[file] = time.monotonic() + self._disk_full_retry_s
        if not self._disk_full:
            self._disk_full = True
            self._notify("recording.disk_full", {"file": file, "root": str(self.root),
                                                 "error": str(exc)})

    def _delete_wav(self, file: str) -> None:
        try:
            (self.spool / file).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("recordings: cannot delete %s after encoding: %s", file, exc)

    def idle(self) -> bool:
        """Nothing encoding and nothing stopped waiting (tests and shutdown use it)."""
        return not self._in_flight and not self.store.recordings(state="stopped", limit=1)


def _meta(row: dict[str, Any]) -> RecordingMeta:
    meta = row.get("meta") or {}
    started = meta.get("answered_at") or meta.get("started_at") or row.get("created_at") or time.time()
    return RecordingMeta(
        call_id=row["call_id"], leg=str(_leg(row)),
        agent_id=str(meta.get("agent_id") or row.get("agent_id") or ""),
        agent_name=str(meta.get("agent_name") or ""), caller=str(meta.get("caller") or ""),
        callee=str(meta.get("callee") or ""), direction=str(meta.get("direction") or ""),
        started_at=float(started), duration_s=float(meta.get("talk_s") or 0.0),
        result=str(meta.get("disposition") or ""))


def _leg(row: dict[str, Any]) -> int:
    """A row's leg; 0 is a voicemail's, not a missing value."""
    return 1 if row.get("leg") is None else int(row["leg"])


def _parse_wav_name(file: str) -> tuple[str, int]:
    """``1795392187.42-2.wav`` -> (``1795392187.42``, 2); a voicemail ``…-vm.wav`` is leg 0, as
    ``edge.voicemail`` files it (Uniqueids contain no dash)."""
    stem = file[:-4] if file.endswith(".wav") else file
    if stem.endswith("-vm"):
        return stem[:-3], 0
    head, sep, leg = stem.rpartition("-")
    return (head, int(leg)) if sep and leg.isdigit() else (stem, 1)


def _ignore_interrupts() -> None:
    """In each encoder worker: a terminal's Ctrl-C reaches the whole process group; the daemon
    stops its pool in order, so a worker must not die of the signal mid-file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
