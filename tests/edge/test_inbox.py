"""``edge.sync.inbox``: HQ's down messages applied once per version, in one transaction with
their ack, on a real SQLite store; bad input acknowledged as rejected (when it can be) and never
raised. The wire path (Mosquitto, HQ ingest) is in tests/sync/test_downlink_end_to_end.py."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.store import Store
from edge.sync import inbox as inbox_module
from edge.sync.hq_config import merged_config
from edge.sync.inbox import DownlinkRejected, Inbox, LocalConfig

EDGE = "edge-a"
LOCAL: dict[str, Any] = {
    "edge": {"id": EDGE},
    "groups": [{"name": "general"}, {"name": "cards"}],
    "agents": [{"id": "a8001", "name": "张伟", "extension": "8001", "groups": ["general"]}],
    "routing": {"default_group": "general"},
}
NEW_AGENTS = {"agents": [
    {"id": "a8001", "name": "张伟", "extension": "8001", "groups": ["general"]},
    {"id": "a8002", "name": "王芳", "extension": "8002", "groups": ["cards"]}]}
_ids = iter(range(1, 10**6))


def message(kind: str, scope: str, version: int, body: dict[str, Any], *, edge: str = EDGE,
            type_: str = "", id_: str | None = None) -> dict[str, Any]:
    return {"id": id_ or f"01JDOWN{next(_ids):019d}", "edge": edge, "kind": kind, "scope": scope,
            "version": version, "ts": 1795392000.0, "type": type_ or f"{kind}.test", "body": body}


class Edge:
    """A store, the connection the sync thread would use, and its inbox."""

    def __init__(self, tmp_path: Path, local: LocalConfig | None = LocalConfig(LOCAL)) -> None:
        self.store = Store(tmp_path / "edge.sqlite3", outbox=True)
        self.conn = sqlite3.connect(tmp_path / "edge.sqlite3", timeout=5)
        self.inbox = Inbox(EDGE, local)

    def send(self, data: Any, kind: str | None = None) -> Any:
        kind = kind or (data.get("kind") if isinstance(data, dict) else "config")
        payload = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
        return self.inbox.receive(self.conn, f"cc/v1/{EDGE}/down/{kind}", payload)

    def acks(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT type, body FROM outbox WHERE stream = 'downlink'"
                                 " ORDER BY seq").fetchall()
        assert {t for t, _ in rows} <= {"downlink.ack"}
        return [json.loads(b) for _, b in rows]

    def results(self) -> list[tuple[str, str]]:
        return [(a["result"], a["error"]) for a in self.acks()]


@pytest.fixture
def edge(tmp_path):
    e = Edge(tmp_path)
    yield e
    e.conn.close()
    e.store.close()


# --- config ----------------------------------------------------------------------------------------

def test_a_config_section_is_applied_once_and_redeliveries_and_older_versions_are_duplicates(edge):
    v2 = message("config", "agents", 2, NEW_AGENTS)
    v1 = message("config", "agents", 1, {"agents": LOCAL["agents"]})
    assert edge.send(v2).result == "applied"
    assert edge.send(v2).result == "duplicate"                  # the broker delivered it twice
    assert edge.send(v1).result == "duplicate"                  # an older version, late
    assert edge.results() == [("applied", ""), ("duplicate", ""),
                              ("duplicate", "version 1 <= applied 2")]
    assert edge.store.hq_config_versions() == {"agents": 2}
    assert edge.store.hq_config_sections()["agents"]["body"] == NEW_AGENTS
    applied = edge.store.applied_downlink("config", "agents")
    assert (applied["version"], applied["id"], applied["result"]) == (2, v2["id"], "applied")
    ack = edge.acks()[0]
    assert ack == {"id": v2["id"], "kind": "config", "scope": "agents", "version": 2,
                   "result": "applied", "error": ""}
    config = merged_config(LOCAL, edge.store)
    assert [a.name for a in config.agents] == ["张伟", "王芳"]


def test_an_invalid_section_is_rejected_with_the_loaders_reason_and_the_old_one_kept(edge):
    edge.send(message("config", "agents", 1, NEW_AGENTS))
    bad = {"agents": [{"id": "a8003", "name": "李娜", "extension": "8003", "groups": ["vip"]}]}
    ack = edge.send(message("config", "agents", 2, bad))
    assert ack.result == "rejected"
    assert ack.error == "agents: agents[0].groups[0]: unknown group 'vip'"
    assert edge.store.hq_config_sections()["agents"]["body"] == NEW_AGENTS
    assert edge.store.hq_config_versions() == {"agents": 1}
    assert edge.store.applied_downlink("config", "agents")["result"] == "rejected"
    # removing a group the local agents still use is caught the same way (whole config checked)
    groups = edge.send(message("config", "groups", 1, {"groups": [{"name": "cards"}]}))
    assert groups.result == "rejected" and "unknown group 'general'" in groups.error
    assert [a.id for a in merged_config(LOCAL, edge.store).agents] == ["a8001", "a8002"]


def test_every_section_lands_where_the_toml_has_it(edge, tmp_path):
    sounds = tmp_path / "sounds"
    (sounds / "cc").mkdir(parents=True)
    (sounds / "cc" / "welcome.wav").write_bytes(b"")
    local = {**LOCAL, "ivr": {"prompt_dirs": [str(sounds)]}}
    edge.inbox = Inbox(EDGE, LocalConfig(local))
    flow = {"id": "hq-main", "version": 1, "start": "greet", "steps": {
        "greet": {"type": "play", "prompt": "cc/welcome", "next": "cards"},
        "cards": {"type": "queue", "queue": "cards"}}}
    sections = {
        "groups": {"groups": [{"name": "general"}, {"name": "cards", "max_wait_s": 60}]},
        "queues": {"default_group": "cards", "did_groups": {"95555": "general"}},
        "calendars": {"calendars": [{"name": "branch", "mon": ["09:00-18:00"]}]},
        "vip": {"vip": [{"number": "13900001111", "owner": "a8001"}]},
        "blacklist": {"blacklist": [{"number": "13066666666", "action": "reject"}]},
        "ivr_flows": {"flows": [flow], "did_flows": {"95555": "hq-main"}},
    }
    for version, (section, body) in enumerate(sections.items(), start=1):
        ack = edge.send(message("config", section, version, body))
        assert (ack.result, ack.error) == ("applied", ""), section
    config = merged_config(local, edge.store)
    assert config.group("cards").max_wait_s == 60
    assert config.routing.default_group == "cards"
    assert dict(config.routing.did_groups) == {"95555": "general"}
    assert list(config.calendars) == ["branch"]
    assert [v.number for v in config.routing.vip] == ["13900001111"]
    assert [(b.number, b.action) for b in config.routing.blacklist] == [("13066666666", "reject")]
    assert list(config.flows) == ["hq-main"] and config.routing.did_flows["95555"] == "hq-main"
    missing_prompt = json.loads(json.dumps(flow))
    missing_prompt["steps"]["greet"]["prompt"] = "cc/nowhere"
    ack = edge.send(message("config", "ivr_flows", 99, {"flows": [missing_prompt]}))
    assert ack.result == "rejected" and "cc/nowhere" in ack.error
    wrong_queue = json.loads(json.dumps(flow))
    wrong_queue["steps"]["cards"]["queue"] = "loans"
    ack = edge.send(message("config", "ivr_flows", 100, {"flows": [wrong_queue]}))
    assert ack.result == "rejected" and "unknown group 'loans'" in ack.error
    assert list(merged_config(local, edge.store).flows) == ["hq-main"]


def test_sections_and_keys_the_edge_does_not_know_are_rejected(edge):
    assert "unknown config section" in edge.send(message("config", "printers", 1, {})).error
    ack = edge.send(message("config", "vip", 1, {"vip": [], "extra": 1}))
    assert ack.result == "rejected" and "extra" in ack.error
    assert edge.store.hq_config_versions() == {}


def test_without_its_local_config_the_edge_rejects_config_but_applies_the_rest(tmp_path):
    edge = Edge(tmp_path, local=None)
    assert "without its local config" in edge.send(message("config", "agents", 1, NEW_AGENTS)).error
    assert edge.send(message("command", "c1", 1, {"name": "config.reload", "args": {}})).result \
        == "applied"


def test_the_local_config_file_is_read_for_each_config_message(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[edge]\nid = "edge-a"\n[[groups]]\nname = "general"\n', encoding="utf-8")
    edge = Edge(tmp_path, local=None)
    edge.inbox = Inbox(EDGE, local_path=str(path))
    agents = {"agents": [{"id": "a1", "name": "张伟", "extension": "8001", "groups": ["cards"]}]}
    assert edge.send(message("config", "agents", 1, agents)).result == "rejected"
    path.write_text('[edge]\nid = "edge-a"\n[[groups]]\nname = "cards"\n', encoding="utf-8")
    assert edge.send(message("config", "agents", 2, agents)).result == "applied"
    path.write_text("[edge\n", encoding="utf-8")
    ack = edge.send(message("config", "agents", 3, agents))
    assert ack.result == "rejected" and "not valid TOML" in ack.error


def test_merged_config_falls_back_to_the_local_config_when_they_no_longer_fit(edge, caplog):
    edge.send(message("config", "agents", 1, NEW_AGENTS))
    changed_local = {**LOCAL, "groups": [{"name": "general"}]}     # "cards" removed on site
    config = merged_config(changed_local, edge.store)
    assert [a.id for a in config.agents] == ["a8001"]
    assert "do not fit the local config" in caplog.text
    assert merged_config(LOCAL, edge.store) != parse_config(LOCAL)


# --- commands and announcements ----------------------------------------------------------------

def test_commands_are_checked_and_queued_for_the_core(edge):
    ok = message("command", "01JCMD1", 1, {"name": "agent.logout", "args": {"agent_id": "a8001"}})
    assert edge.send(ok).result == "applied"
    assert edge.send(ok).result == "duplicate"
    for scope, body, error in (
            ("01JCMD2", {"name": "rm -rf", "args": {}}, "unknown command"),
            ("01JCMD3", {"name": "agent.state", "args": {"agent_id": "a1", "state": "gone"}},
             "args.state"),
            ("01JCMD4", {"name": "sync.resend", "args": {"stream": "cdr", "x": 1}}, "x"),
            ("01JCMD5", {"name": "agent.login", "args": []}, "args")):
        ack = edge.send(message("command", scope, 1, body))
        assert ack.result == "rejected" and error in ack.error
    pending = edge.store.pending_hq_commands()
    assert [(c["id"], c["name"], c["args"]) for c in pending] == \
        [(ok["id"], "agent.logout", {"agent_id": "a8001"})]
    assert edge.store.finish_hq_command(ok["id"], True, "已登出")
    assert not edge.store.finish_hq_command(ok["id"], False, "again")   # reported once
    assert edge.store.pending_hq_commands() == []
    result = edge.conn.execute("SELECT type, body FROM outbox WHERE type = 'command.result'"
                               ).fetchall()
    assert [(t, json.loads(b)) for t, b in result] == \
        [("command.result", {"id": ok["id"], "state": "done", "result": "已登出"})]


def announcement(aid: str, version: int, **changes: Any) -> dict[str, Any]:
    body = {"id": aid, "title": "国庆值班", "body": "10月1日按值班表上岗。",
            "audience": {"type": "everyone"}, "priority": "normal",
            "published_at": 1795392000.0, "expires_at": None, "withdrawn": False, **changes}
    return message("announcement", aid, version, body, type_="announcement.publish")


def test_announcements_are_stored_and_a_later_version_replaces_or_withdraws(edge):
    assert edge.send(announcement("A1", 1)).result == "applied"
    assert edge.send(announcement("A1", 3, title="国庆值班（更新）")).result == "applied"
    assert edge.send(announcement("A1", 2, title="old")).result == "duplicate"
    stored = edge.store.announcement("A1")
    assert (stored["title"], stored["version"], stored["withdrawn"]) == ("国庆值班（更新）", 3, False)
    assert edge.send(announcement("A1", 4, withdrawn=True)).result == "applied"
    assert edge.store.announcement("A1")["withdrawn"] is True
    for aid, changes, error in (("A2", {"id": "other"}, "id"), ("A3", {"title": ""}, "title"),
                                ("A4", {"priority": "asap"}, "priority"),
                                ("A5", {"audience": {"type": "group"}}, "audience.group"),
                                ("A6", {"expires_at": "tomorrow"}, "expires_at")):
        ack = edge.send(announcement(aid, 1, **changes))
        assert ack.result == "rejected" and error in ack.error, aid
        assert edge.store.announcement(aid) is None


# --- bad input -------------------------------------------------------------------------------------

def test_malformed_messages_are_acked_rejected_when_readable_and_never_raise(edge, caplog):
    assert edge.send(b"{not json", kind="config") is None
    assert edge.send(b"\xff\xfe", kind="config") is None
    assert edge.send([1, 2], kind="config") is None
    assert edge.send({"id": "x"}, kind="config") is None            # nothing to tell HQ which
    other = message("config", "agents", 1, NEW_AGENTS, edge="edge-b")
    assert "is for 'edge-b'" in edge.send(other, kind="config").error
    unknown = message("firmware", "fw", 1, {"url": "x"})
    assert "unknown kind 'firmware'" in edge.send(unknown).error
    wrong_topic = message("command", "c9", 1, {"name": "config.reload", "args": {}})
    assert "does not match the topic" in edge.send(wrong_topic, kind="config").error
    bad_version = message("config", "agents", 1, NEW_AGENTS)
    bad_version["version"] = "one"
    assert edge.send(bad_version) is None                           # no version to acknowledge
    bad_body = message("config", "agents", 1, NEW_AGENTS)
    bad_body["body"] = "agents"
    assert "body" in edge.send(bad_body).error
    assert [r for r, _ in edge.results()] == ["rejected"] * 4
    assert edge.store.hq_config_versions() == {}
    assert edge.conn.execute("SELECT count(*) FROM downlink_applied").fetchone()[0] == 0
    assert "not JSON" in caplog.text and "not UTF-8" in caplog.text
    assert edge.send(message("config", "agents", 1, NEW_AGENTS)).result == "applied"   # still fine


def test_a_handler_bug_rejects_that_message_only(edge, monkeypatch):
    def broken(conn: sqlite3.Connection, msg: Any) -> None:
        conn.execute("INSERT INTO hq_commands (id, name, args, state, received_at)"
                     " VALUES ('x', 'x', '{}', 'pending', 0)")
        raise KeyError("oops")

    monkeypatch.setitem(inbox_module.HANDLERS, "command", broken)
    ack = edge.send(message("command", "c1", 1, {"name": "config.reload", "args": {}}))
    assert ack.result == "rejected" and "internal error: KeyError" in ack.error
    assert edge.store.hq_commands() == []                           # its write rolled back


def test_a_busy_database_applies_nothing_and_sends_no_ack_so_hq_resends(edge, tmp_path):
    edge.conn.close()
    edge.conn = sqlite3.connect(tmp_path / "edge.sqlite3", timeout=0.05)
    blocker = sqlite3.connect(tmp_path / "edge.sqlite3")
    blocker.execute("BEGIN IMMEDIATE")
    sent = message("config", "agents", 1, NEW_AGENTS)
    assert edge.send(sent) is None
    blocker.rollback()
    blocker.close()
    assert edge.acks() == [] and edge.store.hq_config_versions() == {}
    assert edge.send(sent).result == "applied"                       # HQ's re-send goes through


def test_a_rejection_raised_by_a_handler_is_an_edge_error():
    assert issubclass(DownlinkRejected, Exception)
    with pytest.raises(DownlinkRejected, match="why"):
        raise DownlinkRejected("why")
