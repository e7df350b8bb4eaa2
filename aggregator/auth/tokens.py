"""Bearer tokens for edges: 256 random bits, shown once, stored as their SHA-256.

A fast hash is enough here (unlike passwords): the token has full entropy, so nobody can guess
it from the hash, and a lookup by hash needs no per-row salt. Tokens start with ``cce_`` so a leaked
one is recognisable in logs and secret scanners.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

PREFIX = "cce_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(tx: Any, edge_id: str, *, now: float | None = None, revoke_others: bool = False) -> str:
    """Store a new token for ``edge_id`` inside ``tx``; returns it (the only time it exists)."""
    now = time.time() if now is None else now
    if revoke_others:
        revoke_for_edge(tx, edge_id, now=now)
    token = new_token()
    tx.execute("INSERT INTO api_tokens (edge_id, token_hash, created_at) VALUES (?, ?, ?)",
               (edge_id, token_hash(token), now))
    return token


def revoke_for_edge(tx: Any, edge_id: str, *, now: float | None = None) -> int:
    """Revoke every live token of an edge (it re-enrolled, or was retired); returns how many."""
    now = time.time() if now is None else now
    return tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE edge_id = ? AND revoked_at IS NULL",
                      (now, edge_id)).rowcount


def revoke(tx: Any, token_id: int, *, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                      (now, token_id)).rowcount == 1


def edge_for(db: Any, token: str) -> str | None:
    """The edge a live token belongs to, or None (unknown or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    rows = db.query("SELECT edge_id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                    (token_hash(token),))
    return rows[0][0] if rows else None
