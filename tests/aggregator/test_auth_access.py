"""Roles, data scopes, edge tokens and the audit log, through Flask's test client."""
from __future__ import annotations

import pytest
from flask import g, jsonify

from aggregator.auth.access import (audit, edge_required, issue_edge_token, login_required,
                                    revoke_edge_tokens, scope_department_ids, scope_filter)
from tests.aggregator.helpers import csrf, db_of, login, make_app, make_department, make_user

PASSWORD = "correct horse battery"


@pytest.fixture
def app(hq_db_url, tmp_path):
    app, _ = make_app(hq_db_url, tmp_path)
    db = db_of(app)
    east = make_department(db, "华东区")
    shanghai = make_department(db, "上海分行", east)
    pudong = make_department(db, "浦东支行", shanghai)
    south = make_department(db, "华南区")
    app.depts = {"east": east, "shanghai": shanghai, "pudong": pudong, "south": south}
    make_user(db, "admin", PASSWORD, ["admin"])
    make_user(db, "lead", PASSWORD, ["team_lead"], shanghai, display_name="李组长")
    make_user(db, "sup", PASSWORD, ["supervisor", "qa"], east)
    make_user(db, "agent1", PASSWORD, ["agent"], pudong, display_name="王芳")
    make_user(db, "agent2", PASSWORD, ["agent"], south)
    make_user(db, "loner", PASSWORD, ["team_lead"])           # no department: sees nobody

    @app.post("/test/edge-report")
    @edge_required
    def edge_report():
        audit("edge.report", target="x")
        return jsonify({"edge": g.edge_id})

    @app.get("/test/qa-only")
    @login_required("qa")
    def qa_only():
        return jsonify({"scope": sorted(scope_department_ids(g.user))})

    return app


def signed_in(app, username):
    client = app.test_client()
    client.csrf = login(client, username, PASSWORD)
    return client


def test_not_signed_in_is_401_everywhere(app):
    client = app.test_client()
    for path in ("/api/v1/auth/me", "/api/v1/auth/users", "/api/v1/auth/audit", "/test/qa-only"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json() == {"error": "sign in required"}
    assert client.post("/api/v1/auth/users", json={}).status_code == 401


def test_missing_role_is_403_and_admin_passes_every_role(app):
    agent = signed_in(app, "agent1")
    assert agent.get("/api/v1/auth/users").status_code == 403
    assert agent.get("/api/v1/auth/audit").status_code == 403
    assert agent.get("/test/qa-only").status_code == 403
    lead = signed_in(app, "lead")
    assert lead.get("/api/v1/auth/users").status_code == 200
    assert lead.post("/api/v1/auth/users", json={"username": "x", "password": PASSWORD},
                     headers=csrf(lead.csrf)).status_code == 403
    assert signed_in(app, "sup").get("/test/qa-only").status_code == 200
    assert signed_in(app, "admin").get("/test/qa-only").status_code == 200


def test_unknown_role_in_a_decorator_fails_at_import_time():
    with pytest.raises(ValueError, match="unknown role"):
        login_required("superuser")


def usernames(client):
    return sorted(u["username"] for u in client.get("/api/v1/auth/users").get_json()["users"])


def test_data_scope_is_own_department_and_descendants(app):
    d = app.depts
    assert usernames(signed_in(app, "lead")) == ["agent1", "lead"]
    assert usernames(signed_in(app, "sup")) == ["agent1", "lead", "sup"]
    assert usernames(signed_in(app, "loner")) == []
    assert usernames(signed_in(app, "admin")) == ["admin", "agent1", "agent2", "lead", "loner",
                                                  "sup"]
    scope = signed_in(app, "sup").get("/api/v1/auth/me").get_json()["user"]
    assert scope["scope_department_ids"] == sorted([d["east"], d["shanghai"], d["pudong"]])
    depts = signed_in(app, "lead").get("/api/v1/auth/departments").get_json()["departments"]
    assert [x["name"] for x in depts] == ["上海分行", "浦东支行"]
    agent2_id = db_of(app).scalar("SELECT id FROM users WHERE username = 'agent2'")
    assert signed_in(app, "lead").get(f"/api/v1/auth/users/{agent2_id}").status_code == 404


def test_scope_filter_builds_the_where_clause(app):
    with app.test_request_context():
        from aggregator.auth.model import load_user
        db = db_of(app)
        lead = load_user(db, db.scalar("SELECT id FROM users WHERE username = 'lead'"))
        admin = load_user(db, db.scalar("SELECT id FROM users WHERE username = 'admin'"))
        loner = load_user(db, db.scalar("SELECT id FROM users WHERE username = 'loner'"))
    where, params = scope_filter(lead, "department_id")
    assert where == "department_id IN (?, ?)"
    assert params == sorted([app.depts["shanghai"], app.depts["pudong"]])
    assert scope_filter(admin, "x") == ("1 = 1", [])
    assert scope_filter(loner, "x") == ("1 = 0", [])
    assert admin.can_see(None) and not lead.can_see(None) and not lead.can_see(app.depts["east"])


def test_moving_a_department_under_its_own_child_is_refused(app):
    admin = signed_in(app, "admin")
    d = app.depts
    response = admin.patch(f"/api/v1/auth/departments/{d['east']}",
                           json={"parent_id": d["pudong"]}, headers=csrf(admin.csrf))
    assert response.status_code == 409
    moved = admin.patch(f"/api/v1/auth/departments/{d['south']}", json={"parent_id": d["east"]},
                        headers=csrf(admin.csrf))
    assert moved.status_code == 200
    assert usernames(signed_in(app, "sup")) == ["agent1", "agent2", "lead", "sup"]


def issue(app, edge_id):
    with db_of(app).transaction() as tx:
        return issue_edge_token(tx, edge_id)


def test_edge_token_is_accepted_until_revoked(app):
    token = issue(app, "edge-sh-01")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/edge/whoami", headers=auth).get_json() == {
        "edge_id": "edge-sh-01"}
    # a bearer request needs no CSRF token even when it is a POST
    assert client.post("/test/edge-report", headers=auth).status_code == 200
    row = db_of(app).query("SELECT actor_kind, actor_id, action FROM audit_log"
                           " WHERE action = 'edge.report'")
    assert row == [("edge", "edge-sh-01", "edge.report")]
    stored = db_of(app).query("SELECT token_hash FROM api_tokens")
    assert token not in {r[0] for r in stored}                     # only the hash is kept
    with db_of(app).transaction() as tx:
        assert revoke_edge_tokens(tx, "edge-sh-01") == 1
    assert client.get("/api/v1/auth/edge/whoami", headers=auth).status_code == 401


def test_bad_edge_credentials_are_401(app):
    token = issue(app, "edge-a")
    client = app.test_client()
    for header in ("", "Bearer", "Bearer cce_not-a-token", f"Basic {token}", token,
                   "Bearer " + "x" * 5000, f"Bearer {token}x"):
        response = client.get("/api/v1/auth/edge/whoami",
                              headers={"Authorization": header} if header else {})
        assert response.status_code == 401, header
        assert response.get_json() == {"error": "edge API token required"}
    assert client.get("/api/v1/auth/edge/whoami",
                      headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_admin_revokes_a_token_over_the_api_and_it_is_audited(app):
    old, new = issue(app, "edge-b"), issue(app, "edge-b")
    admin = signed_in(app, "admin")
    tokens = admin.get("/api/v1/auth/tokens?edge_id=edge-b").get_json()["tokens"]
    assert [t["revoked_at"] for t in tokens] == [None, None]
    response = admin.post(f"/api/v1/auth/tokens/{tokens[0]['id']}/revoke",
                          headers=csrf(admin.csrf))
    assert response.get_json() == {"revoked": True}
    client = app.test_client()
    assert client.get("/api/v1/auth/edge/whoami",
                      headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/v1/auth/edge/whoami",
                      headers={"Authorization": f"Bearer {new}"}).status_code == 200
    audit_rows = admin.get("/api/v1/auth/audit?action=edge_token.revoke").get_json()["entries"]
    assert [(e["actor_name"], e["target"]) for e in audit_rows] == [("admin", "edge-b")]


def test_issuing_with_revoke_others_replaces_the_token(app):
    first = issue(app, "edge-c")
    with db_of(app).transaction() as tx:
        second = issue_edge_token(tx, "edge-c", revoke_others=True)
    client = app.test_client()
    assert client.get("/api/v1/auth/edge/whoami",
                      headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/v1/auth/edge/whoami",
                      headers={"Authorization": f"Bearer {second}"}).status_code == 200
