"""``/api/v1/downlink``: config sections, commands, announcements, listings, roles and data scope.
Through Flask's test client on both databases, and once over real HTTP (gunicorn)."""
from __future__ import annotations

import time

import pytest
import requests

from aggregator.db import HqDb
from aggregator.downlink import queue
from aggregator.fleet import edges as fleet_edges
from tests.aggregator.helpers import csrf, db_of, login, make_app, make_department, make_user

PASSWORD = "correct horse battery"
AGENTS = {"agents": [{"id": "a8001", "name": "张伟", "extension": "8001", "groups": ["general"]}]}


def add_edge(db: HqDb, name: str, department: int | None, state: str = "active") -> str:
    with db.transaction() as tx:
        edge_id = fleet_edges.insert_new(tx, name, department, time.time())
        fleet_edges.set_state(tx, edge_id, state, time.time())
    return edge_id


@pytest.fixture
def hq(hq_db_url, tmp_path):
    """An app with departments 华南 > 深圳 and 华北, an edge in each, and users: an admin, a
    技术员 (technician), a 深圳 supervisor and a 华北 agent."""
    app, _clock = make_app(hq_db_url, tmp_path)
    db = db_of(app)
    south = make_department(db, "华南")
    shenzhen = make_department(db, "深圳", south)
    north = make_department(db, "华北")
    edges = {"south": add_edge(db, "south", south), "shenzhen": add_edge(db, "shenzhen", shenzhen),
             "north": add_edge(db, "north", north)}
    make_user(db, "ops", PASSWORD, ["admin"])
    make_user(db, "tech", PASSWORD, ["technician"], department=south)
    make_user(db, "sup", PASSWORD, ["supervisor"], department=shenzhen)
    make_user(db, "agent", PASSWORD, ["agent"], department=north)
    return {"app": app, "db": db, "edges": edges,
            "departments": {"south": south, "shenzhen": shenzhen, "north": north}}


def signed_in(hq, username: str):
    client = hq["app"].test_client()
    return client, csrf(login(client, username, PASSWORD))


def test_a_technician_pushes_a_config_section_and_it_is_queued_versioned_and_audited(hq):
    client, headers = signed_in(hq, "tech")
    edge = hq["edges"]["south"]
    url = f"/api/v1/downlink/edges/{edge}/config/agents"
    first = client.post(url, json=AGENTS, headers=headers)
    second = client.post(url, json=AGENTS, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    message = second.get_json()["message"]
    assert (message["kind"], message["scope"], message["version"], message["type"]) == \
        ("config", "agents", 2, "config.section")
    assert message["body"]["agents"][0]["name"] == "张伟"
    listed = client.get(f"/api/v1/downlink/messages?edge={edge}&state=pending").get_json()
    assert [m["version"] for m in listed["messages"]] == [2, 1]
    assert listed["messages"][0]["created_by"] == "tech"
    audit = hq["db"].query("SELECT action, target FROM audit_log WHERE action LIKE ?",
                           ("downlink.%",))
    assert audit == [("downlink.config", f"{edge}/agents")] * 2


@pytest.mark.parametrize("section, body, error", [
    ("agents", {"agents": [{"id": "a1", "name": "张伟"}]}, "agents[0].extension"),
    ("agents", {"agents": "all"}, "list of objects"),
    ("groups", {"groups": [{"name": "g"}, {"name": "g"}]}, "duplicate"),
    ("queues", {"default_group": "general", "colour": "red"}, "unknown key"),
    ("blacklist", {"blacklist": [{"number": "130", "action": "ban"}]}, "reject or flag"),
    ("ivr_flows", {"flows": [{"id": "main", "version": 0, "start": "s", "steps": {"s": {}}}]},
     "version"),
    ("printers", {"printers": []}, "unknown config section"),
])
def test_a_section_of_the_wrong_shape_is_refused_with_the_key(hq, section, body, error):
    client, headers = signed_in(hq, "ops")
    response = client.post(f"/api/v1/downlink/edges/{hq['edges']['south']}/config/{section}",
                           json=body, headers=headers)
    assert response.status_code == 400
    assert error in response.get_json()["error"]
    assert queue.listing(hq["db"]) == []


def test_commands_are_whitelisted_with_their_arguments(hq):
    client, headers = signed_in(hq, "sup")
    url = f"/api/v1/downlink/edges/{hq['edges']['shenzhen']}/commands"
    ok = client.post(url, json={"name": "agent.logout", "args": {"agent_id": "a8001"}},
                     headers=headers)
    assert ok.status_code == 201
    message = ok.get_json()["message"]
    assert (message["kind"], message["version"], message["body"]) == \
        ("command", 1, {"name": "agent.logout", "args": {"agent_id": "a8001"}})
    for bad, error in (({"name": "shell", "args": {}}, "name"),
                       ({"name": "agent.state", "args": {"agent_id": "a1", "state": "asleep"}},
                        "args.state"),
                       ({"name": "sync.resend", "args": {"stream": "cdr", "all": True}},
                        "unknown key")):
        response = client.post(url, json=bad, headers=headers)
        assert response.status_code == 400 and error in response.get_json()["error"]
    assert len(queue.listing(hq["db"])) == 1


def test_roles_and_data_scope_decide_who_sends_where(hq):
    e = hq["edges"]
    agent, agent_headers = signed_in(hq, "agent")
    assert agent.post(f"/api/v1/downlink/edges/{e['north']}/commands",
                      json={"name": "config.reload", "args": {}},
                      headers=agent_headers).status_code == 403
    sup, headers = signed_in(hq, "sup")
    assert sup.post(f"/api/v1/downlink/edges/{e['north']}/commands",
                    json={"name": "config.reload"}, headers=headers).status_code == 403
    assert sup.post(f"/api/v1/downlink/edges/{e['shenzhen']}/config/agents", json=AGENTS,
                    headers=headers).status_code == 403          # config: technician or admin
    assert sup.post("/api/v1/downlink/edges/edge-nowhere/commands",
                    json={"name": "config.reload"}, headers=headers).status_code == 404
    assert sup.post(f"/api/v1/downlink/edges/{e['shenzhen']}/commands",
                    json={"name": "config.reload"}).status_code == 403   # no CSRF header
    assert hq["app"].test_client().get("/api/v1/downlink/messages").status_code == 401
    # the supervisor of 深圳 announcing to everyone reaches 深圳's edge only
    response = sup.post("/api/v1/downlink/announcements", headers=headers,
                        json={"title": "通知", "body": "正文", "audience": {"type": "everyone"}})
    assert response.status_code == 201 and response.get_json()["edges"] == [e["shenzhen"]]
    refused = sup.post("/api/v1/downlink/announcements", headers=headers,
                       json={"title": "通知", "body": "正文",
                             "audience": {"type": "department",
                                          "department_id": hq["departments"]["north"]}})
    assert refused.status_code == 403
    ops, ops_headers = signed_in(hq, "ops")
    ops.post(f"/api/v1/downlink/edges/{e['north']}/commands", json={"name": "config.reload"},
             headers=ops_headers)
    seen = sup.get("/api/v1/downlink/messages").get_json()["messages"]
    assert {m["edge"] for m in seen} == {e["shenzhen"]}
    assert len(ops.get("/api/v1/downlink/messages").get_json()["messages"]) == 2


def test_an_announcement_is_published_listed_read_and_withdrawn(hq):
    d, e, db = hq["departments"], hq["edges"], hq["db"]
    client, headers = signed_in(hq, "ops")
    expires = time.time() + 86400
    response = client.post("/api/v1/downlink/announcements", headers=headers, json={
        "title": "国庆值班安排", "body": "10月1日至7日按值班表上岗。", "priority": "high",
        "expires_at": expires, "audience": {"type": "department", "department_id": d["south"]}})
    assert response.status_code == 201, response.get_json()
    announcement = response.get_json()["announcement"]
    assert sorted(response.get_json()["edges"]) == sorted([e["south"], e["shenzhen"]])
    assert (announcement["title"], announcement["priority"], announcement["expires_at"]) == \
        ("国庆值班安排", "high", expires)
    assert "国庆值班安排".encode() in response.data          # UTF-8, not \\u escapes
    from aggregator.envelope import Envelope
    from ulid import ULID
    db.store_batch([Envelope(str(ULID()), e["shenzhen"], "announcement", 1, time.time(),
                             "announcement.read", {"announcement_id": announcement["id"],
                                                   "agent_id": "a8001", "read_at": 1.5})])
    listed = client.get("/api/v1/downlink/announcements").get_json()["announcements"]
    assert [(a["id"], a["reads"], a["edges"]) for a in listed] == [(announcement["id"], 1, 2)]
    reads = client.get(f"/api/v1/downlink/announcements/{announcement['id']}/reads").get_json()
    assert reads == {"reads": [{"edge": e["shenzhen"], "agent_id": "a8001", "read_at": 1.5,
                                "received_at": reads["reads"][0]["received_at"]}]}
    detail = client.get(f"/api/v1/downlink/announcements/{announcement['id']}").get_json()
    assert {edge: s["state"] for edge, s in detail["delivery"].items()} == \
        {e["south"]: "pending", e["shenzhen"]: "pending"}
    withdrawn = client.post(f"/api/v1/downlink/announcements/{announcement['id']}/withdraw",
                            headers=headers)
    assert withdrawn.status_code == 200 and withdrawn.get_json()["announcement"]["withdrawn_at"]
    assert {s["version"] for s in client.get(
        f"/api/v1/downlink/announcements/{announcement['id']}").get_json()["delivery"].values()} \
        == {2}
    for bad, error in (({"title": "", "body": "x", "audience": {"type": "everyone"}}, "title"),
                       ({"title": "t", "body": "x", "audience": {"type": "all"}}, "audience"),
                       ({"title": "t", "body": "x", "audience": {"type": "everyone"},
                         "expires_at": 1.0}, "expires_at")):
        refused = client.post("/api/v1/downlink/announcements", json=bad, headers=headers)
        assert refused.status_code == 400 and error in refused.get_json()["error"]
    assert client.get("/api/v1/downlink/announcements/nope/reads").status_code == 404
    actions = [r[0] for r in db.query("SELECT action FROM audit_log WHERE action LIKE ?"
                                      " ORDER BY id", ("announcement.%",))]
    assert actions == ["announcement.publish", "announcement.withdraw"]


def test_announcing_and_pushing_over_real_http(hq_server):
    db = HqDb.open(hq_server.db_url)
    department = make_department(db, "华南")
    edge = add_edge(db, "gz", department)
    make_user(db, "ops", PASSWORD, ["admin"])
    http = requests.Session()
    api = hq_server.url + "/api/v1"
    token = http.post(api + "/auth/login", json={"username": "ops", "password": PASSWORD},
                      timeout=10).json()["csrf"]
    headers = {"X-CSRF-Token": token}
    pushed = http.post(f"{api}/downlink/edges/{edge}/config/agents", json=AGENTS,
                       headers=headers, timeout=10)
    assert pushed.status_code == 201
    announced = http.post(f"{api}/downlink/announcements", headers=headers, timeout=10, json={
        "title": "系统维护", "body": "今晚维护", "audience": {"type": "everyone"}})
    assert announced.status_code == 201 and announced.json()["edges"] == [edge]
    messages = http.get(f"{api}/downlink/messages", timeout=10).json()["messages"]
    assert sorted(m["kind"] for m in messages) == ["announcement", "config"]
    assert all(m["state"] == "pending" for m in messages)
    db.close()
