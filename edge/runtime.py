"""The edge daemon's wiring: one event queue, one thread that calls the core, drivers at the rim.

Drivers post domain events from their own threads; this module's loop is the only caller of
``Core.handle`` (the core is single-threaded by design). Commands go back to the driver, CDRs and
notifications to the store. Time: ``ScaledClock`` runs ``time_scale`` times slower than the wall
(0.01 makes a scripted minute last 0.6 s), matching the HIL simulator's factor.
"""
from __future__ import annotations

import logging
import queue
from concurrent import futures
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar
from zoneinfo import ZoneInfo

from edge.commands import (Command, CreateTask, EncodeRecording, Lookup, Notify, StartRecording,
                           UpdateTask, WriteCdr)
from edge.config import EdgeConfig
from edge.core import Core
from edge.events import Event, LookupDone, Tick
from edge.regions import RegionResolver
from edge.store import Store, StoreError

if TYPE_CHECKING:
    from edge.api import EdgeApi
    from edge.recordings.service import RecordingService
    from edge.sync.services import HqLink

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IDLE_WAIT_S = 0.05
ON_CORE_CHECK_S = 0.1    # how often a caller waiting in on_core looks whether the core stopped
# commands the runtime carries out against the store; they never reach a driver
STORE_COMMANDS = (WriteCdr, Notify, CreateTask, UpdateTask)  # real seconds between ticks when nothing is due sooner


class ScaledClock:
    """Wall time slowed or sped by ``time_scale``: virtual = start + real_elapsed / time_scale."""

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        """``start``: the virtual epoch at creation (tests and demos of a given day, e.g. a
        public holiday); the wall clock's now by default."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._start_wall = time.time() if start is None else start
        self._start_mono = time.monotonic()

    def now(self) -> float:
        return self._start_wall + (time.monotonic() - self._start_mono) / self.time_scale

    def real_seconds(self, virtual_seconds: float) -> float:
        return max(0.0, virtual_seconds * self.time_scale)


def local_day_window(now: float, tz_name: str) -> tuple[float, float]:
    """The local calendar day containing ``now`` as epoch seconds [start, end)."""
    tz = ZoneInfo(tz_name)
    local = datetime.fromtimestamp(now, tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


class EdgeRuntime:
    """Owns the store, the core and the Asterisk driver for one edge process."""

    def __init__(
        self,
        config: EdgeConfig,
        driver_factory: Callable[[Callable[[Event], None]], "DriverLike"] | None = None,
        clock: ScaledClock | None = None,
        config_path: str = "",
    ) -> None:
        """``config_path``: the TOML the config came from; HQ's config sections are checked
        against it (without it the edge rejects them)."""
        self.config = config
        self.config_path = config_path
        self.clock = clock or ScaledClock(config.edge.time_scale)
        self.store = Store(config.edge.store, synchronous=config.edge.synchronous,
                           outbox=config.sync.enabled)
        self.events: "queue.Queue[Event]" = queue.Queue()
        day_start, day_end = local_day_window(self.clock.now(), config.edge.timezone)
        self.core = Core(
            config,
            self.clock,
            RegionResolver.from_config(config),
            initial_counts=self.store.answered_counts_for_day(day_start, day_end),
            last_agents=self.store.last_agents(),
            open_callbacks=[*self.store.tasks(kind="callback", state="open"),
                            *self.store.tasks(kind="callback", state="dialing")],
        )
        factory = driver_factory or self._asterisk_driver
        self.driver = factory(self.events.put)
        self.recordings = self._recording_service() if config.recording.enabled else None
        self.api: "EdgeApi | None" = None
        self.hq: "HqLink | None" = None
        self._listeners: list[Callable[[Command], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _asterisk_driver(self, post: Callable[[Event], None]) -> "DriverLike":
        from drivers.asterisk.driver import AsteriskDriver

        return AsteriskDriver.from_config(post, self.config, self.clock.time_scale)

    def _recording_service(self) -> "RecordingService":
        from edge.recordings.service import RecordingService

        live = getattr(self.driver, "live_uniqueids", lambda: None)
        return RecordingService(self.store, self.config.recording, self.config.edge.timezone,
                                notify=self._notify_from_thread, live_calls=live,
                                real_seconds=self.clock.real_seconds)

    def _notify_from_thread(self, topic: str, data: dict) -> None:
        """A service thread's notification goes through the core thread like the core's own."""
        if topic == "recording.ready" and self.hq is not None:
            self.hq.recording_ready()
        self.call_soon(lambda: self._dispatch([Notify(topic, data)]))

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edge-core", daemon=True)
        self._thread.start()
        self.driver.start()
        if self.recordings is not None:
            self.recordings.start()
        if self.config.sync.enabled:
            from edge.sync.services import HqLink

            self.hq = HqLink(self)
            self.hq.start()
        if self.config.api.enabled:
            from edge.api import EdgeApi

            self.api = EdgeApi(self, self.config.api.host, self.config.api.port)
            self.api.start()

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.hq is not None:
            # first: its directives and health reports read the core through on_core; the outbox
            # keeps whatever the rest of the stop writes for the next start
            self.hq.stop()
        self.driver.stop()
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.recordings is not None:
            self.recordings.stop()
        self.store.close()

    def subscribe(self, listener: Callable[[Command], None]) -> None:
        """Called on the core thread with every Notify/WriteCdr (the live view uses it)."""
        self._listeners.append(listener)

    def post(self, event: Event) -> None:
        self.events.put(event)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the core thread (reads of core state must happen there)."""
        self.events.put(_Callback(fn))

    def on_core(self, fn: Callable[[], T], timeout_s: float = 5.0) -> T:
        """Run ``fn`` on the core thread and wait for its result (or its exception).

        ``TimeoutError`` after ``timeout_s``, and at once when the core thread stops first (a
        stopped loop never runs the queue's rest: without this a caller would wait it out)."""
        done: futures.Future[T] = futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except Exception as exc:
                done.set_exception(exc)

        if self._stop.is_set():
            raise TimeoutError("the edge's core thread is stopped")
        self.call_soon(run)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return done.result(max(0.0, min(ON_CORE_CHECK_S, deadline - time.monotonic())))
            except futures.TimeoutError:
                if done.done():       # fn itself raised TimeoutError: that is its answer
                    raise
                if self._stop.is_set():
                    raise TimeoutError("the edge's core thread stopped before running it") from None
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the edge's core thread did not answer in {timeout_s:g} s"
                                       ) from None

    def handle_now(self, event: Event, timeout_s: float = 5.0) -> None:
        """Handle ``event`` on the core thread, after what is queued already, and wait until it
        is done (its commands dispatched): for callers that then report what it changed."""
        self.on_core(lambda: self._handle(event), timeout_s)

    # --- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.events.get(timeout=self._idle_wait())
            except queue.Empty:
                event = Tick()
            if isinstance(event, _Callback):
                self._guarded(event.fn, "callback")
                continue
            self._handle(event)
            if not isinstance(event, Tick) and self._timer_due():
                self._handle(Tick())  # a busy queue never times out: fire due timers between events

    def _timer_due(self) -> bool:
        deadline = self.core.next_deadline()
        return deadline is not None and deadline <= self.clock.now()

    def _idle_wait(self) -> float:
        deadline = self.core.next_deadline()
        if deadline is None:
            return MAX_IDLE_WAIT_S
        return min(MAX_IDLE_WAIT_S, self.clock.real_seconds(deadline - self.clock.now()))

    def _handle(self, event: Event) -> None:
        try:
            commands = self.core.handle(event)
        except Exception:  # the core must never take the daemon down with it
            log.exception("core failed on %r; event dropped from the core, edge keeps running", event)
            return
        self._dispatch(commands)

    def _dispatch(self, commands: Iterable[Command]) -> None:
        to_driver: list[Command] = []
        for command in commands:
            if isinstance(command, (StartRecording, EncodeRecording)):
                self._recording_command(command)  # StartRecording also goes to AMI below
            if isinstance(command, Lookup):
                self.events.put(self._lookup(command))
            elif isinstance(command, STORE_COMMANDS):
                self._persist(command)
                if isinstance(command, (WriteCdr, Notify)):
                    for listener in self._listeners:
                        self._guarded(lambda: listener(command), "listener")
            elif not isinstance(command, EncodeRecording):
                to_driver.append(command)
        if to_driver:
            self.driver.execute(to_driver)

    def _recording_command(self, command: StartRecording | EncodeRecording) -> None:
        if self.recordings is None:
            return
        try:
            if isinstance(command, StartRecording):
                self.recordings.started(command)
            else:
                self.recordings.call_over(command)
        except StoreError:
            log.exception("store rejected %r; the recovery scan will find the WAV", command)

    def _lookup(self, command: Lookup) -> LookupDone:
        """The IVR's question to the customer cache; a store failure answers "not found"."""
        try:
            if command.kind == "member":
                row = self.store.customer_by_member(command.key)
                values = {"customer_id": row["id"], "name": row["name"] or ""} if row else {}
                return LookupDone(command.call_id, command.kind, row is not None, values)
            accounts = self.store.accounts_of(command.key)
        except StoreError:
            log.exception("lookup %r failed; answered as not found", command)
            return LookupDone(command.call_id, command.kind, False)
        if not accounts:
            return LookupDone(command.call_id, command.kind, False)
        account = accounts[0]
        values = {k: str(account[k] or "") for k in ("balance", "amount_due", "due_date")}
        found = not command.field or bool(values.get(command.field))
        return LookupDone(command.call_id, command.kind, found, values)

    @staticmethod
    def _guarded(fn: Callable[[], None], what: str) -> None:
        """A failing view or callback is logged; the core thread, and so routing, goes on."""
        try:
            fn()
        except Exception:
            log.exception("%s failed on the core thread; edge keeps running", what)

    def _persist(self, command: WriteCdr | Notify | CreateTask | UpdateTask) -> None:
        """A full disk or a broken file is logged loudly; the branch keeps taking calls."""
        try:
            if isinstance(command, WriteCdr):
                self.store.write_cdr(command.record)
            elif isinstance(command, Notify):
                self.store.append_event(command.topic, command.data)
            elif isinstance(command, CreateTask):
                self.store.create_task(command.key, command.kind, assignee=command.assignee,
                                       group=command.group, call_id=command.call_id,
                                       number=command.number, data=command.data)
            else:
                self.store.update_task(command.key, command.state, command.result,
                                       attempt=command.attempt)
        except StoreError:
            log.exception("store rejected %s; kept in the log: %r", type(command).__name__, command)


class _Callback(Event):
    def __init__(self, fn: Callable[[], None]) -> None:
        object.__setattr__(self, "fn", fn)


class DriverLike:
    """What the runtime needs from a driver (AsteriskDriver satisfies it)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def execute(self, commands: list[Command]) -> None: ...
