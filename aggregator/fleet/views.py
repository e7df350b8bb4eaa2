"""HTTP views of the fleet area (``/api/v1/fleet``): enrollment and each edge's health (ADM-4).

- ``POST /enrollment-tokens`` ``{"department_id"?, "edge_name"?, "ttl_s"?}`` (admin, technician)
  → ``{"id", "token", "expires_at", …}``: the token is shown this once.
- ``GET /enrollment-tokens`` (admin, technician): tokens of the caller's departments, newest first.
- ``POST /enrollment-tokens/<id>/revoke`` (admin, technician).
- ``POST /enroll`` ``{"token", "name"?, "version"?}`` (no sign-in: the token is the credential)
  → ``{"edge_id", "name", "broker": {"host", "port", "username", "password"}, "api_token",
  "hq_url"}``; 403 unknown token, 409 used, 410 expired or revoked, 502 broker refused.
- ``GET /edges`` (admin, technician, supervisor): the caller's departments' edges with
  ``state`` online/stale/offline (or disabled/enrolling); ``?removed=1`` includes removed ones.
- ``GET /edges/<id>``; ``POST /edges/<id>/disable``, ``/enable`` and ``DELETE /edges/<id>``
  (admin): the broker refuses, re-admits or forgets the edge at once.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, g, jsonify, request

from aggregator.auth.access import audit, login_required, revoke_edge_tokens, scope_filter
from aggregator.fleet import edges, enrollment, enrollment_tokens
from aggregator.fleet.dynsec import DynsecClient
from aggregator.fleet.errors import FleetError, InvalidInput, NotFound
from aggregator.web.app import Settings, get_db, get_settings, now
from aggregator.web.json_api import json_body

log = logging.getLogger(__name__)

bp = Blueprint("fleet", __name__, url_prefix="/api/v1/fleet")

MANAGE = ("technician",)                     # admin passes every check
VIEW = ("technician", "supervisor")


@bp.errorhandler(FleetError)
def _fleet_error(exc: FleetError):  # type: ignore[no-untyped-def]
    log.info("fleet: %s %s refused (%s): %s", request.method, request.path, exc.status, exc)
    return jsonify({"error": str(exc)}), exc.status


_body = json_body


def broker_admin(settings: Settings) -> DynsecClient:
    return DynsecClient(settings.broker_host, settings.broker_port, settings.broker_admin_user,
                        settings.broker_admin_password)


def broker_for_edges(settings: Settings) -> dict[str, Any]:
    """Where edges reach the broker: HQ may reach it on loopback while edges use a public name
    (``broker_public_host``/``broker_public_port``, in ``Settings`` or its ``extra``)."""
    host = getattr(settings, "broker_public_host", "") or settings.extra.get("broker_public_host")
    port = getattr(settings, "broker_public_port", 0) or settings.extra.get("broker_public_port")
    return {"host": host or settings.broker_host, "port": int(port or settings.broker_port)}


# --- enrollment tokens -------------------------------------------------------------------------

@bp.post("/enrollment-tokens")
@login_required(*MANAGE)
def create_token():  # type: ignore[no-untyped-def]
    body = _body()
    department_id = body.get("department_id", g.user.department_id)
    if department_id is not None and (isinstance(department_id, bool)
                                      or not isinstance(department_id, int)):
        raise InvalidInput("department_id: an integer, or null (admin only)")
    if not g.user.can_see(department_id):
        abort(403, description=f"department {department_id}: outside your departments")
    ttl = body.get("ttl_s", enrollment_tokens.DEFAULT_TTL_S)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise InvalidInput("ttl_s: a number of seconds")
    at = now()
    with get_db().transaction() as tx:
        if department_id is not None and tx.execute(
                "SELECT 1 FROM departments WHERE id = ?", (department_id,)).fetchone() is None:
            raise NotFound(f"department {department_id}: no such department")
        token_id, token = enrollment_tokens.create(
            tx, department_id=department_id, edge_name=body.get("edge_name", ""),
            created_by=g.user.id, ttl_s=float(ttl), now=at)
        audit("fleet.token_create", target=str(token_id), tx=tx,
              detail={"department_id": department_id, "edge_name": body.get("edge_name", ""),
                      "ttl_s": ttl})
        created = enrollment_tokens.get(tx, token_id)
    assert created is not None
    return jsonify({**created.to_json(at), "token": token}), 201


@bp.get("/enrollment-tokens")
@login_required(*MANAGE)
def list_tokens():  # type: ignore[no-untyped-def]
    where, params = scope_filter(g.user, "department_id")
    at = now()
    return jsonify({"tokens": [t.to_json(at) for t in
                               enrollment_tokens.listing(get_db(), where, params)]})


@bp.post("/enrollment-tokens/<int:token_id>/revoke")
@login_required(*MANAGE)
def revoke_token(token_id: int):  # type: ignore[no-untyped-def]
    found = enrollment_tokens.get(get_db(), token_id)
    if found is None or not g.user.can_see(found.department_id):
        raise NotFound(f"enrollment token {token_id}: not found")
    with get_db().transaction() as tx:
        if not enrollment_tokens.revoke(tx, token_id, now()):
            raise InvalidInput(f"enrollment token {token_id}: already {found.status(now())}")
        audit("fleet.token_revoke", target=str(token_id), tx=tx)
    return jsonify({"id": token_id, "status": "revoked"})


# --- enrollment --------------------------------------------------------------------------------

@bp.post("/enroll")
def enroll():  # type: ignore[no-untyped-def]
    body = _body()
    settings = get_settings()
    done = enrollment.enroll(get_db(), broker_admin(settings), token=body.get("token"),
                             name=body.get("name"), version=body.get("version"), now=now())
    return jsonify({
        "edge_id": done.edge_id, "name": done.name, "department_id": done.department_id,
        "broker": {**broker_for_edges(settings), "username": done.edge_id,
                   "password": done.broker_password},
        "api_token": done.api_token, "hq_url": settings.public_url,
    }), 201


# --- edges -------------------------------------------------------------------------------------

@bp.get("/edges")
@login_required(*VIEW)
def list_edges():  # type: ignore[no-untyped-def]
    where, params = scope_filter(g.user, "department_id")
    at = now()
    found = edges.listing(get_db(), where, params, removed=request.args.get("removed") == "1")
    return jsonify({"edges": [edge.to_json(at) for edge in found], "now": at,
                    "online_s": edges.ONLINE_S, "stale_s": edges.STALE_S})


def _visible(edge_id: str) -> edges.Edge:
    edge = edges.get(get_db(), edge_id)
    if not g.user.can_see(edge.department_id):
        raise NotFound(f"edge {edge_id!r}: not enrolled")
    return edge


@bp.get("/edges/<edge_id>")
@login_required(*VIEW)
def get_edge(edge_id: str):  # type: ignore[no-untyped-def]
    edge = _visible(edge_id)
    return jsonify({**edge.to_json(now()), "health": edge.health})


@bp.post("/edges/<edge_id>/disable")
@login_required("admin")
def disable_edge(edge_id: str):  # type: ignore[no-untyped-def]
    return _change(edge_id, "disabled", lambda admin: admin.disable_edge(edge_id))


@bp.post("/edges/<edge_id>/enable")
@login_required("admin")
def enable_edge(edge_id: str):  # type: ignore[no-untyped-def]
    return _change(edge_id, "active", lambda admin: admin.enable_edge(edge_id))


@bp.delete("/edges/<edge_id>")
@login_required("admin")
def remove_edge(edge_id: str):  # type: ignore[no-untyped-def]
    return _change(edge_id, "removed", lambda admin: admin.remove_edge(edge_id))


def _change(edge_id: str, state: str, on_broker: Any):  # type: ignore[no-untyped-def]
    """Broker first: if it refuses, HQ's row keeps saying what the broker still does."""
    edge = _visible(edge_id)
    if edge.state == "removed":
        raise InvalidInput(f"edge {edge_id}: removed; enroll the box again with a new token")
    on_broker(broker_admin(get_settings()))
    with get_db().transaction() as tx:
        edges.set_state(tx, edge_id, state, now())
        revoked = revoke_edge_tokens(tx, edge_id) if state == "removed" else 0
        audit(f"fleet.edge_{state}", target=edge_id, tx=tx,
              detail={"was": edge.state, "api_tokens_revoked": revoked})
    return jsonify(edges.get(get_db(), edge_id).to_json(now()))
