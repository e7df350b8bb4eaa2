"""``create_app(settings)``: the HQ web application (served by gunicorn, see ``aggregator.wsgi``).

Each area is a blueprint in ``aggregator/<area>/views.py`` under ``/api/v1/<area>`` (the
blueprint sets its own prefix); the database is one ``HqDb`` per process, reached with
``get_db()``; errors are JSON ``{"error": "…"}`` with their status.

Secret key: the session cookie is signed with ``CC_HQ_SECRET_KEY``. Every gunicorn worker and
every restart must use the same key, or a sign-in made on one worker is unreadable on the next: so
``create_app()`` built from the environment (the gunicorn path) refuses to start without one.
A ``Settings`` passed in explicitly without a key (tests, a one-process tool) gets a random key
for this process and a warning.
"""
from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from aggregator import AggregatorError
from aggregator.db import HqDb

log = logging.getLogger(__name__)

MIN_SECRET_KEY_LENGTH = 32


class SettingsError(AggregatorError):
    """A ``CC_HQ_*`` setting that is missing or unusable (the message names the variable)."""


def _number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: must be positive")
    return value


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if not raw.strip().isdigit():
        raise SettingsError(f"{name}={raw!r}: a whole number >= 0")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    """Everything the app reads; ``from_env`` builds it from ``CC_HQ_*`` variables."""

    db_url: str = "hq.sqlite3"
    secret_key: str = ""                  # signs session cookies; required outside tests
    recordings_root: str = "hq-recordings"
    public_url: str = "http://127.0.0.1:8000"
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_public_host: str = ""          # the broker as edges reach it (default: broker_host)
    broker_public_port: int = 0           # (default: broker_port)
    broker_admin_user: str = ""           # a dynamic-security admin, to add enrolled edges
    broker_admin_password: str = ""
    session_cookie_secure: bool = False
    session_idle_s: float = 30 * 60.0     # signed out after this long without a request
    session_max_s: float = 12 * 3600.0    # and this long after signing in, whatever happens
    login_max_failures: int = 5           # consecutive wrong passwords before a lock-out
    login_lockout_s: float = 15 * 60.0
    proxy_hops: int = 0                   # reverse proxies in front that set X-Forwarded-For
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        try:
            broker_port = int(env.get("CC_HQ_BROKER_PORT", cls.broker_port))
        except ValueError:
            raise SettingsError(f"CC_HQ_BROKER_PORT={env['CC_HQ_BROKER_PORT']!r}: not a port") from None
        try:
            public_port = int(env.get("CC_HQ_BROKER_PUBLIC_PORT", 0))
        except ValueError:
            raise SettingsError(f"CC_HQ_BROKER_PUBLIC_PORT={env['CC_HQ_BROKER_PUBLIC_PORT']!r}: "
                                "not a port") from None
        return cls(
            db_url=env.get("CC_HQ_DB", cls.db_url),
            broker_public_host=env.get("CC_HQ_BROKER_PUBLIC_HOST", ""),
            broker_public_port=public_port,
            secret_key=env.get("CC_HQ_SECRET_KEY", ""),
            recordings_root=env.get("CC_HQ_RECORDINGS", cls.recordings_root),
            public_url=env.get("CC_HQ_PUBLIC_URL", cls.public_url),
            broker_host=env.get("CC_HQ_BROKER_HOST", cls.broker_host),
            broker_port=broker_port,
            broker_admin_user=env.get("CC_HQ_BROKER_ADMIN_USER", ""),
            broker_admin_password=env.get("CC_HQ_BROKER_ADMIN_PASSWORD", ""),
            session_cookie_secure=env.get("CC_HQ_SECURE_COOKIES", "") == "1",
            session_idle_s=_number(env, "CC_HQ_SESSION_IDLE_S", cls.session_idle_s),
            session_max_s=_number(env, "CC_HQ_SESSION_MAX_S", cls.session_max_s),
            login_max_failures=max(1, _count(env, "CC_HQ_LOGIN_MAX_FAILURES",
                                             cls.login_max_failures)),
            login_lockout_s=_number(env, "CC_HQ_LOGIN_LOCKOUT_S", cls.login_lockout_s),
            proxy_hops=_count(env, "CC_HQ_PROXY_HOPS", cls.proxy_hops),
        )

    def require_secret_key(self) -> None:
        """Refuse a missing or short key: the gunicorn path calls this (see module docstring)."""
        if not self.secret_key:
            raise SettingsError(
                "CC_HQ_SECRET_KEY is not set: every gunicorn worker must sign session cookies "
                "with the same key. Generate one with: python -c 'import secrets; "
                "print(secrets.token_hex(32))'")
        if len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(f"CC_HQ_SECRET_KEY: at least {MIN_SECRET_KEY_LENGTH} characters")


def create_app(settings: Settings | None = None, *,
               clock: Callable[[], float] = time.time) -> Flask:
    """The app. Without ``settings`` they come from the environment and a secret key is
    required; ``clock`` lets tests move time (session expiry, lock-outs)."""
    if settings is None:
        settings = Settings.from_env()
        settings.require_secret_key()
    app = Flask("aggregator")
    secret = settings.secret_key
    if not secret:
        log.warning("no secret key: using a random one for this process; sessions end when it "
                    "exits and are not shared with other workers")
        secret = secrets.token_hex(32)
    app.config["SECRET_KEY"] = secret
    app.config["SESSION_COOKIE_NAME"] = "cc_hq_session"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = settings.session_cookie_secure
    app.config["PERMANENT_SESSION_LIFETIME"] = int(settings.session_max_s)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024   # one upload chunk, not a whole file
    app.json.ensure_ascii = False                         # type: ignore[attr-defined]
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops,  # type: ignore[method-assign]
                                x_proto=settings.proxy_hops, x_host=settings.proxy_hops)
    app.extensions["cc_settings"] = settings
    app.extensions["cc_clock"] = clock
    app.extensions["cc_db"] = HqDb.open(settings.db_url)
    Path(settings.recordings_root).mkdir(parents=True, exist_ok=True)
    _register_errors(app)
    from aggregator.auth.views import bp as auth_bp
    from aggregator.customers.views import bp as customers_bp
    from aggregator.downlink.views import bp as downlink_bp
    from aggregator.fleet.views import bp as fleet_bp
    from aggregator.recordings.views import bp as recordings_bp
    for bp in (auth_bp, fleet_bp, downlink_bp, recordings_bp, customers_bp):
        app.register_blueprint(bp)
    return app


def _register_errors(app: Flask) -> None:
    """Every error is JSON; an unexpected one is logged with its traceback and stays vague."""
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify({"error": exc.description or exc.name}), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error: %s", exc)
        return jsonify({"error": "internal error"}), 500


def get_db() -> HqDb:
    return current_app.extensions["cc_db"]


def get_settings() -> Settings:
    return current_app.extensions["cc_settings"]


def now() -> float:
    """The app's clock (tests may move it): use it for timestamps written by views."""
    return current_app.extensions["cc_clock"]()
