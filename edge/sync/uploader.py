"""Upload verified MP3s to HQ over HTTP(S), resumable, and keep the local disk by the retention
policy (``edge.recordings.retention``).

The protocol is HQ's (``aggregator.recordings.views``): an upload is keyed by the file's sha256;
``HEAD …/uploads/<sha256>`` says how many bytes HQ holds, ``POST …/uploads`` creates it with the
recording's facts, ``PUT …/uploads/<sha256>`` with ``Content-Range`` appends a chunk exactly at
HQ's offset, and the last chunk makes HQ hash the whole file and file it.

The ``recordings`` table is this sender's queue: rows ``done`` whose ``upload_state`` is '' or
``pending``, oldest first. HQ's offset is the truth (asked again on every attempt), so an edge
restarted mid-file, or a connection cut mid-chunk, resumes where HQ's bytes end;
``upload_offset`` only mirrors it for people. When HQ confirms, the row becomes ``confirmed``
and a ``recording.uploaded`` outbox row goes in the same SQLite transaction.

Failures: HQ unreachable, a timeout, or a refused token (401/403: the edge's, not the file's
fault) pause every upload for ``retry_s``, doubling up to ``max_retry_s``; a 5xx/408/429 on one
file backs that file off alone; any other 4xx marks the file ``failed`` with HQ's reason, logged
(``store.upload_retry`` tries it again). A checksum mismatch (422) re-reads the local file once:
if it no longer matches its stored checksum the disk damaged it (failed); if it does, it is sent
again from the start, and a second mismatch fails it.

Constructed by the runtime as::

    uploader = Uploader.from_config(store, config.sync, config.upload, config.recording.root)
    uploader.start() … uploader.stop()
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import requests

from edge.errors import EdgeError
from edge.recordings.retention import RetentionPolicy
from edge.store import Store, StoreError

log = logging.getLogger(__name__)

UPLOADS_PATH = "/api/v1/recordings/uploads"
BATCH = 100                     # rows looked at per pass
IDLE_S = 5.0                    # real seconds between passes when nothing is waiting
RETENTION_EVERY_S = 60.0        # real seconds between retention passes
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0          # the last chunk waits for HQ to hash the whole file
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class UploadError(EdgeError):
    """Base of the uploader's errors; they steer what happens to a file, none leaves the thread."""


class HqUnavailable(UploadError):
    """HQ cannot be reached or refuses this edge's token: pause every upload."""


class RetryLater(UploadError):
    """HQ had a transient problem with this file (5xx, 408, 429): back this file off."""


class UploadRefused(UploadError):
    """HQ (or the local disk) makes this file unsendable; it is marked failed with the reason."""


class _Stopped(UploadError):
    """``stop()`` was called between two chunks; HQ keeps what it has."""


class _ChecksumRejected(UploadError):
    """HQ hashed the whole file and it did not match (422)."""


@dataclass
class _Backoff:
    """Retry ``base`` seconds after a failure, doubling up to ``cap``; reset on success."""

    base: float
    cap: float
    failures: int = 0
    until: float = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(self.base * 2 ** (self.failures - 1), self.cap)
        self.until = now + delay
        return delay

    def waiting(self, now: float) -> bool:
        return now < self.until


@dataclass
class _Upload:
    """One file's facts for HQ, from its row."""

    file: str
    path: Path
    sha256: str
    size: int
    meta: dict[str, Any] = field(default_factory=dict)


class Uploader:
    def __init__(self, store: Store, hq_url: str, api_token: str, *,
                 chunk_bytes: int = 1024 * 1024, retry_s: float = 30.0,
                 max_retry_s: float | None = None, retention: RetentionPolicy | None = None,
                 retention_every_s: float = RETENTION_EVERY_S, idle_s: float = IDLE_S,
                 clock: Callable[[], float] = time.time,
                 session: requests.Session | None = None,
                 timeout_s: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                 verify: bool | str = True) -> None:
        """``clock`` stamps rows and drives retention's ages; back-off runs in real time.
        ``verify``: HTTPS certificate checking, or the path of the CA bundle of a private HQ CA."""
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        self.store = store
        self.base_url = hq_url.rstrip("/") + UPLOADS_PATH
        self.chunk_bytes = chunk_bytes
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s if max_retry_s is not None else max(retry_s, 3600.0)
        self.retention = retention
        self.retention_every_s = retention_every_s
        self.idle_s = idle_s
        self._clock = clock
        self._timeout = timeout_s
        self._http = session or requests.Session()
        self._http.headers["Authorization"] = f"Bearer {api_token}"
        self._http.verify = verify
        self._paused = _Backoff(retry_s, self.max_retry_s)
        self._files: dict[str, _Backoff] = {}
        self._next_retention = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.confirmed = 0

    @classmethod
    def from_config(cls, store: Store, sync: Any, upload: Any, recordings_root: str,
                    **kwargs: Any) -> "Uploader":
        """From ``[sync]`` (``hq_url``, ``api_token``), ``[upload]`` and ``[recording] root``."""
        policy = RetentionPolicy(recordings_root, upload.retention_days, upload.max_disk_share)
        return cls(store, sync.hq_url, sync.api_token, chunk_bytes=upload.chunk_bytes,
                   retry_s=upload.retry_s, retention=policy, **kwargs)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="uploader", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop between chunks; the file in progress resumes from HQ's offset next time."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._http.close()

    def wake(self) -> None:
        """Look for work now (a recording was just encoded)."""
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.run_once() > 0
            except StoreError:
                log.exception("uploader: store failed; trying again")
            except Exception:  # a bug here must not stop uploads for good
                log.exception("uploader: pass failed; trying again")
            self._retention_due()
            self._wake.wait(0.0 if busy else self._idle_wait())
            self._wake.clear()

    def _idle_wait(self) -> float:
        now = time.monotonic()
        if self._paused.waiting(now):
            return max(0.01, min(self.idle_s, self._paused.until - now))
        return self.idle_s

    def _retention_due(self) -> None:
        if self.retention is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + self.retention_every_s
        try:
            self.retention.apply(self.store, self._clock())
        except StoreError:
            log.exception("uploader: retention could not read or mark recordings")
        except Exception:
            log.exception("uploader: retention pass failed")

    def run_once(self) -> int:
        """One pass over the waiting recordings, oldest first; returns how many HQ confirmed."""
        if self._paused.waiting(time.monotonic()):
            return 0
        done = 0
        for row in self.store.recordings_to_upload(BATCH):
            if self._stop.is_set():
                break
            backoff = self._files.get(row["file"])
            if backoff is not None and backoff.waiting(time.monotonic()):
                continue
            try:
                hq_path = self.upload(row)
            except _Stopped:
                break
            except HqUnavailable as exc:
                delay = self._paused.failed(time.monotonic())
                log.warning("uploader: %s; pausing uploads for %.1f s", exc, delay)
                break
            except RetryLater as exc:
                backoff = self._files.setdefault(row["file"],
                                                 _Backoff(self.retry_s, self.max_retry_s))
                delay = backoff.failed(time.monotonic())
                log.warning("uploader: %s: %s; again in %.1f s", row["file"], exc, delay)
                continue
            except UploadRefused as exc:
                log.error("uploader: %s not uploaded: %s", row["file"], exc)
                self.store.upload_failed(row["file"], str(exc))
                self._files.pop(row["file"], None)
                continue
            self._paused = _Backoff(self.retry_s, self.max_retry_s)
            self._files.pop(row["file"], None)
            if self.store.upload_confirmed(row["file"], hq_path):
                log.info("uploader: %s confirmed by HQ as %s", row["file"], hq_path)
            done += 1
            self.confirmed += 1
        return done

    # --- one file -----------------------------------------------------------------------------

    def upload(self, row: dict[str, Any]) -> str:
        """Send one recording; returns HQ's path once HQ confirmed its checksum."""
        item = self._item(row)
        try:
            return self._send(item)
        except _ChecksumRejected as exc:
            actual = _sha256_of(item.path)
            if actual != item.sha256:
                raise UploadRefused(f"the local MP3 no longer matches its checksum (now {actual}"
                                    f"): it was damaged on disk; HQ said: {exc}") from exc
            log.warning("uploader: %s: HQ found a checksum mismatch; the local file is sound, "
                        "sending it again from the start", item.file)
        try:
            return self._send(item)
        except _ChecksumRejected as exc:
            raise UploadRefused(f"HQ found a checksum mismatch twice: {exc}") from exc

    def _item(self, row: dict[str, Any]) -> _Upload:
        path = Path(str(row.get("mp3_path") or ""))
        sha256, size = row.get("sha256"), row.get("mp3_bytes")
        if not sha256 or not size:
            raise UploadRefused("the row has no checksum or size: it was never verified")
        try:
            actual_size = path.stat().st_size
        except OSError as exc:
            raise UploadRefused(f"the MP3 cannot be read: {exc}") from exc
        if actual_size != int(size):
            raise UploadRefused(f"the MP3 is {actual_size} bytes, not the {size} it had when "
                                "it was verified")
        return _Upload(row["file"], path, str(sha256), int(size), _meta(row, path))

    def _send(self, item: _Upload) -> str:
        state = self._status(item)
        if state is None or state["state"] == "confirmed":
            state = self._create(item)        # confirmed: the POST's answer carries the path
        if state["state"] == "confirmed":
            return _path(state)
        offset = int(state["offset"])
        created_again = False
        with item.path.open("rb") as handle:
            while not self._stop.is_set():
                if offset >= item.size:       # HQ holds every byte but has not filed them
                    state = self._create(item)
                    if state["state"] == "confirmed":
                        return _path(state)
                    raise RetryLater(f"HQ holds all {item.size} bytes but did not file them")
                handle.seek(offset)
                data = handle.read(min(self.chunk_bytes, item.size - offset))
                if not data:
                    raise UploadRefused(f"the MP3 ended at {offset} of {item.size} bytes")
                response = self._request("PUT", f"{self.base_url}/{item.sha256}", data=data,
                                         headers={"Content-Range": f"bytes {offset}-"
                                                  f"{offset + len(data) - 1}/{item.size}"})
                status = response.status_code
                if status in (200, 201):
                    return _path(response)
                if status in (202, 409):
                    sent, offset = offset, _offset(response)
                    if status == 409 and offset == sent:
                        raise RetryLater(f"HQ refused the chunk at {sent} but says it is at {sent}")
                    self.store.upload_progress(item.file, offset)
                    continue
                if status == 404 and not created_again:   # HQ dropped the partial: start over
                    created_again = True
                    offset = int(self._create(item)["offset"])
                    continue
                if status == 422:
                    raise _ChecksumRejected(_error(response))
                self._refuse(response, "PUT")
        raise _Stopped()

    def _status(self, item: _Upload) -> dict[str, Any] | None:
        """HQ's state of the upload from ``HEAD``, or None when HQ has none."""
        response = self._request("HEAD", f"{self.base_url}/{item.sha256}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self._refuse(response, "HEAD")
        state = response.headers.get("Upload-State", "")
        if state not in ("partial", "confirmed"):
            raise RetryLater(f"HEAD answered Upload-State {state!r}")
        return {"state": state, "offset": _offset(response)}

    def _create(self, item: _Upload) -> dict[str, Any]:
        response = self._request("POST", self.base_url, json={"sha256": item.sha256, **item.meta})
        if response.status_code not in (200, 201):
            self._refuse(response, "POST")
        state = _json(response)
        if state.get("state") not in ("partial", "confirmed"):
            raise RetryLater(f"POST answered {state!r:.200}")
        if state["state"] == "partial":
            self.store.upload_progress(item.file, int(state.get("offset", 0)))
        return state

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._http.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise HqUnavailable(f"HQ unreachable ({method} {url}): {exc}") from exc

    @staticmethod
    def _refuse(response: requests.Response, method: str) -> None:
        """Raise what an unexpected answer means for the file; never returns."""
        status, reason = response.status_code, _error(response)
        if status in (401, 403):
            raise HqUnavailable(f"HQ refused this edge's token ({status}: {reason}); "
                                "check [sync] api_token")
        if status in (408, 429) or status >= 500:
            raise RetryLater(f"HQ answered {method} with {status}: {reason}")
        raise UploadRefused(f"HQ refused {method} with {status}: {reason}")


def _meta(row: dict[str, Any], path: Path) -> dict[str, Any]:
    """The recording's facts for HQ's create step. Day and agent folder are the edge's filing
    (``<root>/<day>/<agent>/…``, the branch's local day), so HQ files it under the same names."""
    meta = row.get("meta") or {}
    started = meta.get("answered_at") or meta.get("started_at") or row.get("created_at")
    parts = path.parts
    day = parts[-3] if len(parts) >= 3 and _DAY.fullmatch(parts[-3]) else (
        datetime.fromtimestamp(float(started or 0), timezone.utc).strftime("%Y-%m-%d"))
    agent = str(meta.get("agent_id") or row.get("agent_id") or
                (parts[-2] if len(parts) >= 3 else ""))
    leg = row.get("leg")
    return {"call_id": row["call_id"], "leg": 1 if leg is None else int(leg), "agent": agent,
            "day": day, "bytes": int(row["mp3_bytes"]),
            "duration_s": float(row.get("duration_s") or 0.0),
            "started_at": None if started is None else float(started)}


def _path(answer: requests.Response | dict[str, Any]) -> str:
    body = answer if isinstance(answer, dict) else _json(answer)
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise RetryLater(f"HQ confirmed the upload without a path: {body!r:.200}")
    return path


def _offset(response: requests.Response) -> int:
    raw = response.headers.get("Upload-Offset")
    try:
        return int(raw) if raw is not None else int(_json(response)["offset"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RetryLater(f"HQ sent no usable Upload-Offset ({raw!r})") from exc


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise RetryLater(f"HQ answered {response.status_code} without JSON") from exc
    if not isinstance(body, dict):
        raise RetryLater(f"HQ answered {response.status_code} with {body!r:.200}")
    return body


def _error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason or ""
    return str(body.get("error", body) if isinstance(body, dict) else body)[:500]


def _sha256_of(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise UploadRefused(f"the MP3 cannot be re-read: {exc}") from exc
