"""Fan an announcement out as one versioned ``announcement`` message per target edge.

Who gets it (``target_edges``), from the fleet's ``edges`` table (edges in state ``active``: one
still enrolling, disabled or removed would only collect messages it never acknowledges):

* ``everyone``: every edge.
* ``department``: every edge whose ``department_id`` is the department or one below it.
* ``group`` (a skill group name): every edge that reports the group — HQ knows an edge's groups
  from the ``groups`` config section the edge acknowledged as applied. When no edge is known to
  have it (edges running their local config only, a group HQ never pushed) it goes to every edge
  rather than to none; the edge then shows it only to the agents of that group
  (``edge.store.announcement_rows``), so over-delivery costs a message, never a wrong reader.

The announcement row and all its messages commit in one transaction. A withdrawal (or an edit)
is a new version of the same scope (the announcement id) on every edge that got the first one.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any, Collection

from ulid import ULID

from aggregator.auth.model import descendants
from aggregator.downlink import queue
from aggregator.downlink.announcements import (Announcement, AnnouncementError, Audience,
                                               check_fields, get, insert)

KIND = "announcement"


def target_edges(tx: Any, audience: Audience, within: Collection[str] | None = None) -> list[str]:
    """The edge ids an audience reaches, sorted; ``within`` (the sender's data scope) limits."""
    edges = _audience_edges(tx, audience)
    return edges if within is None else [edge for edge in edges if edge in within]


def _audience_edges(tx: Any, audience: Audience) -> list[str]:
    if audience.kind == "department":
        assert audience.department_id is not None
        departments = sorted(descendants(tx, audience.department_id))
        if not departments:
            raise AnnouncementError(f"audience.department_id: no department {audience.department_id}")
        marks = ", ".join("?" for _ in departments)
        rows = tx.execute(f"SELECT id FROM edges WHERE state = 'active' AND department_id"
                          f" IN ({marks}) ORDER BY id", departments).fetchall()
        return [row[0] for row in rows]
    everyone = [row[0] for row in tx.execute(
        "SELECT id FROM edges WHERE state = 'active' ORDER BY id").fetchall()]
    if audience.kind == "group":
        having = edges_with_group(tx, audience.group)
        return [edge for edge in everyone if edge in having] if having else everyone
    return everyone


def edges_with_group(tx: Any, group: str) -> set[str]:
    """Edges whose latest applied ``groups`` config section names ``group``."""
    rows = tx.execute("SELECT edge, version, body FROM downlink WHERE kind = 'config'"
                      " AND scope = 'groups' AND state = 'applied' ORDER BY edge, version"
                      ).fetchall()
    latest = {edge: body for edge, _version, body in rows}   # the last row per edge wins
    found = set()
    for edge, body in latest.items():
        groups = json.loads(body).get("groups") or []
        if any(isinstance(g, dict) and g.get("name") == group for g in groups):
            found.add(edge)
    return found


def announce(db: Any, audience: Audience, title: str, body: str, *, priority: str = "normal",
             expires_at: float | None = None, created_by: str = "", now: float | None = None,
             tx: Any = None, within: Collection[str] | None = None
             ) -> tuple[Announcement, list[str]]:
    """Create the announcement and queue it for every target edge; returns it and the edges.

    ``within``: only these edges (the sender's data scope). Pass ``tx`` to commit it with the
    caller's own writes (an audit row)."""
    now = time.time() if now is None else now
    check_fields(title, body, priority, expires_at, now)
    if tx is None:
        with db.transaction() as own:
            return announce(db, audience, title, body, priority=priority, expires_at=expires_at,
                            created_by=created_by, now=now, tx=own, within=within)
    edges = target_edges(tx, audience, within)
    announcement = Announcement(str(ULID()), title.strip(), body, audience, priority,
                                None if expires_at is None else float(expires_at), now,
                                created_by, None, len(edges))
    insert(tx, announcement)
    for edge in edges:
        queue.enqueue(tx, edge, KIND, announcement.id, "announcement.publish",
                      announcement.payload(), created_by=created_by, now=now)
    return announcement, edges


def withdraw(db: Any, announcement_id: str, *, created_by: str = "", now: float | None = None,
             tx: Any = None) -> tuple[Announcement, list[str]]:
    """Withdraw an announcement on every edge that was sent it (a no-op the second time)."""
    now = time.time() if now is None else now
    if tx is None:
        with db.transaction() as own:
            return withdraw(db, announcement_id, created_by=created_by, now=now, tx=own)
    announcement = get(tx, announcement_id)
    if announcement is None:
        raise AnnouncementError(f"no announcement {announcement_id}")
    if announcement.withdrawn_at is not None:
        return announcement, []
    announcement = replace(announcement, withdrawn_at=now)
    tx.execute("UPDATE announcements SET withdrawn_at = ? WHERE id = ?", (now, announcement_id))
    edges = [row[0] for row in tx.execute(
        "SELECT DISTINCT edge FROM downlink WHERE kind = ? AND scope = ? ORDER BY edge",
        (KIND, announcement_id)).fetchall()]
    for edge in edges:
        queue.enqueue(tx, edge, KIND, announcement_id, "announcement.withdraw",
                      announcement.payload(), created_by=created_by, now=now)
    return announcement, edges
