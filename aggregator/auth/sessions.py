"""Server-side sign-in sessions: the cookie holds a random id, the database holds its hash.

Flask's signed cookie alone cannot be revoked: a copied cookie would outlive sign-out, a password
change or a deactivated account. So the cookie carries only ``sid`` (256 random bits) and the
``sessions`` row decides: it expires after ``idle_s`` without use and ``max_s`` after sign-in, and
sign-out, a password change or deactivation revoke it. Each session has its own CSRF token.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

TOUCH_EVERY_S = 60.0     # last_seen is refreshed at most this often: no write per request


@dataclass(frozen=True)
class Session:
    key: str            # sha256 of the cookie's sid
    user_id: int
    csrf: str
    created_at: float
    last_seen: float
    expires_at: float   # absolute limit


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


def create(tx: Any, user_id: int, *, now: float, max_s: float, ip: str | None) -> tuple[str, Session]:
    """A new session; returns the cookie's sid (never stored) and the row."""
    sid = secrets.token_urlsafe(32)
    row = Session(_key(sid), user_id, secrets.token_urlsafe(32), now, now, now + max_s)
    tx.execute("INSERT INTO sessions (id, user_id, csrf, created_at, last_seen, expires_at, ip)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)",
               (row.key, user_id, row.csrf, now, now, row.expires_at, ip))
    return sid, row


def find(db: Any, sid: str, *, now: float, idle_s: float) -> Session | None:
    """The live session for ``sid``; None when unknown, revoked, idle too long or past its limit."""
    if not isinstance(sid, str) or not sid or len(sid) > 200:
        return None
    found = db.query("SELECT id, user_id, csrf, created_at, last_seen, expires_at FROM sessions"
                     " WHERE id = ? AND revoked_at IS NULL", (_key(sid),))
    if not found:
        return None
    key, user_id, csrf, created_at, last_seen, expires_at = found[0]
    if now >= expires_at or now - last_seen >= idle_s:
        return None
    row = Session(key, int(user_id), csrf, created_at, last_seen, expires_at)
    if now - last_seen >= TOUCH_EVERY_S:
        with db.transaction() as tx:
            tx.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, key))
    return row


def revoke(tx: Any, key: str, *, now: float) -> None:
    tx.execute("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key))


def revoke_user(tx: Any, user_id: int, *, now: float) -> int:
    """Every live session of a user (password changed, deactivated); returns how many."""
    return tx.execute("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                      (now, user_id)).rowcount


def purge(tx: Any, *, now: float, keep_s: float = 7 * 86400) -> int:
    """Drop rows that ended more than ``keep_s`` ago (called now and then at sign-in)."""
    return tx.execute("DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?",
                      (now - keep_s, now - keep_s)).rowcount
