"""HTTP views of the auth area (``/api/v1/auth``): sign-in, users, departments, audit, tokens.

- ``POST /login`` ``{"username", "password"}`` → ``{"user", "csrf"}`` and a session cookie
- ``GET /me`` → ``{"user", "csrf"}``; ``POST /logout``
- ``GET|POST /users``, ``GET|PATCH /users/<id>`` (listing: team leads and up see their scope;
  changes: admin)
- ``GET|POST /departments``, ``PATCH /departments/<id>`` (changes: admin)
- ``GET /audit?action=auth.&actor=…&since=…&limit=…`` (admin)
- ``GET /tokens?edge_id=…``, ``POST /tokens/<id>/revoke`` (admin); ``GET /edge/whoami`` (edge token)
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, g, jsonify, request, session

from aggregator.auth import audit_log, directory, sessions, tokens
from aggregator.auth.access import audit, current_session, edge_required, login_required
from aggregator.auth.audit_log import Actor
from aggregator.auth.errors import Conflict, InvalidInput, NotFound
from aggregator.auth.login import authenticate
from aggregator.auth.model import load_user
from aggregator.web.app import get_db, get_settings, now
from aggregator.web.json_api import answer_errors, json_body

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")

GENERIC_LOGIN_ERROR = "invalid username or password"
VIEW_USERS = ("team_lead", "supervisor", "qa")


answer_errors(bp, {InvalidInput: 400, NotFound: 404, Conflict: 409})


_body = json_body


# --- sign-in ------------------------------------------------------------------------------------

@bp.post("/login")
def login():  # type: ignore[no-untyped-def]
    body = _body()
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        abort(400, description="username and password: strings")
    settings = get_settings()
    db = get_db()
    at = now()
    outcome = authenticate(db, username, password, now=at,
                           max_failures=settings.login_max_failures,
                           lockout_s=settings.login_lockout_s)
    who = username.strip().lower()[:64]
    if outcome.user_id is None:
        audit("auth.login_failed", target=who,
              detail={"reason": outcome.reason, "locked_now": outcome.locked_now},
              actor=Actor("user", "", who))
        log.warning("sign-in refused for %r from %s: %s", who, request.remote_addr, outcome.reason)
        return jsonify({"error": GENERIC_LOGIN_ERROR}), 401
    old = current_session()
    with db.transaction() as tx:
        if old is not None:
            sessions.revoke(tx, old.key, now=at)
        sessions.purge(tx, now=at)
        sid, row = sessions.create(tx, outcome.user_id, now=at, max_s=settings.session_max_s,
                                   ip=request.remote_addr)
        user = load_user(tx, outcome.user_id)
        assert user is not None
        g.user = user
        audit("auth.login", target=user.username, tx=tx)
    session.clear()
    session.permanent = True
    session["sid"] = sid
    return jsonify({"user": user.to_json(), "csrf": row.csrf})


@bp.get("/me")
@login_required()
def me():  # type: ignore[no-untyped-def]
    row = current_session()
    assert row is not None
    return jsonify({"user": g.user.to_json(), "csrf": row.csrf})


@bp.post("/logout")
@login_required()
def logout():  # type: ignore[no-untyped-def]
    row = current_session()
    assert row is not None
    with get_db().transaction() as tx:
        sessions.revoke(tx, row.key, now=now())
        audit("auth.logout", target=g.user.username, tx=tx)
    session.clear()
    return jsonify({"ok": True})


# --- users ----------------------------------------------------------------------------------

@bp.get("/users")
@login_required(*VIEW_USERS)
def list_users():  # type: ignore[no-untyped-def]
    return jsonify({"users": directory.list_users(get_db(), g.user)})


@bp.get("/users/<int:user_id>")
@login_required(*VIEW_USERS)
def get_user(user_id: int):  # type: ignore[no-untyped-def]
    found = directory.get_user(get_db(), user_id)
    if not g.user.can_see(found["department_id"]) and found["id"] != g.user.id:
        raise NotFound(f"user {user_id} does not exist")
    return jsonify({"user": found})


@bp.post("/users")
@login_required("admin")
def create_user():  # type: ignore[no-untyped-def]
    body = _body()
    with get_db().transaction() as tx:
        user_id = directory.create_user(
            tx, body.get("username"), body.get("password"), display_name=body.get("display_name"),
            roles=_role_list(body.get("roles", [])), department_id=body.get("department_id"),
            active=body.get("active", True), now=now())
        created = directory.get_user(tx, user_id)
        audit("user.create", target=created["username"],
              detail={k: created[k] for k in ("display_name", "roles", "department_id", "active")},
              tx=tx)
    return jsonify({"user": created}), 201


@bp.patch("/users/<int:user_id>")
@login_required("admin")
def update_user(user_id: int):  # type: ignore[no-untyped-def]
    body = _body()
    with get_db().transaction() as tx:
        changed = directory.update_user(tx, user_id, body, now=now())
        updated = directory.get_user(tx, user_id)
        if changed:
            audit("user.update", target=updated["username"],
                  detail={k: ("***" if k == "password" else updated.get(k)) for k in changed},
                  tx=tx)
    return jsonify({"user": updated, "changed": changed})


def _role_list(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list):
        raise InvalidInput("roles: a list")
    return value


# --- departments ----------------------------------------------------------------------------

@bp.get("/departments")
@login_required()
def list_departments():  # type: ignore[no-untyped-def]
    return jsonify({"departments": directory.list_departments(get_db(), g.user)})


@bp.post("/departments")
@login_required("admin")
def create_department():  # type: ignore[no-untyped-def]
    body = _body()
    with get_db().transaction() as tx:
        dept_id = directory.create_department(tx, body.get("name"), body.get("parent_id"),
                                              now=now())
        created = directory.get_department(tx, dept_id)
        audit("department.create", target=str(dept_id), detail=created, tx=tx)
    return jsonify({"department": created}), 201


@bp.patch("/departments/<int:department_id>")
@login_required("admin")
def update_department(department_id: int):  # type: ignore[no-untyped-def]
    body = _body()
    unknown = set(body) - {"name", "parent_id"}
    if unknown:
        raise InvalidInput(f"unknown field(s) {sorted(unknown)}; allowed: name, parent_id")
    with get_db().transaction() as tx:
        changed = directory.update_department(tx, department_id, now=now(),
                                              **{k: body[k] for k in body})
        updated = directory.get_department(tx, department_id)
        if changed:
            audit("department.update", target=str(department_id), detail=changed, tx=tx)
    return jsonify({"department": updated, "changed": sorted(changed)})


# --- audit log and edge tokens --------------------------------------------------------------

@bp.get("/audit")
@login_required("admin")
def list_audit():  # type: ignore[no-untyped-def]
    return jsonify({"entries": audit_log.search(get_db(), request.args.to_dict())})


@bp.get("/tokens")
@login_required("admin")
def list_tokens():  # type: ignore[no-untyped-def]
    edge_id = request.args.get("edge_id")
    sql = "SELECT id, edge_id, created_at, revoked_at FROM api_tokens"
    found = get_db().query(sql + (" WHERE edge_id = ?" if edge_id else "") + " ORDER BY id",
                           (edge_id,) if edge_id else ())
    return jsonify({"tokens": [{"id": int(i), "edge_id": e, "created_at": c, "revoked_at": r}
                               for i, e, c, r in found]})


@bp.post("/tokens/<int:token_id>/revoke")
@login_required("admin")
def revoke_token(token_id: int):  # type: ignore[no-untyped-def]
    with get_db().transaction() as tx:
        found = tx.execute("SELECT edge_id FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        if found is None:
            raise NotFound(f"token {token_id} does not exist")
        revoked = tokens.revoke(tx, token_id, now=now())
        if revoked:
            audit("edge_token.revoke", target=found[0], detail={"token_id": token_id}, tx=tx)
    return jsonify({"revoked": revoked})


@bp.get("/edge/whoami")
@edge_required
def edge_whoami():  # type: ignore[no-untyped-def]
    """Lets an edge check its token (provisioning runs this right after enrolling)."""
    return jsonify({"edge_id": g.edge_id})
