"""Several writers on one HQ database, as several ingest consumers are: no high-water-mark advance
is lost however their batches interleave. On PostgreSQL the batches really run side by side (a
test meets two of them inside their transactions at once), each stream's row is locked before its
mark moves, and a batch that loses a deadlock is rolled back and retried."""
from __future__ import annotations

import itertools
import logging
import threading
import time

import psycopg
import pytest

from aggregator import projections
from aggregator.db import HqDb
from aggregator.envelope import Envelope
from aggregator.pg import WRITERS_KEY

_NAMES = itertools.count(1)


def env(seq: int, stream: str = "agent", body: dict | None = None) -> Envelope:
    return Envelope(f"id-{stream}-{seq}", "edge-a", stream, seq, 1795392102.5, "test.load",
                    body or {"n": seq})


@pytest.fixture
def pg_url(postgres_server):
    name = f"db_concurrency_{next(_NAMES)}"
    url = postgres_server.create_database(name)
    HqDb.open(url).close()
    yield url
    postgres_server.drop_database(name)


def run_all(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_writers_storing_one_stream_at_once_lose_no_advance(hq_db_url):
    """Four writers, each its own connection, store interleaved batches of one stream (each batch
    also repeats the first seq of the next one, as redeliveries do)."""
    HqDb.open(hq_db_url).close()
    total, size, writers = 2000, 40, 4
    batches = [[env(seq) for seq in range(start, min(start + size, total) + 1)]
               for start in range(1, total + 1, size)]
    start = threading.Barrier(writers)

    def writer(n: int) -> None:
        with HqDb.open(hq_db_url) as db:
            start.wait(10)
            for batch in batches[n::writers]:
                db.store_batch(batch)

    assert run_all([lambda n=n: writer(n) for n in range(writers)]) == []
    with HqDb.open(hq_db_url) as db:
        assert db.hwm("edge-a", "agent") == total
        assert db.count() == total and db.duplicates() == 0
        assert db.dead_letters() == []


def test_two_batches_meeting_at_the_mark_both_count(pg_url, monkeypatch):
    """Both batches have inserted their messages and wait for each other (inside their
    transactions, which only PostgreSQL allows), then move the mark at the same moment. Without
    the stream row's lock each would see only its own rows and the later one would write its
    smaller mark over the other's."""
    meet = threading.Barrier(2)

    def meeting(tx, envelope, now):
        if envelope.body.get("meet"):
            meet.wait(10)

    monkeypatch.setattr(projections, "_HANDLERS", [*projections._HANDLERS, ("test.", meeting)])
    with HqDb.open(pg_url) as db:
        db.store_batch([env(seq) for seq in range(1, 11)])
        top = 10
        for _round in range(3):
            low = [env(seq) for seq in range(top + 1, top + 41)]
            high = [env(seq) for seq in range(top + 41, top + 101)]
            for batch in (low, high):
                batch[0] = env(batch[0].seq, body={"meet": True})

            with HqDb.open(pg_url) as one, HqDb.open(pg_url) as two:
                assert run_all([lambda: one.store_batch(low), lambda: two.store_batch(high)]) == []
            top += 100
            assert db.hwm("edge-a", "agent") == top
        assert db.count() == top and db.duplicates() == 0


def test_a_batch_that_loses_a_deadlock_is_rolled_back_and_retried(pg_url, caplog):
    """Another transaction holds an uncommitted copy of a message the batch inserts (the batch
    waits for it) and then asks for the writers' lock (it waits for the batch): PostgreSQL breaks
    the circle by failing the batch, which is run again and finds the message stored."""
    caplog.set_level(logging.INFO, logger="aggregator.db")
    message = env(1)
    # the batch's backend looks for the deadlock after 0.3 s, the other one only after 10 s
    with HqDb.open(pg_url + "?options=-c%20deadlock_timeout%3D300ms") as db, \
            psycopg.connect(pg_url, autocommit=True, application_name="other") as other:
        other.execute("SET deadlock_timeout = '10s'")
        other.execute("BEGIN")
        other.execute("INSERT INTO messages (id, edge, stream, seq, ts, type, body, received_at)"
                      " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                      (message.id, message.edge, message.stream, message.seq, message.ts,
                       message.type, message.body_json(), time.time()))
        result: dict = {}
        batch = threading.Thread(target=lambda: result.update(db.store_batch([message, env(2)])))
        batch.start()
        with psycopg.connect(pg_url, autocommit=True) as probe:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                    " 'cc-aggregator' AND wait_event_type = 'Lock'").fetchone()[0]:
                time.sleep(0.005)
        other.execute(f"SELECT pg_advisory_xact_lock({WRITERS_KEY})")   # granted once it failed
        other.execute("COMMIT")
        batch.join(10)

        assert result == {("edge-a", "agent"): 2}
        assert "deadlock detected" in caplog.text and "retrying" in caplog.text
        assert db.count() == 2 and db.duplicates() == 0 and db.dead_letters() == []
