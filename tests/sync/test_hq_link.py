"""The runtime's link to HQ end to end: a real ``EdgeRuntime`` (its Asterisk is the HIL
``PbxSimulator`` over loopback AMI + FastAGI) started from a TOML file with ``[sync] enabled``,
enrolled into a real ``HqStack`` (Mosquitto with dynamic security, the aggregator under
gunicorn, an ingest consumer and the downlink dispatcher as processes).

Everything HQ does here goes through its HTTP API as an admin would; everything checked at the
edge is read where the edge keeps it: the core's own views (on the core thread), its store, and
``config_for_run`` (what ``edge run`` starts from). One stack and one edge serve the whole module
(bringing them up is most of its time); each test uses its own agent, number or section, and
the last one checks that HQ stored, without a gap or a dead letter, all that the others made the
edge send.
"""
from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import requests

from aggregator.db import HqDb
from edge.events import AgentLogin, AgentLogout
from edge.regions import Region
from edge.runtime import EdgeRuntime
from edge.sync.hq_config import config_for_run
from edge.sync.services import edge_version
from hil.pbx.simulator import PbxSimulator
from hil.stack import HqStack

pytestmark = pytest.mark.hil

BASE_CONFIG = Path(__file__).parents[2] / "hil" / "scenarios" / "edge-base.toml"
TIME_SCALE = 0.02          # 50x: a 6 s scripted call lasts ~0.12 s
HEALTH_S = 0.5
HTTP_TIMEOUT_S = 10.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_text(value: Any) -> str:
    """A TOML value for the few types written here (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def write_edge_toml(path: Path, *, store: Path, ami_port: int, agi_port: int,
                    credentials: Path) -> None:
    """The HIL base config as a real file, with this run's ports and store, sync and upload on."""
    def table(name: str, keys: dict[str, Any]) -> str:
        return f"[{name}]\n" + "".join(f"{k} = {toml_text(v)}\n" for k, v in keys.items())

    text = BASE_CONFIG.read_text(encoding="utf-8")
    text = text.replace("[edge]\n", table("edge", {"store": store, "time_scale": TIME_SCALE}), 1)
    text = text.replace("[asterisk]\n", table("asterisk", {
        "ami_host": "127.0.0.1", "ami_port": ami_port, "fastagi_port": agi_port}), 1)
    text += "\n" + table("recording", {"spool_dir": path.parent / "spool",
                                       "root": path.parent / "recordings"})
    text += "\n" + table("sync", {"enabled": True, "credentials": credentials,
                                  "health_s": HEALTH_S, "process": True})
    text += "\n" + table("upload", {"enabled": True, "retry_s": 1.0})
    path.write_text(text, encoding="utf-8")


def wait_for(what: str, probe: Callable[[], T], timeout_s: float = 15.0,
             every_s: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {answer!r})")
        time.sleep(every_s)


class Hq:
    """HQ's API signed in as its admin, and a look into HQ's database."""

    def __init__(self, stack: HqStack) -> None:
        self.stack = stack
        self.url = stack.hq_url
        self.edge_id = stack.edge_id
        self.http = requests.Session()
        admin = stack.login("admin")
        answer = self.http.post(f"{self.url}/api/v1/auth/login", timeout=HTTP_TIMEOUT_S,
                                json={"username": admin.username, "password": admin.password})
        assert answer.status_code == 200, answer.text
        self.http.headers["X-CSRF-Token"] = answer.json()["csrf"]

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        answer = self.http.request(method, f"{self.url}/api/v1{path}", timeout=HTTP_TIMEOUT_S,
                                   **kwargs)
        assert answer.status_code == status, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def command(self, name: str, **args: Any) -> str:
        sent = self.call("POST", f"/downlink/edges/{self.edge_id}/commands", 201,
                         json={"name": name, "args": args})
        return sent["message"]["id"]

    def message(self, message_id: str) -> dict[str, Any]:
        return self.call("GET", f"/downlink/messages/{message_id}")["message"]

    def settled(self, message_id: str, *, result: bool = False,
                timeout_s: float = 15.0) -> dict[str, Any]:
        """The message once the edge acknowledged it (and, ``result``, reported what it did)."""
        def probe() -> dict[str, Any] | None:
            message = self.message(message_id)
            if message["state"] == "pending" or (result and not message["result"]):
                return None
            return message
        return wait_for(f"HQ's downlink row {message_id}", probe, timeout_s)

    def edge_row(self) -> dict[str, Any]:
        edges = self.call("GET", "/fleet/edges")["edges"]
        return next(edge for edge in edges if edge["id"] == self.edge_id)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with HqDb.open(self.stack.db_url) as db:
            return db.query(sql, params)

    def logs(self) -> str:
        """The stack's logs' last lines, for a failure message."""
        out = []
        for name in ("ingest.log", "dispatch.log", "gunicorn.log"):
            path = self.stack.workdir / name
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-1500:])
        return "\n".join(out)


class Edge:
    def __init__(self, runtime: EdgeRuntime, sim: PbxSimulator, toml: Path) -> None:
        self.runtime, self.sim, self.toml = runtime, sim, toml

    def agent_state(self, agent_id: str) -> str:
        views = self.runtime.on_core(lambda: self.runtime.core.agents_view())
        return next(view.state for view in views if view.id == agent_id)

    def command_row(self, command_id: str) -> dict[str, Any] | None:
        return next((row for row in self.runtime.store.hq_commands() if row["id"] == command_id),
                    None)


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hq, Edge]]:
    workdir = tmp_path_factory.mktemp("hq-link")
    stack = HqStack(workdir / "hq").start()
    sim = runtime = None
    try:
        agi_port = free_port()
        sim = PbxSimulator({"trunks": [{"profile": "e1", "channels": "1-4"}],
                            "phones": {"8001": {"answer_after_ms": 1000},
                                       "8002": {"answer_after_ms": 1000}}},
                           edge_host="127.0.0.1", agi_port=agi_port, ami_port=0,
                           time_scale=TIME_SCALE, spool_dir=workdir / "spool")
        (workdir / "spool").mkdir()
        sim.start(scripts=False)
        toml = workdir / "edge.toml"
        write_edge_toml(toml, store=workdir / "edge.sqlite3", ami_port=sim.ami_port,
                        agi_port=agi_port, credentials=stack.edge_credentials_path)
        config = config_for_run(toml)                 # as `edge run` does
        assert config.sync.enabled and config.upload.enabled and config.recording.enabled
        runtime = EdgeRuntime(config, config_path=str(toml))
        runtime.start()
        sim.wait_record("ami", timeout=10, what="login")
        sim.start_world()
        hq = Hq(stack)
        # HQ stored a report the edge published after subscribing to its down topics: from
        # here a message HQ sends reaches it at once (before its first subscription the broker
        # has no session to queue it in, and the dispatcher re-sends only after 30 s)
        wait_for("HQ hearing from the edge", lambda: hq.edge_row()["reported_at"])
        yield hq, Edge(runtime, sim, toml)
    finally:
        if runtime is not None:
            runtime.stop()
        if sim is not None:
            sim.stop()
        stack.stop()


# --- 1. commands ----------------------------------------------------------------------------------

def test_hq_commands_change_the_agents_state_in_the_running_core(linked) -> None:
    hq, edge = linked
    assert edge.agent_state("a8002") == "idle"
    steps = [("agent.state", {"state": "busy"}, "done: a8002: idle -> busy", "busy"),
             ("agent.logout", {}, "done: a8002: busy -> logged_out", "logged_out"),
             ("agent.state", {"state": "busy"}, "failed: a8002 is logged out: busy ignored (log "
              "the agent in first)", "logged_out"),
             ("agent.login", {}, "done: a8002: logged_out -> idle", "idle")]
    for name, args, result, state in steps:
        message_id = hq.command(name, agent_id="a8002", **args)
        message = hq.settled(message_id, result=True)
        assert (message["state"], message["result"]) == ("applied", result), \
            (message, hq.logs())
        assert edge.agent_state("a8002") == state
        row = edge.command_row(message_id)
        assert row["state"] == result.split(":")[0]
        assert row["name"] == name and row["args"] == {"agent_id": "a8002", **args}

    # commands the edge cannot carry out are applied (queued), then fail with the reason
    unknown_agent = hq.command("agent.state", agent_id="a9999", state="busy")
    reload = hq.command("config.reload")
    assert hq.settled(unknown_agent, result=True)["result"] == \
        "failed: no agent 'a9999' on this edge"
    message = hq.settled(reload, result=True)
    assert message["state"] == "applied"
    assert message["result"].startswith("failed: this edge applies HQ's config sections when it "
                                        "restarts"), message
    assert edge.agent_state("a8001") == "idle"


# --- 2. reference data ----------------------------------------------------------------------------

def test_a_pushed_prefix_row_is_used_by_the_running_core_without_a_restart(linked) -> None:
    hq, edge = linked
    number, region = "17099991234", Region("西藏", "拉萨")

    def resolved() -> Region | None:
        return edge.runtime.on_core(lambda: edge.runtime.core.sb.regions.resolve(number))

    assert resolved() != region
    csv = "号段,省份,城市,运营商\n1709999,西藏,拉萨,中国移动\n".encode("utf-8")
    report = hq.call("POST", "/customers/prefixes?mode=merge", data=csv,
                     headers={"Content-Type": "text/csv"})
    assert report["good"] == 1 and report["bad"] == 0, report
    queued = hq.call("POST", "/customers/push", json={"edges": [hq.edge_id], "prefixes": True,
                                                      "calendars": False, "snapshot": False})
    assert hq.edge_id in queued["edges"], queued
    wait_for("the core resolving 1709999 to 西藏/拉萨", lambda: resolved() == region)
    assert ("1709999", "西藏/拉萨", "中国移动") in edge.runtime.store.pushed_prefixes()
    def reference_states() -> set[str]:
        sent = hq.call("GET", f"/downlink/messages?edge={hq.edge_id}&kind=reference")
        return {message["state"] for message in sent["messages"]}

    wait_for("HQ's reference messages applied", lambda: reference_states() == {"applied"})


# --- 3. the fleet view ----------------------------------------------------------------------------

def test_the_fleet_view_shows_the_edges_health_as_its_core_sees_it(linked) -> None:
    hq, edge = linked
    edge.runtime.handle_now(AgentLogout("a8009"))     # so "logged in" differs from "total"
    since = time.time()
    agents = edge.runtime.on_core(lambda: edge.runtime.core.agents_view())
    logged_in = sum(a.state != "logged_out" for a in agents)
    assert (len(agents), logged_in) == (3, 2)

    def fresh() -> dict[str, Any] | None:
        row = hq.edge_row()
        return row if (row["reported_at"] or 0) >= since else None

    row = wait_for("a health report newer than the test", fresh)
    assert row["state"] == "online" and row["admin_state"] == "active", row
    assert row["agents"] == {"total": 3, "logged_in": logged_in}, row
    assert row["trunks"]["total"] == 4
    assert row["calls_active"] == 0
    assert row["version"] == edge_version() and row["version"] != "unknown", row
    assert isinstance(row["outbox_depth"], int) and row["outbox_depth"] >= 0
    assert row["uptime_s"] > 0
    detail = hq.call("GET", f"/fleet/edges/{hq.edge_id}")
    assert detail["health"]["agents"] == {"total": 3, "logged_in": 2}, detail
    edge.runtime.handle_now(AgentLogin("a8009"))


# --- 4. config sections ---------------------------------------------------------------------------

def test_a_pushed_config_section_is_stored_and_used_by_the_next_edge_run(linked) -> None:
    hq, edge = linked
    assert config_for_run(edge.toml).routing.vip == ()
    agents = [{"id": "a8001", "name": "张伟", "extension": "8001", "groups": ["general"]},
              {"id": "a8002", "name": "王芳", "extension": "8002", "groups": ["general"]},
              {"id": "a8009", "name": "赵主管", "extension": "8009",
               "roles": ["agent", "supervisor"], "groups": []},
              {"id": "a8003", "name": "李娜（新）", "extension": "8003", "groups": ["general"]}]
    sent = hq.call("POST", f"/downlink/edges/{hq.edge_id}/config/agents", 201,
                   json={"agents": agents})["message"]
    assert hq.settled(sent["id"])["state"] == "applied"
    # vip names a8003, whom only HQ's agents section brings: checked against the local TOML
    # with every stored section in place
    vip = hq.call("POST", f"/downlink/edges/{hq.edge_id}/config/vip", 201,
                  json={"vip": [{"number": "13900139000", "owner": "a8003"}]})["message"]
    assert hq.settled(vip["id"])["state"] == "applied"

    stored = edge.runtime.store.hq_config_sections()
    assert stored["agents"]["body"] == {"agents": agents}          # Chinese round-trips
    assert stored["agents"]["version"] == sent["version"]
    assert stored["vip"]["version"] == vip["version"]
    config = config_for_run(edge.toml)
    assert [(a.id, a.name) for a in config.agents][-1] == ("a8003", "李娜（新）")
    assert [(v.number, v.owner) for v in config.routing.vip] == [("13900139000", "a8003")]

    # a section the loader refuses: HQ hears the loader's reason, the stored one stays
    bad = hq.call("POST", f"/downlink/edges/{hq.edge_id}/config/vip", 201,
                  json={"vip": [{"number": "13900139001", "owner": "a9999"}]})["message"]
    refused = hq.settled(bad["id"])
    assert refused["state"] == "rejected"
    assert refused["error"] == "vip: routing.vip[0].owner: unknown agent 'a9999'", refused
    assert bad["version"] > vip["version"]
    assert edge.runtime.store.hq_config_sections()["vip"]["version"] == vip["version"]
    assert [v.owner for v in config_for_run(edge.toml).routing.vip] == ["a8003"]

    # and the fleet view reports the versions the edge holds
    wait_for("config versions in the edge's health", lambda: hq.edge_row()["config_versions"]
             == {"vip": vip["version"], "agents": sent["version"]})


# --- 5. a call's CDR and recording ----------------------------------------------------------------

def test_a_calls_cdr_and_recording_reach_hq(linked) -> None:
    hq, edge = linked
    assert edge.runtime.config.recording.enabled      # the HIL base config records inbound calls
    call = edge.sim.add_trunk_call(id="hq-c1", caller="13800138000", did="88880000",
                                   profile="e1", hangup_after_talk_ms=6000)
    cdr = wait_for("the edge's CDR", lambda: next(
        (c for c in edge.runtime.store.cdrs(limit=100) if c["caller"] == "13800138000"), None))
    assert cdr["agent_id"] == "a8001" and cdr["disposition"] == "answered", (call, cdr)
    rows = wait_for("the CDR in hq_cdrs", lambda: hq.query(
        "SELECT agent_id, caller, disposition FROM hq_cdrs WHERE edge = ? AND call_id = ?",
        (hq.edge_id, cdr["call_id"])), timeout_s=20)
    assert rows == [("a8001", "13800138000", "answered")], hq.logs()

    local = wait_for("the MP3 uploaded", lambda: next(
        (r for r in edge.runtime.store.recordings(call_id=cdr["call_id"])
         if r.get("upload_state") == "confirmed"), None), timeout_s=30)
    found = hq.query("SELECT agent, sha256, bytes, path FROM hq_recordings WHERE edge = ?"
                     " AND call_id = ?", (hq.edge_id, cdr["call_id"]))
    assert len(found) == 1, found
    agent, sha256, size, path = found[0]
    mp3 = Path(local["mp3_path"]).read_bytes() if Path(local["mp3_path"]).exists() else None
    assert agent == "a8001" and sha256 == local["sha256"] and size == local["mp3_bytes"]
    if mp3 is not None:
        assert hashlib.sha256(mp3).hexdigest() == sha256
    stored = Path(path) if Path(path).is_absolute() else hq.stack.workdir / "recordings" / path
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256


# --- and nothing the edge sent was lost or refused ------------------------------------------------

def test_hq_understood_everything_the_edge_sent(linked) -> None:
    """Every stream the link produced (health, commands' results, acks, CDRs, events,
    recording notices) was stored at HQ without a gap or a dead letter."""
    hq, _edge = linked

    def marks() -> dict[str, tuple[int, int]]:
        return {stream: (hwm, top) for stream, hwm, top in hq.query(
            "SELECT stream, hwm, max_seq FROM streams WHERE edge = ?", (hq.edge_id,))}

    settled = wait_for("every stream contiguous at HQ", lambda: (m := marks()) and all(
        hwm == top for hwm, top in m.values()) and m)
    assert {"health", "downlink", "cdr", "recording"} <= set(settled), settled
    assert hq.query("SELECT stream, seq FROM gaps WHERE edge = ?", (hq.edge_id,)) == []
    dead = hq.query("SELECT topic, reason FROM dead_letters WHERE topic LIKE ?",
                    (f"cc/v1/{hq.edge_id}/%",))
    assert dead == [], dead


# --- the runtime's side of the link, without HQ -------------------------------------------------

class _NoDriver:
    def __init__(self, _post: Any) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def execute(self, _commands: Any) -> None: ...


def test_on_core_answers_and_fails_at_once_when_the_core_has_stopped(tmp_path: Path) -> None:
    """The link's threads read the core through on_core; a stopping edge must not keep them
    waiting out the timeout (and with them the stop)."""
    toml = tmp_path / "edge.toml"
    write_edge_toml(toml, store=tmp_path / "edge.sqlite3", ami_port=1, agi_port=1,
                    credentials=tmp_path / "none.json")
    text = toml.read_text(encoding="utf-8").replace("enabled = true", "enabled = false")
    toml.write_text(text, encoding="utf-8")
    runtime = EdgeRuntime(config_for_run(toml), driver_factory=_NoDriver, config_path=str(toml))
    runtime.start()
    try:
        assert runtime.on_core(lambda: len(runtime.core.agents_view())) == 3
        with pytest.raises(ZeroDivisionError):
            runtime.on_core(lambda: 1 / 0)
        with pytest.raises(TimeoutError, match="fn's own"):
            runtime.on_core(lambda: (_ for _ in ()).throw(TimeoutError("fn's own")), 30)
        runtime.handle_now(AgentLogout("a8002"))
        assert runtime.on_core(lambda: {a.id: a.state for a in runtime.core.agents_view()}
                               )["a8002"] == "logged_out"
    finally:
        runtime.stop()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="stopped"):
        runtime.on_core(lambda: None, 30)
    assert time.monotonic() - started < 1
