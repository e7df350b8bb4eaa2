"""HTTP views of the downlink area (``/api/v1/downlink``): what HQ sends its edges.

- ``POST /edges/<edge>/config/<section>`` body = the section (``aggregator.downlink.sections``)
  → 201 ``{"message"}`` (admin, technician)
- ``POST /edges/<edge>/commands`` ``{"name", "args"}`` → 201 ``{"message"}`` (admin, supervisor,
  technician)
- ``GET /messages?edge=&kind=&scope=&state=&before=&limit=`` → ``{"messages": [...]}`` newest
  first; ``GET /messages/<id>``
- ``POST /announcements`` ``{"title", "body", "audience": {"type": "everyone"} |
  {"type": "department", "department_id": 3} | {"type": "group", "group": "cards"},
  "priority": "normal", "expires_at": null}`` → 201 ``{"announcement", "edges"}``
  (admin, supervisor, team_lead)
- ``GET /announcements`` (with read counts), ``GET /announcements/<id>``,
  ``POST /announcements/<id>/withdraw``, ``GET /announcements/<id>/reads``

Data scope (ADM-1): a user who does not see every department may send only to edges of their
departments; an announcement to everyone or to a group from such a user reaches the edges in
their scope, and they see messages and read receipts of those edges only. Every send is audited
in the same transaction as the message it queues.
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, g, jsonify, request

from aggregator.auth.access import audit, login_required
from aggregator.downlink import announcements as ann
from aggregator.downlink import fanout, queue
from aggregator.downlink.announcements import AnnouncementError, Audience
from aggregator.downlink.sections import ShapeError, check_command, check_section
from aggregator.envelope import EnvelopeError
from aggregator.web.app import get_db, now
from aggregator.web.json_api import answer_errors, json_body

log = logging.getLogger(__name__)

bp = Blueprint("downlink", __name__, url_prefix="/api/v1/downlink")

CONFIG_ROLES = ("technician",)
COMMAND_ROLES = ("supervisor", "technician")
ANNOUNCE_ROLES = ("supervisor", "team_lead")
READ_ROLES = ("supervisor", "team_lead", "technician", "qa")
MAX_LIMIT = 1000


answer_errors(bp, {ShapeError: 400, AnnouncementError: 400, EnvelopeError: 400})


_body = json_body


def _who() -> str:
    return g.user.username


def _scope_edges() -> set[str] | None:
    """The edges the signed-in user may address; None: all of them."""
    if g.user.sees_all:
        return None
    rows = get_db().query("SELECT id, department_id FROM edges")
    return {edge for edge, department in rows if g.user.can_see(department)}


def _edge_in_scope(edge: str) -> None:
    rows = get_db().query("SELECT department_id FROM edges WHERE id = ? AND state <> 'removed'",
                          (edge,))
    if not rows:
        abort(404, description=f"no edge {edge!r}")
    if not g.user.can_see(rows[0][0]):
        abort(403, description=f"edge {edge!r} is outside your departments")


def _limit() -> int:
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        abort(400, description="limit: expected an integer")
    return max(1, min(limit, MAX_LIMIT))


# --- config and commands ---------------------------------------------------------------------------

@bp.post("/edges/<edge>/config/<section>")
@login_required(*CONFIG_ROLES)
def push_config(edge: str, section: str):  # type: ignore[no-untyped-def]
    body = _body()
    check_section(section, body)
    _edge_in_scope(edge)
    with get_db().transaction() as tx:
        message = queue.enqueue(tx, edge, "config", section, "config.section", body,
                                created_by=_who(), now=now())
        audit("downlink.config", target=f"{edge}/{section}",
              detail={"id": message.id, "version": message.version}, tx=tx)
    return jsonify({"message": message.to_dict()}), 201


@bp.post("/edges/<edge>/commands")
@login_required(*COMMAND_ROLES)
def send_command(edge: str):  # type: ignore[no-untyped-def]
    body = _body()
    name, args = body.get("name"), body.get("args", {})
    check_command(name, args)
    _edge_in_scope(edge)
    with get_db().transaction() as tx:
        message = queue.enqueue(tx, edge, "command", queue.new_scope(), "command",
                                {"name": name, "args": args}, created_by=_who(), now=now())
        audit("downlink.command", target=f"{edge}/{name}", detail={"id": message.id, "args": args},
              tx=tx)
    return jsonify({"message": message.to_dict()}), 201


@bp.get("/messages")
@login_required(*READ_ROLES)
def list_messages():  # type: ignore[no-untyped-def]
    state = request.args.get("state")
    if state is not None and state not in queue.STATES:
        abort(400, description=f"state: expected one of {', '.join(queue.STATES)}")
    rows = queue.listing(get_db(), edge=request.args.get("edge"), kind=request.args.get("kind"),
                         scope=request.args.get("scope"), state=state, limit=_limit(),
                         before=request.args.get("before"), edges=_scope_edges())
    return jsonify({"messages": [row.to_dict() for row in rows]})


@bp.get("/messages/<message_id>")
@login_required(*READ_ROLES)
def get_message(message_id: str):  # type: ignore[no-untyped-def]
    row = queue.get(get_db(), message_id)
    scope = _scope_edges()
    if row is None or (scope is not None and row.message.edge not in scope):
        abort(404, description=f"no message {message_id}")
    return jsonify({"message": row.to_dict()})


# --- announcements ---------------------------------------------------------------------------------

@bp.post("/announcements")
@login_required(*ANNOUNCE_ROLES)
def publish_announcement():  # type: ignore[no-untyped-def]
    body = _body()
    audience = Audience.from_dict(body.get("audience"))
    if audience.kind == "department" and not g.user.can_see(audience.department_id):
        abort(403, description=f"department {audience.department_id} is outside your departments")
    db, within = get_db(), _scope_edges()
    with db.transaction() as tx:
        announcement, edges = fanout.announce(
            db, audience, body.get("title"), body.get("body"),  # type: ignore[arg-type]
            priority=body.get("priority", "normal"), expires_at=body.get("expires_at"),
            created_by=_who(), now=now(), tx=tx, within=within)
        audit("announcement.publish", target=announcement.id,
              detail={"title": announcement.title, "audience": audience.to_dict(),
                      "edges": len(edges)}, tx=tx)
    return jsonify({"announcement": announcement.to_dict(), "edges": edges}), 201


@bp.get("/announcements")
@login_required(*READ_ROLES)
def list_announcements():  # type: ignore[no-untyped-def]
    rows = ann.listing(get_db(), limit=_limit(), before=request.args.get("before"))
    counts = ann.read_counts(get_db(), [a.id for a in rows])
    return jsonify({"announcements": [{**a.to_dict(), "reads": counts.get(a.id, 0)}
                                      for a in rows]})


@bp.get("/announcements/<announcement_id>")
@login_required(*READ_ROLES)
def get_announcement(announcement_id: str):  # type: ignore[no-untyped-def]
    announcement = _announcement(announcement_id)
    states = queue.counts_for_scope(get_db(), fanout.KIND, announcement_id, edges=_scope_edges())
    return jsonify({"announcement": announcement.to_dict(), "delivery": states})


@bp.post("/announcements/<announcement_id>/withdraw")
@login_required(*ANNOUNCE_ROLES)
def withdraw_announcement(announcement_id: str):  # type: ignore[no-untyped-def]
    announcement = _announcement(announcement_id)
    if not g.user.sees_all and announcement.created_by != _who():
        abort(403, description="only its author or an admin withdraws an announcement")
    db = get_db()
    with db.transaction() as tx:
        announcement, edges = fanout.withdraw(db, announcement_id, created_by=_who(), now=now(),
                                              tx=tx)
        audit("announcement.withdraw", target=announcement_id, detail={"edges": len(edges)}, tx=tx)
    return jsonify({"announcement": announcement.to_dict(), "edges": edges})


@bp.get("/announcements/<announcement_id>/reads")
@login_required(*READ_ROLES)
def announcement_reads(announcement_id: str):  # type: ignore[no-untyped-def]
    _announcement(announcement_id)
    scope = _scope_edges()
    reads = [r for r in ann.reads(get_db(), announcement_id) if scope is None or r["edge"] in scope]
    return jsonify({"reads": reads})


def _announcement(announcement_id: str) -> ann.Announcement:
    announcement = ann.get(get_db(), announcement_id)
    if announcement is None:
        abort(404, description=f"no announcement {announcement_id}")
    return announcement
