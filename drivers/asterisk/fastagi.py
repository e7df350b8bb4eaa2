"""Our own threaded FastAGI server (pyst2's ``asterisk.fastagi`` imports ``SocketServer``: Py2 only).

Asterisk connects once per call (``AGI(agi://edge:4573/<script>,<args>)``), sends the ``agi_*``
env block and then waits for commands. Each connection is served by one worker thread from a
bounded pool: a box has a fixed number of trunks and desk phones, so more simultaneous calls than
``max_workers`` is a fault, not load. Up to ``max_waiting`` further connections wait for a free
worker (logged); beyond that a connection is refused and closed (logged), and Asterisk's dialplan
carries on with ``AGISTATUS=FAILURE``.

Scripts are registered by name (``agi_network_script``, which has no leading slash), as in
wazo-agid. An unknown script is logged with the names we know, answered with a ``VERBOSE`` and a
``HANGUP`` command, and closed; the server carries on.
"""
from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping

from drivers.asterisk.agi import HardenedAGI, read_agi_env
from drivers.asterisk.errors import AgiError, FastAgiError
from drivers.asterisk.transport import LineStream, wait_readable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FastAgiSettings:
    """Where the edge listens for Asterisk, and how many calls it serves at once."""
    host: str = "0.0.0.0"
    port: int = 4573
    max_workers: int = 64
    max_waiting: int = 16
    env_timeout_s: float = 5.0
    backlog: int = 128


@dataclass
class FastAgiRequest:
    """One call's FastAGI connection as a handler sees it."""
    env: dict[str, str]
    script: str
    args: list[str]
    agi: HardenedAGI
    stream: LineStream
    peer: tuple = field(default_factory=tuple)

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")


Handler = Callable[[FastAgiRequest], None]


@dataclass
class ServerStats:
    served: int = 0
    refused: int = 0
    unknown_script: int = 0
    active: int = 0
    peak_active: int = 0


def script_name(env: Mapping[str, str]) -> str:
    """``agi_network_script`` without slashes or a query string (Asterisk sends none; be lenient)."""
    return env.get("agi_network_script", "").strip().strip("/").split("?", 1)[0]


def script_args(env: Mapping[str, str]) -> list[str]:
    """``agi_arg_1``, ``agi_arg_2``... in order; present only when the AGI has arguments."""
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in env:
        args.append(env[f"agi_arg_{len(args) + 1}"])
    return args


class FastAgiServer:
    """TCP listener + bounded worker pool; ``start()``, ``stop()``, ``address`` once started."""

    def __init__(self, settings: FastAgiSettings, scripts: Mapping[str, Handler]) -> None:
        if settings.max_workers < 1 or settings.max_waiting < 0:
            raise ValueError(f"invalid FastAGI pool size in {settings!r}")
        self.settings = settings
        self.scripts = dict(scripts)
        self.stats = ServerStats()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._inflight = 0

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise FastAgiError("FastAGI server is not started")
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> None:
        try:
            listener = socket.create_server((self.settings.host, self.settings.port),
                                            backlog=self.settings.backlog, reuse_port=False)
        except OSError as exc:
            raise FastAgiError(f"cannot listen on {self.settings.host}:{self.settings.port}: {exc}") from exc
        self._listener = listener
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="fastagi")
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fastagi-accept", daemon=True)
        self._accept_thread.start()
        log.info("FastAGI listening on %s:%s (%d workers, %d waiting)", *self.address,
                 self.settings.max_workers, self.settings.max_waiting)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every open call's socket, wait for the workers to finish."""
        self._stopping.set()
        if self._accept_thread:
            self._accept_thread.join(timeout)
        if self._listener:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if not self._lock.wait_for(lambda: self._inflight == 0, timeout):
                log.warning("FastAGI stop: %d sessions still running after %.1f s", self._inflight, timeout)

    # --- accepting -------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                ready = wait_readable([self._listener], 0.1)
                if not ready:
                    continue
                conn, peer = self._listener.accept()
            except OSError as exc:
                if not self._stopping.is_set():
                    log.error("FastAGI accept failed: %s", exc)
                continue
            self._admit(conn, peer)

    def _admit(self, conn: socket.socket, peer: tuple) -> None:
        limit = self.settings.max_workers + self.settings.max_waiting
        with self._lock:
            if self._inflight >= limit:
                self.stats.refused += 1
                refuse = True
            else:
                refuse = False
                self._inflight += 1
                self._conns.add(conn)
                waiting = self._inflight > self.settings.max_workers
        if refuse:
            log.error("FastAGI: refused connection from %s: %d calls in progress or waiting (limit %d)",
                      peer, limit, limit)
            _shutdown(conn)
            conn.close()
            return
        if waiting:
            log.warning("FastAGI: all %d workers busy; connection from %s waits", self.settings.max_workers, peer)
        assert self._pool is not None
        try:
            future = self._pool.submit(self._serve, conn, peer)
        except RuntimeError:  # pool shut down between accept and submit
            self._release(conn)
            return
        future.add_done_callback(lambda _f: self._release(conn))

    def _release(self, conn: socket.socket) -> None:
        _shutdown(conn)
        conn.close()
        with self._lock:
            if conn in self._conns:
                self._conns.discard(conn)
                self._inflight -= 1
            self._lock.notify_all()

    # --- serving one connection ------------------------------------------------------------------

    def _serve(self, conn: socket.socket, peer: tuple) -> None:
        self._count_active(+1)
        try:
            request = self._open(conn, peer)
            if request is None:
                return
            handler = self.scripts.get(request.script)
            if handler is None:
                self._reject_script(request)
                return
            self.stats.served += 1
            handler(request)
        except Exception:
            log.exception("FastAGI handler failed for %s; connection closed", peer)
        finally:
            self._count_active(-1)

    def _open(self, conn: socket.socket, peer: tuple) -> FastAgiRequest | None:
        stream = LineStream(conn)
        stream.settimeout(self.settings.env_timeout_s)
        try:
            env = read_agi_env(stream)
        except (AgiError, OSError) as exc:
            log.warning("FastAGI: no complete env block from %s within %.1f s: %s",
                        peer, self.settings.env_timeout_s, exc)
            return None
        stream.settimeout(None)
        agi = HardenedAGI(stream, stream, env=env, logger=log)
        return FastAgiRequest(env, script_name(env), script_args(env), agi, stream, peer)

    def _reject_script(self, request: FastAgiRequest) -> None:
        self.stats.unknown_script += 1
        log.error("FastAGI: unknown script %r (agi_request %r, channel %r); known: %s; hanging up",
                  request.script, request.env.get("agi_request", ""), request.channel,
                  ", ".join(sorted(self.scripts)) or "none")
        request.stream.settimeout(self.settings.env_timeout_s)
        try:
            request.agi.verbose(f"edge: unknown FastAGI script {request.script}".replace('"', "'"), 1)
            request.agi.hangup()
        except AgiError as exc:
            log.debug("FastAGI: unknown-script hang-up ended early: %s", exc)

    def _count_active(self, delta: int) -> None:
        with self._lock:
            self.stats.active += delta
            self.stats.peak_active = max(self.stats.peak_active, self.stats.active)


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
