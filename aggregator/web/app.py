"""``create_app(settings)``: the HQ web application (served by gunicorn, see ``aggregator.wsgi``).

Each area is a blueprint in ``aggregator/<area>/views.py`` under ``/api/v1/<area>``-style prefixes
the blueprint sets itself; the database is one ``HqDb`` per process, reached with ``get_db()``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app

from aggregator.db import HqDb


@dataclass(frozen=True)
class Settings:
    """Everything the app reads; ``from_env`` builds it from ``CC_HQ_*`` variables."""

    db_url: str = "hq.sqlite3"
    secret_key: str = ""                  # signs session cookies; required outside tests
    recordings_root: str = "hq-recordings"
    public_url: str = "http://127.0.0.1:8000"
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_admin_user: str = ""           # a dynamic-security admin, to add enrolled edges
    broker_admin_password: str = ""
    session_cookie_secure: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            db_url=env.get("CC_HQ_DB", cls.db_url),
            secret_key=env.get("CC_HQ_SECRET_KEY", ""),
            recordings_root=env.get("CC_HQ_RECORDINGS", cls.recordings_root),
            public_url=env.get("CC_HQ_PUBLIC_URL", cls.public_url),
            broker_host=env.get("CC_HQ_BROKER_HOST", cls.broker_host),
            broker_port=int(env.get("CC_HQ_BROKER_PORT", cls.broker_port)),
            broker_admin_user=env.get("CC_HQ_BROKER_ADMIN_USER", ""),
            broker_admin_password=env.get("CC_HQ_BROKER_ADMIN_PASSWORD", ""),
            session_cookie_secure=env.get("CC_HQ_SECURE_COOKIES", "") == "1",
        )


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("aggregator")
    app.config["SECRET_KEY"] = settings.secret_key or os.urandom(32).hex()
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = settings.session_cookie_secure
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024   # one upload chunk, not a whole file
    app.extensions["cc_settings"] = settings
    app.extensions["cc_db"] = HqDb.open(settings.db_url)
    Path(settings.recordings_root).mkdir(parents=True, exist_ok=True)
    from aggregator.auth.views import bp as auth_bp
    from aggregator.customers.views import bp as customers_bp
    from aggregator.downlink.views import bp as downlink_bp
    from aggregator.fleet.views import bp as fleet_bp
    from aggregator.recordings.views import bp as recordings_bp
    for bp in (auth_bp, fleet_bp, downlink_bp, recordings_bp, customers_bp):
        app.register_blueprint(bp)
    return app


def get_db() -> HqDb:
    return current_app.extensions["cc_db"]


def get_settings() -> Settings:
    return current_app.extensions["cc_settings"]
