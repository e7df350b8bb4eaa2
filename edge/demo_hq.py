"""The demo's HQ side: an ``HqStack`` (broker, aggregator, ingest, dispatcher, one enrolled edge)
and what the demo needs from it — the edge's ``[sync]``/``[upload]`` tables, the banner with the
URLs and demo logins, and how many of the edge's CDRs reached HQ's database.

``edge demo`` starts its own stack in the demo's temp dir and stops it at the end; a test may hand
in one it runs itself (``DemoHq(stack=…)``), which the demo then neither starts nor stops.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from edge.sync.enroll import load_credentials
from hil.stack import HqStack

HEALTH_S = 10.0          # real seconds between health reports: the fleet view shows it online
DRAIN_TIMEOUT_S = 5.0    # at the stop, how long to wait for HQ to acknowledge the outbox


class DemoHq:
    def __init__(self, workdir: Path, stack: HqStack | None = None) -> None:
        self.owned = stack is None
        self.stack = stack if stack is not None else HqStack(workdir)
        self.workdir = self.stack.workdir

    def start(self) -> None:
        """Start the stack unless it was handed in (``hil.stack.StackError`` if it fails)."""
        if self.owned:
            self.stack.start()

    def stop(self) -> None:
        if self.owned:
            self.stack.stop()

    # --- the edge's side ----------------------------------------------------------------------

    def config_tables(self) -> dict[str, dict[str, Any]]:
        """``[sync]`` and ``[upload]`` for the enrolled edge, as on a real box: the enrollment
        file gives the broker login, HQ's URL and the API token (``edge.sync.services``)."""
        path = self.stack.edge_credentials_path
        load_credentials(path)   # fail here, naming the file, rather than in the runtime
        return {"sync": {"enabled": True, "credentials": str(path), "health_s": HEALTH_S},
                "upload": {"enabled": True}}

    def broker_running(self) -> bool:
        broker = self.stack.broker
        return broker is not None and broker.process is not None and broker.process.poll() is None

    def status(self) -> dict[str, Any]:
        """For the live screen's HQ line."""
        admin = self.stack.login("admin")
        return {"url": self.stack.hq_url, "broker_port": self.stack.broker_port,
                "login": f"{admin.username} / {admin.password}"}

    @property
    def edge_id(self) -> str:
        return self.stack.edge_id

    # --- what the demo shows ------------------------------------------------------------------

    def banner(self, *, how_to: bool = True) -> list[str]:
        """HQ's URL, the broker, the logs and the demo logins, as lines for a terminal."""
        stack = self.stack
        url = stack.hq_url
        lines = [f"HQ      {url}   (API: {url}/api/v1/…; sign in with POST /api/v1/auth/login)",
                 f"broker  Mosquitto on 127.0.0.1:{stack.broker_port} (dynamic security); "
                 f"edge {stack.edge_id} enrolled as {stack.edge_name}",
                 f"logs    {stack.workdir}/ (gunicorn, ingest, dispatch, mosquitto)",
                 "logins  role        username    password        name  department"]
        lines += [f"        {login.role:<11} {login.username:<11} {login.password:<15} "
                  f"{login.display_name}  {login.department}" for login in stack.logins]
        if how_to:
            admin = stack.login("admin")
            lines += [f"try     curl -c /tmp/hq.cookies -H 'Content-Type: application/json' -d "
                      f"'{{\"username\":\"{admin.username}\",\"password\":\"{admin.password}\"}}' "
                      f"{url}/api/v1/auth/login",
                      f"        curl -b /tmp/hq.cookies {url}/api/v1/fleet/edges"]
        return lines

    def stored_at_hq(self) -> tuple[int, int] | None:
        """How many of this edge's CDRs and recordings HQ's database holds (``None`` if it
        cannot be read)."""
        from aggregator import AggregatorError
        from aggregator.db import HqDb

        try:
            with HqDb.open(self.stack.db_url) as db:
                return (db.scalar("SELECT COUNT(*) FROM hq_cdrs WHERE edge = ?", (self.edge_id,)),
                        db.scalar("SELECT COUNT(*) FROM hq_recordings WHERE edge = ?",
                                  (self.edge_id,)))
        except AggregatorError:
            return None


def wait_for_drain(outbox_depth: Callable[[], int], reachable: Callable[[], bool],
                   timeout_s: float = DRAIN_TIMEOUT_S) -> int:
    """Wait until HQ has acknowledged everything in the edge's outbox, or the broker is gone;
    the depth left."""
    deadline = time.monotonic() + timeout_s
    depth = outbox_depth()
    while depth and reachable() and time.monotonic() < deadline:
        time.sleep(0.05)
        depth = outbox_depth()
    return depth
