"""Socket options both ends of the sync use on their MQTT connections."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def corked(sock: Any) -> Iterator[None]:
    """paho writes each packet to the socket as it is queued (a PUBLISH, a 4-byte PUBACK); with
    Nagle off that is one TCP segment per message for us and for the broker. Corked, a burst
    leaves in a few full segments when the cork comes off (Linux ``TCP_CORK``; else a no-op)."""
    cork = getattr(socket, "TCP_CORK", None)
    if sock is None or cork is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)
        except OSError:
            pass
