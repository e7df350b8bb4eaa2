"""The auth flow over real HTTP against gunicorn (2 workers), and the app's start-up rules."""
from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from aggregator.auth.access import issue_edge_token
from aggregator.db import HqDb
from aggregator.web.app import Settings, SettingsError, create_app
from aggregator.web.serve import ROOT
from tests.aggregator.helpers import make_user

PASSWORD = "correct horse battery"


def test_sign_in_session_csrf_and_edge_token_over_gunicorn(hq_server):
    db = HqDb.open(hq_server.db_url)
    make_user(db, "ops", PASSWORD, ["admin"], display_name="运维主管")
    with db.transaction() as tx:
        token = issue_edge_token(tx, "edge-gz-01")
    api = hq_server.url + "/api/v1/auth"
    http = requests.Session()
    response = http.post(api + "/login", json={"username": "ops", "password": PASSWORD}, timeout=10)
    assert response.status_code == 200
    assert response.json()["user"]["display_name"] == "运维主管"
    assert response.headers["Content-Type"].startswith("application/json")
    csrf = response.json()["csrf"]
    # several requests: with 2 workers they land on both, and the session holds on each
    for _ in range(6):
        assert http.get(api + "/me", timeout=10).json()["csrf"] == csrf
    refused = http.post(api + "/departments", json={"name": "华北区"}, timeout=10)
    assert refused.status_code == 403
    created = http.post(api + "/departments", json={"name": "华北区"},
                        headers={"X-CSRF-Token": csrf}, timeout=10)
    assert created.status_code == 201 and created.json()["department"]["name"] == "华北区"
    edge = requests.get(api + "/edge/whoami", headers={"Authorization": f"Bearer {token}"},
                        timeout=10)
    assert edge.json() == {"edge_id": "edge-gz-01"}
    assert http.post(api + "/logout", headers={"X-CSRF-Token": csrf}, timeout=10).ok
    assert http.get(api + "/me", timeout=10).status_code == 401
    actions = [r[0] for r in db.query("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["auth.login", "department.create", "auth.logout"]
    assert db.query("SELECT ip FROM audit_log")[0][0] == "127.0.0.1"
    db.close()


def test_gunicorn_path_refuses_to_start_without_a_secret_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CC_HQ_DB": str(tmp_path / "hq.db"),
           "CC_HQ_RECORDINGS": str(tmp_path / "rec")}
    result = subprocess.run([sys.executable, "-c", "import aggregator.wsgi"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "CC_HQ_SECRET_KEY is not set" in result.stderr


def test_settings_from_env_validate_what_they_read(tmp_path):
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({"CC_HQ_SECRET_KEY": "short"}).require_secret_key()
    with pytest.raises(SettingsError, match="CC_HQ_SESSION_IDLE_S"):
        Settings.from_env({"CC_HQ_SESSION_IDLE_S": "soon"})
    settings = Settings.from_env({"CC_HQ_SESSION_IDLE_S": "60", "CC_HQ_LOGIN_MAX_FAILURES": "3",
                                  "CC_HQ_DB": str(tmp_path / "x.db")})
    assert (settings.session_idle_s, settings.login_max_failures) == (60.0, 3)


def test_unexpected_errors_and_unknown_paths_are_json(tmp_path):
    app = create_app(Settings(db_url=str(tmp_path / "hq.db"), recordings_root=str(tmp_path / "r")))

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    client = app.test_client()
    assert client.get("/boom").get_json() == {"error": "internal error"}
    assert client.get("/boom").status_code == 500
    missing = client.get("/api/v1/auth/nowhere")
    assert missing.status_code == 404 and "error" in missing.get_json()
    assert client.delete("/api/v1/auth/login").status_code == 405
