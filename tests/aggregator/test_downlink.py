"""The downlink at HQ on SQLite and PostgreSQL: versions, dispatch order, re-send back-off, acks
and read receipts through the ingest's projections, and announcement fan-out by audience."""
from __future__ import annotations

import threading
import time

import pytest
from ulid import ULID

from aggregator.db import HqDb
from aggregator.downlink import announcements as ann
from aggregator.downlink import fanout, queue
from aggregator.downlink.announcements import AnnouncementError, Audience
from aggregator.envelope import Envelope
from aggregator.fleet import edges as fleet_edges
from tests.aggregator.helpers import make_department

NOW = 1_795_392_000.0


@pytest.fixture
def db(hq_db_url):
    with HqDb.open(hq_db_url) as hq:
        yield hq


def add_edge(db: HqDb, name: str, department: int | None, state: str = "active") -> str:
    with db.transaction() as tx:
        edge_id = fleet_edges.insert_new(tx, name, department, NOW)
        fleet_edges.set_state(tx, edge_id, state, NOW)
    return edge_id


def ack(edge: str, seq: int, body: dict, type_: str = "downlink.ack",
        stream: str = "downlink") -> Envelope:
    return Envelope(str(ULID()), edge, stream, seq, NOW, type_, body)


def enqueue(db: HqDb, edge: str, kind: str = "config", scope: str = "agents",
            body: dict | None = None, now: float = NOW):
    with db.transaction() as tx:
        return queue.enqueue(tx, edge, kind, scope, f"{kind}.test", body or {"n": 1}, now=now)


# --- versions and dispatch order -------------------------------------------------------------------

def test_versions_count_per_edge_kind_and_scope(db):
    assert [enqueue(db, "edge-a").version for _ in range(3)] == [1, 2, 3]
    assert enqueue(db, "edge-a", scope="groups").version == 1
    assert enqueue(db, "edge-b").version == 1
    assert enqueue(db, "edge-a", kind="command", scope="c1").version == 1
    assert enqueue(db, "edge-a").version == 4


def test_a_rolled_back_enqueue_leaves_no_message_and_no_hole_in_the_versions(db):
    enqueue(db, "edge-a")
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            queue.enqueue(tx, "edge-a", "config", "agents", "config.section", {"n": 2})
            raise RuntimeError("the caller's own write failed")
    assert enqueue(db, "edge-a").version == 2
    assert [m.message.version for m in queue.listing(db, edge="edge-a")] == [2, 1]


def test_chinese_text_round_trips(db):
    message = enqueue(db, "edge-a", kind="announcement", scope="a1", body={"title": "国庆放假通知"})
    assert queue.get(db, message.id).message.body == {"title": "国庆放假通知"}
    assert "国庆放假通知".encode() in message.to_json()


def test_bad_names_are_refused_before_anything_is_stored(db):
    for edge, kind, scope in (("edge/a", "config", "x"), ("edge-a", "firmware", "x"),
                              ("edge-a", "config", "a+b"), ("", "config", "x")):
        with pytest.raises(queue.DownlinkError):
            with db.transaction() as tx:
                queue.enqueue(tx, edge, kind, scope, "t", {})
    assert queue.listing(db) == []


def test_due_messages_come_in_edge_kind_scope_version_order_and_skip_in_flight(db):
    enqueue(db, "edge-b", scope="agents")
    first = enqueue(db, "edge-a", scope="groups")
    enqueue(db, "edge-a", scope="agents")
    enqueue(db, "edge-a", scope="agents")
    due = queue.due(db, NOW, 10)
    assert [(m.edge, m.scope, m.version) for m in due] == [
        ("edge-a", "agents", 1), ("edge-a", "agents", 2), ("edge-a", "groups", 1),
        ("edge-b", "agents", 1)]
    assert first.id not in [m.id for m in queue.due(db, NOW, 10, skip=[first.id])]
    assert len(queue.due(db, NOW, 2)) == 2


def test_due_messages_of_one_edge_come_in_the_order_hq_created_them(db):
    enqueue(db, "edge-a", scope="vip", now=NOW)
    enqueue(db, "edge-a", scope="agents", now=NOW + 1)
    enqueue(db, "edge-a", scope="vip", now=NOW + 2)
    assert [(m.scope, m.version) for m in queue.due(db, NOW + 3, 10)] == [
        ("vip", 1), ("agents", 1), ("vip", 2)]


def test_a_health_report_makes_unacknowledged_messages_due_at_once(hq_db_url):
    db = HqDb.open(hq_db_url, clock=lambda: NOW + 10.2)     # ingest's "now" for the projection
    sent_early, sent_late = enqueue(db, "edge-a"), enqueue(db, "edge-a", scope="vip")
    enqueue(db, "edge-b")
    with db.transaction() as tx:
        queue.record_sends(tx, {sent_early.id: NOW, sent_late.id: NOW + 9}, resend_s=30.0,
                           resend_max_s=900.0)
        queue.record_sends(tx, {m.id: NOW for m in queue.due(db, NOW, 10, skip=[
            sent_early.id, sent_late.id])}, resend_s=30.0, resend_max_s=900.0)
    assert queue.due(db, NOW + 10, 10) == []
    db.store_batch([Envelope(str(ULID()), "edge-a", "health", 1, NOW + 10, "health", {})])
    # sent before the report (and its margin): due now; sent just before it may still be acked
    assert [m.id for m in queue.due(db, NOW + 10.5, 10)] == [sent_early.id]
    db.close()


def test_a_sent_message_waits_resend_s_doubling_per_send_up_to_the_cap(db):
    message = enqueue(db, "edge-a")
    waits = []
    at = NOW
    for _ in range(5):
        with db.transaction() as tx:
            queue.record_sends(tx, {message.id: at}, resend_s=10.0, resend_max_s=50.0)
        row = queue.get(db, message.id)
        waits.append(row.next_send_at - at)
        assert queue.due(db, row.next_send_at - 0.001, 10) == []
        assert [m.id for m in queue.due(db, row.next_send_at, 10)] == [message.id]
        at = row.next_send_at
    assert waits == [10.0, 20.0, 40.0, 50.0, 50.0]
    assert queue.get(db, message.id).sends == 5


# --- acks through the ingest projections -----------------------------------------------------------

def test_an_ack_from_the_edge_settles_its_message(db):
    message = enqueue(db, "edge-a")
    db.store_batch([ack("edge-a", 1, {"id": message.id, "kind": "config", "scope": "agents",
                                      "version": 1, "result": "applied", "error": ""})])
    row = queue.get(db, message.id)
    assert (row.state, row.error) == ("applied", "")
    assert row.acked_at is not None
    assert queue.due(db, NOW + 10**6, 10) == []          # never sent again


def test_a_late_duplicate_ack_never_hides_that_the_message_was_applied(db):
    first, second = enqueue(db, "edge-a"), enqueue(db, "edge-a")
    base = {"kind": "config", "scope": "agents", "error": ""}
    # a resend of the first was acked "duplicate" and that ack is stored before the real one
    db.store_batch([ack("edge-a", 2, {**base, "id": first.id, "version": 1,
                                      "result": "duplicate"})])
    assert queue.get(db, first.id).state == "duplicate"
    db.store_batch([ack("edge-a", 1, {**base, "id": first.id, "version": 1, "result": "applied"}),
                    ack("edge-a", 3, {**base, "id": second.id, "version": 2,
                                      "result": "rejected", "error": "groups[0].name: 坏"}),
                    ack("edge-a", 4, {**base, "id": second.id, "version": 2,
                                      "result": "duplicate"})])
    assert queue.get(db, first.id).state == "applied"
    assert (queue.get(db, second.id).state, queue.get(db, second.id).error) == \
        ("rejected", "groups[0].name: 坏")
    assert queue.counts(db) == {"applied": 1, "rejected": 1}


def test_an_edge_cannot_settle_another_edges_message_nor_send_a_bad_ack(db):
    message = enqueue(db, "edge-a")
    good = {"id": message.id, "kind": "config", "scope": "agents", "version": 1, "error": ""}
    db.store_batch([ack("edge-b", 1, {**good, "result": "applied"}),
                    ack("edge-a", 1, {**good, "result": "maybe"}),
                    ack("edge-a", 2, {**good, "result": "applied", "kind": "firmware"})])
    assert queue.get(db, message.id).state == "pending"
    reasons = [d.reason for d in db.dead_letters()]
    assert any("was not sent to edge-b" in r for r in reasons)
    assert any("result" in r for r in reasons) and any("kind" in r for r in reasons)
    assert db.hwm("edge-a", "downlink") == 2            # the stream still moves on


def test_a_command_result_is_kept_on_its_message(db):
    message = enqueue(db, "edge-a", kind="command", scope="c1")
    db.store_batch([ack("edge-a", 1, {"id": message.id, "state": "done", "result": "已登出"},
                        type_="command.result")])
    assert queue.get(db, message.id).result == "done: 已登出"


# --- announcements -----------------------------------------------------------------------------

@pytest.fixture
def fleet(db):
    """Departments 华南 > 深圳 > 福田 and 华北, with one active edge in each, one disabled."""
    south = make_department(db, "华南")
    shenzhen = make_department(db, "深圳", south)
    futian = make_department(db, "福田", shenzhen)
    north = make_department(db, "华北")
    edges = {"south": add_edge(db, "south", south), "shenzhen": add_edge(db, "shenzhen", shenzhen),
             "futian": add_edge(db, "futian", futian), "north": add_edge(db, "north", north),
             "off": add_edge(db, "off", shenzhen, state="disabled")}
    return {"departments": {"south": south, "shenzhen": shenzhen, "futian": futian,
                            "north": north}, "edges": edges}


def test_a_department_announcement_reaches_its_edges_and_those_below_only(db, fleet):
    d, e = fleet["departments"], fleet["edges"]
    announcement, edges = fanout.announce(db, Audience("department", department_id=d["shenzhen"]),
                                          "系统升级", "今晚 22:00 系统升级，请提前保存工单。",
                                          priority="high", created_by="ops", now=NOW)
    assert sorted(edges) == sorted([e["shenzhen"], e["futian"]])
    messages = queue.listing(db, kind="announcement")
    assert sorted(m.message.edge for m in messages) == sorted(edges)
    for m in messages:
        assert (m.message.scope, m.message.version, m.state) == (announcement.id, 1, "pending")
        assert m.message.body["title"] == "系统升级"
        assert m.message.body["audience"] == {"type": "department",
                                              "department_id": d["shenzhen"]}
    assert ann.get(db, announcement.id).edges == 2


def test_everyone_means_every_active_edge(db, fleet):
    _, edges = fanout.announce(db, Audience("everyone"), "通知", "正文", now=NOW)
    assert sorted(edges) == sorted(v for k, v in fleet["edges"].items() if k != "off")


def test_a_senders_scope_limits_the_audience(db, fleet):
    e = fleet["edges"]
    _, edges = fanout.announce(db, Audience("everyone"), "通知", "正文", now=NOW,
                               within={e["north"], e["off"]})
    assert edges == [e["north"]]


def test_a_group_goes_to_the_edges_that_run_it_or_to_all_when_none_is_known(db, fleet):
    e = fleet["edges"]
    pushed = enqueue(db, e["futian"], scope="groups", body={"groups": [{"name": "cards"}]})
    enqueue(db, e["north"], scope="groups", body={"groups": [{"name": "general"}]})  # not applied
    _, edges = fanout.announce(db, Audience("group", group="cards"), "信用卡", "正文", now=NOW)
    assert len(edges) == 4                                  # nobody is known to run "cards" yet
    db.store_batch([ack(e["futian"], 1, {"id": pushed.id, "kind": "config", "scope": "groups",
                                         "version": 1, "result": "applied", "error": ""})])
    _, edges = fanout.announce(db, Audience("group", group="cards"), "信用卡", "正文", now=NOW)
    assert edges == [e["futian"]]


def test_bad_announcements_are_refused_with_the_field(db, fleet):
    cases = [(Audience("everyone"), "", "正文", "normal", None, "title"),
             (Audience("everyone"), "标题", "正文", "asap", None, "priority"),
             (Audience("everyone"), "标题", "正文", "normal", NOW - 1, "expires_at"),
             (Audience("department", department_id=99999), "标题", "正文", "normal", None,
              "department_id")]
    for audience, title, body, priority, expires, field in cases:
        with pytest.raises(AnnouncementError, match=field):
            fanout.announce(db, audience, title, body, priority=priority, expires_at=expires,
                            now=NOW)
    assert ann.listing(db) == [] and queue.listing(db) == []
    for bad in ({"type": "team"}, {"type": "department", "department_id": "3"},
                {"type": "group", "group": ""}, None):
        with pytest.raises(AnnouncementError, match="audience"):
            Audience.from_dict(bad)


def test_a_withdrawal_is_a_new_version_for_every_edge_that_got_it(db, fleet):
    d = fleet["departments"]
    announcement, edges = fanout.announce(db, Audience("department", department_id=d["futian"]),
                                          "标题", "正文", now=NOW)
    withdrawn, again = fanout.withdraw(db, announcement.id, created_by="ops", now=NOW + 5)
    assert again == edges and withdrawn.withdrawn_at == NOW + 5
    latest = queue.listing(db, scope=announcement.id)[0].message
    assert (latest.version, latest.type, latest.body["withdrawn"]) == \
        (2, "announcement.withdraw", True)
    assert fanout.withdraw(db, announcement.id, now=NOW + 9)[1] == []   # once is enough


def test_read_receipts_are_stored_once_per_agent_and_only_from_edges_that_got_it(db, fleet):
    e, d = fleet["edges"], fleet["departments"]
    announcement, _ = fanout.announce(db, Audience("department", department_id=d["futian"]),
                                      "标题", "正文", now=NOW)
    read = {"announcement_id": announcement.id, "agent_id": "a8001", "read_at": NOW + 60}
    db.store_batch([ack(e["futian"], 1, read, "announcement.read", "announcement"),
                    ack(e["futian"], 2, {**read, "read_at": NOW + 99}, "announcement.read",
                        "announcement"),
                    ack(e["north"], 1, read, "announcement.read", "announcement"),
                    ack(e["futian"], 3, {**read, "read_at": "soon"}, "announcement.read",
                        "announcement")])
    reads = ann.reads(db, announcement.id)
    assert [(r["edge"], r["agent_id"], r["read_at"]) for r in reads] == \
        [(e["futian"], "a8001", NOW + 60)]
    reasons = " ".join(d.reason for d in db.dead_letters())
    assert f"was not sent to {e['north']}" in reasons and "read_at" in reasons
    assert ann.read_counts(db, [announcement.id]) == {announcement.id: 1}


def test_the_clock_default_is_now(db):
    message = enqueue(db, "edge-a", now=None)  # type: ignore[arg-type]
    assert abs(queue.get(db, message.id).message.ts - time.time()) < 5


def test_concurrent_writers_get_distinct_contiguous_versions(hq_db_url):
    """Two HQ processes (two connections) queueing for the same scope at once."""
    dbs = [HqDb.open(hq_db_url), HqDb.open(hq_db_url)]
    errors: list[BaseException] = []

    def writer(db: HqDb) -> None:
        try:
            for n in range(15):
                with db.transaction() as tx:
                    queue.enqueue(tx, "edge-a", "config", "agents", "config.section", {"n": n})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        versions = sorted(m.message.version for m in queue.listing(dbs[0], limit=100))
        assert versions == list(range(1, 31))
    finally:
        for db in dbs:
            db.close()
