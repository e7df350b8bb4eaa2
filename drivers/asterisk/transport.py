"""Sockets for AMI and FastAGI: connect, read, write, notice a dead peer, back off before retrying.

Nothing here knows AMI or AGI messages (that is ``codec.py``) or which action waits for which
reply (``session.py``). Three pieces:

* ``BackoffPolicy`` — exponential back-off with optional jitter, so a box whose Asterisk restarts
  does not hammer it, and fifty boxes do not reconnect in lock-step.
* ``Reconnector`` — the loop that keeps a link up: connect, serve, back off, again.
* ``Keepalive`` — the bookkeeping for AMI ``Ping``: a half-open TCP connection (cable pulled,
  Asterisk wedged) never reports EOF, only an unanswered Ping reveals it.
* ``TcpTransport`` (AMI) and ``LineStream`` (FastAGI): a socket with EOF and reset turned into one
  signal, a reader that can be woken by ``close()`` from another thread, and for AGI the
  ``readline``/``write``/``flush`` text-stream face that pyst2's ``AGI`` class expects, plus
  ``poll`` so an idle call can wait for a bare ``HANGUP`` line and its next command at once.
"""
from __future__ import annotations

import logging
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

from drivers.asterisk.errors import AmiDisconnected, AsteriskError

log = logging.getLogger(__name__)

MIN_SCALED_S = 0.01  # a scaled timer never goes below this: no busy loops at tiny time scales
T = TypeVar("T")


def wait_readable(objects: "list[Any]", timeout: float | None) -> "list[Any]":
    """``select.select(objects, [], [], timeout)[0]`` without select's FD_SETSIZE ceiling.

    ``select()`` refuses any descriptor >= 1024 (``ValueError: filedescriptor out of range``), and
    an edge with a few hundred live calls holds more than that (each call: its FastAGI socket and
    a wake-up socketpair), so ``poll(2)`` is used where the platform has it. Like ``select``,
    EOF, errors and hang-ups count as readable (the next read reports them); a closed socket
    (``fileno() == -1``) raises ``ValueError``.
    """
    if not hasattr(select, "poll"):
        ready, _, _ = select.select(objects, [], [], timeout)
        return ready
    poller = select.poll()
    by_fd: dict[int, Any] = {}
    for obj in objects:
        fd = obj if isinstance(obj, int) else obj.fileno()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        by_fd[fd] = obj
    events = poller.poll(None if timeout is None else max(0.0, timeout) * 1000.0)
    return [by_fd[fd] for fd, _mask in events if fd in by_fd]


# --- back-off ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackoffPolicy:
    """Delay before reconnect attempt ``n`` (0-based): ``base * factor**n`` capped at ``max_s``.

    ``jitter`` is a fraction: 0.1 spreads each delay uniformly over ±10 %.
    """
    base_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.max_s < self.base_s or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid back-off policy {self!r}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        value = min(self.max_s, self.base_s * self.factor ** max(0, attempt))
        if self.jitter:
            value *= 1.0 + self.jitter * (2.0 * rand() - 1.0)
        return max(0.0, value)

    def scaled(self, time_scale: float) -> "BackoffPolicy":
        """The same curve run ``time_scale`` times as fast (HIL tests at 0.01)."""
        return replace(
            self,
            base_s=max(MIN_SCALED_S, self.base_s * time_scale),
            max_s=max(MIN_SCALED_S, self.max_s * time_scale),
        )


# --- keepalive -----------------------------------------------------------------------------------

class Keepalive:
    """When to send a Ping and when an unanswered one means the link is dead.

    A Ping is due after ``interval_s`` without any received byte; the link is dead when a Ping
    stays unanswered for ``timeout_s``. ``interval_s <= 0`` disables keepalive. Pure bookkeeping
    with an injected clock: the session's reader thread calls it between reads.
    """

    def __init__(self, interval_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._last_rx = clock()
        self._ping_at: float | None = None

    def reset(self) -> None:
        self._last_rx = self._clock()
        self._ping_at = None

    def data_received(self) -> None:
        self._last_rx = self._clock()

    def ping_due(self) -> bool:
        return (self.interval_s > 0 and self._ping_at is None
                and self._clock() - self._last_rx >= self.interval_s)

    def ping_sent(self) -> None:
        self._ping_at = self._clock()

    def pong(self) -> None:
        self._ping_at = None

    def expired(self) -> bool:
        return self._ping_at is not None and self._clock() - self._ping_at >= self.timeout_s


# --- AMI transport -------------------------------------------------------------------------------

class TcpTransport:
    """One TCP connection to AMI. ``recv`` waits at most ``tick_s`` so the reader can do keepalive.

    EOF, reset and any socket error all become ``AmiDisconnected`` with the reason; ``close`` may be
    called from any thread and wakes a reader blocked in ``recv``.
    """

    def __init__(self, host: str, port: int, connect_timeout_s: float = 5.0,
                 send_timeout_s: float = 10.0, tick_s: float = 0.25) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.tick_s = tick_s
        self._sock: socket.socket | None = None
        self._write_lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise AmiDisconnected(f"cannot connect to AMI {self.host}:{self.port}: {exc}") from exc
        sock.settimeout(self.send_timeout_s)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sock = sock

    def recv(self, tick_s: float | None = None) -> bytes | None:
        """Bytes read, or ``None`` when nothing arrived within the tick."""
        sock = self._require()
        try:
            ready = wait_readable([sock], self.tick_s if tick_s is None else tick_s)
            if not ready:
                return None
            data = sock.recv(65536)
        except (OSError, ValueError) as exc:  # ValueError: fd closed under us by close()
            raise AmiDisconnected(f"AMI connection lost: {exc}") from exc
        if not data:
            raise AmiDisconnected("AMI connection closed by Asterisk (EOF)")
        return data

    def send(self, data: bytes) -> None:
        sock = self._require()
        with self._write_lock:
            try:
                sock.sendall(data)
            except OSError as exc:
                self.close()  # a partial write leaves the stream unusable
                raise AmiDisconnected(f"AMI write failed: {exc}") from exc

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _require(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            raise AmiDisconnected("AMI connection is not open")
        return sock


# --- FastAGI line stream -------------------------------------------------------------------------

class LineStream:
    """A FastAGI socket as a text stream: ``readline``/``write``/``flush`` for pyst2, plus ``poll``.

    Reading is done here, not by ``socket.makefile``: a buffered file may already hold a bare
    ``HANGUP`` line that ``select`` on the socket can no longer see, so an idle call would miss it.
    ``readline`` returns ``""`` on EOF and raises ``OSError`` on a reset, like a file would.
    """

    def __init__(self, sock: socket.socket, encoding: str = "utf-8", max_line: int = 65536) -> None:
        self.sock = sock
        self.encoding = encoding
        self.max_line = max_line
        self._buffer = b""
        self._eof = False
        self._write_lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def has_line(self) -> bool:
        return b"\n" in self._buffer or self._eof or len(self._buffer) >= self.max_line

    def poll(self, timeout: float, *others: object) -> list[object]:
        """Wait until a line can be read or one of ``others`` (file-likes) is readable.

        Returns the ready objects, ``self`` included when ``readline`` will not block.
        """
        if self.has_line():
            return [self]
        ready = wait_readable([self.sock, *others], timeout)
        return [self if r is self.sock else r for r in ready]

    def readline(self, size: int = -1) -> str:
        while not self.has_line():
            chunk = self.sock.recv(4096)
            if not chunk:
                self._eof = True
                break
            self._buffer += chunk
        nl = self._buffer.find(b"\n")
        cut = nl + 1 if nl >= 0 else min(len(self._buffer), self.max_line)
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line.decode(self.encoding, "replace")

    def write(self, text: str) -> int:
        data = text.encode(self.encoding)
        with self._write_lock:
            self.sock.sendall(data)
        return len(text)

    def flush(self) -> None:
        """Writes go out at once (``sendall``); kept because pyst2 calls it."""

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --- reconnect loop ------------------------------------------------------------------------------

class Reconnector:
    """Keeps one connection alive: connect, serve until it ends, back off, connect again.

    ``connect()`` returns what ``serve`` needs or raises ``AsteriskError``; ``serve(it)`` runs until
    the link ends and returns why; ``on_down(reason)`` cleans up. A connect failure waits
    ``backoff.delay(n)`` with ``n`` growing per failure; the count starts again only after a
    connection that stayed up for ``backoff.max_s``, so a server that accepts and drops at once is
    not hammered. ``sleep`` is injectable (tests); the default wakes early when ``stop`` is set.
    """

    def __init__(self, backoff: BackoffPolicy, stop: threading.Event,
                 sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff
        self.stop = stop
        self.sleep = sleep or stop.wait
        self._clock = clock
        self.failures = 0

    def run(self, connect: Callable[[], T], serve: Callable[[T], str],
            on_down: Callable[[str], None], first: T | None = None) -> None:
        link = first
        while not self.stop.is_set():
            if link is None:
                try:
                    link = connect()
                except AsteriskError as exc:
                    self._back_off(f"connect failed: {exc}")
                    continue
            up_since = self._clock()
            reason = serve(link)
            link = None
            on_down(reason)
            if self._clock() - up_since >= self.backoff.max_s:
                self.failures = 0
            if not self.stop.is_set():
                self._back_off(reason)

    def _back_off(self, why: str) -> None:
        delay = self.backoff.delay(self.failures)
        self.failures += 1
        log.warning("%s; reconnect attempt %d in %.2f s", why, self.failures, delay)
        self.sleep(delay)
