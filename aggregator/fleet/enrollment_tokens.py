"""One-time enrollment tokens: 256 random bits, shown once, stored as their SHA-256.

An admin or technician creates one for a department (and optionally the branch's name) and hands
it to whoever sets up the box; ``edge enroll --token …`` spends it. A token is good for one edge,
until ``expires_at``, unless revoked. Spending is one conditional ``UPDATE … WHERE used_at IS
NULL``, so two boxes racing with the same token cannot both win, on SQLite or PostgreSQL.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from aggregator.fleet.errors import InvalidInput, TokenExpired, TokenUnknown, TokenUsed

PREFIX = "cet_"
DEFAULT_TTL_S = 24 * 3600.0
MAX_TTL_S = 30 * 24 * 3600.0
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class EnrollmentToken:
    id: int
    department_id: int | None
    edge_name: str
    created_by: int | None
    created_at: float
    expires_at: float
    used_at: float | None
    used_by_edge: str | None
    revoked_at: float | None

    def to_json(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "department_id": self.department_id, "edge_name": self.edge_name,
                "created_by": self.created_by, "created_at": self.created_at,
                "expires_at": self.expires_at, "used_at": self.used_at,
                "used_by_edge": self.used_by_edge, "revoked_at": self.revoked_at,
                "status": self.status(now)}

    def status(self, now: float) -> str:
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "valid"


_COLUMNS = ("id, department_id, edge_name, created_by, created_at, expires_at, used_at,"
            " used_by_edge, revoked_at")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: object) -> str:
    if not isinstance(name, str) or len(name.strip()) > MAX_NAME_LENGTH:
        raise InvalidInput(f"edge_name: a string of at most {MAX_NAME_LENGTH} characters")
    return name.strip()


def create(tx: Any, *, department_id: int | None, edge_name: str, created_by: int | None,
           ttl_s: float, now: float) -> tuple[int, str]:
    """Store a new token; returns (id, token). The token exists only in this return value."""
    if not 60 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"ttl_s: between 60 and {MAX_TTL_S:g} seconds")
    token = PREFIX + secrets.token_urlsafe(32)
    row = tx.execute(
        "INSERT INTO enrollment_tokens (token_hash, department_id, edge_name, created_by,"
        " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (token_hash(token), department_id, check_name(edge_name), created_by, now, now + ttl_s),
    ).fetchone()
    return int(row[0]), token


def find(tx: Any, token: str) -> EnrollmentToken:
    """The token's row, or ``TokenUnknown``."""
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        raise TokenUnknown("enrollment token: not a token HQ issued (it starts with "
                           f"{PREFIX!r}; copy it whole)")
    row = tx.execute(f"SELECT {_COLUMNS} FROM enrollment_tokens WHERE token_hash = ?",
                     (token_hash(token),)).fetchone()
    if row is None:
        raise TokenUnknown("enrollment token: unknown (mistyped, or from another HQ)")
    return _token(row)


def check_usable(found: EnrollmentToken, now: float) -> None:
    status = found.status(now)
    if status == "used":
        raise TokenUsed(f"enrollment token already used by edge {found.used_by_edge}: "
                        "each token enrolls one edge; ask for a new one")
    if status == "revoked":
        raise TokenExpired("enrollment token was revoked; ask for a new one")
    if status == "expired":
        raise TokenExpired("enrollment token expired; ask for a new one")


def spend(tx: Any, found: EnrollmentToken, edge_id: str, now: float) -> None:
    """Mark the token used by ``edge_id``; ``TokenUsed`` if another request spent it first."""
    check_usable(found, now)
    spent = tx.execute(
        "UPDATE enrollment_tokens SET used_at = ?, used_by_edge = ? WHERE id = ? AND"
        " used_at IS NULL AND revoked_at IS NULL AND expires_at > ?",
        (now, edge_id, found.id, now)).rowcount
    if spent != 1:
        raise TokenUsed("enrollment token was just used by another enrollment")


def give_back(tx: Any, token_id: int, edge_id: str) -> None:
    """Undo ``spend`` when the enrollment failed after it (the broker refused the edge)."""
    tx.execute("UPDATE enrollment_tokens SET used_at = NULL, used_by_edge = NULL WHERE id = ?"
               " AND used_by_edge = ?", (token_id, edge_id))


def revoke(tx: Any, token_id: int, now: float) -> bool:
    return tx.execute("UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND"
                      " used_at IS NULL AND revoked_at IS NULL", (now, token_id)).rowcount == 1


def get(src: Any, token_id: int) -> EnrollmentToken | None:
    rows = _rows(src, f"SELECT {_COLUMNS} FROM enrollment_tokens WHERE id = ?", (token_id,))
    return _token(rows[0]) if rows else None


def listing(src: Any, where: str, params: list[object], limit: int = 200) -> list[EnrollmentToken]:
    """Newest first, limited by a scope fragment on ``department_id``."""
    return [_token(r) for r in _rows(
        src, f"SELECT {_COLUMNS} FROM enrollment_tokens WHERE {where} ORDER BY id DESC LIMIT ?",
        [*params, limit])]


def _rows(src: Any, sql: str, params: Any) -> list[tuple]:
    if hasattr(src, "query"):
        return src.query(sql, params)
    return [tuple(r) for r in src.execute(sql, params).fetchall()]


def _token(row: Any) -> EnrollmentToken:
    (id_, department_id, edge_name, created_by, created_at, expires_at, used_at, used_by,
     revoked) = row
    return EnrollmentToken(int(id_), None if department_id is None else int(department_id),
                           edge_name, None if created_by is None else int(created_by), created_at,
                           expires_at, used_at, used_by, revoked)
