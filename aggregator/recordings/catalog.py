"""What HQ knows about its recordings: ``hq_recordings`` rows and their link to ``hq_cdrs``.

A recording and its call's CDR travel separately (HTTP upload, MQTT ``cdr`` stream) and either may
arrive first; they are linked at read time on (edge, call_id), so neither waits for the other.

Example::

    recordings_for_call(db, "edge-a", "1795392187.42")   # [Recording(id=1, leg=1, …)]
    list_cdrs(db, edge="edge-a", since=t0)               # [{"call_id": …, "recordings": […]}]
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from aggregator.db import HqDb, Tx
from aggregator.recordings.storage import Filed

_RECORDING_COLUMNS = ("id, edge, call_id, leg, agent, day, path, sha256, bytes, duration_s, "
                      "started_at, uploaded_at")
_CDR_COLUMNS = ("edge, call_id, started_at, answered_at, ended_at, agent_id, caller, callee, "
                "direction, queue_group, disposition, wait_s, talk_s, hold_s, body")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Recording:
    id: int
    edge: str
    call_id: str
    leg: int
    agent: str
    day: str
    path: str            # relative to the recordings root
    sha256: str
    bytes: int
    duration_s: float
    started_at: float | None
    uploaded_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record_filed(tx: Tx, filed: Filed, now: float) -> Recording:
    """The row of a verified upload; a second one of the same (edge, sha256) keeps the first."""
    meta = filed.meta
    tx.execute("INSERT INTO hq_recordings (edge, call_id, leg, agent, day, path, sha256, bytes, "
               "duration_s, started_at, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (edge, sha256) DO NOTHING",
               (filed.edge, meta.call_id, meta.leg, meta.agent, meta.day, filed.path,
                filed.sha256, meta.bytes, meta.duration_s, meta.started_at, now))
    row = tx.execute(f"SELECT {_RECORDING_COLUMNS} FROM hq_recordings WHERE edge = ? AND "
                     "sha256 = ?", (filed.edge, filed.sha256)).fetchone()
    return _recording(row)


def confirmed(db: HqDb, edge: str, sha256: str) -> Recording | None:
    rows = db.query(f"SELECT {_RECORDING_COLUMNS} FROM hq_recordings WHERE edge = ? AND "
                    "sha256 = ?", (edge, sha256))
    return _recording(rows[0]) if rows else None


def recording(db: HqDb, recording_id: int) -> Recording | None:
    rows = db.query(f"SELECT {_RECORDING_COLUMNS} FROM hq_recordings WHERE id = ?",
                    (recording_id,))
    return _recording(rows[0]) if rows else None


def recordings_for_call(db: HqDb, edge: str, call_id: str) -> list[Recording]:
    return [_recording(row) for row in db.query(
        f"SELECT {_RECORDING_COLUMNS} FROM hq_recordings WHERE edge = ? AND call_id = ? "
        "ORDER BY leg, id", (edge, call_id))]


def list_recordings(db: HqDb, *, edge: str | None = None, day: str | None = None,
                    agent: str | None = None, call_id: str | None = None,
                    edges: Iterable[str] | None = None, limit: int = 100,
                    offset: int = 0) -> list[Recording]:
    """Newest day first; ``edges`` limits to a data scope (None: every edge)."""
    where, params = _where({"edge": edge, "day": day, "agent": agent, "call_id": call_id}, edges)
    return [_recording(row) for row in db.query(
        f"SELECT {_RECORDING_COLUMNS} FROM hq_recordings{where} ORDER BY day DESC, id DESC "
        "LIMIT ? OFFSET ?", (*params, _limit(limit), max(0, offset)))]


def list_cdrs(db: HqDb, *, edge: str | None = None, agent_id: str | None = None,
              since: float | None = None, until: float | None = None,
              edges: Iterable[str] | None = None, limit: int = 100,
              offset: int = 0) -> list[dict[str, Any]]:
    """CDRs newest first, each with its ``recordings`` (an empty list until one arrives)."""
    where, params = _where({"edge": edge, "agent_id": agent_id}, edges)
    clauses = [where[len(" WHERE "):]] if where else []
    if since is not None:
        clauses.append("started_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("started_at < ?")
        params.append(until)
    sql_where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.query(f"SELECT {_CDR_COLUMNS} FROM hq_cdrs{sql_where} "
                    "ORDER BY started_at DESC NULLS LAST, edge, call_id LIMIT ? OFFSET ?",
                    (*params, _limit(limit), max(0, offset)))
    cdrs = [_cdr(row) for row in rows]
    linked = _recordings_of(db, [(c["edge"], c["call_id"]) for c in cdrs])
    for cdr in cdrs:
        cdr["recordings"] = [r.to_json() for r in linked.get((cdr["edge"], cdr["call_id"]), [])]
    return cdrs


def _recordings_of(db: HqDb, calls: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                       list[Recording]]:
    found: dict[tuple[str, str], list[Recording]] = {}
    by_edge: dict[str, list[str]] = {}
    for edge, call_id in calls:
        by_edge.setdefault(edge, []).append(call_id)
    for edge, call_ids in by_edge.items():
        marks = ", ".join("?" for _ in call_ids)
        for row in db.query(f"SELECT {_RECORDING_COLUMNS} FROM hq_recordings WHERE edge = ? "
                            f"AND call_id IN ({marks}) ORDER BY leg, id", (edge, *call_ids)):
            rec = _recording(row)
            found.setdefault((rec.edge, rec.call_id), []).append(rec)
    return found


def _where(equal: dict[str, Any], edges: Iterable[str] | None) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in equal.items() if value is not None]
    params: list[Any] = [value for value in equal.values() if value is not None]
    if edges is not None:
        scope = sorted(set(edges))
        if not scope:
            clauses.append("1 = 0")
        else:
            clauses.append(f"edge IN ({', '.join('?' for _ in scope)})")
            params.extend(scope)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _recording(row: Sequence[Any]) -> Recording:
    (id_, edge, call_id, leg, agent, day, path, sha256, size, duration_s, started_at,
     uploaded_at) = row
    return Recording(int(id_), edge, call_id, int(leg), agent, day, path, sha256, int(size),
                     float(duration_s), None if started_at is None else float(started_at),
                     float(uploaded_at))


def _cdr(row: Sequence[Any]) -> dict[str, Any]:
    (edge, call_id, started_at, answered_at, ended_at, agent_id, caller, callee, direction,
     group, disposition, wait_s, talk_s, hold_s, body) = row
    return {"edge": edge, "call_id": call_id, "started_at": started_at,
            "answered_at": answered_at, "ended_at": ended_at, "agent_id": agent_id,
            "caller": caller, "callee": callee, "direction": direction, "group": group,
            "disposition": disposition, "wait_s": wait_s, "talk_s": talk_s, "hold_s": hold_s,
            "cdr": json.loads(body)}
