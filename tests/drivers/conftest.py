"""Far sides for the Asterisk driver tests, over real TCP sockets.

* ``Recording`` reads a fixture from ``tests/fixtures/asterisk-22`` (bytes a real Asterisk 22 sent)
  and cuts it into message blocks, byte for byte, so replies can be replayed with the client's
  ActionID written in place of the recorded one.
* ``FakeAmiServer`` is a scriptable AMI server: banner and Login/Ping/Logoff replies come from the
  recordings; a test adds handlers per action and can drop, silence or refuse connections.
* ``AgiPeer`` plays Asterisk's side of one FastAGI call: it connects to our server, sends an env
  block like the recorded ones and answers the commands it reads.
"""
from __future__ import annotations

import logging
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from drivers.asterisk.codec import AmiMessage, AmiParser, format_agi_env, parse_agi_env

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"
log = logging.getLogger("tests.fake_asterisk")


# --- recordings ---------------------------------------------------------------------------------

@dataclass
class Recording:
    """One AMI fixture file split into its banner and raw message blocks."""
    name: str
    raw: bytes
    banner: bytes = b""
    blocks: list[bytes] = field(default_factory=list)

    @classmethod
    def load(cls, name: str) -> "Recording":
        raw = (FIXTURES / f"{name}.txt").read_bytes()
        rec = cls(name, raw)
        rest = raw
        if raw.startswith(b"Asterisk Call Manager/"):
            end = raw.index(b"\r\n") + 2
            rec.banner, rest = raw[:end], raw[end:]
        rec.blocks = [part + b"\r\n\r\n" for part in rest.split(b"\r\n\r\n") if part.strip()]
        return rec

    @staticmethod
    def header(block: bytes, key: str) -> str | None:
        match = re.search(rb"^" + key.encode() + rb": ?(.*?)\r$", block, re.M | re.I)
        return match.group(1).decode() if match else None

    def response(self, action_id: str) -> bytes:
        for block in self.blocks:
            if block.startswith(b"Response:") and self.header(block, "ActionID") == action_id:
                return block
        raise KeyError(f"{self.name}: no response for {action_id}")

    def with_id(self, action_id: str) -> list[bytes]:
        """Every block (response or event) carrying ``action_id``, in recorded order."""
        return [b for b in self.blocks if self.header(b, "ActionID") == action_id]

    def segment(self, action_id: str, last_event: str) -> list[bytes]:
        """From the response to ``action_id`` through the ``last_event`` carrying it, with every
        event in between (the call's traffic), as recorded."""
        start = self.blocks.index(self.response(action_id))
        for index in range(start, len(self.blocks)):
            block = self.blocks[index]
            if self.header(block, "Event") == last_event and self.header(block, "ActionID") == action_id:
                return self.blocks[start:index + 1]
        raise KeyError(f"{self.name}: no {last_event} for {action_id}")

    def events(self, name: str) -> list[bytes]:
        return [b for b in self.blocks if self.header(b, "Event") == name]


def rewrite(blocks: list[bytes] | bytes, old: str, new: str) -> bytes:
    """The recorded bytes with ActionID ``old`` replaced by ``new``."""
    data = b"".join(blocks) if isinstance(blocks, list) else blocks
    return data.replace(f"ActionID: {old}\r\n".encode(), f"ActionID: {new}\r\n".encode())


LOGIN = Recording.load("ami-01-banner-login-logoff")
LOGIN_FAILED = Recording.load("ami-02-login-failure")
PING = Recording.load("ami-03-ping")


# --- AMI server ---------------------------------------------------------------------------------

class AmiConn:
    """One client connection on the fake server."""

    def __init__(self, server: "FakeAmiServer", sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.actions: list[AmiMessage] = []
        self.closed = threading.Event()
        self.client_eof = threading.Event()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


Handler = Callable[[AmiConn, AmiMessage], None]


class FakeAmiServer:
    """Scriptable AMI server on 127.0.0.1. ``handlers[action.lower()] = fn(conn, msg)``.

    ``modes[n]`` scripts connection ``n`` (0-based): ``"serve"`` (default), ``"close"`` (banner,
    then close), ``"refuse-login"`` (wrong-secret reply, then close), ``"no-close-on-failure"``
    (wrong-secret reply, connection left open). ``answer_ping = False`` makes Ping go unanswered.
    """

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.modes: dict[int, str] = {}
        self.answer_ping = True
        self.connections: list[AmiConn] = []
        self.received: list[AmiMessage] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="fake-ami", daemon=True)
        self._thread.start()

    # -- scripting helpers --

    def wait_action(self, name: str, count: int = 1, timeout: float = 3.0) -> list[AmiMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.received if m.name.lower() == name.lower()]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"AMI action {name} x{count} not received; got {[m.name for m in self.received]}")
                self._cond.wait(left)

    def wait_connections(self, count: int, timeout: float = 3.0) -> AmiConn:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.connections) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(self.connections)} AMI connections, wanted {count}")
                self._cond.wait(left)
            return self.connections[count - 1]

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in list(self.connections):
            conn.close()
        self._thread.join(2)

    # -- serving --

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.05)
                if not ready:
                    continue
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                conn = AmiConn(self, sock, len(self.connections))
                self.connections.append(conn)
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: AmiConn) -> None:
        mode = self.modes.get(conn.index, "serve")
        conn.send(LOGIN.banner)
        if mode == "close":
            conn.close()
            return
        parser = AmiParser(expect_banner=False)
        while not conn.closed.is_set():
            try:
                data = conn.sock.recv(65536)
            except OSError:
                break
            if not data:
                conn.client_eof.set()
                break
            for msg in parser.feed(data):
                if isinstance(msg, AmiMessage):
                    self._handle(conn, msg, mode)
        conn.client_eof.set()

    def _handle(self, conn: AmiConn, msg: AmiMessage, mode: str) -> None:
        with self._cond:
            conn.actions.append(msg)
            self.received.append(msg)
            self._cond.notify_all()
        action = (msg.get("Action") or "").lower()
        action_id = msg.action_id or ""
        if action == "login":
            if mode in ("refuse-login", "no-close-on-failure"):
                conn.send(rewrite(LOGIN_FAILED.blocks, "login-bad", action_id))
                if mode == "refuse-login":
                    conn.close()
                return
            conn.send(rewrite(LOGIN.blocks[:3], "login-1", action_id))
        elif action in self.handlers:
            self.handlers[action](conn, msg)
        elif action == "ping":
            if self.answer_ping:
                conn.send(rewrite(PING.response("ping-1"), "ping-1", action_id))
        elif action == "logoff":
            conn.send(rewrite(LOGIN.response("acc-1"), "acc-1", action_id))
            conn.close()
        else:
            conn.send(
                f"Response: Error\r\nActionID: {action_id}\r\nMessage: Invalid/unknown command: "
                f"{msg.get('Action')}. Use Action: ListCommands to show available commands.\r\n\r\n".encode()
            )


@pytest.fixture
def ami_server():
    server = FakeAmiServer()
    yield server
    server.stop()


# --- FastAGI: Asterisk's side -------------------------------------------------------------------

AGI_RECORDED_ENV = parse_agi_env(
    (FIXTURES / "agi-01-env-and-basic-commands.txt").read_text().split("\n")
)


def agi_env(script: str, channel: str, uniqueid: str, args: tuple[str, ...] = (), **overrides: str) -> dict[str, str]:
    """An env block shaped like the recorded one (same keys, same order), args at the end."""
    env = dict(AGI_RECORDED_ENV)
    env.update(
        agi_network_script=script,
        agi_request=f"agi://127.0.0.1:4573/{script}" + "".join(f",{a}" for a in args),
        agi_channel=channel,
        agi_uniqueid=uniqueid,
        agi_type=channel.split("/", 1)[0],
        agi_extension=script,
    )
    env.update(overrides)
    for n, arg in enumerate(args, 1):
        env[f"agi_arg_{n}"] = arg
    return env


class AgiPeer:
    """Asterisk's end of one FastAGI connection."""

    def __init__(self, address: tuple[str, int], env: dict[str, str] | bytes | None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", address[1]), timeout=5)
        self._buffer = b""
        self.commands: list[str] = []
        if env is not None:
            self.sock.sendall(env if isinstance(env, bytes) else format_agi_env(env))

    def read_command(self, timeout: float = 3.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no AGI command within {timeout} s (buffer {self._buffer!r})")
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed; buffer {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        text = line.decode()
        self.commands.append(text)
        return text

    def expect(self, command: str, timeout: float = 3.0) -> str:
        line = self.read_command(timeout)
        assert line == command, f"expected {command!r}, got {line!r}"
        return line

    def reply(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\n" for line in lines).encode())

    def closed_by_edge(self, timeout: float = 3.0) -> bool:
        """True when the edge closes the connection (after any commands it still sends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self._buffer += chunk
        return False

    def reset(self) -> None:
        """Close with RST, as a crashed Asterisk or a dropped link would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --- waiting for events -------------------------------------------------------------------------

class EventSink:
    """Collects events posted from driver threads; ``wait`` blocks until a match arrives."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, kind: type, timeout: float = 3.0, **match: Any) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind.__name__} {match} within {timeout} s; got {self.events}")
                self._cond.wait(left)

    def of(self, kind: type, **match: Any) -> list[Any]:
        with self._cond:
            return [e for e in self.events
                    if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- fixtures (test modules take everything from here: no imports from conftest) ---------------

@pytest.fixture
def recording() -> Callable[[str], Recording]:
    return Recording.load


@pytest.fixture
def replay() -> Callable[..., bytes]:
    return rewrite


@pytest.fixture
def events() -> EventSink:
    return EventSink()


@pytest.fixture
def env_for() -> Callable[..., dict[str, str]]:
    return agi_env


@pytest.fixture
def until() -> Callable[..., bool]:
    return wait_until


@pytest.fixture
def agi_peer():
    """``agi_peer(address, env)`` connects an Asterisk-side FastAGI peer; all closed at teardown."""
    peers: list[AgiPeer] = []

    def connect(address: tuple[str, int], env: dict[str, str] | bytes | None) -> AgiPeer:
        peer = AgiPeer(address, env)
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        peer.close()
