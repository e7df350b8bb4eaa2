"""User and department management by admins, and the audit log they leave."""
from __future__ import annotations

import json

import pytest

from tests.aggregator.helpers import csrf, db_of, login, make_app, make_department, make_user

PASSWORD = "correct horse battery"


@pytest.fixture
def app(hq_db_url, tmp_path):
    app, clock = make_app(hq_db_url, tmp_path)
    app.clock = clock
    make_user(db_of(app), "admin", PASSWORD, ["admin"])
    return app


@pytest.fixture
def admin(app):
    client = app.test_client()
    client.csrf = login(client, "admin", PASSWORD)
    return client


def post(client, path, body):
    return client.post(path, json=body, headers=csrf(client.csrf))


def patch(client, path, body):
    return client.patch(path, json=body, headers=csrf(client.csrf))


def test_admin_creates_a_department_tree_and_a_user_with_a_chinese_name(app, admin):
    east = post(admin, "/api/v1/auth/departments", {"name": "华东区"}).get_json()["department"]
    branch = post(admin, "/api/v1/auth/departments",
                  {"name": "上海分行", "parent_id": east["id"]}).get_json()["department"]
    assert branch == {"id": branch["id"], "name": "上海分行", "parent_id": east["id"]}
    response = post(admin, "/api/v1/auth/users", {
        "username": "wang.fang", "password": "新密码-long-enough", "display_name": "王芳",
        "roles": ["agent", "qa"], "department_id": branch["id"]})
    assert response.status_code == 201
    user = response.get_json()["user"]
    assert (user["display_name"], user["roles"], user["active"]) == ("王芳", ["agent", "qa"], True)
    assert "password" not in json.dumps(user) and "hash" not in json.dumps(user)
    # the new user signs in with the Chinese password and sees their name back
    client = app.test_client()
    response = client.post("/api/v1/auth/login",
                           json={"username": "wang.fang", "password": "新密码-long-enough"})
    assert response.get_json()["user"]["display_name"] == "王芳"
    listed = admin.get("/api/v1/auth/departments").get_json()["departments"]
    assert [d["name"] for d in listed] == ["华东区", "上海分行"]


BAD_USERS = [
    ({"username": "a b", "password": PASSWORD}, 400, "username"),
    ({"username": "ok", "password": "short"}, 400, "password"),
    ({"username": "ok", "password": PASSWORD, "roles": ["boss"]}, 400, "roles"),
    ({"username": "ok", "password": PASSWORD, "roles": "admin"}, 400, "roles"),
    ({"username": "ok", "password": PASSWORD, "department_id": 999}, 404, "department 999"),
    ({"username": "ok", "password": PASSWORD, "department_id": "1"}, 400, "department_id"),
    ({"username": "ok", "password": PASSWORD, "display_name": "x" * 101}, 400, "display_name"),
    ({"username": "ok", "password": PASSWORD, "active": "yes"}, 400, "active"),
    ({"username": "ADMIN", "password": PASSWORD}, 409, "taken"),
]


def test_bad_user_input_is_refused_with_a_clear_error(app, admin):
    for body, status, fragment in BAD_USERS:
        response = post(admin, "/api/v1/auth/users", body)
        assert response.status_code == status, body
        assert fragment in response.get_json()["error"], body
    assert db_of(app).scalar("SELECT count(*) FROM users") == 1


def test_admin_changes_roles_and_password_and_it_is_audited(app, admin):
    user_id = make_user(db_of(app), "li", PASSWORD, ["agent"], display_name="李雷")
    agent = app.test_client()
    login(agent, "li", PASSWORD)
    response = patch(admin, f"/api/v1/auth/users/{user_id}",
                     {"roles": ["team_lead"], "password": "another long secret",
                      "display_name": "李雷雷"})
    assert response.status_code == 200
    assert sorted(response.get_json()["changed"]) == ["display_name", "password", "roles"]
    assert agent.get("/api/v1/auth/me").status_code == 401          # new password: signed out
    me = app.test_client()
    login(me, "li", "another long secret")
    assert me.get("/api/v1/auth/me").get_json()["user"]["roles"] == ["team_lead"]
    entries = admin.get("/api/v1/auth/audit?action=user.update").get_json()["entries"]
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["actor_kind"], entry["actor_name"], entry["target"]) == ("user", "admin", "li")
    assert entry["detail"] == {"display_name": "李雷雷", "password": "***",
                               "roles": ["team_lead"]}
    assert entry["ip"] == "127.0.0.1"
    raw = db_of(app).query("SELECT detail FROM audit_log WHERE action = 'user.update'")[0][0]
    assert "李雷雷" in raw and "another long secret" not in raw


def test_unknown_fields_and_the_last_admin_are_protected(app, admin):
    admin_id = db_of(app).scalar("SELECT id FROM users WHERE username = 'admin'")
    assert patch(admin, f"/api/v1/auth/users/{admin_id}", {"roles": ["agent"]}).status_code == 409
    assert patch(admin, f"/api/v1/auth/users/{admin_id}", {"active": False}).status_code == 409
    assert patch(admin, f"/api/v1/auth/users/{admin_id}", {"username": "x"}).status_code == 400
    assert patch(admin, "/api/v1/auth/users/999", {"active": False}).status_code == 404
    make_user(db_of(app), "admin2", PASSWORD, ["admin"])
    assert patch(admin, f"/api/v1/auth/users/{admin_id}", {"roles": ["agent"]}).status_code == 200


def test_audit_listing_filters_and_pages(app, admin):
    make_department(db_of(app), "总部")
    for name in ("一部", "二部", "三部"):
        post(admin, "/api/v1/auth/departments", {"name": name})
        app.clock.advance(10)
    app.test_client().post("/api/v1/auth/login", json={"username": "admin", "password": "wrong!!!"})

    def actions(query):
        response = admin.get("/api/v1/auth/audit" + query)
        assert response.status_code == 200, response.get_json()
        return [e["action"] for e in response.get_json()["entries"]]

    assert actions("") == ["auth.login_failed", "department.create", "department.create",
                           "department.create", "auth.login"]
    assert actions("?action=department.create&limit=2") == ["department.create"] * 2
    assert actions("?action=auth.") == ["auth.login_failed", "auth.login"]
    assert actions("?actor_kind=user&actor=admin&action=auth.*") == ["auth.login_failed",
                                                                     "auth.login"]
    entries = admin.get("/api/v1/auth/audit?action=department.create").get_json()["entries"]
    assert [e["detail"]["name"] for e in entries] == ["三部", "二部", "一部"]
    since = entries[1]["ts"]
    assert len(actions(f"?action=department.create&since={since}")) == 2
    assert actions(f"?before_id={entries[1]['id']}&action=department.create") == [
        "department.create"]
    assert admin.get("/api/v1/auth/audit?limit=0").status_code == 400
    assert admin.get("/api/v1/auth/audit?since=yesterday").status_code == 400


def test_a_department_rename_is_a_config_change_in_the_audit_log(app, admin):
    dept = make_department(db_of(app), "营业部")
    response = patch(admin, f"/api/v1/auth/departments/{dept}", {"name": "营业一部"})
    assert response.get_json()["changed"] == ["name"]
    assert patch(admin, f"/api/v1/auth/departments/{dept}", {"name": "营业一部"}).get_json()[
        "changed"] == []
    rows = db_of(app).query("SELECT actor_kind, actor_name, action, target, detail FROM audit_log"
                            " WHERE action LIKE ?", ("department.%",))
    assert rows == [("user", "admin", "department.update", str(dept), '{"name": "营业一部"}')]
