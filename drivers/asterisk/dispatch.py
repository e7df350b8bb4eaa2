"""AMI event dispatch: subscribers and the link listener run on their own thread, in arrival order.

Why a thread of its own: a subscriber (or the driver's link listener, which asks for
``CoreShowChannels`` after a re-login) may send an action and wait for its response, and that
response is read by the session's reader thread. Run on the reader, it would wait for itself.
One queue carries both events and link changes, so "link up" is never seen after the events of
the connection that followed it.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from drivers.asterisk.codec import AmiMessage

log = logging.getLogger(__name__)

EventCallback = Callable[[AmiMessage], None]
LinkListener = Callable[[bool, str], None]


class EventDispatcher:
    """``subscribe(name, cb)`` (``"*"`` for all), ``post_event``/``post_link`` from the reader."""

    def __init__(self, on_link: LinkListener | None = None) -> None:
        self._on_link = on_link
        self._subscribers: dict[str, list[EventCallback]] = {}
        self._lock = threading.Lock()
        self._queue: "queue.Queue[tuple | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def start(self) -> None:
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ami-dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then end (not joined when called from a callback)."""
        self._queue.put(None)
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def subscribe(self, event: str, callback: EventCallback) -> None:
        with self._lock:
            self._subscribers.setdefault(event.lower(), []).append(callback)

    def unsubscribe(self, event: str, callback: EventCallback) -> None:
        with self._lock:
            callbacks = self._subscribers.get(event.lower(), [])
            if callback in callbacks:
                callbacks.remove(callback)

    def post_event(self, message: AmiMessage) -> None:
        self._queue.put(("event", message))

    def post_link(self, up: bool, detail: str) -> None:
        self._queue.put(("link", up, detail))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item[0] == "link":
                self._call_link(item[1], item[2])
            else:
                self._call_subscribers(item[1])

    def _call_subscribers(self, message: AmiMessage) -> None:
        with self._lock:
            callbacks = [*self._subscribers.get(message.name.lower(), ()), *self._subscribers.get("*", ())]
        for callback in callbacks:
            try:
                callback(message)
            except Exception:
                self.errors += 1
                log.exception("AMI subscriber %r failed on %s; the next one still runs", callback, message.name)

    def _call_link(self, up: bool, detail: str) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(up, detail)
        except Exception:
            self.errors += 1
            log.exception("AMI link listener failed (up=%s)", up)
