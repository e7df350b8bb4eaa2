"""The edge's link to HQ, started and stopped with the runtime.

* **publisher** — ``SyncPublisher`` on a thread, or ``SyncProcess`` (``[sync] process``, the
  default): the same publisher in a child process of its own, so publishing never competes with
  call handling for the GIL. The store's commit hook wakes it either way.
* **health** — ``HealthReporter``: a ``health`` row every ``[sync] health_s`` with figures read
  on the core thread.
* **uploader** — ``Uploader`` (``[upload] enabled``): MP3s to HQ, then local retention.
* **directives** — ``HqDirectives``: what the downlink inbox left in the store, applied to the
  running edge (pushed 号段 rows and calendar days swapped into the core, HQ commands run).

The enrollment file (``[sync] credentials``, written by ``edge enroll``) supplies the edge id,
broker user and password, HQ's URL and the API token; keys set in ``[sync]`` win over it.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from typing import TYPE_CHECKING, Any

from edge.config import EdgeConfig
from edge.config_sections import SyncSection
from edge.sync.directives import HqDirectives

if TYPE_CHECKING:
    from edge.runtime import EdgeRuntime

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT_S = 5.0


def edge_version() -> str:
    try:
        return importlib.metadata.version("callcenter-edge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def resolve_sync(config: EdgeConfig) -> tuple[str, SyncSection]:
    """The MQTT identity and the ``[sync]`` settings with the enrollment file filled in."""
    sync = config.sync
    edge_id = config.edge.id
    if sync.credentials:
        from edge.sync.enroll import load_credentials

        creds = load_credentials(sync.credentials)
        edge_id = creds.edge_id
        sync = dataclasses.replace(
            sync,
            host=sync.host if sync.host != SyncSection.host else creds.broker_host,
            port=sync.port if sync.port != SyncSection.port else creds.broker_port,
            username=sync.username or creds.username,
            password=sync.password or creds.password,
            hq_url=sync.hq_url or creds.hq_url,
            api_token=sync.api_token or creds.api_token)
    return edge_id, dataclasses.replace(sync, username=sync.username or edge_id)


class HqLink:
    """Everything that talks to HQ, for one runtime."""

    def __init__(self, runtime: "EdgeRuntime") -> None:
        self.runtime = runtime
        self.edge_id, self.sync = resolve_sync(runtime.config)
        self.publisher: Any = None
        self.health: Any = None
        self.uploader: Any = None
        self.directives = HqDirectives(runtime, self)

    def start(self) -> None:
        config, store = self.runtime.config, self.runtime.store
        self.publisher = self._publisher()
        store.on_outbox = self.publisher.wake
        self.publisher.start()
        from edge.sync.health import HealthReporter

        self.health = HealthReporter(store, self.health_figures, self.sync.health_s)
        self.health.start()
        if config.upload.enabled:
            if not (self.sync.hq_url and self.sync.api_token):
                log.error("[upload] enabled but no HQ URL/API token ([sync] hq_url, api_token or "
                          "an enrollment file): recordings stay on this box")
            else:
                from edge.sync.uploader import Uploader

                self.uploader = Uploader.from_config(store, self.sync, config.upload,
                                                     config.recording.root)
                self.uploader.start()
        self.directives.start()

    def stop(self) -> None:
        """Directives and health first (they read the core), then uploader and publisher. Safe
        to call twice."""
        self.directives.stop()
        if self.publisher is not None and self.runtime.store.on_outbox == self.publisher.wake:
            self.runtime.store.on_outbox = None     # later commits wait in the outbox
        for part in (self.health, self.uploader, self.publisher):
            if part is not None:
                part.stop()
        close = getattr(self.publisher, "close", None)   # SyncProcess: socketpair, shared memory
        if close is not None:
            close()
        self.health = self.uploader = self.publisher = None

    def recording_ready(self) -> None:
        if self.uploader is not None:
            self.uploader.wake()

    def _publisher(self) -> Any:
        sync, config = self.sync, self.runtime.config
        args = (config.edge.store, self.edge_id, sync.host, sync.port, sync.username,
                sync.password)
        options = {"in_flight": sync.in_flight, "resend_s": sync.resend_s,
                   "synchronous": config.edge.synchronous,
                   # absolute: the child process resolves it, and the inbox re-reads it later
                   "local_config_path": (os.path.abspath(self.runtime.config_path)
                                         if self.runtime.config_path else "")}
        if sync.process:
            from edge.sync.process import SyncProcess

            return SyncProcess(*args, **options)
        from edge.sync.publisher import SyncPublisher

        return SyncPublisher(*args, **options)

    def health_figures(self) -> dict[str, Any]:
        """Read on the core thread: agents, trunks and live calls as the core sees them."""
        config = self.runtime.config

        def read() -> dict[str, Any]:
            core = self.runtime.core
            agents = core.agents_view()
            calls = core.calls_view()
            return {"agents": {"total": len(agents),
                               "logged_in": sum(a.state != "logged_out" for a in agents)},
                    "calls_active": len(calls),
                    "trunk_calls": sum(c.direction == "inbound" for c in calls)}

        figures = self.runtime.on_core(read, SNAPSHOT_TIMEOUT_S)
        figures["version"] = edge_version()
        # the driver does not watch trunk alarms yet: "up" is unknown, not guessed
        figures["trunks"] = {"total": len(config.trunks), "up": None,
                             "in_use": figures.pop("trunk_calls")}
        figures["config_versions"] = self.runtime.store.hq_config_versions()
        return figures
