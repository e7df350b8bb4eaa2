"""The outbox is written in the same transaction as what it reports, with a seq per stream that
never goes back, even after acknowledged rows are deleted."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from edge.store import Store


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT stream, seq, type, body FROM outbox ORDER BY stream, seq").fetchall()


def test_every_cdr_and_notification_is_queued_with_its_own_stream_seq(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite3"
    with Store(path, outbox=True) as store:
        store.write_cdr({"call_id": "c1", "direction": "inbound", "caller": "13800138000",
                         "agent_id": "a8001", "started_at": 100.0})
        store.append_event("agent.state", {"agent_id": "a8001", "state": "busy"})
        store.append_event("agent.state", {"agent_id": "a8001", "state": "idle"})
        store.append_event("call.ringing", {"call_id": "c1", "notes": "客户挂失"})
        assert store.outbox_depth() == 4 and store.outbox_depth("agent") == 2
    got = rows(path)
    assert [(s, q, t) for s, q, t, _ in got] == [("agent", 1, "agent.state"), ("agent", 2, "agent.state"),
                                                 ("call", 1, "call.ringing"), ("cdr", 1, "cdr")]
    assert json.loads(got[2][3]) == {"topic": "call.ringing", "data": {"call_id": "c1", "notes": "客户挂失"}}
    assert json.loads(got[3][3])["caller"] == "13800138000"


def test_seq_never_goes_back_after_acknowledged_rows_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite3"
    with Store(path, outbox=True) as store:
        store.append_event("agent.state", {"n": 1})
        store.append_event("agent.state", {"n": 2})
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM outbox WHERE stream = 'agent' AND seq <= 2")
    with Store(path, outbox=True) as store:
        store.append_event("agent.state", {"n": 3})
    assert [q for _, q, _, _ in rows(path)] == [3]


def test_without_sync_nothing_is_queued(tmp_path: Path) -> None:
    with Store(tmp_path / "edge.sqlite3") as store:
        store.append_event("agent.state", {})
        assert store.outbox_depth() == 0
