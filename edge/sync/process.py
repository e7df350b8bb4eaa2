"""The sync publisher in a child process of its own (``python -m edge.sync.process``).

Why: in one process the store's writer (SQLite commits) and the publisher (paho's per-message
work) share one GIL, and the edge, not the broker or HQ, sets the end-to-end rate. Apart, each
gets a core. The child runs the same ``SyncPublisher`` on the same SQLite file; the outbox stays
the only hand-over, so nothing is lost or doubled when either side dies: a new child starts from
what the outbox still holds (unacknowledged rows go again; HQ drops duplicates by message id).

The parent (``SyncProcess``, constructed like ``SyncPublisher``):

* ``wake()`` after each commit that queued rows costs one shared-memory byte test and, only when
  no wake-up is already on its way, one non-blocking ``send`` of one byte on a socketpair; the
  child reads the socket, clears the flag, then passes the wake-up on to the publisher, so a
  burst of commits costs one ``send`` per turn of the child, and no commit is missed.
* A supervisor thread restarts the child when it dies (back-off from ``restart_min_s`` doubling to
  ``restart_max_s``; reset after a child ran ``STABLE_S``). ``stop()`` closes the child's stdin
  (its lifeline: it also sees EOF when the parent is killed) and waits; SIGKILL after the timeout.
* The child's log records come back as JSON lines on its stderr and are logged by the parent's
  ``logging`` under their own logger names; anything else it prints (a fatal interpreter error)
  is logged as a warning.

How a wake-up reaches the publisher in the child: ``SyncPublisher`` waits on that socket
itself (``wake_socket``) and calls ``on_turn`` once per turn of its loop, after its wait and
before it reads the outbox; the flag is cleared there, so the parent sends about one byte per
turn and a commit after the clear always sends another.

Shared memory (``STATUS_SIZE`` bytes of a memfd): the wake-pending flag, the connected flag and
the published count, so the parent shows the child's state without a round trip.
"""
from __future__ import annotations

import importlib
import json
import logging
import mmap
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("edge.sync.process")  # the same name when run as __main__

STATUS_SIZE = 16
WAKE, CONNECTED = 0, 1          # one byte each: a wake-up is on its way; the child is connected
PUBLISHED = struct.Struct("=Q")  # at offset 8: messages the current child has published
PUBLISHED_AT = 8
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0
STABLE_S = 60.0          # a child that ran this long resets the back-off
STOP_TIMEOUT_S = 10.0
CHILD_TURN_S = 0.1       # the child refreshes its status this often
CHILD_LOGGER = "edge.sync.process.child"
PUBLISHER_CLASS = "edge.sync.publisher:SyncPublisher"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class SyncProcess:
    """``SyncPublisher`` run in a supervised child process; same constructor and life cycle.

    Example::

        sync = SyncProcess("edge.sqlite3", "edge-a", "hq.example", 1883, "edge-a", "secret",
                           in_flight=1000, resend_s=5.0, synchronous="NORMAL")
        store.on_outbox = sync.wake
        sync.start()
        ...
        sync.stop()

    ``publisher_options`` (``in_flight``, ``resend_s``, ``synchronous``, and any keyword the
    publisher grows) go to the child's ``SyncPublisher`` as JSON, so they must be plain values.
    ``publisher_class`` ("module:Class") names the class the child runs: another implementation
    with the same constructor, for a benchmark or a test.
    """

    def __init__(self, store_path: str, edge_id: str, host: str, port: int, username: str,
                 password: str, *, restart_min_s: float = RESTART_MIN_S,
                 restart_max_s: float = RESTART_MAX_S, publisher_class: str = PUBLISHER_CLASS,
                 **publisher_options: Any) -> None:
        self._config = {"store_path": os.path.abspath(store_path), "edge_id": edge_id,
                        "host": host, "port": int(port), "username": username,
                        "password": password, "class": publisher_class,
                        "options": publisher_options}
        json.dumps(self._config)  # fail here, not in the child, on an option JSON cannot carry
        self.restart_min_s, self.restart_max_s = restart_min_s, restart_max_s
        self._wake_w, self._wake_r = socket.socketpair()
        self._wake_w.setblocking(False)
        self._status_file = _shared_file(STATUS_SIZE)
        self._status = mmap.mmap(self._status_file.fileno(), STATUS_SIZE)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._supervisor: threading.Thread | None = None
        self._published_before = 0   # by children that have exited
        self.restarts = 0

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="sync-process",
                                            daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask the child to stop (EOF on its stdin), wait; SIGKILL it after ``timeout``."""
        with self._lock:  # after this, _spawn sees the flag and closes a new child's stdin itself
            self._stopping.set()
            child = self._child
        if child is not None:
            _close_quietly(child.stdin)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("sync process %s did not stop in %.0f s; killing it", child.pid, timeout)
                child.kill()
                child.wait(5)
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        self._status[CONNECTED] = 0

    def close(self) -> None:
        """Release the socketpair and the shared memory (after ``stop``)."""
        for sock in (self._wake_w, self._wake_r):
            sock.close()
        self._status.close()
        self._status_file.close()

    def wake(self) -> None:
        """Rows were committed: tell the child (any thread; never blocks; coalesced)."""
        status = self._status
        try:
            if status[WAKE]:        # a wake-up is on its way and the child has not taken it yet
                return
            status[WAKE] = 1
            self._wake_w.send(b"!")
        except (OSError, ValueError):  # buffer full (woken already), or closed after stop()
            pass

    # --- what the child reports ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return bool(self._status[CONNECTED])

    @property
    def published(self) -> int:
        """Messages published by every child so far (a restarted child's resends included)."""
        return self._published_before + PUBLISHED.unpack_from(self._status, PUBLISHED_AT)[0]

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._child.pid if self._child is not None else None

    # --- the supervisor -----------------------------------------------------------------------

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                          env.get("PYTHONPATH")]))
        level = logging.getLogger("edge.sync").getEffectiveLevel()
        fds = (self._wake_r.fileno(), self._status_file.fileno())
        child = subprocess.Popen(
            [sys.executable, "-m", "edge.sync.process", "--wake-fd", str(fds[0]),
             "--status-fd", str(fds[1]), "--log-level", str(level)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=fds, env=env)
        threading.Thread(target=_relay_logs, args=(child.stderr, child.pid),
                         name=f"sync-process-log-{child.pid}", daemon=True).start()
        try:  # the password goes by pipe, not argv (ps shows argv to everyone)
            child.stdin.write(json.dumps(self._config, ensure_ascii=False).encode() + b"\n")
            child.stdin.flush()
        except OSError as exc:  # it died at once; the supervisor sees the exit and says why
            log.error("sync process %s: cannot send its configuration: %s", child.pid, exc)
        with self._lock:
            self._child = child
            if self._stopping.is_set():  # stop() came while this one started: stop it too
                _close_quietly(child.stdin)
        log.info("sync process %s started", child.pid)

    def _supervise(self) -> None:
        backoff = self.restart_min_s
        while True:
            with self._lock:
                child = self._child
            started = time.monotonic()
            code = child.wait() if child is not None else None
            self._status[CONNECTED] = 0
            published = PUBLISHED.unpack_from(self._status, PUBLISHED_AT)[0]
            PUBLISHED.pack_into(self._status, PUBLISHED_AT, 0)
            self._published_before += published
            if self._stopping.is_set():
                if code:
                    log.warning("sync process %s stopped with exit code %s", child.pid, code)
                return
            if time.monotonic() - started >= STABLE_S:
                backoff = self.restart_min_s
            log.error("sync process %s exited with %s; restarting it in %.1f s (the outbox "
                      "keeps every row)", child.pid if child else "?", _exit_text(code), backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.restart_max_s)
            self.restarts += 1
            try:
                self._spawn()
            except OSError as exc:
                log.error("sync process cannot be started: %s", exc)


def _shared_file(size: int) -> IO[bytes]:
    """An anonymous file the child can map by fd: a memfd on Linux, a temporary file elsewhere."""
    if hasattr(os, "memfd_create"):  # close-on-exec; Popen's pass_fds hands it to the child
        handle: IO[bytes] = os.fdopen(os.memfd_create("cc-sync-status"), "r+b", buffering=0)
    else:
        handle = tempfile.TemporaryFile()
    handle.truncate(size)
    return handle


def _relay_logs(stream: IO[bytes], pid: int) -> None:
    """Log the child's records (JSON lines on its stderr) with the parent's logging."""
    fallback = logging.getLogger(CHILD_LOGGER)
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            try:
                record = json.loads(line)
                logging.getLogger(record["name"]).log(int(record["level"]), "[sync process %s] %s",
                                                      pid, record["msg"])
            except (ValueError, KeyError, TypeError):
                if line.strip():
                    fallback.warning("[sync process %s] %s", pid, line)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    try:
        stream.close()
    except OSError:  # the child is gone and the pipe broken: closed all the same
        pass


# --- the child --------------------------------------------------------------------------------

class _JsonLines(logging.Handler):
    """One JSON line per record on stderr, for ``_relay_logs`` in the parent."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            sys.stderr.write(json.dumps({"level": record.levelno, "name": record.name,
                                         "msg": msg}, ensure_ascii=False) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never take the publisher down
            self.handleError(record)


def _read_config(fd: int) -> dict[str, Any]:
    """The one JSON line the parent writes to stdin (unbuffered: fd 0 is watched after it)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            raise SystemExit("sync process: stdin closed before the configuration came")
        data += chunk
    return json.loads(data)


def child_main(wake_fd: int, status_fd: int) -> int:
    """Run the publisher until stdin reaches EOF (stop, or the parent died) or SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C is the parent's to handle
    threading.excepthook = _log_thread_failure
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    config = _read_config(0)
    status = mmap.mmap(status_fd, STATUS_SIZE)
    wake = socket.socket(fileno=wake_fd)
    wake.setblocking(False)
    publisher_class = _load(config.get("class", PUBLISHER_CLASS))
    args = [config[key] for key in ("store_path", "edge_id", "host", "port", "username",
                                    "password")]
    status[WAKE] = 0          # before the publisher's first look at the outbox: no wake is lost
    publisher = publisher_class(*args, wake_socket=wake,
                                on_turn=lambda: status.__setitem__(WAKE, 0), **config["options"])
    publisher.start()
    try:
        while not stopping.is_set():
            readable, _, _ = select.select([0], [], [], CHILD_TURN_S)
            if 0 in readable and not os.read(0, 4096):
                break               # the lifeline: stop() closed it, or the parent is gone
            status[CONNECTED] = int(publisher.connected)
            PUBLISHED.pack_into(status, PUBLISHED_AT, publisher.published)
            if not publisher.alive:
                log.error("sync publisher thread ended; the process exits to be restarted")
                return 1
    finally:
        publisher.stop()
        status[CONNECTED] = 0
        PUBLISHED.pack_into(status, PUBLISHED_AT, publisher.published)
    return 0


def _load(name: str) -> Any:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _log_thread_failure(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught error as one log record (the default hook prints it raw)."""
    name = args.thread.name if args.thread is not None else "?"
    log.error("thread %s failed", name,
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Edge sync publisher (child of SyncProcess)")
    parser.add_argument("--wake-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--log-level", type=int, default=logging.INFO)
    args = parser.parse_args(argv)
    root = logging.getLogger()
    root.addHandler(_JsonLines())
    root.setLevel(args.log_level)
    try:
        return child_main(args.wake_fd, args.status_fd)
    except Exception:  # noqa: BLE001 - said in the parent's log, then restarted
        log.exception("sync process failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
