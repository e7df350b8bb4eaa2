"""The ``tasks`` table: follow-ups for people and for the dialler (差评回访, busy callbacks).

A task is keyed by its idempotency key (``bad_rating:<call_id>``, ``callback:<call_id>``), so a
command replayed after a crash never makes a second one. ``state``: ``open`` -> ``dialing`` ->
``done`` / ``failed`` (with ``result``), or ``cancelled``.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

TASK_STATES = ("open", "dialing", "done", "failed", "cancelled")


class TaskRows:
    """Mixed into ``Store``: uses its ``_guard`` and ``_clock``."""

    def create_task(self, key: str, kind: str, *, assignee: str = "", group: str = "",
                    call_id: str = "", number: str = "",
                    data: Mapping[str, Any] | None = None) -> bool:
        """True when the task is new; False when ``key`` exists already (a replay)."""
        now = self._clock()  # type: ignore[attr-defined]
        text = json.dumps(dict(data or {}), ensure_ascii=False, sort_keys=True, default=str)
        with self._guard(f"task {key} not written") as db:  # type: ignore[attr-defined]
            cursor = db.execute(
                "INSERT INTO tasks (key, kind, state, assignee, queue_group, call_id, number, "
                "data, created_at, updated_at) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO NOTHING",
                [key, kind, assignee, group, call_id, number, text, now, now])
            return cursor.rowcount == 1

    def update_task(self, key: str, state: str, result: str = "", *,
                    attempt: bool = False) -> None:
        if state not in TASK_STATES:
            raise ValueError(f"task state {state!r}; expected one of {TASK_STATES}")
        with self._guard(f"task {key} not updated") as db:  # type: ignore[attr-defined]
            db.execute("UPDATE tasks SET state = ?, result = ?, attempts = attempts + ?, "
                       "updated_at = ? WHERE key = ?",
                       [state, result, int(attempt), self._clock(), key])  # type: ignore[attr-defined]

    def tasks(self, *, kind: str | None = None, state: str | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
        clauses, params = [], []
        for column, value in (("kind", kind), ("state", state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._guard("list tasks") as db:  # type: ignore[attr-defined]
            rows = [dict(r) for r in db.query(
                f"SELECT * FROM tasks{where} ORDER BY created_at, key LIMIT ?", [*params, limit])]
        for row in rows:
            row["group"] = row.pop("queue_group")
            row["data"] = json.loads(row["data"]) if row["data"] else {}
        return rows
