"""The ``recordings`` table: one row per WAV leg, so a crash never loses or repeats an MP3.

States: ``recording`` (MixMonitor asked to write the WAV) -> ``stopped`` (the call is over; the
CDR's facts are in ``meta``) -> ``done`` (MP3 written, decoded back, checksum stored; the WAV may
go) or ``failed`` (with ``error``; the WAV is kept for a person to look at). A row is keyed by the
WAV's file name, so whatever sees a WAV first — the call, or the recovery scan after a restart —
finds the same row.

Upload to HQ (``edge.sync.uploader``), on ``done`` rows: ``upload_state`` '' (not tried) ->
``pending`` (bytes on their way; ``upload_offset`` is the last offset HQ reported) -> ``confirmed``
(HQ verified the checksum; ``uploaded_at``) or ``failed`` (HQ refused it for good;
``upload_error``). Only a confirmed MP3 may be deleted locally (``edge.recordings.retention``),
which sets ``local_deleted_at``.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from edge.store.outbox_rows import add_to_outbox

RECORDING_STATES = ("recording", "stopped", "done", "failed")
UPLOAD_STATES = ("", "pending", "confirmed", "failed")
_ON_DISK = "state = 'done' AND local_deleted_at IS NULL"


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

    # --- upload to HQ and local retention ---------------------------------------------------------

    def recordings_to_upload(self, limit: int = 100) -> list[dict[str, Any]]:
        """Encoded MP3s HQ has not confirmed and has not refused, oldest first."""
        with self._guard("list recordings to upload") as db:  # type: ignore[attr-defined]
            rows = list(db.query(
                f"SELECT * FROM recordings WHERE {_ON_DISK} AND coalesce(upload_state, '') "
                "IN ('', 'pending') ORDER BY created_at, file LIMIT ?", [limit]))
        return [_decoded(row) for row in rows]

    def upload_progress(self, file: str, offset: int) -> None:
        """HQ holds ``offset`` bytes of the file (its word, not ours: it is asked on resume)."""
        with self._guard(f"recording {file} upload progress") as db:  # type: ignore[attr-defined]
            db.execute("UPDATE recordings SET upload_state = 'pending', upload_offset = ?, "
                       "upload_error = NULL, updated_at = ? WHERE file = ? AND "
                       "coalesce(upload_state, '') IN ('', 'pending')",
                       [int(offset), self._clock(), file])  # type: ignore[attr-defined]

    def upload_confirmed(self, file: str, hq_path: str) -> bool:
        """HQ verified the checksum: mark it, and tell HQ's other side (``recording.uploaded``
        on the outbox) in the same transaction. False when it was confirmed already."""
        now = self._clock()  # type: ignore[attr-defined]
        with self._guard(f"recording {file} not marked uploaded") as db, db.conn:  # type: ignore[attr-defined]
            done = db.conn.execute(
                "UPDATE recordings SET upload_state = 'confirmed', upload_offset = mp3_bytes, "
                "upload_error = NULL, uploaded_at = ?, updated_at = ? WHERE file = ? AND "
                "state = 'done' AND coalesce(upload_state, '') != 'confirmed'",
                [now, now, file]).rowcount == 1
            if done and self.outbox:  # type: ignore[attr-defined]
                row = db.conn.execute("SELECT call_id, sha256, mp3_bytes FROM recordings "
                                      "WHERE file = ?", [file]).fetchone()
                add_to_outbox(db.conn, "recording", "recording.uploaded", {
                    "call_id": row[0], "file": file, "sha256": row[1], "bytes": row[2],
                    "hq_path": hq_path}, now)
        if done:
            self._outbox_written()  # type: ignore[attr-defined]
        return done

    def upload_failed(self, file: str, error: str) -> None:
        """HQ refused the file for good: it stays on disk, with the reason, for a person."""
        with self._guard(f"recording {file} not marked upload failed") as db:  # type: ignore[attr-defined]
            db.execute("UPDATE recordings SET upload_state = 'failed', upload_error = ?, "
                       "updated_at = ? WHERE file = ? AND coalesce(upload_state, '') != "
                       "'confirmed'", [error, self._clock(), file])  # type: ignore[attr-defined]

    def upload_retry(self, file: str) -> bool:
        """A person fixed the cause: try a failed upload again."""
        with self._guard(f"recording {file} upload retry") as db:  # type: ignore[attr-defined]
            return db.execute("UPDATE recordings SET upload_state = '', upload_error = NULL, "
                              "updated_at = ? WHERE file = ? AND upload_state = 'failed'",
                              [self._clock(), file]).rowcount == 1  # type: ignore[attr-defined]

    def uploaded_on_disk(self) -> list[dict[str, Any]]:
        """Confirmed MP3s still on the local disk, oldest uploaded first: what retention may
        delete, in the order it deletes them."""
        with self._guard("list uploaded recordings") as db:  # type: ignore[attr-defined]
            rows = list(db.query(f"SELECT * FROM recordings WHERE {_ON_DISK} AND "
                                 "upload_state = 'confirmed' ORDER BY uploaded_at, file"))
        return [_decoded(row) for row in rows]

    def unconfirmed_on_disk(self) -> tuple[int, int]:
        """(files, bytes) of MP3s on disk that HQ has not confirmed: never deleted."""
        with self._guard("count unconfirmed recordings") as db:  # type: ignore[attr-defined]
            row = db.execute(f"SELECT count(*), coalesce(sum(mp3_bytes), 0) FROM recordings "
                             f"WHERE {_ON_DISK} AND coalesce(upload_state, '') != 'confirmed'"
                             ).fetchone()
        return int(row[0]), int(row[1])

    def recording_deleted_locally(self, file: str, ts: float) -> bool:
        """The local MP3 of a confirmed upload is gone; refuses (False) for an unconfirmed one."""
        with self._guard(f"recording {file} not marked deleted") as db:  # type: ignore[attr-defined]
            return db.execute("UPDATE recordings SET local_deleted_at = ?, updated_at = ? "
                              "WHERE file = ? AND upload_state = 'confirmed' AND "
                              "local_deleted_at IS NULL", [ts, ts, file]).rowcount == 1


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["meta"] = json.loads(out["meta"]) if out.get("meta") else {}
    return out
