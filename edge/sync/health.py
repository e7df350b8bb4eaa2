"""The edge's health report to HQ: one ``health`` outbox row every ``[sync] health_s`` seconds.

HQ's fleet view (``aggregator.fleet.projections``) shows each edge's last report and when it
was seen. The report is an outbox row like any other (stream ``health``, type ``health``), so it
travels the same acknowledged path as CDRs; the body::

    {"version": "0.1.0", "outbox_depth": 12, "trunks": {"total": 8, "up": 7},
     "agents": {"total": 20, "logged_in": 14}, "calls_active": 3, "uptime_s": 86400.0,
     "config_versions": {"agents": 4}}

``snapshot()`` (wired by the runtime) supplies the figures only the runtime knows: ``version``,
``trunks``, ``agents``, ``calls_active``, ``config_versions``; the reporter adds
``outbox_depth`` and ``uptime_s``. A report is a snapshot, not an event, so while HQ is out of
reach at most ``max_pending`` of them wait in the outbox: a day offline does not queue 1,440.
A failing snapshot is logged and skipped; the reporter keeps going.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from edge.errors import EdgeError
from edge.store.outbox_rows import add_to_outbox

log = logging.getLogger(__name__)

STREAM = "health"
TYPE = "health"
MAX_PENDING = 10


class HealthReporter:
    """Writes a health report now and then every ``interval_s`` until ``stop()``."""

    def __init__(self, store: Any, snapshot: Callable[[], Mapping[str, Any]], interval_s: float,
                 clock: Callable[[], float] = time.time, *, max_pending: int = MAX_PENDING) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.store = store
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.clock = clock
        self.max_pending = max_pending
        self.started_at = clock()
        self.reports = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="health-reporter", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.report_once()
            self._stopping.wait(self.interval_s)

    def body(self, figures: Mapping[str, Any], outbox_depth: int, now: float) -> dict[str, Any]:
        """The report: the runtime's figures with the reporter's own on top."""
        report = dict(figures)
        report.setdefault("version", None)
        report.setdefault("trunks", {"total": 0, "up": 0})
        report.setdefault("agents", {"total": 0, "logged_in": 0})
        report.setdefault("calls_active", 0)
        report.setdefault("config_versions", {})
        report["outbox_depth"] = outbox_depth
        report["uptime_s"] = round(max(0.0, now - self.started_at), 3)
        return report

    def report_once(self) -> bool:
        """Queue one report; False when skipped (sync off, enough reports pending, a failure)."""
        if not getattr(self.store, "outbox", False):
            log.debug("health report skipped: the store has no outbox (sync is off)")
            return False
        try:
            figures = self.snapshot()   # outside the store's lock: it may read runtime state
            written = self._write(figures)
        except EdgeError as exc:
            log.error("health report not written: %s", exc)
            return False
        except Exception:   # a runtime snapshot that breaks must not stop the reports
            log.exception("health report failed (snapshot or encoding)")
            return False
        if written:
            self.reports += 1
            self.store._outbox_written()
        return written

    def _write(self, figures: Mapping[str, Any]) -> bool:
        # the store's lock and connection: the core thread writes through the same connection
        with self.store._guard("health report") as db, db.conn:
            depth = int(db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
            pending = int(db.conn.execute("SELECT count(*) FROM outbox WHERE stream = ?",
                                          [STREAM]).fetchone()[0])
            if pending >= self.max_pending:
                log.debug("health report skipped: %s reports wait for HQ already", pending)
                return False
            now = self.clock()
            add_to_outbox(db.conn, STREAM, TYPE, self.body(figures, depth, now), now)
        return True
