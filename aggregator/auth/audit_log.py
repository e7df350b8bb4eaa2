"""The audit log (ADM-2): who did what to which thing, from where, when. Rows are only appended.

``record`` writes one row inside the caller's transaction (so a change and its audit row commit
together); ``aggregator.auth.access.audit`` fills in the actor and ip from the current request.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aggregator.auth.errors import InvalidInput

ACTOR_KINDS = frozenset({"user", "edge", "system"})
MAX_PAGE = 1000


@dataclass(frozen=True)
class Actor:
    kind: str          # user | edge | system
    id: str = ""       # user id, edge id, or "" (system, or a sign-in by nobody yet)
    name: str = ""     # username at the time, edge id, or the system part

    @classmethod
    def system(cls, name: str = "system") -> "Actor":
        return cls("system", "", name)


def record(tx: Any, actor: Actor, action: str, target: str = "", detail: Any = None, *,
           ip: str | None = None, now: float | None = None) -> int:
    """Append one row; returns its id."""
    if actor.kind not in ACTOR_KINDS:
        raise ValueError(f"actor kind {actor.kind!r}: one of {sorted(ACTOR_KINDS)}")
    ts = time.time() if now is None else now
    body = json.dumps(detail if detail is not None else {}, ensure_ascii=False, sort_keys=True,
                      default=str)
    row = tx.execute(
        "INSERT INTO audit_log (ts, actor_kind, actor_id, actor_name, action, target, detail, ip)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (ts, actor.kind, actor.id, actor.name, action, str(target), body, ip)).fetchone()
    return int(row[0])


_COLUMNS = "id, ts, actor_kind, actor_id, actor_name, action, target, detail, ip"


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name}: a number (epoch seconds), not {value!r}") from None


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidInput(f"{name}: an integer, not {value!r}") from None
    if not lo <= n <= hi:
        raise InvalidInput(f"{name}: between {lo} and {hi}")
    return n


def search(db: Any, args: dict[str, str]) -> list[dict[str, Any]]:
    """Newest first. Filters: ``actor_kind``, ``actor_id``, ``actor`` (name), ``action`` (exact, or a
    prefix ending in ``.``/``*``: ``auth.``), ``target``, ``since``/``until`` (epoch s),
    ``before_id`` (paging), ``limit`` (default 100, at most 1000)."""
    where: list[str] = []
    params: list[object] = []
    for name, column in (("actor_kind", "actor_kind"), ("actor_id", "actor_id"),
                         ("actor", "actor_name"), ("target", "target")):
        if args.get(name):
            where.append(f"{column} = ?")
            params.append(args[name])
    action = args.get("action")
    if action:
        if action.endswith(("*", ".")):
            where.append("action LIKE ?")
            params.append(action.rstrip("*").replace("\\", "").replace("_", "\\_")
                          .replace("%", "\\%") + "%")
            where[-1] += " ESCAPE '\\'"
        else:
            where.append("action = ?")
            params.append(action)
    if args.get("since"):
        where.append("ts >= ?")
        params.append(_float("since", args["since"]))
    if args.get("until"):
        where.append("ts < ?")
        params.append(_float("until", args["until"]))
    if args.get("before_id"):
        where.append("id < ?")
        params.append(_int("before_id", args["before_id"], 1, 2**62))
    limit = _int("limit", args.get("limit") or "100", 1, MAX_PAGE)
    sql = (f"SELECT {_COLUMNS} FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY id DESC LIMIT ?")
    return [_row(r) for r in db.query(sql, [*params, limit])]


def _row(r: tuple) -> dict[str, Any]:
    id_, ts, kind, actor_id, actor_name, action, target, detail, ip = r
    try:
        parsed = json.loads(detail) if detail else {}
    except ValueError:
        parsed = {"raw": detail}
    return {"id": int(id_), "ts": ts, "actor_kind": kind, "actor_id": actor_id,
            "actor_name": actor_name, "action": action, "target": target, "detail": parsed,
            "ip": ip}
