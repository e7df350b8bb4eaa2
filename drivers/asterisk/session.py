"""AMI session: login, ActionID matching, list responses, event dispatch, reconnect.

This is where pyst2's ``manager.Manager`` is replaced (see ``ami.py`` for what is kept). Its
defects, and what this module does instead:

* it matched responses to requests in arrival order: here every action gets a unique ActionID
  (``<prefix>-<counter>``, the prefix random per process) and a ``Future`` keyed by it;
* list responses (``EventList: start`` ... ``EventList: Complete``) are collected into one
  ``AmiResult`` by ActionID, and events interleaved between the items are dispatched as usual;
* its reader died on a ``ChanVariable`` header (``dict.has_key`` on Python 3) and on anything it
  could not parse: here the reader logs every bad line with the reason, counts it, skips it and
  carries on; a subscriber that raises is logged and the next one still runs;
* a dead link hung every waiting action forever: here EOF, reset or an unanswered keepalive
  ``Ping`` fails every pending action with ``AmiDisconnected`` at once, then the session
  reconnects with back-off, logs in again and tells the link listener.

Threads: one reader, which also reconnects (``transport.Reconnector``), and one dispatcher
(``dispatch.py``), which runs subscribers and the link listener, so a subscriber may itself send
actions without dead-locking the reader.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Sequence

from drivers.asterisk.codec import (
    AmiBanner, AmiItem, AmiMalformed, AmiMessage, AmiParser, format_action, parse_message_lines,
)
from drivers.asterisk.errors import (
    AmiAuthError, AmiDisconnected, AmiError, AmiProtocolError, AmiTimeout,
)
from drivers.asterisk.dispatch import EventCallback, EventDispatcher, LinkListener
from drivers.asterisk.profiles import ASTERISK_22, AsteriskProfile
from drivers.asterisk.transport import MIN_SCALED_S, BackoffPolicy, Keepalive, Reconnector, TcpTransport

log = logging.getLogger(__name__)

Fields = Mapping[str, "str | Sequence[str]"]
MAX_PENDING_BYTES = 1 << 20  # an unterminated "line" longer than this is garbage, not AMI
MIN_KEEPALIVE_S = 0.5
MIN_PING_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class AmiSettings:
    """Where and how to reach AMI. Timers in real seconds; ``scaled`` shrinks the link timers."""
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    secret: str = ""
    events: bool = True
    connect_timeout_s: float = 5.0
    login_timeout_s: float = 5.0
    action_timeout_s: float = 10.0
    keepalive_s: float = 20.0
    ping_timeout_s: float = 5.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    action_id_prefix: str | None = None

    def scaled(self, time_scale: float) -> "AmiSettings":
        """Keepalive and back-off run ``time_scale`` times as fast; action timeouts do not.

        The keepalive keeps a floor (``MIN_KEEPALIVE_S``, ``MIN_PING_TIMEOUT_S``): a simulator
        busy for a moment under test load must not look like a dead link.
        """
        if time_scale == 1.0:
            return self
        return replace(
            self,
            keepalive_s=max(MIN_KEEPALIVE_S, self.keepalive_s * time_scale) if self.keepalive_s > 0 else 0.0,
            ping_timeout_s=max(MIN_PING_TIMEOUT_S, self.ping_timeout_s * time_scale),
            backoff=self.backoff.scaled(time_scale),
        )


@dataclass(frozen=True)
class AmiResult:
    """A complete answer to one action: the response, plus the items and end of a list response."""
    action: str
    action_id: str
    response: AmiMessage
    items: tuple[AmiMessage, ...] = ()
    complete: AmiMessage | None = None

    @property
    def ok(self) -> bool:
        return self.response.name in ("Success", "Goodbye")

    @property
    def message(self) -> str:
        return self.response.get("Message") or ""

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.response.get(key, default)


@dataclass
class SessionStats:
    """Counters a health page can show; every increment is also logged with its reason."""
    malformed: int = 0
    unmatched: int = 0
    logins: int = 0
    disconnects: int = 0


class _Pending:
    """One action waiting for its response (and, for a list, its items and Complete event)."""

    def __init__(self, action: str, action_id: str) -> None:
        self.action = action
        self.action_id = action_id
        self.future: Future[AmiResult] = Future()
        self.response: AmiMessage | None = None
        self.items: list[AmiMessage] = []
        self.complete: AmiMessage | None = None

    def take(self, msg: AmiMessage) -> bool:
        """Add a message carrying this ActionID; True when the result is complete."""
        if msg.kind == "response" and self.response is None:
            self.response = msg
        elif msg.is_list_end:
            self.complete = msg
        else:
            self.items.append(msg)
        if self.response is None:
            return False
        return not self.response.is_list_start or self.complete is not None

    def result(self) -> AmiResult:
        assert self.response is not None
        return AmiResult(self.action, self.action_id, self.response, tuple(self.items), self.complete)


class AmiSession:
    """One logical AMI session that survives reconnects.

    ``connect()`` logs in synchronously (raises ``AmiAuthError``/``AmiDisconnected``), ``start()``
    does the same in the background with back-off. ``send()`` blocks for the result, ``submit()``
    returns a ``Future``. ``subscribe(name, cb)`` with ``"*"`` for every event. ``on_link(up,
    detail)`` runs on the dispatcher thread after every login and every loss of the link.
    """

    def __init__(
        self,
        settings: AmiSettings,
        *,
        on_link: LinkListener | None = None,
        sleep: Callable[[float], None] | None = None,
        profile: AsteriskProfile = ASTERISK_22,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.stats = SessionStats()
        self.banner_version: str | None = None
        tick = min(0.25, max(MIN_SCALED_S, settings.keepalive_s / 4)) if settings.keepalive_s > 0 else 0.25
        self._transport = TcpTransport(settings.host, settings.port, settings.connect_timeout_s, tick_s=tick)
        self._keepalive = Keepalive(settings.keepalive_s, settings.ping_timeout_s)
        self._prefix = settings.action_id_prefix or _default_prefix()
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._expected: dict[tuple[str, str], Future[AmiMessage]] = {}
        self._connected = False
        self._closing = threading.Event()
        self._parser = AmiParser()
        self._dispatcher = EventDispatcher(on_link)
        self._reconnector = Reconnector(settings.backoff, self._closing, sleep)
        self._reader: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscriber_errors(self) -> int:
        return self._dispatcher.errors

    def connect(self) -> None:
        """Open, read the banner, log in; then keep the session up in the background."""
        self._ensure_not_running()
        self._closing.clear()
        backlog = self._handshake()
        self._start_threads(backlog)

    def start(self) -> None:
        """Like ``connect`` but never raises: the reader thread retries with back-off."""
        self._ensure_not_running()
        self._closing.clear()
        self._start_threads(None)

    def close(self, logoff: bool = True) -> None:
        """Log off (best effort), stop the threads; pending actions fail with AmiDisconnected."""
        if logoff and self._connected:
            self._closing.set()
            try:
                self.send("Logoff", timeout=1.0)
            except AmiError as exc:
                log.debug("Logoff not acknowledged: %s", exc)
        self._closing.set()
        self._transport.close()
        current = threading.current_thread()
        if self._reader and self._reader is not current:
            self._reader.join(timeout=5)
        self._transport.close()  # in case a reconnect opened it while we were closing
        self._fail_all("AMI session closed")
        self._dispatcher.stop()

    def _ensure_not_running(self) -> None:
        if self._reader is not None and self._reader.is_alive():
            raise AmiError("AMI session already started")

    def _start_threads(self, backlog: list[AmiItem] | None) -> None:
        self._dispatcher.start()
        self._reader = threading.Thread(
            target=self._reconnector.run, args=(self._handshake, self._serve, self._mark_down, backlog),
            name="ami-reader", daemon=True)
        self._reader.start()

    # --- actions ---------------------------------------------------------------------------------

    def new_action_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def submit(self, action: str, fields: Fields | None = None, action_id: str | None = None) -> Future[AmiResult]:
        """Write the action now; the Future resolves with its complete result.

        Raises ``AmiDisconnected`` at once when the link is down: nothing is queued for later,
        because a stale Hangup or Originate replayed after a reconnect would do harm.
        """
        return self._submit(action, fields, action_id)[1]

    def send(self, action: str, fields: Fields | None = None, timeout: float | None = None,
             action_id: str | None = None) -> AmiResult:
        """Send and wait; ``AmiTimeout`` after ``timeout`` (default ``action_timeout_s``)."""
        action_id, future = self._submit(action, fields, action_id)
        wait = self.settings.action_timeout_s if timeout is None else timeout
        try:
            return future.result(wait)
        except TimeoutError:
            self._forget(action_id)
            raise AmiTimeout(f"{action} ({action_id}): no response within {wait:.1f} s") from None

    def _submit(self, action: str, fields: Fields | None, action_id: str | None) -> tuple[str, Future[AmiResult]]:
        action_id = action_id or self.new_action_id()
        data = format_action(action, action_id, **dict(fields or {}))
        pending = _Pending(action, action_id)
        with self._lock:
            if not self._connected:
                raise AmiDisconnected(f"AMI link is down; {action} not sent")
            if action_id in self._pending:
                raise AmiError(f"ActionID {action_id!r} is already in flight")
            self._pending[action_id] = pending
        try:
            self._transport.send(data)
        except AmiDisconnected:
            self._forget(action_id)
            raise
        return action_id, pending.future

    def expect_event(self, action_id: str, event: str) -> Future[AmiMessage]:
        """A Future for the event named ``event`` that will carry ``action_id``.

        Register it before sending the action (``OriginateResponse`` follows an async Originate).
        """
        future: Future[AmiMessage] = Future()
        with self._lock:
            if not self._connected:
                raise AmiDisconnected(f"AMI link is down; cannot wait for {event}")
            self._expected[(action_id, event.lower())] = future
        return future

    def forget_event(self, action_id: str, event: str) -> None:
        with self._lock:
            self._expected.pop((action_id, event.lower()), None)

    def subscribe(self, event: str, callback: EventCallback) -> None:
        self._dispatcher.subscribe(event, callback)

    def unsubscribe(self, event: str, callback: EventCallback) -> None:
        self._dispatcher.unsubscribe(event, callback)

    def _forget(self, action_id: str) -> None:
        with self._lock:
            self._pending.pop(action_id, None)

    # --- connecting ------------------------------------------------------------------------------

    def _handshake(self) -> list[AmiItem]:
        """Connect, read the banner, log in. Returns items that came after the login response."""
        self._transport.open()
        self._parser = AmiParser()
        try:
            items = self._read_banner()
            return self._login(items)
        except BaseException:
            self._transport.close()
            raise

    def _read_items(self, deadline: float, what: str) -> list[AmiItem]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AmiProtocolError(f"no {what} from AMI within {self.settings.login_timeout_s:.1f} s")
            data = self._transport.recv(min(left, 0.25))
            if data:
                items = self._parser.feed(data)
                if items:
                    return items

    def _read_banner(self) -> list[AmiItem]:
        deadline = time.monotonic() + self.settings.login_timeout_s
        items = self._read_items(deadline, "banner")
        first = items[0]
        if isinstance(first, AmiBanner):
            self.banner_version = first.version
            if first.version != self.profile.ami_banner_version:
                log.warning("AMI banner version %s, profile %s expects %s", first.version,
                            self.profile.name, self.profile.ami_banner_version)
            return items[1:]
        log.warning("AMI sent no banner, first item was %r; carrying on", first)
        return items

    def _login(self, early: list[AmiItem]) -> list[AmiItem]:
        action_id = self.new_action_id()
        fields = {"Username": self.settings.username, "Secret": self.settings.secret,
                  "Events": "on" if self.settings.events else "off"}
        self._transport.send(format_action("Login", action_id, **fields))
        deadline = time.monotonic() + self.settings.login_timeout_s
        items = list(early)
        scanned = 0
        while True:
            for index in range(scanned, len(items)):
                item = items[index]
                if isinstance(item, AmiMessage) and item.kind == "response" and item.action_id == action_id:
                    return self._login_answer(item, items[:index], items[index + 1:])
            scanned = len(items)
            items += self._read_items(deadline, "login response")

    def _login_answer(self, response: AmiMessage, before: list[AmiItem], after: list[AmiItem]) -> list[AmiItem]:
        if response.name != "Success":
            reason = response.get("Message") or response.name
            log.error("AMI login as %r refused: %s", self.settings.username, reason)
            raise AmiAuthError(f"AMI login refused: {reason}")
        self.stats.logins += 1
        log.info("AMI logged in to %s:%s as %s", self.settings.host, self.settings.port, self.settings.username)
        return before + after

    # --- the reader thread -----------------------------------------------------------------------

    def _serve(self, backlog: list[AmiItem]) -> str:
        """One connection's life after login; returns why it ended."""
        if self._closing.is_set():  # close() ran while this connection was being opened
            return "AMI session closed"
        self._mark_up()
        return self._read_loop(backlog)

    def _mark_up(self) -> None:
        with self._lock:
            self._connected = True
        self._keepalive.reset()
        self._dispatcher.post_link(True, f"logged in to {self.settings.host}:{self.settings.port}")

    def _mark_down(self, reason: str) -> None:
        self._transport.close()
        self._fail_all(reason)
        if self._closing.is_set():
            return
        self.stats.disconnects += 1
        log.warning("AMI link down: %s", reason)
        self._dispatcher.post_link(False, reason)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._connected = False
            pending, self._pending = self._pending, {}
            expected, self._expected = self._expected, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(AmiDisconnected(f"{item.action} ({item.action_id}): {reason}"))
        for (action_id, event), future in expected.items():
            if not future.done():
                future.set_exception(AmiDisconnected(f"{event} for {action_id}: {reason}"))

    def _read_loop(self, backlog: Iterable[AmiItem]) -> str:
        for item in backlog:
            self._handle_item(item)
        pending_bytes = 0
        while True:  # ends when the transport does: EOF, reset, keepalive, or close() closing it
            if self._keepalive.expired():
                return f"keepalive Ping unanswered for {self.settings.ping_timeout_s:.2f} s"
            try:
                data = self._transport.recv()
            except AmiDisconnected as exc:
                return str(exc)
            if data is None:
                if self._keepalive.ping_due():
                    self._send_keepalive()
                continue
            self._keepalive.data_received()
            items = self._parser.feed(data)
            pending_bytes = 0 if items else pending_bytes + len(data)
            if pending_bytes > MAX_PENDING_BYTES:
                self._reject(b"", f"{pending_bytes} bytes without a complete message; parser reset")
                self._parser, pending_bytes = AmiParser(expect_banner=False), 0
            for item in items:
                self._handle_item(item)

    def _send_keepalive(self) -> None:
        try:
            future = self.submit("Ping")
        except AmiError as exc:
            log.debug("keepalive Ping not sent: %s", exc)
            return
        self._keepalive.ping_sent()
        future.add_done_callback(lambda _f: self._keepalive.pong())

    def _handle_item(self, item: AmiItem) -> None:
        """Route one parsed item. Nothing in here may end the reader thread."""
        try:
            if isinstance(item, AmiMalformed):
                salvaged = self._salvage(item)
                if salvaged is None:
                    return
                item = salvaged
            if isinstance(item, AmiBanner):
                log.info("AMI banner %s mid-stream ignored", item.version)
            elif item.kind == "response":
                self._on_response(item)
            elif item.kind == "event":
                self._on_event(item)
            else:
                self._reject(item.to_bytes(), "first header is neither Response nor Event")
        except Exception:  # the reader must survive a bug as well as bad bytes
            self.stats.malformed += 1
            log.exception("AMI item %r could not be handled; skipped", item)

    def _salvage(self, bad: AmiMalformed) -> AmiMessage | None:
        """Keep the good header lines of a message that has junk lines in it, if any remain.

        Junk is logged and counted; a message is only kept when its first good line is
        ``Response:`` or ``Event:``, so a fragment never passes for a message.
        """
        good: list[bytes] = []
        junk: list[bytes] = []
        for line in bad.raw.split(b"\r\n"):
            parsed = parse_message_lines([line]) if line else None
            (good if isinstance(parsed, AmiMessage) else junk).append(line)
        self._reject(b"\r\n".join(junk), bad.reason)
        if not good or not good[0].lower().startswith((b"response:", b"event:")):
            return None
        message = parse_message_lines(good)
        return message if isinstance(message, AmiMessage) else None

    def _reject(self, raw: bytes, reason: str) -> None:
        self.stats.malformed += 1
        log.warning("AMI: skipped malformed input (%s): %r", reason, raw[:200])

    def _on_response(self, msg: AmiMessage) -> None:
        action_id = msg.action_id or ""
        with self._lock:
            pending = self._pending.get(action_id)
        if pending is None:
            self.stats.unmatched += 1
            log.warning("AMI response for unknown ActionID %r (timed out or not ours): %s",
                        action_id, msg.name)
            return
        self._advance(pending, msg)

    def _on_event(self, msg: AmiMessage) -> None:
        action_id = msg.action_id
        if action_id:
            with self._lock:
                expected = self._expected.pop((action_id, msg.name.lower()), None)
                pending = None if expected else self._pending.get(action_id)
            if expected is not None:
                expected.set_result(msg)
            elif pending is not None:
                self._advance(pending, msg)
                return  # a list item belongs to its action's result, not to subscribers
        self._dispatcher.post_event(msg)

    def _advance(self, pending: _Pending, msg: AmiMessage) -> None:
        if pending.take(msg):
            with self._lock:
                self._pending.pop(pending.action_id, None)
            if not pending.future.done():
                pending.future.set_result(pending.result())


def _default_prefix() -> str:
    """Unique per process and per session: two edges on one Asterisk never share an ActionID."""
    host = socket.gethostname().split(".")[0] or "edge"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
