"""Announcements (公告, SVC-1) at HQ: the record, its audience, and the agents' read receipts.

An announcement goes to an ``Audience``: everyone, a department (with its sub-departments) or a
skill group; ``aggregator.downlink.fanout`` turns it into one versioned message per edge. The
message body is the whole announcement every time (``payload``), so a later version — an edit or
a withdrawal — replaces what the edge holds without depending on the earlier one having arrived.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from aggregator import AggregatorError

AUDIENCES = ("everyone", "department", "group")
PRIORITIES = ("low", "normal", "high", "urgent")
MAX_TITLE = 200
MAX_TEXT = 20_000


class AnnouncementError(AggregatorError):
    """An announcement that cannot be published as given; the text says which field and why."""


@dataclass(frozen=True)
class Audience:
    kind: str                          # everyone | department | group
    department_id: int | None = None
    group: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> "Audience":
        if not isinstance(data, Mapping):
            raise AnnouncementError("audience: expected an object such as {\"type\": \"everyone\"}")
        kind = data.get("type")
        if kind == "everyone":
            return cls("everyone")
        if kind == "department":
            department = data.get("department_id")
            if isinstance(department, bool) or not isinstance(department, int):
                raise AnnouncementError(f"audience.department_id: expected an integer, "
                                        f"got {department!r:.80}")
            return cls("department", department_id=department)
        if kind == "group":
            group = data.get("group")
            if not isinstance(group, str) or not group.strip() or len(group) > 64:
                raise AnnouncementError(f"audience.group: expected a skill group name, "
                                        f"got {group!r:.80}")
            return cls("group", group=group.strip())
        raise AnnouncementError(f"audience.type: expected one of {', '.join(AUDIENCES)}, "
                                f"got {kind!r:.80}")

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "department":
            return {"type": "department", "department_id": self.department_id}
        if self.kind == "group":
            return {"type": "group", "group": self.group}
        return {"type": "everyone"}


@dataclass(frozen=True)
class Announcement:
    id: str
    title: str
    body: str
    audience: Audience
    priority: str
    expires_at: float | None
    created_at: float
    created_by: str = ""
    withdrawn_at: float | None = None
    edges: int = 0

    def payload(self) -> dict[str, Any]:
        """The body of the ``announcement`` down message (the edge's whole row)."""
        return {"id": self.id, "title": self.title, "body": self.body,
                "audience": self.audience.to_dict(), "priority": self.priority,
                "published_at": self.created_at, "expires_at": self.expires_at,
                "withdrawn": self.withdrawn_at is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "body": self.body,
                "audience": self.audience.to_dict(), "priority": self.priority,
                "expires_at": self.expires_at, "created_at": self.created_at,
                "created_by": self.created_by, "withdrawn_at": self.withdrawn_at,
                "edges": self.edges}


def check_fields(title: Any, body: Any, priority: Any, expires_at: Any, now: float) -> None:
    """Raise ``AnnouncementError`` naming the first bad field."""
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise AnnouncementError(f"title: expected text of 1 to {MAX_TITLE} characters")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_TEXT:
        raise AnnouncementError(f"body: expected text of 1 to {MAX_TEXT} characters")
    if priority not in PRIORITIES:
        raise AnnouncementError(f"priority: expected one of {', '.join(PRIORITIES)}, "
                                f"got {priority!r:.80}")
    if expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) \
                or not math.isfinite(expires_at):
            raise AnnouncementError(f"expires_at: expected epoch seconds or null, "
                                    f"got {expires_at!r:.80}")
        if expires_at <= now:
            raise AnnouncementError("expires_at: already in the past")


def insert(tx: Any, a: Announcement) -> None:
    tx.execute("INSERT INTO announcements (id, title, body, audience, priority, expires_at,"
               " created_at, created_by, withdrawn_at, edges) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (a.id, a.title, a.body, json.dumps(a.audience.to_dict(), ensure_ascii=False),
                a.priority, a.expires_at, a.created_at, a.created_by, a.withdrawn_at, a.edges))


_COLUMNS = ("id, title, body, audience, priority, expires_at, created_at, created_by, "
            "withdrawn_at, edges")


def get(db_or_tx: Any, announcement_id: str) -> Announcement | None:
    rows = _rows(db_or_tx, f"SELECT {_COLUMNS} FROM announcements WHERE id = ?",
                 (announcement_id,))
    return _announcement(rows[0]) if rows else None


def listing(db: Any, limit: int = 100, before: str | None = None) -> list[Announcement]:
    where, params = (" WHERE id < ?", (before,)) if before else ("", ())
    rows = db.query(f"SELECT {_COLUMNS} FROM announcements{where} ORDER BY id DESC LIMIT ?",
                    (*params, limit))
    return [_announcement(row) for row in rows]


def reads(db: Any, announcement_id: str) -> list[dict[str, Any]]:
    rows = db.query("SELECT edge, agent_id, read_at, received_at FROM announcement_reads"
                    " WHERE announcement_id = ? ORDER BY read_at, edge, agent_id",
                    (announcement_id,))
    return [{"edge": e, "agent_id": a, "read_at": r, "received_at": rc} for e, a, r, rc in rows]


def read_counts(db: Any, ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = db.query(f"SELECT announcement_id, count(*) FROM announcement_reads"
                    f" WHERE announcement_id IN ({marks}) GROUP BY announcement_id", tuple(ids))
    return {i: int(n) for i, n in rows}


def _rows(db_or_tx: Any, sql: str, params: Sequence[Any]) -> list[Any]:
    if hasattr(db_or_tx, "query"):
        return db_or_tx.query(sql, params)
    return db_or_tx.execute(sql, params).fetchall()


def _announcement(row: Sequence[Any]) -> Announcement:
    id_, title, body, audience, priority, expires_at, created_at, created_by, withdrawn_at, \
        edges = row
    return Announcement(id_, title, body, Audience.from_dict(json.loads(audience)), priority,
                        expires_at, created_at, created_by, withdrawn_at, int(edges))
