"""What HQ's downlink left in the store, applied to the running edge.

The sync inbox only writes the store (it may run in the publisher's child process), so this
thread polls it about once a second and hands the changes to the core thread:

* **reference data** — when ``Store.reference_versions()`` changes, the pushed 号段 rows and
  calendar days are built into a new region resolver and calendars *here* (a national prefix
  table takes ~0.5 s), then swapped into the core in one step on the core thread. They are always
  built from the configured calendars, never from the previous result.
* **HQ commands** — each pending ``hq_commands`` row runs once on the core thread and is ended
  with ``Store.finish_hq_command`` (which reports the result to HQ).
* **HQ config sections** — stored and validated by the inbox; they take effect when the edge
  next starts (``edge run`` merges them, ``edge.sync.hq_config.config_for_run``). The
  ``config.reload`` command would apply them in place once the runtime can rebuild its core
  between calls (``EdgeRuntime.reload_config``); until then it fails and says so.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.errors import EdgeError
from edge.hours.pushed import with_pushed_days
from edge.regions import RegionResolver
from edge.store import StoreError

if TYPE_CHECKING:
    from edge.runtime import EdgeRuntime
    from edge.sync.services import HqLink

log = logging.getLogger(__name__)

POLL_S = 1.0
CORE_TIMEOUT_S = 5.0


class HqDirectives:
    def __init__(self, runtime: "EdgeRuntime", link: "HqLink | None" = None,
                 poll_s: float = POLL_S) -> None:
        self.runtime = runtime
        self.link = link
        self.poll_s = poll_s
        self._reference_versions: Mapping[str, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._commands: dict[str, Callable[[Mapping[str, Any]], str]] = {
            "agent.login": lambda a: self._agent_event("login", a),
            "agent.logout": lambda a: self._agent_event("logout", a),
            "agent.state": lambda a: self._agent_event(a["state"], a),
            "sync.resend": self._resend,
            "recording.upload": self._upload_again,
            "config.reload": self._reload,
        }

    def start(self) -> None:
        self.apply_reference()          # before the first call is routed, not a second later
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hq-directives", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll_once()

    def poll_once(self) -> None:
        for step in (self.apply_reference, self.run_commands):
            try:
                step()
            except (StoreError, EdgeError, TimeoutError):
                log.exception("applying HQ's %s failed; tried again in %.0f s", step.__name__,
                              self.poll_s)

    # --- reference data -----------------------------------------------------------------------

    def apply_reference(self) -> bool:
        store, config = self.runtime.store, self.runtime.config
        versions = store.reference_versions()
        if versions == self._reference_versions:
            return False
        resolver = RegionResolver.from_config(config).with_pushed(store.pushed_prefixes())
        calendars = with_pushed_days(config.calendars, store.pushed_calendar_days())

        def swap() -> None:
            sb = self.runtime.core.sb
            sb.regions = resolver
            sb.config = dataclasses.replace(sb.config, calendars=MappingProxyType(calendars))

        self.runtime.on_core(swap, CORE_TIMEOUT_S)
        self._reference_versions = versions
        log.info("HQ reference data in use: %s", versions or "none")
        return True

    # --- commands -----------------------------------------------------------------------------

    def run_commands(self) -> int:
        store = self.runtime.store
        done = 0
        for row in store.pending_hq_commands():
            name, args = row["name"], row["args"]
            if isinstance(args, str):
                args = json.loads(args or "{}")
            action = self._commands.get(name)
            try:
                if action is None:
                    raise EdgeError(f"this edge cannot run {name!r}")
                result, ok = action(args), True
            except TimeoutError:          # the core is busy or stopping: the row stays pending
                log.warning("HQ command %s %s: the core did not answer; tried again in %.0f s",
                            row["id"], name, self.poll_s)
                break
            except Exception as exc:      # a command must never stop the others
                log.warning("HQ command %s %s failed: %s", row["id"], name, exc)
                result, ok = str(exc) or type(exc).__name__, False
            store.finish_hq_command(row["id"], ok, result)
            done += 1
        return done

    def _agent_event(self, action: str, args: Mapping[str, Any]) -> str:
        """Handled by the core before the command counts as done, so HQ hears what changed
        (``a8002: idle -> busy``), or that the core ignored it (a logged-out agent)."""
        from edge.api import STATE_EVENTS

        agent_id = args["agent_id"]
        if not any(a.id == agent_id for a in self.runtime.config.agents):
            raise EdgeError(f"no agent {agent_id!r} on this edge")
        before = self._agent_state(agent_id)
        self.runtime.handle_now(STATE_EVENTS[action](agent_id), CORE_TIMEOUT_S)
        after = self._agent_state(agent_id)
        if after == "logged_out" and action != "logout":
            raise EdgeError(f"{agent_id} is logged out: {action} ignored (log the agent in first)")
        return f"{agent_id}: {before} -> {after}"

    def _agent_state(self, agent_id: str) -> str:
        views = self.runtime.on_core(self.runtime.core.agents_view, CORE_TIMEOUT_S)
        return next((v.state for v in views if v.id == agent_id), "unknown")

    def _resend(self, args: Mapping[str, Any]) -> str:
        publisher = self.link.publisher if self.link else None
        if publisher is None:
            raise EdgeError("sync is not running on this edge")
        publisher.wake()
        depth = self.runtime.store.outbox_depth(args.get("stream"))
        return f"publisher woken; {depth} rows wait for HQ's ack (unacked rows are re-sent)"

    def _upload_again(self, args: Mapping[str, Any]) -> str:
        uploader = self.link.uploader if self.link else None
        if uploader is None:
            raise EdgeError("recording upload is off on this edge ([upload] enabled)")
        store = self.runtime.store
        again = [r for r in store.recordings(state="done", call_id=args.get("call_id"))
                 if r.get("upload_state") == "failed"
                 and (r.get("created_at") or 0) >= args.get("since", 0)]
        retried = sum(store.upload_retry(r["file"]) for r in again)
        uploader.wake()
        return f"{retried} failed uploads queued again"

    def _reload(self, _args: Mapping[str, Any]) -> str:
        reload = getattr(self.runtime, "reload_config", None)
        if reload is None:
            raise EdgeError("this edge applies HQ's config sections when it restarts (edge run); "
                            "it cannot reload them while running")
        return reload()
