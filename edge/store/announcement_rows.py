"""Announcements from HQ (``edge.sync.announcements`` stores them) and the agents' read receipts.

An agent sees the announcements that are neither withdrawn nor expired and whose audience
includes them: everyone, the department (HQ sent it to this edge because the edge belongs to
it), or a skill group the agent is in. Reading one writes the receipt and its outbox row
(stream ``announcement``, type ``announcement.read``) in one transaction, once per agent.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from edge.store.outbox_rows import add_to_outbox

_COLUMNS = ("a.id, a.version, a.title, a.body, a.audience, a.priority, a.published_at, "
            "a.expires_at, a.withdrawn")
PRIORITY_ORDER = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


class AnnouncementRows:
    """Mixed into ``Store``: uses its ``_guard``, ``_clock`` and ``_outbox_written``."""

    def announcement(self, announcement_id: str) -> dict[str, Any] | None:
        with self._guard("announcement") as db:  # type: ignore[attr-defined]
            row = db.execute(f"SELECT {_COLUMNS} FROM announcements a WHERE a.id = ?",
                             [announcement_id]).fetchone()
        return _announcement(row) if row else None

    def announcements_for(self, agent_id: str, groups: Iterable[str] = (),
                          now: float | None = None) -> list[dict[str, Any]]:
        """The agent's current announcements, most urgent and newest first, each with
        ``read`` (bool) and ``read_at``. ``groups``: the agent's skill groups."""
        now = self._clock() if now is None else now  # type: ignore[attr-defined]
        with self._guard("announcements") as db:  # type: ignore[attr-defined]
            rows = db.execute(
                f"SELECT {_COLUMNS}, r.read_at FROM announcements a"
                " LEFT JOIN announcement_reads r ON r.announcement_id = a.id AND r.agent_id = ?"
                " WHERE a.withdrawn = 0 AND (a.expires_at IS NULL OR a.expires_at > ?)",
                [agent_id, now]).fetchall()
        member = set(groups)
        found = []
        for row in rows:
            item = _announcement(row[:-1])
            audience = item["audience"]
            if audience.get("type") == "group" and audience.get("group") not in member:
                continue
            item["read"], item["read_at"] = row[-1] is not None, row[-1]
            found.append(item)
        found.sort(key=lambda a: (PRIORITY_ORDER.get(a["priority"], 9), -a["published_at"]))
        return found

    def mark_announcement_read(self, announcement_id: str, agent_id: str) -> float:
        """Record that the agent read it (the first time counts); returns the read time.
        The receipt goes to HQ through the outbox, once."""
        with self._guard(f"read receipt {announcement_id}") as db, db.conn:  # type: ignore[attr-defined]
            now = self._clock()  # type: ignore[attr-defined]
            cursor = db.conn.execute(
                "INSERT INTO announcement_reads (announcement_id, agent_id, read_at)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [announcement_id, agent_id, now])
            if cursor.rowcount == 0:
                return float(db.conn.execute(
                    "SELECT read_at FROM announcement_reads WHERE announcement_id = ?"
                    " AND agent_id = ?", [announcement_id, agent_id]).fetchone()[0])
            if self.outbox:  # type: ignore[attr-defined]
                add_to_outbox(db.conn, "announcement", "announcement.read",
                              {"announcement_id": announcement_id, "agent_id": agent_id,
                               "read_at": now}, now)
        self._outbox_written()  # type: ignore[attr-defined]
        return now


def _announcement(row: Any) -> dict[str, Any]:
    (id_, version, title, body, audience, priority, published_at, expires_at, withdrawn) = row
    return {"id": id_, "version": version, "title": title, "body": body,
            "audience": json.loads(audience), "priority": priority,
            "published_at": published_at, "expires_at": expires_at,
            "withdrawn": bool(withdrawn)}
