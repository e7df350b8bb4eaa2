"""What every HQ view uses to know who is calling and to leave a trace.

- ``@login_required(*roles)``: a signed-in user (session cookie) holding one of ``roles``
  (``admin`` holds them all; no roles = any signed-in user). 401 when not signed in, 403 when the
  role is missing or, for POST/PUT/PATCH/DELETE, when header ``X-CSRF-Token`` is not the session's
  token. Sets ``g.user`` (``aggregator.auth.model.User``).
- ``@edge_required``: ``Authorization: Bearer <edge api token>``; sets ``g.edge_id``; 401 otherwise.
  No CSRF check: a browser never attaches that header on its own, so it cannot be forged cross-site.
- ``audit(action, target, detail, tx=None)``: one ``audit_log`` row for the current caller. Pass
  ``tx`` when inside a transaction, so the change and its audit row commit together.
- ``issue_edge_token(tx, edge_id)``: a new bearer token for an edge, returned once, stored hashed.
- ``scope_department_ids(user)`` / ``scope_filter(user, column)``: the departments whose data a
  user may see (own department and below; admin everything), see ``aggregator.auth.model``.

Example::

    @bp.post("/things")
    @login_required("supervisor")
    def create_thing():
        with get_db().transaction() as tx:
            tx.execute("INSERT INTO things …", (...))
            audit("thing.create", target=name, detail={"size": 3}, tx=tx)
"""
from __future__ import annotations

import functools
import hmac
import logging
import time
from typing import Any, Callable, TypeVar

from flask import abort, current_app, g, has_app_context, has_request_context, request, session

from aggregator.auth import sessions, tokens
from aggregator.auth.audit_log import Actor, record
from aggregator.auth.model import ROLES, User, load_user, scope_filter

__all__ = ["ROLES", "User", "login_required", "edge_required", "audit", "issue_edge_token",
           "revoke_edge_tokens", "scope_department_ids", "scope_filter", "current_user",
           "current_session", "CSRF_HEADER"]

log = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

F = TypeVar("F", bound=Callable[..., Any])


def _db() -> Any:
    return current_app.extensions["cc_db"]


def _now() -> float:
    return current_app.extensions.get("cc_clock", time.time)()


def _policy() -> Any:
    return current_app.extensions["cc_settings"]


def current_session() -> sessions.Session | None:
    """The live session of this request's cookie (cached on ``g``), or None."""
    if "cc_session" not in g:
        sid = session.get("sid")
        g.cc_session = (sessions.find(_db(), sid, now=_now(), idle_s=_policy().session_idle_s)
                        if sid else None)
    return g.cc_session


def current_user() -> User | None:
    """The signed-in, active user of this request, or None; sets ``g.user``."""
    if "user" not in g:
        row = current_session()
        g.user = load_user(_db(), row.user_id) if row is not None else None
    return g.user


def _csrf_ok() -> bool:
    row = current_session()
    sent = request.headers.get(CSRF_HEADER, "")
    return row is not None and bool(sent) and hmac.compare_digest(sent.encode(), row.csrf.encode())


def login_required(*roles: str) -> Callable[[F], F]:
    """Decorator: a signed-in user with one of ``roles`` (see the module docstring)."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"login_required: unknown role(s) {sorted(unknown)}; roles are "
                         f"{sorted(ROLES)}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                abort(401, description="sign in required")
            if request.method in UNSAFE_METHODS and not _csrf_ok():
                log.warning("CSRF token missing or wrong: %s %s by %s", request.method,
                            request.path, user.username)
                abort(403, description=f"missing or invalid {CSRF_HEADER} header")
            if roles and not user.has_any(roles):
                log.info("forbidden: %s %s by %s (needs %s)", request.method, request.path,
                         user.username, "/".join(roles))
                abort(403, description="forbidden: needs role " + " or ".join(roles))
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def edge_required(view: F) -> F:
    """Decorator: a live edge API token in ``Authorization: Bearer …``; sets ``g.edge_id``."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _bearer()
        edge_id = tokens.edge_for(_db(), token) if token else None
        if edge_id is None:
            log.warning("edge token %s: %s %s from %s", "rejected" if token else "missing",
                        request.method, request.path, request.remote_addr)
            abort(401, description="edge API token required")
        g.edge_id = edge_id
        return view(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def current_actor() -> Actor:
    """Who is acting in this request: the user, else the edge, else the system."""
    if not has_request_context():
        return Actor.system()
    user = g.get("user")
    if user is not None:
        return Actor("user", str(user.id), user.username)
    edge_id = g.get("edge_id")
    if edge_id:
        return Actor("edge", edge_id, edge_id)
    return Actor.system()


def audit(action: str, target: str = "", detail: Any = None, *, tx: Any = None,
          actor: Actor | None = None) -> int:
    """Append an audit row for the current caller (``actor`` overrides); returns its id.

    Without ``tx`` it commits on its own; inside a transaction pass ``tx`` (SQLite cannot nest)."""
    who = actor or current_actor()
    ip = request.remote_addr if has_request_context() else None
    now = _now() if has_app_context() else time.time()
    if tx is not None:
        return record(tx, who, action, target, detail, ip=ip, now=now)
    with _db().transaction() as own:
        return record(own, who, action, target, detail, ip=ip, now=now)


def issue_edge_token(tx: Any, edge_id: str, *, revoke_others: bool = False) -> str:
    """A new bearer token for ``edge_id`` (stored as its SHA-256), returned once. With
    ``revoke_others`` the edge's earlier tokens stop working in the same transaction."""
    return tokens.issue(tx, edge_id, revoke_others=revoke_others)


def revoke_edge_tokens(tx: Any, edge_id: str) -> int:
    """Every live token of an edge stops working; returns how many."""
    return tokens.revoke_for_edge(tx, edge_id)


def scope_department_ids(user: User) -> frozenset[int]:
    """The departments whose data ``user`` sees: their own and every descendant; admin: all of
    them (and rows with no department too: use ``scope_filter`` or ``user.can_see``)."""
    return user.scope_department_ids
