"""Customers and reference data from HQ to an edge through a real Mosquitto: HQ's dispatcher
publishes, the edge's publisher hands them to its inbox, the handlers fill the cache, the acks
come back through ingest and settle HQ's downlink rows; then the edge uses what arrived."""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from aggregator.customers import calendar_days, model, prefixes, push
from aggregator.db import HqDb
from aggregator.downlink import queue
from aggregator.downlink.dispatch import Dispatcher
from aggregator.fleet import edges
from aggregator.ingest import IngestConsumer
from edge.hours import HOLIDAY, parse_calendars, with_pushed_days
from edge.regions import Region, RegionResolver
from edge.store import Store
from edge.sync.publisher import SyncPublisher
from hil.broker import HQ_USER


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


@pytest.fixture
def hq(tmp_path, broker):
    """HQ's database with edge ``edge-a`` enrolled, its dispatcher and one ingest consumer."""
    path = tmp_path / "hq.sqlite3"
    db = HqDb.open(str(path))
    with db.transaction() as tx:
        assert edges.insert_new(tx, "a", None, time.time()) == "edge-a"
        edges.set_state(tx, "edge-a", "active", time.time())
    dispatcher = Dispatcher(db, "127.0.0.1", broker.port, HQ_USER, broker.hq_password,
                            resend_s=2.0, poll_s=0.05).start()
    ingest = IngestConsumer(path, "127.0.0.1", broker.port, HQ_USER, broker.hq_password,
                            "ingest-1").start()
    yield db
    dispatcher.stop()
    ingest.stop()
    db.close()


@pytest.fixture
def edge_store(tmp_path, broker):
    store = Store(tmp_path / "edge.sqlite3", outbox=True)
    publisher = SyncPublisher(store.path, "edge-a", "127.0.0.1", broker.port, "edge-a",
                              "secret-a", resend_s=2.0)
    store.on_outbox = publisher.wake
    publisher.start()
    yield store
    publisher.stop()
    store.close()


@pytest.mark.hil
def test_customers_prefixes_and_a_2027_holiday_reach_the_edge_and_are_used(hq, edge_store):
    now = time.time()
    with hq.transaction() as tx:
        model.create_customer(tx, {"id": "c1", "name": "王五", "member_no": "M1001",
                                   "edge": "edge-a", "numbers": ["13800138000"],
                                   "accounts": [{"id": "k1", "balance": "1234.50",
                                                 "amount_due": "300.00",
                                                 "due_date": "2027-01-15"}]}, now, by="test")
        model.create_customer(tx, {"id": "c2", "name": "别的分行", "edge": "edge-b"}, now)
        prefixes.store(tx, [("1721234", "广东/深圳", "中国联通")], now, replace=True)
        calendar_days.set_year(tx, "cn", 2027, [
            {"date": "2027-01-01", "kind": "holiday", "name": "元旦"}], now)
        push.push(tx, push.PushRequest(), created_by="test", now=now)

    wait(lambda: edge_store.customer_by_member("M1001") is not None, 20, "the customer cache")
    wait(lambda: "calendar:cn" in edge_store.reference_versions()
         and "prefixes" in edge_store.reference_versions(), 20, "the reference data")
    assert edge_store.customer_ids() == ["c1"]          # edge-b's customer stays away
    assert edge_store.accounts_of("c1")[0]["balance"] == "1234.50"

    # a change at HQ reaches the edge as a delta
    with hq.transaction() as tx:
        model.update_customer(tx, "c1", {"name": "王五五", "numbers": ["13912345678"]},
                              time.time(), by="test")
    wait(lambda: (edge_store.customer("c1") or {}).get("name") == "王五五", 20, "the delta")
    assert edge_store.customer_by_number("13912345678")["id"] == "c1"
    assert edge_store.customer_by_number("13800138000") is None

    # every message for edge-a was acknowledged applied, through ingest
    wait(lambda: queue.counts(hq, "edge-a") == {"applied": 5}, 20,
         "HQ to settle edge-a's messages")

    # the edge uses what arrived
    regions = RegionResolver.from_files().with_pushed(edge_store.pushed_prefixes())
    assert regions.resolve("17212345678") == Region("广东", "深圳")
    hours = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    calendars = parse_calendars([{"name": "branch", **hours}], "Asia/Shanghai")
    new_year = datetime(2027, 1, 1, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert calendars["branch"].period_at(new_year).kind == "open"
    current = with_pushed_days(calendars, edge_store.pushed_calendar_days())
    assert current["branch"].period_at(new_year).kind == HOLIDAY
