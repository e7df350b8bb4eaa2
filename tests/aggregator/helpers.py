"""Shared test helpers for aggregator views: users, departments, sign-in, an app with a clock.

    app, clock = make_app(hq_db_url, tmp_path)
    make_user(get_db_of(app), "ops", "correct horse", ["admin"])
    client = app.test_client()
    csrf = login(client, "ops", "correct horse")
    client.post("/api/v1/…", json={…}, headers={"X-CSRF-Token": csrf})
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from argon2.profiles import CHEAPEST

from aggregator.auth import directory, passwords
from aggregator.auth.access import CSRF_HEADER
from aggregator.db import HqDb
from aggregator.web.app import Settings, create_app

# argon2id with the cheapest parameters: the same code path, ~1 ms instead of ~0.1 s per hash
passwords.use_parameters(CHEAPEST)

TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789abcdef"


class Clock:
    """A settable clock for the app (session expiry, lock-outs)."""

    def __init__(self, start: float | None = None) -> None:
        self.t = time.time() if start is None else start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_app(db_url: str, tmp_path: Path, clock: Clock | None = None, **settings: Any):
    """An app on ``db_url`` with its recordings under ``tmp_path``; returns (app, clock)."""
    clock = clock or Clock()
    app = create_app(Settings(db_url=db_url, secret_key=TEST_SECRET,
                              recordings_root=str(tmp_path / "recordings"), **settings),
                     clock=clock)
    return app, clock


def db_of(app: Any) -> HqDb:
    return app.extensions["cc_db"]


def make_department(db: Any, name: str, parent: int | None = None) -> int:
    with db.transaction() as tx:
        return directory.create_department(tx, name, parent, now=time.time())


def make_user(db: Any, username: str, password: str, roles: Iterable[str],
              department: int | str | None = None, display_name: str | None = None) -> int:
    """A user; ``department`` is an id, or a name (a top-level department, made if missing)."""
    if isinstance(department, str):
        found = db.query("SELECT id FROM departments WHERE name = ? AND parent_id IS NULL",
                         (department,))
        department = int(found[0][0]) if found else make_department(db, department)
    with db.transaction() as tx:
        return directory.create_user(tx, username, password, display_name=display_name,
                                     roles=list(roles), department_id=department, now=time.time())


def login(client: Any, username: str, password: str) -> str:
    """Sign in through the API; returns the session's CSRF token (fails the test otherwise)."""
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, (response.status_code, response.get_json())
    return response.get_json()["csrf"]


def csrf(token: str) -> dict[str, str]:
    return {CSRF_HEADER: token}
