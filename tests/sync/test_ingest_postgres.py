"""Ingest scaled out: two consumer processes (``python -m aggregator.ingest --db postgresql://…``)
share ``$share/ingest/cc/v1/+/up/#`` on a real Mosquitto and write one real PostgreSQL
(``hil.postgres``) side by side. One is SIGKILLed mid-burst of 10,000 events and restarted: every
event is stored exactly once and the stream's high-water mark reaches 10,000 — no advance lost
to two batches committing the same stream at once."""
from __future__ import annotations

import itertools
import time

import pytest

from aggregator.db import HqDb
from tests.aggregator.conftest import postgres_server  # noqa: F401 - the session's PostgreSQL
from tests.sync.test_ingest import ConsumerProcess, FakeEdge, wait_until

BURST = 10_000
_NAMES = itertools.count(1)


@pytest.fixture
def pg_url(postgres_server):  # noqa: F811 - the fixture imported above
    name = f"ingest_burst_{next(_NAMES)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.mark.hil
def test_two_consumers_on_postgres_one_killed_mid_burst_store_every_event_once(broker, pg_url):
    HqDb.open(pg_url).close()    # migrated once, before two processes race to do it
    consumers = [ConsumerProcess(broker, pg_url, f"ingest-{n}").start() for n in (1, 2)]
    edge = FakeEdge(broker, "edge-a")
    try:
        with HqDb.open(pg_url) as db:
            for seq in range(1, BURST + 1):
                edge.publish("cdr", seq)
                if seq == 3000:
                    # mid-flow: it holds delivered, uncommitted, un-PUBACKed messages
                    assert wait_until(lambda: db.count() > 500, 5)
                    consumers[0].kill()
                if seq == 6000:
                    time.sleep(0.5)      # its share waits in its session at the broker meanwhile
                    consumers[0].start()

            assert edge.drain(timeout_s=20), len(edge.outbox)
            assert db.count() == BURST
            assert db.duplicates() == 0
            assert db.hwm("edge-a", "cdr") == BURST
            assert [seq for seq, _id in db.messages("edge-a", "cdr")] == list(range(1, BURST + 1))
            assert db.dead_letters() == []
            assert db.record_gaps(settle_s=0) == [] and db.gaps() == []
        # the killed consumer's uncommitted messages came back from its session, not a resend
        assert edge.resent == 0
        assert all("Traceback" not in "".join(c.lines) for c in consumers), \
            "".join(consumers[0].lines + consumers[1].lines)[-3000:]
    finally:
        edge.close()
        for process in consumers:
            process.stop()
