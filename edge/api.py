"""The edge's local HTTP API: what an agent's console clicks and reads (JSON over HTTP).

Writes become domain events posted to the runtime's queue, so the core sees a click exactly as it
sees a phone's ``##code``; reads of live state run on the core thread (``call_soon``), reads of
history go to the store. Bad input is a 400 with a reason, an unknown agent a 404; nothing a
client sends can raise inside the core.

    GET  /api/health
    GET  /api/agents | /api/calls | /api/queues          live views
    GET  /api/events?after=<id>&limit=<n>                notifications, oldest first (tail it)
    GET  /api/recordings?call_id=<id>&state=<state>
    GET  /api/tasks?kind=<kind>&state=<state>
    POST /api/agents/<id>/state      {"state": "idle"|"busy"|"away"|"back"|"login"|"logout"}
    POST /api/agents/<id>/recording  {"on": true|false|null}     record on demand (REC-1)
    POST /api/agents/<id>/transfer   {"target": "8002"|"queue:cards"|"13900000000",
                                      "data": {"notes": "..."}, "mode": "blind"|"attended"}
                                      transfer (TEL-2); attended consults an extension first
    POST /api/agents/<id>/remote-dial {"number": "13900000000"}  OUT-13: the agent's mobile,
                                      then the customer, bridged, showing the company number
    GET  /api/announcements?agent=<id>   HQ's current announcements for the agent, with "read"
    POST /api/announcements/<id>/read {"agent": "<id>"}  read receipt (once per agent; HQ gets it)

The console issue adds authentication; until then the API listens on loopback by default.
"""
from __future__ import annotations

import concurrent.futures as futures
import json
import logging
import re
import threading
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlparse

from edge.events import (AgentLogin, AgentLogout, AgentSetAway, AgentSetBusy, Event,
                         RecordingToggle, RemoteDialRequest, TransferRequest)

if TYPE_CHECKING:
    from edge.runtime import EdgeRuntime

log = logging.getLogger(__name__)

AGENT_ACTION = re.compile(
    r"^/api/agents/(?P<agent>[^/]+)/(?P<action>state|recording|transfer|remote-dial)$")
ANNOUNCEMENT_READ = re.compile(r"^/api/announcements/(?P<announcement>[^/]+)/read$")
MAX_BODY = 64 * 1024
STATE_EVENTS: dict[str, Callable[[str], Event]] = {
    "idle": lambda a: AgentSetBusy(a, False), "busy": lambda a: AgentSetBusy(a, True),
    "away": lambda a: AgentSetAway(a, True), "back": lambda a: AgentSetAway(a, False),
    "login": AgentLogin, "logout": AgentLogout,
}


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class EdgeApi:
    """``start()`` serves on a thread of its own; ``address`` is where it listens."""

    def __init__(self, runtime: "EdgeRuntime", host: str = "127.0.0.1", port: int = 8080) -> None:
        self.runtime = runtime
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                api._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                api._serve(self, "POST")

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("api %s: " + fmt, self.client_address[0], *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="edge-api",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- dispatch -----------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(request.path)
        try:
            if method == "GET":
                body = self._get(url.path, {k: v[-1] for k, v in parse_qs(url.query).items()})
            else:
                body = self._post(url.path, self._body(request))
            self._reply(request, HTTPStatus.OK, body)
        except ApiError as exc:
            self._reply(request, exc.status, {"error": str(exc)})
        except Exception:  # a bug answers 500 and is logged; the edge goes on
            log.exception("api %s %s failed", method, request.path)
            self._reply(request, HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})

    @staticmethod
    def _body(request: BaseHTTPRequestHandler) -> dict[str, Any]:
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        raw = request.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"body is not UTF-8 JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    # --- reads --------------------------------------------------------------------------------

    def _get(self, path: str, query: dict[str, str]) -> Any:
        store = self.runtime.store
        if path == "/api/health":
            return {"ok": True, "edge": self.runtime.config.edge.id}
        if path in ("/api/agents", "/api/calls", "/api/queues"):
            view = {"/api/agents": "agents_view", "/api/calls": "calls_view",
                    "/api/queues": "queues_view"}[path]
            return [asdict(v) for v in self._on_core(lambda: getattr(self.runtime.core, view)())]
        if path == "/api/events":
            return store.events(_int(query, "limit", 100), topic=query.get("topic"),
                                after_id=_int(query, "after", None))
        if path == "/api/recordings":
            return store.recordings(state=query.get("state"), call_id=query.get("call_id"))
        if path == "/api/tasks":
            return store.tasks(kind=query.get("kind"), state=query.get("state"))
        if path == "/api/announcements":
            agent = self._agent(query.get("agent"))
            return store.announcements_for(agent.id, agent.groups)
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such resource: {path}")

    def _on_core(self, read: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Core state is read on the core thread only."""
        done: futures.Future[Any] = futures.Future()

        def run() -> None:
            try:
                done.set_result(read())
            except Exception as exc:
                done.set_exception(exc)

        self.runtime.call_soon(run)
        return done.result(timeout_s)

    # --- writes -------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        read = ANNOUNCEMENT_READ.match(path)
        if read is not None:
            return self._read_announcement(read["announcement"], body)
        match = AGENT_ACTION.match(path)
        if match is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no such action: {path}")
        agent_id, action = match["agent"], match["action"]
        if agent_id not in {a.id for a in self.runtime.config.agents}:
            raise ApiError(HTTPStatus.NOT_FOUND, f"unknown agent {agent_id!r}")
        event = self._event(agent_id, action, body)
        self.runtime.post(event)
        return {"accepted": type(event).__name__}

    def _agent(self, agent_id: Any) -> Any:
        """The configured agent with this id (400 without one, 404 for an unknown one)."""
        if not isinstance(agent_id, str) or not agent_id:
            raise ApiError(HTTPStatus.BAD_REQUEST, "agent: an agent id is required")
        agent = next((a for a in self.runtime.config.agents if a.id == agent_id), None)
        if agent is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"unknown agent {agent_id!r}")
        return agent

    def _read_announcement(self, announcement_id: str, body: dict[str, Any]) -> Any:
        agent = self._agent(body.get("agent"))
        store = self.runtime.store
        announcement = store.announcement(announcement_id)
        if announcement is None or announcement["withdrawn"]:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no announcement {announcement_id!r}")
        read_at = store.mark_announcement_read(announcement_id, agent.id)
        return {"announcement_id": announcement_id, "agent": agent.id, "read_at": read_at}

    @staticmethod
    def _event(agent_id: str, action: str, body: dict[str, Any]) -> Event:
        if action == "state":
            state = body.get("state")
            if state not in STATE_EVENTS:
                raise ApiError(HTTPStatus.BAD_REQUEST,
                               f"state: expected one of {', '.join(STATE_EVENTS)}, got {state!r}")
            return STATE_EVENTS[state](agent_id)
        if action == "remote-dial":
            number = body.get("number")
            if not isinstance(number, str) or not number.strip().isdigit():
                raise ApiError(HTTPStatus.BAD_REQUEST, f"number: digits expected, got {number!r}")
            return RemoteDialRequest(agent_id, number.strip())
        if action == "recording":
            on = body.get("on")
            if on is not None and not isinstance(on, bool):
                raise ApiError(HTTPStatus.BAD_REQUEST, f"on: expected true, false or null, got {on!r}")
            return RecordingToggle(agent_id, on)
        target, data = body.get("target"), body.get("data") or {}
        if not isinstance(target, str) or not target.strip():
            raise ApiError(HTTPStatus.BAD_REQUEST, "target: an extension, queue:<group> or number")
        if not isinstance(data, dict) or not all(isinstance(v, (str, int, float)) for v in data.values()):
            raise ApiError(HTTPStatus.BAD_REQUEST, "data: an object of text values")
        attended = body.get("mode", "blind")
        if attended not in ("blind", "attended"):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"mode: blind or attended, got {attended!r}")
        return TransferRequest(agent_id, target.strip(), {str(k): str(v) for k, v in data.items()},
                               attended == "attended")


def _int(query: dict[str, str], key: str, default: int | None) -> Any:
    if key not in query:
        return default
    try:
        return int(query[key])
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key}: expected an integer") from exc
