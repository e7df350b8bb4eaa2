"""Which HQ downlink versions were applied, HQ's config sections and HQ's commands.

``edge.sync.inbox`` writes these tables (from the sync thread, or the sync process); the runtime's
core thread reads them here: ``hq_config_versions()`` to notice a new section (then
``edge.sync.hq_config.merged_config``), ``pending_hq_commands()`` to run what HQ asked for and
``finish_hq_command()`` to end one and tell HQ how it went (outbox stream ``downlink``, type
``command.result``, in the same transaction).
"""
from __future__ import annotations

import json
from typing import Any

from edge.store.errors import InvalidRecord
from edge.store.outbox_rows import add_to_outbox


class DownlinkRows:
    """Mixed into ``Store``: uses its ``_guard``, ``_clock`` and ``_outbox_written``."""

    def applied_downlink(self, kind: str, scope: str) -> dict[str, Any] | None:
        """The last version applied (or rejected) for (kind, scope): version, id, result."""
        with self._guard("applied downlink") as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT version, id, result, applied_at FROM downlink_applied"
                             " WHERE kind = ? AND scope = ?", [kind, scope]).fetchone()
        if row is None:
            return None
        return {"version": row[0], "id": row[1], "result": row[2], "applied_at": row[3]}

    def hq_config_versions(self) -> dict[str, int]:
        """section -> version of HQ's stored config sections (cheap: poll it)."""
        with self._guard("HQ config versions") as db:  # type: ignore[attr-defined]
            return {s: int(v) for s, v in db.execute("SELECT section, version FROM hq_config")}

    def hq_config_sections(self) -> dict[str, dict[str, Any]]:
        """section -> {"version", "body", "updated_at"}."""
        with self._guard("HQ config sections") as db:  # type: ignore[attr-defined]
            rows = db.execute("SELECT section, version, body, updated_at FROM hq_config"
                              " ORDER BY section").fetchall()
        return {s: {"version": int(v), "body": json.loads(b), "updated_at": u}
                for s, v, b, u in rows}

    def pending_hq_commands(self) -> list[dict[str, Any]]:
        """Commands HQ sent that nobody ran yet, oldest first (their ids are ULIDs)."""
        with self._guard("pending HQ commands") as db:  # type: ignore[attr-defined]
            rows = db.execute("SELECT id, name, args, received_at FROM hq_commands"
                              " WHERE state = 'pending' ORDER BY id").fetchall()
        return [{"id": i, "name": n, "args": json.loads(a), "received_at": r}
                for i, n, a, r in rows]

    def hq_commands(self, state: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, name, args, state, result, received_at, done_at FROM hq_commands"
        params: list[Any] = []
        if state is not None:
            sql += " WHERE state = ?"
            params.append(state)
        with self._guard("HQ commands") as db:  # type: ignore[attr-defined]
            rows = db.execute(sql + " ORDER BY id", params).fetchall()
        return [{"id": i, "name": n, "args": json.loads(a), "state": s, "result": r,
                 "received_at": ra, "done_at": d} for i, n, a, s, r, ra, d in rows]

    def finish_hq_command(self, command_id: str, ok: bool, result: str = "") -> bool:
        """End a pending command (``done`` or ``failed``) and report it to HQ; False when it
        was not pending (already finished: nothing is reported twice)."""
        state = "done" if ok else "failed"
        if not isinstance(result, str):
            raise InvalidRecord(f"a command's result is text, got {type(result).__name__}")
        with self._guard(f"finish HQ command {command_id}") as db, db.conn:  # type: ignore[attr-defined]
            now = self._clock()  # type: ignore[attr-defined]
            cursor = db.conn.execute(
                "UPDATE hq_commands SET state = ?, result = ?, done_at = ? WHERE id = ?"
                " AND state = 'pending'", [state, result, now, command_id])
            if cursor.rowcount != 1:
                return False
            if self.outbox:  # type: ignore[attr-defined]
                add_to_outbox(db.conn, "downlink", "command.result",
                              {"id": command_id, "state": state, "result": result}, now)
        self._outbox_written()  # type: ignore[attr-defined]
        return True
