"""The ``recordings`` table: one row per WAV leg, so a crash never loses or repeats an MP3.

States: ``recording`` (MixMonitor asked to write the WAV) -> ``stopped`` (the call is over; the
CDR's facts are in ``meta``) -> ``done`` (MP3 written, decoded back, checksum stored; the WAV may
go) or ``failed`` (with ``error``; the WAV is kept for a person to look at). A row is keyed by the
WAV's file name, so whatever sees a WAV first — the call, or the recovery scan after a restart —
finds the same row.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

RECORDING_STATES = ("recording", "stopped", "done", "failed")


class RecordingRows:
    """Mixed into ``Store``: uses its ``_guard`` and ``_clock``."""

    def recording_started(self, file: str, call_id: str, leg: int, channel: str, agent_id: str,
                          wav_path: str) -> None:
        now = self._clock()  # type: ignore[attr-defined]
        with self._guard(f"recording {file} not recorded") as db:  # type: ignore[attr-defined]
            db.execute(
                "INSERT INTO recordings (file, call_id, leg, channel, agent_id, state, wav_path, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'recording', ?, ?, ?) "
                "ON CONFLICT(file) DO NOTHING",
                [file, call_id, leg, channel, agent_id, wav_path, now, now])

    def recording_stopped(self, file: str, call_id: str, leg: int, wav_path: str,
                          meta: Mapping[str, Any]) -> None:
        """The call ended (or recovery adopted an orphan WAV): ready to encode. A ``done`` row
        stays done — nothing is encoded twice."""
        now = self._clock()  # type: ignore[attr-defined]
        text = json.dumps(dict(meta), ensure_ascii=False, sort_keys=True, default=str)
        with self._guard(f"recording {file} not marked stopped") as db:  # type: ignore[attr-defined]
            db.execute(
                "INSERT INTO recordings (file, call_id, leg, agent_id, state, wav_path, meta, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'stopped', ?, ?, ?, ?) "
                "ON CONFLICT(file) DO UPDATE SET state = 'stopped', meta = excluded.meta, "
                "agent_id = coalesce(nullif(excluded.agent_id, ''), agent_id), "
                "updated_at = excluded.updated_at WHERE state IN ('recording', 'stopped')",
                [file, call_id, leg, str(meta.get("agent_id") or ""), wav_path, text, now, now])

    def recording_done(self, file: str, result: Mapping[str, Any]) -> None:
        with self._guard(f"recording {file} not marked done") as db:  # type: ignore[attr-defined]
            db.execute(
                "UPDATE recordings SET state = 'done', mp3_path = ?, sha256 = ?, mp3_bytes = ?, "
                "duration_s = ?, decoded_duration_s = ?, header_repaired = ?, error = NULL, "
                "updated_at = ? WHERE file = ?",
                [str(result["mp3_path"]), result["sha256"], int(result["mp3_bytes"]),
                 float(result["duration_s"]), float(result["decoded_duration_s"]),
                 int(bool(result.get("header_repaired"))), self._clock(), file])  # type: ignore[attr-defined]

    def recording_failed(self, file: str, error: str, *, final: bool) -> None:
        """``final`` False keeps the row ``stopped`` (disk full: tried again later)."""
        state_sql = "state = 'failed', " if final else ""
        with self._guard(f"recording {file} not marked failed") as db:  # type: ignore[attr-defined]
            db.execute(f"UPDATE recordings SET {state_sql}error = ?, updated_at = ? "
                       "WHERE file = ? AND state != 'done'", [error, self._clock(), file])  # type: ignore[attr-defined]

    def recording(self, file: str) -> dict[str, Any] | None:
        with self._guard(f"read recording {file}") as db:  # type: ignore[attr-defined]
            rows = list(db.query("SELECT * FROM recordings WHERE file = ?", [file]))
        return _decoded(rows[0]) if rows else None

    def recordings(self, *, state: str | None = None, call_id: str | None = None,
                   limit: int = 1000) -> list[dict[str, Any]]:
        clauses, params = [], []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if call_id is not None:
            clauses.append("call_id = ?")
            params.append(call_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._guard("list recordings") as db:  # type: ignore[attr-defined]
            rows = list(db.query(f"SELECT * FROM recordings{where} ORDER BY created_at, file "
                                 "LIMIT ?", [*params, limit]))
        return [_decoded(row) for row in rows]


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["meta"] = json.loads(out["meta"]) if out.get("meta") else {}
    return out
