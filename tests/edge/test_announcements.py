"""Announcements on the edge (SVC-1): what an agent sees, read receipts queued for HQ once, and the
local API over real HTTP (an edge runtime with a stand-in telephony driver and its broker
unreachable: offline first, receipts wait in the outbox)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests

from edge.config import parse_config
from edge.runtime import EdgeRuntime
from edge.store import Store
from edge.sync.inbox import Inbox
from hil.broker import free_port

NOW = 1_795_392_000.0
EDGE = "edge-a"


def publish(store_path: Path, aid: str, version: int = 1, **changes: Any) -> str:
    """Deliver an announcement the way HQ does: through the inbox."""
    body = {"id": aid, "title": f"公告 {aid}", "body": "请各位坐席注意。",
            "audience": {"type": "everyone"}, "priority": "normal", "published_at": NOW,
            "expires_at": None, "withdrawn": False, **changes}
    payload = {"id": f"01JMSG{aid}{version:04d}", "edge": EDGE, "kind": "announcement",
               "scope": aid, "version": version, "ts": NOW, "type": "announcement.publish",
               "body": body}
    with sqlite3.connect(store_path) as conn:
        ack = Inbox(EDGE).receive(conn, f"cc/v1/{EDGE}/down/announcement",
                                  json.dumps(payload, ensure_ascii=False).encode())
    assert ack is not None
    return ack.result


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    with Store(tmp_path / "edge.sqlite3", outbox=True, clock=clock) as s:
        s.test_clock = clock  # type: ignore[attr-defined]
        yield s


def test_an_agent_sees_current_announcements_for_everyone_and_their_groups(store):
    path = Path(store.path)
    publish(path, "A1")
    publish(path, "A2", audience={"type": "group", "group": "cards"}, priority="urgent")
    publish(path, "A3", audience={"type": "department", "department_id": 7})
    publish(path, "A4", expires_at=NOW + 60)
    publish(path, "A5", expires_at=NOW - 1)                       # expired already
    publish(path, "A6")
    publish(path, "A6", version=2, withdrawn=True)                # withdrawn
    general = [a["id"] for a in store.announcements_for("a8001", ["general"])]
    assert sorted(general) == ["A1", "A3", "A4"]
    cards = store.announcements_for("a8002", ["cards"])
    assert cards[0]["id"] == "A2"                                 # urgent first
    assert sorted(a["id"] for a in cards) == ["A1", "A2", "A3", "A4"]
    assert cards[0]["title"] == "公告 A2" and cards[0]["read"] is False
    store.test_clock.t = NOW + 61
    assert "A4" not in [a["id"] for a in store.announcements_for("a8001", ["general"])]


def test_a_read_receipt_is_written_with_its_outbox_row_once_per_agent(store):
    publish(Path(store.path), "A1")
    first = store.mark_announcement_read("A1", "a8001")
    store.test_clock.t = NOW + 30
    assert store.mark_announcement_read("A1", "a8001") == first == NOW   # the first read counts
    store.mark_announcement_read("A1", "a8002")
    rows = store.db.execute("SELECT type, body FROM outbox WHERE stream = 'announcement'"
                            " ORDER BY seq").fetchall()
    assert [(t, json.loads(b)) for t, b in rows] == [
        ("announcement.read", {"announcement_id": "A1", "agent_id": "a8001", "read_at": NOW}),
        ("announcement.read", {"announcement_id": "A1", "agent_id": "a8002", "read_at": NOW + 30})]
    seen = store.announcements_for("a8001", [])
    assert (seen[0]["read"], seen[0]["read_at"]) == (True, NOW)
    assert store.announcements_for("a8003", [])[0]["read"] is False


class IdleDriver:
    """No telephony in these tests: the runtime needs a driver, this one has nothing to say."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def execute(self, commands: list[Any]) -> None: ...


@pytest.fixture
def runtime(tmp_path):
    config = parse_config({
        "edge": {"id": EDGE, "store": str(tmp_path / "edge.sqlite3")},
        "groups": [{"name": "general"}, {"name": "cards"}],
        "agents": [{"id": "a8001", "name": "张伟", "extension": "8001", "groups": ["general"]},
                   {"id": "a8002", "name": "王芳", "extension": "8002", "groups": ["cards"]}],
        "routing": {"default_group": "general"},
        "recording": {"enabled": False},
        "api": {"port": 0},
        "sync": {"enabled": True, "port": free_port(), "password": "x"},   # no broker there
    })
    rt = EdgeRuntime(config, driver_factory=lambda post: IdleDriver())
    rt.start()
    yield rt
    rt.stop()


def test_the_local_api_serves_announcements_and_takes_read_receipts(runtime):
    store_path = Path(runtime.config.edge.store)
    publish(store_path, "A1")
    publish(store_path, "A2", audience={"type": "group", "group": "cards"})
    host, port = runtime.api.address
    api = f"http://{host}:{port}/api"
    shown = requests.get(f"{api}/announcements", params={"agent": "a8002"}, timeout=5)
    assert shown.status_code == 200
    assert sorted((a["id"], a["read"]) for a in shown.json()) == [("A1", False), ("A2", False)]
    assert "公告 A1".encode() in shown.content
    assert [a["id"] for a in requests.get(f"{api}/announcements", params={"agent": "a8001"},
                                          timeout=5).json()] == ["A1"]
    read = requests.post(f"{api}/announcements/A2/read", json={"agent": "a8002"}, timeout=5)
    assert read.status_code == 200 and read.json()["agent"] == "a8002"
    again = requests.post(f"{api}/announcements/A2/read", json={"agent": "a8002"}, timeout=5)
    assert again.json()["read_at"] == read.json()["read_at"]
    assert {a["id"]: a["read"] for a in requests.get(
        f"{api}/announcements", params={"agent": "a8002"}, timeout=5).json()} == \
        {"A1": False, "A2": True}
    assert runtime.store.outbox_depth("announcement") == 1        # waits for the broker
    for method, url, body, status in (
            ("get", f"{api}/announcements", None, 400),
            ("get", f"{api}/announcements?agent=nobody", None, 404),
            ("post", f"{api}/announcements/A9/read", {"agent": "a8001"}, 404),
            ("post", f"{api}/announcements/A1/read", {}, 400),
            ("post", f"{api}/announcements/A1/read", {"agent": "ghost"}, 404)):
        response = requests.request(method, url, json=body, timeout=5)
        assert response.status_code == status, (url, body, response.text)
        assert "error" in response.json()
    publish(store_path, "A1", version=2, withdrawn=True)
    assert requests.post(f"{api}/announcements/A1/read", json={"agent": "a8001"},
                         timeout=5).status_code == 404
    assert runtime.store.outbox_depth("announcement") == 1

