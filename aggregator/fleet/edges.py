"""The fleet's edges: ids, rows, and how each one is doing as HQ sees it.

An edge id is both a topic level (``cc/v1/<id>/…``) and the edge's broker user name, so it is
made here, never taken from the box: ``edge-`` and an ASCII slug of the branch name when it has
one (``Shanghai 02`` → ``edge-shanghai-02``), else ``edge-`` and 8 random hex digits (a Chinese
name such as 北京朝阳 stays the display name). A slug already taken gets a random suffix.

``status``: the admin ``state`` when it is not ``active``; otherwise ``online`` when the last
health report came within ``online_s`` (3 reports at the default 60 s), ``stale`` within
``stale_s``, else ``offline`` (also when the edge never reported).
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from aggregator.fleet.broker_acl import check_edge_id
from aggregator.fleet.errors import NotFound

ONLINE_S = 180.0
STALE_S = 900.0
SLUG_MAX = 40
STATES = ("enrolling", "active", "disabled", "removed")

_COLUMNS = ("id, name, department_id, state, enrolled_at, last_seen, reported_at, version,"
            " outbox_depth, trunks_total, trunks_up, agents_total, agents_logged_in, calls_active,"
            " uptime_s, health")


@dataclass(frozen=True)
class Edge:
    id: str
    name: str
    department_id: int | None
    state: str
    enrolled_at: float
    last_seen: float | None
    reported_at: float | None
    version: str | None
    outbox_depth: int | None
    trunks_total: int | None
    trunks_up: int | None
    agents_total: int | None
    agents_logged_in: int | None
    calls_active: int | None
    uptime_s: float | None
    health: dict[str, Any] | None

    def status(self, now: float, online_s: float = ONLINE_S, stale_s: float = STALE_S) -> str:
        if self.state != "active":
            return self.state
        if self.last_seen is None:
            return "offline"
        age = now - self.last_seen
        return "online" if age <= online_s else "stale" if age <= stale_s else "offline"

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "department_id": self.department_id,
            "state": self.status(now), "admin_state": self.state, "enrolled_at": self.enrolled_at,
            "last_seen": self.last_seen,
            "last_seen_age_s": None if self.last_seen is None else max(0.0, now - self.last_seen),
            "reported_at": self.reported_at, "version": self.version,
            "outbox_depth": self.outbox_depth,
            "trunks": {"total": self.trunks_total, "up": self.trunks_up},
            "agents": {"total": self.agents_total, "logged_in": self.agents_logged_in},
            "calls_active": self.calls_active, "uptime_s": self.uptime_s,
            "config_versions": (self.health or {}).get("config_versions", {}),
        }


def slug(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text[:SLUG_MAX].rstrip("-")


def insert_new(tx: Any, name: str, department_id: int | None, now: float) -> str:
    """Create the edge's row in state ``enrolling`` under a fresh id; returns the id."""
    base = slug(name)
    candidates = [f"edge-{base}"] if base else []
    candidates += [f"edge-{base}-{secrets.token_hex(2)}" if base else f"edge-{secrets.token_hex(4)}"
                   for _ in range(5)]
    for edge_id in candidates:
        inserted = tx.execute(
            "INSERT INTO edges (id, name, department_id, state, enrolled_at, updated_at)"
            " VALUES (?, ?, ?, 'enrolling', ?, ?) ON CONFLICT (id) DO NOTHING",
            (check_edge_id(edge_id), name or edge_id, department_id, now, now)).rowcount
        if inserted == 1:
            return edge_id
    raise RuntimeError(f"no free edge id for {name!r} after {len(candidates)} tries")


def set_state(tx: Any, edge_id: str, state: str, now: float) -> None:
    if state not in STATES:
        raise ValueError(f"edge state {state!r}: one of {STATES}")
    if tx.execute("UPDATE edges SET state = ?, updated_at = ? WHERE id = ?",
                  (state, now, edge_id)).rowcount != 1:
        raise NotFound(f"edge {edge_id!r}: not enrolled")


def delete_enrolling(tx: Any, edge_id: str) -> None:
    """Forget an enrollment that failed before the edge could use it."""
    tx.execute("DELETE FROM edges WHERE id = ? AND state = 'enrolling'", (edge_id,))


def get(src: Any, edge_id: str) -> Edge:
    rows = _rows(src, f"SELECT {_COLUMNS} FROM edges WHERE id = ?", (edge_id,))
    if not rows:
        raise NotFound(f"edge {edge_id!r}: not enrolled")
    return _edge(rows[0])


def listing(src: Any, where: str, params: list[object], *, removed: bool = False) -> list[Edge]:
    """Edges by name, limited by a scope fragment on ``department_id``."""
    if not removed:
        where = f"({where}) AND state <> 'removed'"
    return [_edge(r) for r in _rows(src, f"SELECT {_COLUMNS} FROM edges WHERE {where}"
                                         " ORDER BY name, id", params)]


def _rows(src: Any, sql: str, params: Any) -> list[tuple]:
    if hasattr(src, "query"):
        return src.query(sql, params)
    return [tuple(r) for r in src.execute(sql, params).fetchall()]


def _edge(row: Any) -> Edge:
    values = list(row)
    values[2] = None if values[2] is None else int(values[2])
    for i in (8, 9, 10, 11, 12, 13):
        values[i] = None if values[i] is None else int(values[i])
    try:
        values[15] = json.loads(values[15]) if values[15] else None
    except ValueError:
        values[15] = None
    return Edge(*values)
