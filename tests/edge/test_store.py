"""The edge store on a real SQLite file: schema, CDRs, start-up queries, history, crash safety."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.errors import EdgeError
from edge.store import (
    MIGRATIONS,
    InvalidQuery,
    InvalidRecord,
    MigrationError,
    SchemaVersionError,
    Store,
    StoreError,
    StoreOpenError,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def path(tmp_path):
    return tmp_path / "edge.sqlite3"


@pytest.fixture
def store(path):
    with Store(path) as opened:
        yield opened


def local(*args: int) -> float:
    """Epoch seconds of a wall-clock time in the branch's time zone."""
    return datetime(*args, tzinfo=SHANGHAI).timestamp()


def answered(call_id: str, agent_id: str | None, at: float | None, caller: str = "13800138000",
             **extra):
    return {"call_id": call_id, "direction": "inbound", "caller": caller, "agent_id": agent_id,
            "started_at": None if at is None else at - 8, "answered_at": at, **extra}


def raw(path, sql: str, *params):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- schema and migrations -----------------------------------------------------------------------

def test_a_new_file_gets_every_migration_and_the_tables(store, path):
    assert store.schema_version() == len(MIGRATIONS)
    versions = raw(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [v for v, _ in versions] == list(range(1, len(MIGRATIONS) + 1))
    tables = {name for (name,) in raw(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"cdrs", "events", "schema_migrations"} <= tables
    indexes = {name for (name,) in raw(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"idx_cdrs_started_at", "idx_cdrs_agent_id", "idx_cdrs_caller"} <= indexes


def test_cdrs_has_exactly_the_agreed_columns(store, path):
    columns = [row[1] for row in raw(path, "PRAGMA table_info(cdrs)")]
    assert columns == [
        "call_id", "direction", "caller", "callee", "trunk", "agent_id", "extension", "queue_group",
        "rule", "region", "flagged", "started_at", "answered_at", "ended_at", "wait_s", "talk_s",
        "hangup_cause", "hangup_cause_txt", "hung_up_by", "disposition", "code", "recorded_at", "ivr", "rating", "legs", "hold_s",
    ]


def test_reopening_applies_nothing_and_keeps_the_data(path):
    with Store(path) as first:
        first.write_cdr(answered("c1", "a8001", 1000.0))
    before = raw(path, "SELECT version, applied_at FROM schema_migrations")
    with Store(path) as second:
        assert second.count_cdrs() == 1
    assert raw(path, "SELECT version, applied_at FROM schema_migrations") == before


def test_a_new_migration_is_applied_once_on_an_existing_database(path):
    calls = []

    def add_note_column(db):
        calls.append(1)
        db["cdrs"].add_column("note", str)

    with Store(path) as old:
        old.write_cdr(answered("c1", "a8001", 1000.0))
    for _ in range(2):
        with Store(path, migrations=(*MIGRATIONS, add_note_column)) as new:
            assert new.schema_version() == len(MIGRATIONS) + 1
            assert new.count_cdrs() == 1
    assert calls == [1]
    assert "note" in [row[1] for row in raw(path, "PRAGMA table_info(cdrs)")]


def test_a_failing_migration_is_rolled_back_and_reported(path):
    Store(path).close()

    def broken(db):
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("disk says no")

    with pytest.raises(MigrationError,
                       match=rf"migration {len(MIGRATIONS) + 1} \(broken\).*disk says no"):
        Store(path, migrations=(*MIGRATIONS, broken))
    assert raw(path, "SELECT name FROM sqlite_master WHERE name='half_done'") == []
    with Store(path) as reopened:
        assert reopened.schema_version() == len(MIGRATIONS)


def test_a_database_from_a_newer_edge_is_refused(path):
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError) as caught:
        Store(path)
    assert caught.value.found == 99 and caught.value.known == len(MIGRATIONS)
    assert "newer than this edge knows" in str(caught.value)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, EdgeError)


def test_a_file_that_is_not_a_database_is_a_clear_error(path):
    path.write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(StoreOpenError, match="edge.sqlite3"):
        Store(path)


def test_wal_is_on_and_synchronous_is_normal_by_default(store, path):
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 1  # NORMAL
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]  # persistent, seen by other connections


def test_synchronous_full_is_an_option_and_anything_else_is_refused(tmp_path):
    with Store(tmp_path / "full.sqlite3", synchronous="full") as full:
        assert full.pragma("synchronous") == 2  # FULL
    with pytest.raises(StoreError, match="synchronous"):
        Store(tmp_path / "off.sqlite3", synchronous="OFF")


def test_a_database_failure_is_a_store_error_not_a_raw_sqlite_one(path):
    store = Store(path)
    store.close()
    with pytest.raises(StoreError, match="CDR c1 not written"):
        store.write_cdr(answered("c1", "a8001", 1000.0))
    with pytest.raises(StoreError, match="count CDRs"):
        store.count_cdrs()


# --- CDRs ----------------------------------------------------------------------------------------

def test_the_same_call_written_twice_is_one_row_and_the_latest_wins(store):
    store.write_cdr(answered("1795392102.12", "a8001", 1000.0, disposition="answered",
                             region="广东深圳"))
    store.write_cdr({"call_id": "1795392102.12", "caller": "13800138000", "agent_id": "a8002",
                     "disposition": "transferred"})
    assert store.count_cdrs() == 1
    row = store.cdr("1795392102.12")
    assert row["agent_id"] == "a8002" and row["disposition"] == "transferred"
    assert row["region"] is None  # the whole row is replaced, not merged


def test_group_is_stored_as_queue_group_and_read_back_as_group(store, path):
    store.write_cdr(answered("c1", "a8001", 1000.0, group="cards", flagged=True, trunk=3))
    assert raw(path, "SELECT queue_group, flagged, trunk FROM cdrs") == [("cards", 1, 3)]
    row = store.cdr("c1")
    assert row["group"] == "cards" and row["flagged"] == 1 and "queue_group" not in row
    assert store.cdrs(group="cards")[0]["call_id"] == "c1"


def test_every_field_round_trips(store):
    record = {
        "call_id": "c9", "direction": "inbound", "caller": "13800138000", "callee": "95555", "trunk": 1,
        "agent_id": "a8001", "extension": "8001", "group": "general", "rule": "least_calls",
        "region": "广东深圳", "flagged": 0, "started_at": 100.5, "answered_at": 108.25,
        "ended_at": 170.0, "wait_s": 7.75, "talk_s": 61.75, "hangup_cause": 16,
        "hangup_cause_txt": "Normal Clearing", "hung_up_by": "caller", "disposition": "answered",
        "code": "", "ivr": "main > main=1 > ask_pin > ask_pin=****** > balance=found", "rating": "3", "legs": "", "hold_s": 12.5,
    }
    clock_now = 1_795_392_200.0
    with Store(store.path + ".2", clock=lambda: clock_now) as other:
        other.write_cdr(record)
        assert other.cdr("c9") == {**record, "recorded_at": clock_now}


@pytest.mark.parametrize("record", [
    {"caller": "13800138000"},
    {"call_id": "", "caller": "13800138000"},
    {"call_id": "   "},
    {"call_id": None},
    {"call_id": ["x"]},
    None,
    ["call_id", "c1"],
])
def test_a_record_without_a_usable_call_id_is_refused_clearly(store, record):
    with pytest.raises(InvalidRecord, match="call_id|mapping"):
        store.write_cdr(record)
    assert store.count_cdrs() == 0


def test_unknown_keys_are_logged_and_dropped_and_the_row_is_kept(store, caplog):
    with caplog.at_level(logging.WARNING, logger="edge.store"):
        store.write_cdr(answered("c1", "a8001", 1000.0, recording="/rec/c1.mp3", trunk="DAHDI/1",
                                 talk_s="long"))
    assert store.count_cdrs() == 1
    row = store.cdr("c1")
    assert row["agent_id"] == "a8001" and row["trunk"] is None and row["talk_s"] is None
    assert "recording" not in row
    text = caplog.text
    assert "recording" in text and "trunk='DAHDI/1'" in text and "talk_s='long'" in text


def test_numbers_given_as_text_are_stored_as_numbers(store):
    store.write_cdr({"call_id": "c1", "trunk": "2", "answered_at": "1000.5", "hangup_cause": 16.0,
                     "caller": 13800138000})
    row = store.cdr("c1")
    assert (row["trunk"], row["answered_at"], row["hangup_cause"], row["caller"]) == (
        2, 1000.5, 16, "13800138000")


def test_cdrs_are_listed_newest_first_with_paging_and_filters(store):
    for i in range(5):
        store.write_cdr(answered(f"c{i}", "a8001" if i % 2 else "a8002", 1000.0 + i * 10,
                                 group="general" if i < 3 else "cards"))
    assert [r["call_id"] for r in store.cdrs()] == ["c4", "c3", "c2", "c1", "c0"]
    assert [r["call_id"] for r in store.cdrs(limit=2, offset=1)] == ["c3", "c2"]
    assert [r["call_id"] for r in store.cdrs(agent_id="a8001")] == ["c3", "c1"]
    assert [r["call_id"] for r in store.cdrs(group="cards", agent_id="a8002")] == ["c4"]
    assert [r["call_id"] for r in store.cdrs(since=1002.0, until=1022.0)] == ["c2", "c1"]
    assert store.count_cdrs() == 5 and store.count_cdrs(group="general") == 3
    assert store.count_cdrs(disposition=None) == 5
    with pytest.raises(InvalidQuery, match="agent"):
        store.cdrs(agent="a8001")
    with pytest.raises(InvalidQuery):
        store.cdrs(limit=-1)


# --- what the core needs at start ----------------------------------------------------------------

def test_answered_counts_cover_exactly_the_local_day(store):
    day_start, day_end = local(2026, 3, 2), local(2026, 3, 3)
    store.write_cdr(answered("yesterday", "a8001", local(2026, 3, 1, 23, 59, 59)))
    store.write_cdr(answered("midnight", "a8001", day_start))
    store.write_cdr(answered("noon-1", "a8001", local(2026, 3, 2, 12)))
    store.write_cdr(answered("noon-2", "a8002", local(2026, 3, 2, 12, 5)))
    store.write_cdr(answered("late", "a8002", local(2026, 3, 2, 23, 59, 59)))
    store.write_cdr(answered("tomorrow", "a8002", day_end))
    store.write_cdr(answered("missed", None, None) | {"started_at": local(2026, 3, 2, 9)})
    store.write_cdr(answered("no-agent", None, local(2026, 3, 2, 10)))
    store.write_cdr(answered("dialled-out", "a8001", local(2026, 3, 2, 11), direction="outbound"))
    assert store.answered_counts_for_day(day_start, day_end) == {"a8001": 2, "a8002": 2}
    assert store.answered_counts_for_day(day_start, day_end, direction=None) == {
        "a8001": 3, "a8002": 2}
    assert store.answered_counts_for_day(local(2026, 3, 4), local(2026, 3, 5)) == {}


def test_last_agents_is_the_latest_answered_agent_per_caller(store):
    store.write_cdr(answered("c1", "a8001", 1000.0, caller="13800138000"))
    store.write_cdr(answered("c2", "a8002", 2000.0, caller="13800138000"))
    store.write_cdr(answered("c3", "a8003", 1500.0, caller="13800138000"))  # written last, older
    store.write_cdr(answered("c4", "a8001", 1200.0, caller="075583210000"))
    store.write_cdr(answered("c5", None, None, caller="13900139000"))  # never answered
    store.write_cdr(answered("c6", "a8009", 2500.0, caller="8009", direction="internal"))
    assert store.last_agents() == {"13800138000": "a8002", "075583210000": "a8001"}
    assert store.last_agents(since=1300.0) == {"13800138000": "a8002"}


# --- text, history, threads ----------------------------------------------------------------------

def test_chinese_text_round_trips_through_the_file(path):
    with Store(path) as first:
        first.write_cdr(answered("c1", "a8001", 1000.0, group="信用卡", region="广东省深圳市",
                                 hangup_cause_txt="对方挂机"))
        first.append_event("agent.state", {"agent": "张伟", "state": "示忙", "note": "话后处理"})
    with Store(path) as second:
        row = second.cdr("c1")
        assert (row["group"], row["region"], row["hangup_cause_txt"]) == (
            "信用卡", "广东省深圳市", "对方挂机")
        assert second.events()[0]["data"] == {"agent": "张伟", "note": "话后处理", "state": "示忙"}
    # stored as readable UTF-8, not \u escapes, so sqlite3 on the box shows it as it is
    assert "张伟" in raw(path, "SELECT data FROM events")[0][0]


def test_events_keep_notify_history_in_order(store):
    ids = [store.append_event("agent.state", {"agent": "a8001", "n": n}) for n in range(3)]
    ids.append(store.append_event("queue.position", {"call_id": "c1", "position": 2}))
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [e["data"].get("n") for e in store.events(limit=2)] == [2, None]
    assert [e["id"] for e in store.events(after_id=ids[1])] == ids[2:]
    assert [e["data"]["n"] for e in store.events(topic="agent.state")] == [0, 1, 2]
    assert store.events()[-1]["topic"] == "queue.position"
    with pytest.raises(InvalidRecord, match="topic"):
        store.append_event("", {})
    assert store.prune_events(before=time.time() + 1) == 4 and store.events() == []


def test_writes_from_several_threads_all_land(store):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(100):
                store.write_cdr(answered(f"t{n}-{i}", f"a{n}", 1000.0 + i))
                store.append_event("agent.state", {"n": n, "i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_cdrs() == 400 and len(store.events(limit=1000)) == 400


# --- crash safety --------------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    from edge.store import Store
    store = Store(sys.argv[1])
    i = 0
    while True:
        store.write_cdr({"call_id": f"crash-{i}", "caller": "13800138000", "agent_id": "a8001",
                         "answered_at": float(i), "region": "广东深圳"})
        store.append_event("agent.state", {"i": i})
        print(i, flush=True)  # printed only after both commits returned
        i += 1
""")


def test_rows_committed_before_a_kill_9_are_there_after_reopening(path):
    Store(path).close()  # the schema exists before the writer starts racing
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    confirmed: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while len(confirmed) < 300 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                pytest.fail(f"writer died: {writer.stderr.read()}")
            confirmed.append(int(line))
        os.kill(writer.pid, signal.SIGKILL)  # mid-write: it never stops writing
        writer.wait(timeout=10)
        confirmed += [int(line) for line in writer.stdout.read().split()]
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    assert len(confirmed) >= 300

    with Store(path) as reopened:
        assert reopened.pragma("integrity_check") == "ok"
        present = {r["call_id"] for r in reopened.cdrs(limit=100_000)}
        assert {f"crash-{i}" for i in confirmed} <= present
        assert reopened.cdr(f"crash-{confirmed[-1]}")["region"] == "广东深圳"
        assert len(reopened.events(limit=100_000)) >= len(confirmed)
