"""The edge's health reporter: one ``health`` outbox row per interval with the contract's body,
capped while HQ is out of reach, and never stopped by a failing snapshot."""
from __future__ import annotations

import json
import time

import pytest

from edge.store import Store
from edge.sync.health import MAX_PENDING, HealthReporter

SNAPSHOT = {"version": "0.1.0", "trunks": {"total": 4, "up": 3},
            "agents": {"total": 6, "logged_in": 2}, "calls_active": 1,
            "config_versions": {"agents": 3}, "site": "西湖"}


class Clock:
    def __init__(self, t: float = 1_795_392_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "edge.sqlite3", outbox=True) as opened:
        yield opened


def health_rows(store: Store) -> list[tuple]:
    return [(stream, seq, ts, kind, json.loads(body)) for stream, seq, ts, kind, body in
            store.db.conn.execute("SELECT stream, seq, ts, type, body FROM outbox"
                                  " WHERE stream = 'health' ORDER BY seq").fetchall()]


def test_a_report_carries_the_contract_body(store):
    clock = Clock()
    store.append_event("agent.state", {"agent_id": "a1", "state": "idle"})   # one row pending
    woken: list[int] = []
    store.on_outbox = lambda: woken.append(1)
    reporter = HealthReporter(store, lambda: SNAPSHOT, interval_s=60, clock=clock)
    clock.t += 90.5
    assert reporter.report_once() is True
    [(stream, seq, ts, kind, body)] = health_rows(store)
    assert (stream, seq, ts, kind) == ("health", 1, clock.t, "health")
    assert body == {**SNAPSHOT, "outbox_depth": 1, "uptime_s": 90.5}
    assert woken == [1]
    raw = store.db.conn.execute("SELECT body FROM outbox WHERE stream = 'health'").fetchone()[0]
    assert "西湖" in raw                                   # UTF-8 text, not \u escapes


def test_missing_figures_get_defaults(store):
    HealthReporter(store, dict, interval_s=60, clock=Clock()).report_once()
    [(*_, body)] = health_rows(store)
    assert body == {"version": None, "trunks": {"total": 0, "up": 0},
                    "agents": {"total": 0, "logged_in": 0}, "calls_active": 0,
                    "config_versions": {}, "outbox_depth": 0, "uptime_s": 0.0}


def test_reports_stop_piling_up_while_hq_is_away(store):
    reporter = HealthReporter(store, lambda: SNAPSHOT, interval_s=60, clock=Clock())
    written = [reporter.report_once() for _ in range(MAX_PENDING + 5)]
    assert written == [True] * MAX_PENDING + [False] * 5
    assert store.outbox_depth("health") == MAX_PENDING
    # HQ acknowledged them: reports resume
    store.db.conn.execute("DELETE FROM outbox WHERE stream = 'health'")
    assert reporter.report_once() is True
    assert [seq for _, seq, *_ in health_rows(store)] == [MAX_PENDING + 1]


def test_a_failing_snapshot_is_logged_and_skipped(store, caplog):
    calls = {"n": 0}

    def flaky() -> dict:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("trunk table locked")
        return SNAPSHOT

    reporter = HealthReporter(store, flaky, interval_s=60, clock=Clock())
    assert reporter.report_once() is False
    assert "health report failed" in caplog.text and "trunk table locked" in caplog.text
    assert reporter.report_once() is True
    assert reporter.reports == 1


def test_no_outbox_no_reports(tmp_path):
    with Store(tmp_path / "plain.sqlite3") as plain:
        assert HealthReporter(plain, lambda: SNAPSHOT, interval_s=60).report_once() is False
        assert plain.outbox_depth() == 0


def test_start_reports_at_once_and_every_interval_until_stop(store):
    reporter = HealthReporter(store, lambda: SNAPSHOT, interval_s=0.05)
    reporter.start()
    deadline = time.monotonic() + 5
    while store.outbox_depth("health") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    reporter.stop()
    count = store.outbox_depth("health")
    assert count >= 3
    time.sleep(0.15)
    assert store.outbox_depth("health") == count


def test_interval_must_be_positive(store):
    with pytest.raises(ValueError):
        HealthReporter(store, dict, interval_s=0)
