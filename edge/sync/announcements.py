"""HQ's announcements (``down/announcement``, SVC-1) into the edge's ``announcements`` table.

The scope of an announcement message is the announcement's id and every version carries the
whole announcement (``withdrawn`` included), so a later version simply replaces the row: an edit,
or a withdrawal that hides it from the agents (``edge.store.announcement_rows`` serves them).
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from typing import Any, Mapping

from edge.sync.inbox import DownlinkRejected, DownMessage, register

PRIORITIES = ("low", "normal", "high", "urgent")
AUDIENCES = ("everyone", "department", "group")
MAX_TITLE, MAX_TEXT = 200, 20_000


@register("announcement")
def apply_announcement(conn: sqlite3.Connection, message: DownMessage) -> None:
    body = message.body
    if body.get("id") != message.scope:
        raise DownlinkRejected(f"id: the body says {body.get('id')!r:.80}, the scope "
                               f"{message.scope!r}")
    withdrawn = body.get("withdrawn", False)
    if not isinstance(withdrawn, bool):
        raise DownlinkRejected("withdrawn: expected true or false")
    title, text = body.get("title"), body.get("body")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise DownlinkRejected(f"title: expected text of 1 to {MAX_TITLE} characters")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise DownlinkRejected(f"body: expected text of at most {MAX_TEXT} characters")
    priority = body.get("priority", "normal")
    if priority not in PRIORITIES:
        raise DownlinkRejected(f"priority: expected one of {', '.join(PRIORITIES)}, "
                               f"got {priority!r:.80}")
    audience = _audience(body.get("audience"))
    published_at = _epoch(body, "published_at", required=True)
    expires_at = _epoch(body, "expires_at", required=False)
    conn.execute(
        "INSERT INTO announcements (id, version, title, body, audience, priority, published_at,"
        " expires_at, withdrawn, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET version = excluded.version, title = excluded.title,"
        " body = excluded.body, audience = excluded.audience, priority = excluded.priority,"
        " published_at = excluded.published_at, expires_at = excluded.expires_at,"
        " withdrawn = excluded.withdrawn, received_at = excluded.received_at"
        " WHERE excluded.version > announcements.version",
        [message.scope, message.version, title, text,
         json.dumps(audience, ensure_ascii=False, sort_keys=True), priority, published_at,
         expires_at, int(withdrawn), time.time()])


def _audience(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in AUDIENCES:
        raise DownlinkRejected(f"audience: expected {{\"type\": {' | '.join(AUDIENCES)}}}, "
                               f"got {value!r:.80}")
    if value["type"] == "group" and (not isinstance(value.get("group"), str)
                                     or not value["group"]):
        raise DownlinkRejected("audience.group: expected a skill group name")
    return dict(value)


def _epoch(body: Mapping[str, Any], key: str, *, required: bool) -> float | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DownlinkRejected(f"{key}: expected epoch seconds, got {value!r:.80}")
    return float(value)
