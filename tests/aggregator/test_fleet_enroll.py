"""Enrollment (ADM-4) through the HQ app and a real Mosquitto with the dynamic-security plugin:
a one-time token makes one edge whose broker login works at once and is confined to its own
topics; used, expired, revoked and unknown tokens are refused with a clear reason; a broker that
refuses leaves the token usable; everything is audited and scoped by department."""
from __future__ import annotations

import queue
from pathlib import Path

import pytest

from hil.broker import HQ_USER, MosquittoBroker
from tests.aggregator.helpers import csrf, db_of, login, make_app, make_department, make_user
from tests.sync.test_broker_acl import client, settle
from tests.sync.test_dynsec_broker import connack, granted, publish_attempts, stop

PASSWORD = "correct horse battery"
TOKENS = "/api/v1/fleet/enrollment-tokens"
ENROLL = "/api/v1/fleet/enroll"


@pytest.fixture
def broker(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", {}, dynsec=True) as running:
        yield running


def hq_app(hq_db_url: str, tmp_path: Path, broker: MosquittoBroker,
           admin_password: str | None = None):
    app, clock = make_app(hq_db_url, tmp_path, broker_host="127.0.0.1", broker_port=broker.port,
                          broker_admin_user=broker.admin_user,
                          broker_admin_password=admin_password or broker.admin_password,
                          public_url="https://hq.example.cn")
    app.clock = clock
    return app


@pytest.fixture
def app(hq_db_url, tmp_path, broker):
    app = hq_app(hq_db_url, tmp_path, broker)
    db = db_of(app)
    north = make_department(db, "华北")
    south = make_department(db, "华南")
    app.departments = {"north": north, "south": south}
    make_user(db, "root", PASSWORD, ["admin"])
    make_user(db, "tech-n", PASSWORD, ["technician"], department=north)
    make_user(db, "sup-s", PASSWORD, ["supervisor"], department=south)
    make_user(db, "agent-n", PASSWORD, ["agent"], department=north)
    return app


def signed_in(app, username: str):
    c = app.test_client()
    return c, csrf(login(c, username, PASSWORD))


def new_token(app, username: str = "root", **body) -> dict:
    c, headers = signed_in(app, username)
    response = c.post(TOKENS, json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def audit_rows(app, action: str) -> list[tuple]:
    return db_of(app).query("SELECT actor_kind, actor_id, target, detail FROM audit_log"
                            " WHERE action = ? ORDER BY id", (action,))


def test_a_token_enrolls_one_edge_whose_broker_login_works_at_once(app, broker):
    token = new_token(app, department_id=app.departments["north"], edge_name="Shanghai 02")
    assert token["token"].startswith("cet_") and token["status"] == "valid"
    assert len(audit_rows(app, "fleet.token_create")) == 1

    response = app.test_client().post(ENROLL, json={"token": token["token"], "version": "0.1.0"})
    assert response.status_code == 201, response.get_json()
    got = response.get_json()
    assert got["edge_id"] == "edge-shanghai-02" and got["name"] == "Shanghai 02"
    assert got["broker"] == {"host": "127.0.0.1", "port": broker.port,
                             "username": "edge-shanghai-02", "password": got["broker"]["password"]}
    assert got["hq_url"] == "https://hq.example.cn"
    assert got["api_token"].startswith("cce_")

    # the broker knows the edge now, without a restart, and confines it
    hq_inbox: queue.Queue = queue.Queue()
    hq = client(broker, HQ_USER, broker.hq_password, hq_inbox)
    assert granted(hq, "$share/ingest/cc/v1/+/up/#")
    login_ = got["broker"]
    edge = client(broker, login_["username"], login_["password"])
    assert granted(edge, "cc/v1/edge-shanghai-02/down/#")
    assert not granted(edge, "cc/v1/+/down/#")
    stop(edge)
    publish_attempts(broker, login_["username"], login_["password"], [
        ("cc/v1/edge-shanghai-02/up/health", b"mine"), ("cc/v1/edge-other/up/cdr", b"forged")])
    assert settle(hq_inbox) == [("cc/v1/edge-shanghai-02/up/health", b"mine")]
    stop(hq)

    # its API token works, the token is spent, the enrollment audited
    whoami = app.test_client().get("/api/v1/auth/edge/whoami",
                                   headers={"Authorization": f"Bearer {got['api_token']}"})
    assert whoami.status_code == 200
    c, _ = signed_in(app, "root")
    [listed] = c.get(TOKENS).get_json()["tokens"]
    assert listed["status"] == "used" and listed["used_by_edge"] == "edge-shanghai-02"
    assert "token" not in listed
    [(kind, actor, target, detail)] = audit_rows(app, "fleet.enroll")
    assert (kind, actor, target) == ("edge", "edge-shanghai-02", "edge-shanghai-02")
    assert '"version": "0.1.0"' in detail
    [edge_row] = c.get("/api/v1/fleet/edges").get_json()["edges"]
    assert edge_row["id"] == "edge-shanghai-02" and edge_row["state"] == "offline"
    assert edge_row["version"] == "0.1.0" and edge_row["department_id"] == app.departments["north"]


def test_a_token_is_good_for_one_edge_only(app, broker):
    token = new_token(app)["token"]
    first = app.test_client().post(ENROLL, json={"token": token, "name": "一号"})
    assert first.status_code == 201
    again = app.test_client().post(ENROLL, json={"token": token, "name": "二号"})
    assert again.status_code == 409
    assert again.get_json()["error"].startswith(
        f"enrollment token already used by edge {first.get_json()['edge_id']}")
    assert db_of(app).scalar("SELECT count(*) FROM edges") == 1
    assert len(audit_rows(app, "fleet.enroll_refused")) == 1


def test_expired_revoked_and_unknown_tokens_are_refused(app, broker):
    expiring = new_token(app, ttl_s=600)["token"]
    app.clock.advance(601)
    response = app.test_client().post(ENROLL, json={"token": expiring})
    assert response.status_code == 410
    assert "expired" in response.get_json()["error"]

    revoked = new_token(app)
    c, headers = signed_in(app, "root")
    assert c.post(f"{TOKENS}/{revoked['id']}/revoke", headers=headers).status_code == 200
    response = app.test_client().post(ENROLL, json={"token": revoked["token"]})
    assert response.status_code == 410 and "revoked" in response.get_json()["error"]

    for bad in ("cet_not-a-real-token", "hello", None, 42):
        response = app.test_client().post(ENROLL, json={"token": bad})
        assert response.status_code == 403, bad
        assert "token" in response.get_json()["error"]
    assert db_of(app).scalar("SELECT count(*) FROM edges") == 0
    assert app.test_client().post(ENROLL, data="token=x").status_code == 400


def test_a_broker_that_refuses_leaves_the_token_usable(hq_db_url, tmp_path, broker):
    wrong = hq_app(hq_db_url, tmp_path, broker, admin_password="not-the-admin-password")
    make_user(db_of(wrong), "root", PASSWORD, ["admin"])
    token = new_token(wrong, edge_name="retry")["token"]
    response = wrong.test_client().post(ENROLL, json={"token": token})
    assert response.status_code == 502
    assert "try again" in response.get_json()["error"]
    assert db_of(wrong).scalar("SELECT count(*) FROM edges") == 0
    assert len(audit_rows(wrong, "fleet.enroll_failed")) == 1

    fixed = hq_app(hq_db_url, tmp_path, broker)
    response = fixed.test_client().post(ENROLL, json={"token": token})
    assert response.status_code == 201, response.get_json()
    assert not connack(broker, "edge-retry", response.get_json()["broker"]["password"]).is_failure


def test_a_broker_client_left_over_makes_enrollment_fail_cleanly(app, broker):
    from aggregator.fleet.dynsec import DynsecClient

    DynsecClient("127.0.0.1", broker.port, broker.admin_user, broker.admin_password).add_edge(
        "edge-taken", "someone-else")
    token = new_token(app, edge_name="taken")["token"]
    response = app.test_client().post(ENROLL, json={"token": token})
    assert response.status_code == 502 and "Client already exists" in response.get_json()["error"]
    assert not connack(broker, "edge-taken", "someone-else").is_failure   # left alone


def test_tokens_are_for_admins_and_technicians_within_their_departments(app):
    north, south = app.departments["north"], app.departments["south"]
    c, headers = signed_in(app, "tech-n")
    made = c.post(TOKENS, json={"edge_name": "北京朝阳"}, headers=headers)
    assert made.status_code == 201 and made.get_json()["department_id"] == north
    assert c.post(TOKENS, json={"department_id": south}, headers=headers).status_code == 403
    assert c.post(TOKENS, json={"department_id": None}, headers=headers).status_code == 403
    assert c.post(TOKENS, json={"ttl_s": 1}, headers=headers).status_code == 400
    assert c.post(TOKENS, json={}).status_code == 403               # no CSRF header
    agent, agent_headers = signed_in(app, "agent-n")
    assert agent.post(TOKENS, json={}, headers=agent_headers).status_code == 403
    assert app.test_client().post(TOKENS, json={}).status_code == 401
    root, root_headers = signed_in(app, "root")
    assert root.post(TOKENS, json={"department_id": 9999}, headers=root_headers).status_code == 404
    assert [t["edge_name"] for t in c.get(TOKENS).get_json()["tokens"]] == ["北京朝阳"]


def test_the_fleet_view_is_scoped_by_department(app):
    north, south = app.departments["north"], app.departments["south"]
    for department, name in ((north, "北京朝阳"), (south, "广州天河")):
        token = new_token(app, department_id=department, edge_name=name)["token"]
        assert app.test_client().post(ENROLL, json={"token": token}).status_code == 201
    views = {}
    for user in ("root", "tech-n", "sup-s"):
        c, _ = signed_in(app, user)
        response = c.get("/api/v1/fleet/edges")
        assert response.status_code == 200
        views[user] = [e["name"] for e in response.get_json()["edges"]]
        if user == "root":
            assert "北京朝阳".encode() in response.data     # UTF-8 on the wire, not \u escapes
    assert views == {"root": ["北京朝阳", "广州天河"], "tech-n": ["北京朝阳"],
                     "sup-s": ["广州天河"]}
    c, _ = signed_in(app, "sup-s")
    north_edge = db_of(app).query("SELECT id FROM edges WHERE department_id = ?", (north,))[0][0]
    assert north_edge.startswith("edge-") and len(north_edge) == len("edge-") + 8
    assert c.get(f"/api/v1/fleet/edges/{north_edge}").status_code == 404
    agent, _ = signed_in(app, "agent-n")
    assert agent.get("/api/v1/fleet/edges").status_code == 403


def test_disable_enable_and_remove_reach_the_broker(app, broker):
    token = new_token(app, edge_name="gz01")["token"]
    got = app.test_client().post(ENROLL, json={"token": token}).get_json()
    edge_id, password = got["edge_id"], got["broker"]["password"]
    c, headers = signed_in(app, "root")
    tech, tech_headers = signed_in(app, "tech-n")
    refused = tech.post(f"/api/v1/fleet/edges/{edge_id}/disable", headers=tech_headers)
    assert refused.status_code == 403

    response = c.post(f"/api/v1/fleet/edges/{edge_id}/disable", headers=headers)
    assert response.status_code == 200 and response.get_json()["state"] == "disabled"
    assert connack(broker, edge_id, password).is_failure
    response = c.post(f"/api/v1/fleet/edges/{edge_id}/enable", headers=headers)
    assert response.get_json()["state"] == "offline"     # active, not reported yet
    assert not connack(broker, edge_id, password).is_failure

    assert c.delete(f"/api/v1/fleet/edges/{edge_id}", headers=headers).status_code == 200
    assert connack(broker, edge_id, password).is_failure
    bearer = {"Authorization": f"Bearer {got['api_token']}"}
    assert app.test_client().get("/api/v1/auth/edge/whoami", headers=bearer).status_code == 401
    assert c.get("/api/v1/fleet/edges").get_json()["edges"] == []
    assert [e["state"] for e in c.get("/api/v1/fleet/edges?removed=1").get_json()["edges"]] == [
        "removed"]
    assert c.post(f"/api/v1/fleet/edges/{edge_id}/enable", headers=headers).status_code == 400
    assert [r[2] for r in audit_rows(app, "fleet.edge_removed")] == [edge_id]


def test_enrollment_without_a_broker_admin_is_a_clear_error(hq_db_url, tmp_path):
    app, _ = make_app(hq_db_url, tmp_path)
    response = app.test_client().post(ENROLL, json={"token": "cet_x"})
    assert response.status_code == 502
    assert "CC_HQ_BROKER_ADMIN_USER" in response.get_json()["error"]
