"""Sign-in, sign-out, lock-out, session expiry and CSRF, through Flask's test client."""
from __future__ import annotations

import pytest

from aggregator.auth.access import CSRF_HEADER
from tests.aggregator.helpers import csrf, db_of, login, make_app, make_user

PASSWORD = "correct horse battery"


@pytest.fixture
def app(hq_db_url, tmp_path):
    app, clock = make_app(hq_db_url, tmp_path, login_max_failures=3, login_lockout_s=600,
                          session_idle_s=1800, session_max_s=8 * 3600)
    app.clock = clock
    make_user(db_of(app), "zhang", PASSWORD, ["agent"], department="上海分行",
              display_name="张伟")
    make_user(db_of(app), "root", PASSWORD, ["admin"])
    return app


def audit_actions(app, username):
    return [row[0] for row in db_of(app).query(
        "SELECT action FROM audit_log WHERE target = ? ORDER BY id", (username,))]


def test_login_returns_user_and_csrf_and_me_works(app):
    client = app.test_client()
    response = client.post("/api/v1/auth/login", json={"username": "Zhang", "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["username"] == "zhang"
    assert body["user"]["display_name"] == "张伟"
    assert body["user"]["roles"] == ["agent"]
    assert len(body["csrf"]) >= 32
    assert "张伟".encode() in response.data          # UTF-8 on the wire, not \u escapes
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.get_json() == body
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie


def test_logout_ends_the_session_even_for_a_copied_cookie(app):
    client = app.test_client()
    token = login(client, "zhang", PASSWORD)
    stolen = client.get_cookie("cc_hq_session").value
    assert client.post("/api/v1/auth/logout", headers=csrf(token)).status_code == 200
    assert client.get("/api/v1/auth/me").status_code == 401
    other = app.test_client()
    other.set_cookie("cc_hq_session", stolen)
    assert other.get("/api/v1/auth/me").status_code == 401
    assert audit_actions(app, "zhang") == ["auth.login", "auth.logout"]


def test_wrong_password_and_unknown_user_get_the_same_generic_error(app):
    client = app.test_client()
    wrong = client.post("/api/v1/auth/login", json={"username": "zhang", "password": "nope-nope"})
    unknown = client.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {"error": "invalid username or password"}
    assert client.get("/api/v1/auth/me").status_code == 401
    rows = db_of(app).query("SELECT actor_kind, action, target, detail FROM audit_log"
                            " WHERE action = 'auth.login_failed' ORDER BY id")
    assert [(r[0], r[2]) for r in rows] == [("user", "zhang"), ("user", "ghost")]
    assert '"wrong_password"' in rows[0][3] and '"unknown_user"' in rows[1][3]


def test_lockout_after_repeated_failures_then_unlock_after_the_window(app):
    client = app.test_client()
    for _ in range(3):
        client.post("/api/v1/auth/login", json={"username": "zhang", "password": "bad-password"})
    locked = client.post("/api/v1/auth/login", json={"username": "zhang", "password": PASSWORD})
    assert locked.status_code == 401
    assert locked.get_json() == {"error": "invalid username or password"}
    app.clock.advance(601)
    assert login(client, "zhang", PASSWORD)
    details = [r[0] for r in db_of(app).query(
        "SELECT detail FROM audit_log WHERE action = 'auth.login_failed' ORDER BY id")]
    assert '"locked_now": true' in details[2] and '"locked"' in details[3]


def test_a_success_resets_the_failure_count(app):
    client = app.test_client()
    for _ in range(2):
        client.post("/api/v1/auth/login", json={"username": "zhang", "password": "bad-password"})
    login(client, "zhang", PASSWORD)
    for _ in range(2):
        client.post("/api/v1/auth/login", json={"username": "zhang", "password": "bad-password"})
    assert login(app.test_client(), "zhang", PASSWORD)


def test_session_expires_when_idle_and_at_its_limit(app):
    client = app.test_client()
    login(client, "zhang", PASSWORD)
    app.clock.advance(1799)
    assert client.get("/api/v1/auth/me").status_code == 200
    app.clock.advance(1801)
    assert client.get("/api/v1/auth/me").status_code == 401
    login(client, "zhang", PASSWORD)
    for _ in range(17):                  # busy all day: 17 × 29 min > 8 h
        app.clock.advance(29 * 60)
        last = client.get("/api/v1/auth/me").status_code
    assert last == 401


def test_each_session_gets_its_own_csrf_token(app):
    first, second = app.test_client(), app.test_client()
    token_a, token_b = login(first, "zhang", PASSWORD), login(second, "zhang", PASSWORD)
    assert token_a != token_b
    assert first.post("/api/v1/auth/logout", headers=csrf(token_b)).status_code == 403
    login(first, "zhang", PASSWORD)                  # signing in again rotates the token
    assert first.get("/api/v1/auth/me").get_json()["csrf"] not in (token_a, token_b)


def test_unsafe_request_without_the_right_csrf_token_is_403(app):
    client = app.test_client()
    token = login(client, "root", PASSWORD)
    for headers in ({}, {CSRF_HEADER: ""}, {CSRF_HEADER: "forged"}, {CSRF_HEADER: token[:-1]}):
        response = client.post("/api/v1/auth/departments", json={"name": "华南区"},
                               headers=headers)
        assert response.status_code == 403, headers
        assert "X-CSRF-Token" in response.get_json()["error"]
    assert db_of(app).scalar("SELECT count(*) FROM departments WHERE name = '华南区'") == 0
    ok = client.post("/api/v1/auth/departments", json={"name": "华南区"}, headers=csrf(token))
    assert ok.status_code == 201


def test_deactivating_a_user_ends_their_sessions(app):
    admin, agent = app.test_client(), app.test_client()
    token = login(admin, "root", PASSWORD)
    login(agent, "zhang", PASSWORD)
    user_id = db_of(app).scalar("SELECT id FROM users WHERE username = 'zhang'")
    response = admin.patch(f"/api/v1/auth/users/{user_id}", json={"active": False},
                           headers=csrf(token))
    assert response.status_code == 200
    assert agent.get("/api/v1/auth/me").status_code == 401
    refused = agent.post("/api/v1/auth/login", json={"username": "zhang", "password": PASSWORD})
    assert refused.status_code == 401


def test_malformed_login_bodies_are_a_400(app):
    client = app.test_client()
    attempts = [
        client.post("/api/v1/auth/login", data="username=zhang&password=x",
                    content_type="application/x-www-form-urlencoded"),
        client.post("/api/v1/auth/login", data="not json", content_type="application/json"),
        client.post("/api/v1/auth/login", json=["zhang", PASSWORD]),
        client.post("/api/v1/auth/login", json={"username": "zhang"}),
        client.post("/api/v1/auth/login", json={"username": 5, "password": "x"}),
    ]
    for response in attempts:
        assert response.status_code == 400
        assert "error" in response.get_json()
    assert db_of(app).scalar("SELECT failed_logins FROM users WHERE username = 'zhang'") == 0
