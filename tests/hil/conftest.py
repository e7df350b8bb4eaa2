"""Shared pieces of the HIL tests' fake edges.

pytest runs with ``--import-mode=importlib``, so test modules cannot import from here by name:
the raw FastAGI listener is handed out by the ``agi_server`` fixture.
"""
from __future__ import annotations

import socket
import threading
from typing import BinaryIO, Callable

import pytest

Serve = Callable[[socket.socket, BinaryIO], None]


class RawAgiServer:
    """A FastAGI listening socket on 127.0.0.1 (an ephemeral ``port``) for a test's fake edge.

    Every connection the simulator opens runs ``serve(conn, reader)`` in its own daemon thread;
    ``reader`` is ``conn.makefile("rb")``. A dropped connection (``OSError``) just ends the session,
    and the reader and socket are closed when ``serve`` returns (the reader holds the socket open
    otherwise).
    """

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            self.serve(conn, reader)
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def agi_server():
    """``agi_server(serve)`` starts a ``RawAgiServer``; every one started is closed after the test."""
    made: list[RawAgiServer] = []

    def start(serve: Serve) -> RawAgiServer:
        server = RawAgiServer(serve)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()
