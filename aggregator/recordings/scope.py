"""Data scope for recordings (ADM-1): a user sees the recordings and CDRs of the edges (branches)
that belong to a department in their scope; admin sees every edge, also one with no department.

An edge's department is the fleet's (``edges.department_id``); a recording belongs to the branch
that recorded it, so its department is its edge's.
"""
from __future__ import annotations

from aggregator.auth.access import scope_filter
from aggregator.auth.model import User
from aggregator.db import HqDb


def visible_edges(db: HqDb, user: User) -> frozenset[str] | None:
    """The edge ids ``user`` may see, or None for all of them."""
    if user.sees_all:
        return None
    where, params = scope_filter(user, "department_id")
    return frozenset(row[0] for row in db.query(f"SELECT id FROM edges WHERE {where}", params))
