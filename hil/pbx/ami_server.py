"""The AMI server: banner, login, one session per TCP connection, events fanned out to sessions.

Session rules copied from ``main/manager.c`` and the fixtures:

* The banner ``Asterisk Call Manager/11.0.0\\r\\n`` is one line with no blank line after it.
* A session handles its actions one at a time, in arrival order. While an action runs (a sync
  Originate can take seconds) events for the session are held and written after the response,
  so a list response is never interleaved with events (fixtures ami-14, ami-25, ami-30).
* Events go to logged-in sessions whose event mask allows the event's class (``Events: off``
  gets responses only, ami-29).
* A failed Login answers ``Authentication failed`` and closes at once; unknown user and wrong
  secret look the same (ami-02, ami-02b). Other sessions get InvalidPassword / InvalidAccountID.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Iterable

from drivers.asterisk.codec import AmiMalformed, AmiMessage, AmiParser, format_message
from hil.pbx.ami_events import Headers
from hil.pbx.errors import PbxSimError

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
_CLOSE = object()


class AmiSession:
    def __init__(self, server: "AmiServer", sock: socket.socket, addr: tuple[str, int]) -> None:
        self.server, self.sock, self.addr = server, sock, addr
        self.user = ""
        self.authenticated = False
        self.event_classes: set[str] | None = None  # None: all classes
        self.session_id = f"0x{id(self):012x}"
        self.local = "IPV4/TCP/{}/{}".format(*sock.getsockname()[:2])
        self.remote = "IPV4/TCP/{}/{}".format(*addr[:2])
        self._out: queue.Queue = queue.Queue()
        self._busy = False
        self._held: list[bytes] = []
        self._lock = threading.Lock()
        self.closed = False

    # --- output ------------------------------------------------------------------------------
    def send(self, messages: Iterable[Headers]) -> None:
        """Responses (and list items) for the running action, then any held events."""
        with self._lock:
            for headers in messages:
                self._out.put(format_message(headers))
            held, self._held = self._held, []
            for data in held:
                self._out.put(data)

    def deliver(self, headers: Headers) -> None:
        if not self.authenticated or self.closed:
            return
        privilege = next((v for k, v in headers if k == "Privilege"), "")
        event_class = privilege.split(",")[0].lower()
        if self.event_classes is not None and event_class not in self.event_classes:
            return
        data = format_message(headers)
        with self._lock:
            if self._busy:
                self._held.append(data)
            else:
                self._out.put(data)

    def send_raw(self, chunks: list[bytes], pause_s: float = 0.0) -> None:
        for chunk in chunks:
            self._out.put((chunk, pause_s))

    def close(self) -> None:
        """Write what is queued, then close (Logoff, failed Login); read nothing more."""
        self.closed = True
        self._out.put(_CLOSE)

    def drop(self) -> None:
        """Fault: the connection breaks without a Goodbye."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._out.put(_CLOSE)

    # --- threads -----------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._writer, name=f"ami-w-{self.addr[1]}", daemon=True).start()
        threading.Thread(target=self._reader, name=f"ami-r-{self.addr[1]}", daemon=True).start()

    def _writer(self) -> None:
        while True:
            item = self._out.get()
            if item is _CLOSE:
                break
            data, pause = item if isinstance(item, tuple) else (item, 0.0)
            try:
                self.sock.sendall(data)
            except OSError:
                break
            if pause:
                time.sleep(pause)
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.server.forget(self)

    def _reader(self) -> None:
        from hil.pbx.ami_actions import handle

        self._out.put(BANNER)
        parser = AmiParser(expect_banner=False)
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            for item in parser.feed(data):
                if self.closed:
                    break
                if isinstance(item, AmiMalformed):
                    log.info("AMI client sent a malformed message: %s", item.reason)
                    continue
                if isinstance(item, AmiMessage):
                    with self._lock:
                        self._busy = True
                    try:
                        handle(self, item)
                    except Exception:
                        log.exception("AMI action failed")
                    finally:
                        with self._lock:
                            self._busy = False
                            held, self._held = self._held, []
                            for chunk in held:
                                self._out.put(chunk)
        if not self.closed:
            self.close()


class AmiServer:
    def __init__(self, pbx: "Pbx", host: str = "127.0.0.1", port: int = 0,
                 users: dict[str, str] | None = None) -> None:
        self.pbx = pbx
        self.users = dict(users or {"acceptance": "acceptance"})
        self.response_delay_ms = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise PbxSimError(f"cannot serve AMI on {host}:{port}: {exc}") from exc
        self.host, self.port = self._sock.getsockname()[:2]
        self.sessions: list[AmiSession] = []
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        self._sock.listen(16)
        self.pbx.ami_sink = self.broadcast
        threading.Thread(target=self._accept, name="ami-accept", daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        try:  # wakes the thread blocked in accept(), so the port is free at once
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        for session in self.live():
            session.drop()

    def live(self) -> list[AmiSession]:
        with self._lock:
            return list(self.sessions)

    def forget(self, session: AmiSession) -> None:
        with self._lock:
            if session in self.sessions:
                self.sessions.remove(session)

    def broadcast(self, headers: Headers, skip: AmiSession | None = None) -> None:
        for session in self.live():
            if session is not skip:
                session.deliver(headers)

    def disconnect_all(self) -> int:
        sessions = self.live()
        for session in sessions:
            session.drop()
        self.pbx.record("fault", what="ami_disconnect", details=f"{len(sessions)} session(s)")
        return len(sessions)

    def inject(self, chunks: list[bytes], pause_ms: float = 0) -> None:
        pause = max(self.pbx.timebase.real_s(pause_ms) or 0.0, 0.002)  # separate TCP segments
        for session in self.live():
            if session.authenticated and session.event_classes != set():
                session.send_raw(chunks, pause)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, addr = self._sock.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = AmiSession(self, sock, addr)
            with self._lock:
                self.sessions.append(session)
            session.start()
