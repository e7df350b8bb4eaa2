"""A delta or table part the edge skipped (acked ``duplicate`` because a newer version overtook
it) is queued again with the rows' current state, through the real ingest path
(``HqDb.store_batch`` runs the projections); plain redeliveries queue nothing."""
from __future__ import annotations

import json
import time
from itertools import count

import pytest

from aggregator.customers import model, prefixes, push
from aggregator.db import HqDb
from aggregator.envelope import Envelope

_seq = count(1)


@pytest.fixture
def db(hq_db_url):
    with HqDb.open(hq_db_url) as opened:
        yield opened


def sent(db, kind="customers", edge="edge-a"):
    rows = db.query("SELECT id, scope, version, body, state FROM downlink WHERE kind = ? AND"
                    " edge = ? ORDER BY scope, version", (kind, edge))
    return [{"id": i, "scope": s, "version": v, "body": json.loads(b), "state": st}
            for i, s, v, b, st in rows]


def ack(db, message, result, error="", edge="edge-a"):
    seq = next(_seq)
    db.store_batch([Envelope(f"ack-{seq:06d}", edge, "downlink", seq, time.time(), "downlink.ack",
                             {"id": message["id"], "kind": message.get("kind", "customers"),
                              "scope": message["scope"], "version": message["version"],
                              "result": result, "error": error})])


def create(db, customer_id, edge="edge-a", **fields):
    with db.transaction() as tx:
        model.create_customer(tx, {"id": customer_id, "name": "客户", "edge": edge, **fields},
                              time.time())


def test_a_skipped_delta_is_queued_again_with_the_current_state(db):
    create(db, "c1")
    create(db, "c2")
    v1, v2 = sent(db)
    ack(db, v2, "applied")
    with db.transaction() as tx:     # c1 changes again before HQ hears about the skip
        model.update_customer(tx, "c1", {"name": "王五"}, time.time())
    ack(db, v1, "duplicate", "version 1 <= applied 2")
    messages = sent(db)
    assert [(m["version"], m["state"]) for m in messages] == [
        (1, "duplicate"), (2, "applied"), (3, "pending"), (4, "pending")]
    assert messages[3]["body"]["upserts"][0]["name"] == "王五"     # the current c1
    assert [c["id"] for c in messages[3]["body"]["upserts"]] == ["c1"]


def test_a_skipped_delta_of_a_customer_moved_away_becomes_a_delete(db):
    create(db, "c1")
    create(db, "c2")
    v1, v2 = sent(db)
    ack(db, v2, "applied")
    with db.transaction() as tx:
        model.update_customer(tx, "c1", {"edge": "edge-b"}, time.time())
    ack(db, v1, "duplicate", "version 1 <= applied 2")
    assert sent(db)[-1]["body"] == {"upserts": [], "deletes": ["c1"]}


def test_redeliveries_and_skips_of_applied_messages_queue_nothing(db):
    create(db, "c1")
    create(db, "c2")
    v1, v2 = sent(db)
    ack(db, v1, "applied")
    ack(db, v2, "applied")
    ack(db, v2, "duplicate")                                # the same version again
    ack(db, v1, "duplicate", "version 1 <= applied 2")      # applied before: nothing lost
    assert len(sent(db)) == 2


def test_a_skipped_snapshot_part_resends_its_key_range_and_prefix_parts_likewise(db):
    for i in range(3):
        create(db, f"c{i}")
    with db.transaction() as tx:
        part = push.enqueue_snapshot(tx, "edge-a", after="c0", through="c1")[0]
        prefixes.store(tx, [("0755", "广东/深圳", ""), ("1660755", "广东/深圳", ""),
                            ("1990755", "广东/深圳", "")], time.time(), replace=True)
        prefix_part = push.enqueue_prefixes(tx, ["edge-a"], after="0755",
                                            through="1660755")[0]
    ack(db, {"id": part.id, "scope": "share", "version": part.version}, "duplicate",
        "version 4 <= applied 5")
    resent = sent(db)[-1]["body"]
    assert (resent["after"], resent["through"]) == ("c0", "c1")
    assert [c["id"] for c in resent["customers"]] == ["c1"]
    ack(db, {"id": prefix_part.id, "kind": "reference", "scope": "prefixes", "version": 1},
        "duplicate", "version 1 <= applied 3")
    resent = sent(db, "reference")[-1]["body"]
    assert (resent["after"], resent["through"], resent["rows"]) == \
        ("0755", "1660755", [["1660755", "广东/深圳", ""]])


def test_a_skipped_calendar_needs_no_repair(db):
    with db.transaction() as tx:
        [v1] = push.enqueue_calendar(tx, "cn", ["edge-a"])
        push.enqueue_calendar(tx, "cn", ["edge-a"])
    ack(db, {"id": v1.id, "kind": "reference", "scope": "calendar:cn", "version": 1},
        "duplicate", "version 1 <= applied 2")
    assert len(sent(db, "reference")) == 2
