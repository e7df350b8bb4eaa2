"""The edge's handlers for HQ's ``customers`` and ``reference`` messages, through the real inbox
on a real store file: deltas, snapshots in parts, prefixes, calendars, and bodies refused whole."""
from __future__ import annotations

import json
import sqlite3
from itertools import count
from pathlib import Path

import pytest

from edge.store import Store
from edge.sync.inbox import Inbox

EDGE = "edge-a"
_ids = count(1)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "edge.sqlite3") as opened:
        yield opened


@pytest.fixture
def deliver(store):
    """Send one message through the inbox on a connection of its own (as the sync process
    does); returns the ack's result and error. ``deliver("customers", "delta", body)`` is a
    ``customers.delta`` on scope ``share`` (likewise ``"snapshot"``), as HQ sends them."""
    conn = sqlite3.connect(store.path)
    inbox = Inbox(EDGE, clock=lambda: 1795392102.0)
    versions: dict[tuple[str, str], int] = {}

    def send(kind: str, scope: str, body: dict, version: int | None = None) -> tuple[str, str]:
        type_ = f"{kind}.{scope}"
        if kind == "customers" and scope in ("delta", "snapshot"):
            scope = "share"
        key = (kind, scope)
        versions[key] = version if version is not None else versions.get(key, 0) + 1
        payload = {"id": f"m{next(_ids):04d}", "edge": EDGE, "kind": kind, "scope": scope,
                   "version": versions[key], "ts": 1795392100.0, "type": type_,
                   "body": body}
        ack = inbox.receive(conn, f"cc/v1/{EDGE}/down/{kind}",
                            json.dumps(payload, ensure_ascii=False).encode())
        assert ack is not None
        return ack.result, ack.error

    yield send
    conn.close()


def customer(id_: str, name: str = "王五", **extra) -> dict:
    return {"id": id_, "name": name, "member_no": None, "owner_agent": "a8001", "region": "广东",
            "type": "personal", "vip": False, "numbers": [], "accounts": [], **extra}


def snapshot_part(part: int, parts: int, after, through, customers: list[dict]) -> dict:
    return {"snapshot": "s1", "part": part, "parts": parts, "after": after, "through": through,
            "customers": customers}


# --- customers ----------------------------------------------------------------------------------

def test_delta_upserts_whole_customers_that_the_ivr_lookups_find(store, deliver):
    wang = customer("c1", member_no="M1001", vip=True, numbers=["13800138000", "075588888888"],
                    accounts=[{"id": "k1", "balance": "1234.50", "amount_due": "300.00",
                               "due_date": "2026-12-01"}])
    assert deliver("customers", "delta", {"upserts": [wang], "deletes": []}) == ("applied", "")
    assert store.customer_by_member("M1001")["name"] == "王五"
    assert store.customer_by_number("075588888888")["id"] == "c1"
    [account] = store.accounts_of("c1")
    assert (account["balance"], account["amount_due"], account["due_date"]) == \
        ("1234.50", "300.00", "2026-12-01")
    # the next upsert is the whole customer again: a number and an account it lacks are gone
    wang2 = {**wang, "numbers": ["13800138000"], "accounts": [], "name": "王五五"}
    assert deliver("customers", "delta", {"upserts": [wang2], "deletes": []})[0] == "applied"
    cached = store.customer("c1")
    assert cached["name"] == "王五五" and cached["numbers"] == ["13800138000"]
    assert cached["accounts"] == [] and store.customer_by_number("075588888888") is None


def test_a_member_no_and_a_number_can_move_between_customers_in_one_delta(store, deliver):
    deliver("customers", "delta", {"upserts": [
        customer("c1", member_no="M1", numbers=["13800138000"]), customer("c2", member_no="M2")]})
    # HQ moved both to c2; c2's upsert comes before c1's in the message
    result = deliver("customers", "delta", {"upserts": [
        customer("c2", member_no="M1", numbers=["13800138000"]),
        customer("c1", member_no="M3", numbers=[])]})
    assert result == ("applied", "")
    assert store.customer_by_member("M1")["id"] == "c2"
    assert store.customer_by_member("M3")["id"] == "c1"
    assert store.customer_by_number("13800138000")["id"] == "c2"


def test_delta_deletes_forget_the_customer_numbers_and_accounts(store, deliver):
    deliver("customers", "delta", {"upserts": [
        customer("c1", numbers=["13800138000"], accounts=[{"id": "k1", "balance": "1.00"}]),
        customer("c2")]})
    assert deliver("customers", "delta", {"deletes": ["c1", "never-cached"]})[0] == "applied"
    assert store.customer_ids() == ["c2"]
    assert store.customer_by_number("13800138000") is None and store.accounts_of("c1") == []


def test_a_one_part_snapshot_replaces_the_whole_cache(store, deliver):
    deliver("customers", "delta", {"upserts": [customer("c1"), customer("c2"), customer("c9")]})
    store.upsert_customer(customer("local-only"))   # e.g. seeded by hand before HQ knew it
    body = snapshot_part(1, 1, None, None, [customer("c2", name="李四"), customer("c3")])
    assert deliver("customers", "snapshot", body) == ("applied", "")
    assert store.customer_ids() == ["c2", "c3"]
    assert store.customer("c2")["name"] == "李四"


def test_snapshot_parts_replace_their_own_key_range_so_the_cache_is_whole_between_parts(
        store, deliver):
    deliver("customers", "delta", {"upserts": [customer(i) for i in ("a1", "b1", "c1", "d1")]})
    parts = [snapshot_part(1, 3, None, "b2", [customer("a2"), customer("b2")]),
             snapshot_part(2, 3, "b2", "c2", [customer("c2")]),
             snapshot_part(3, 3, "c2", None, [customer("e1")])]
    deliver("customers", "snapshot", parts[0])
    # a1 and b1 (range <= b2) replaced; c1 and d1 wait for their parts and are still served
    assert store.customer_ids() == ["a2", "b2", "c1", "d1"]
    deliver("customers", "snapshot", parts[1])
    assert store.customer_ids() == ["a2", "b2", "c2", "d1"]
    deliver("customers", "snapshot", parts[2])
    assert store.customer_ids() == ["a2", "b2", "c2", "e1"]


@pytest.mark.parametrize("scope, body, fragment", [
    ("delta", {"upserts": [customer("c2"), customer("c3", accounts=[{"id": "k", "balance": 1.5}])]},
     "upserts[1].accounts[0].balance"),
    ("delta", {"upserts": [customer("c2", numbers=["138-0013"])]}, "upserts[0].numbers"),
    ("delta", {"upserts": [customer("c2", crm_field="x")], "deletes": [7]}, "deletes[0]"),
    ("delta", {"upserts": [{"name": "no id"}]}, "upserts[0].id"),
    ("delta", {"upserts": "c2"}, "upserts: expected a list"),
    ("snapshot", snapshot_part(2, 2, "m", None, [customer("c2")]), "outside this part"),
    ("snapshot", snapshot_part(1, 2, "m", "a", []), "through"),
    ("share", {}, "type: expected customers.delta or customers.snapshot"),
])
def test_a_bad_body_is_rejected_whole_and_the_cache_is_untouched(store, deliver, scope, body,
                                                                 fragment):
    deliver("customers", "delta", {"upserts": [customer("c1")]})
    result, error = deliver("customers", scope, body)
    assert result == "rejected" and fragment in error
    assert store.customer_ids() == ["c1"]


def test_customers_come_on_the_share_scope_only(store, deliver):
    result, error = deliver("customers", "delta-2", {"upserts": [customer("c1")]})
    assert result == "rejected" and "scope: expected 'share'" in error
    assert store.customer_ids() == []


def test_an_older_or_repeated_delta_changes_nothing(store, deliver):
    deliver("customers", "delta", {"upserts": [customer("c1", name="新")]}, version=5)
    result, _ = deliver("customers", "delta", {"upserts": [customer("c1", name="旧")]}, version=4)
    assert result == "duplicate" and store.customer("c1")["name"] == "新"


# --- reference ----------------------------------------------------------------------------------

def prefix_part(part, parts, after, through, rows):
    return {"snapshot": "p1", "part": part, "parts": parts, "after": after, "through": through,
            "columns": ["prefix", "region", "carrier"], "rows": rows}


def test_prefix_parts_replace_their_ranges_and_versions_are_reported(store, deliver):
    deliver("reference", "prefixes", prefix_part(1, 1, None, None, [
        ["0755", "广东/深圳", ""], ["1660755", "广东/深圳", "中国联通"], ["1990755", "广东/深圳", ""]]))
    assert deliver("reference", "prefixes", prefix_part(1, 2, None, "1700000", [
        ["1660200", "广东/广州", "中国联通"]])) == ("applied", "")
    assert store.pushed_prefixes() == [("1660200", "广东/广州", "中国联通"),
                                       ("1990755", "广东/深圳", "")]
    deliver("reference", "prefixes", prefix_part(2, 2, "1700000", None, []))
    assert store.pushed_prefixes() == [("1660200", "广东/广州", "中国联通")]
    assert store.reference_versions() == {"prefixes": 3}


@pytest.mark.parametrize("body, fragment", [
    (prefix_part(1, 1, None, None, [["16607x5", "广东", ""]]), "rows[0]"),
    (prefix_part(1, 1, None, None, [["1660755", " ", ""]]), "rows[0]"),
    (prefix_part(1, 1, None, None, [["1660755", "广东"]]), "rows[0]"),
    (prefix_part(2, 2, "1700000", None, [["1660755", "广东", ""]]), "outside this part"),
    ({**prefix_part(1, 1, None, None, []), "columns": ["prefix", "city"]}, "columns"),
])
def test_bad_prefix_rows_reject_the_part(store, deliver, body, fragment):
    deliver("reference", "prefixes", prefix_part(1, 1, None, None, [["0755", "广东/深圳", ""]]))
    result, error = deliver("reference", "prefixes", body)
    assert result == "rejected" and fragment in error
    assert store.pushed_prefixes() == [("0755", "广东/深圳", "")]


def test_a_calendar_message_replaces_that_calendar_only(store, deliver):
    days = [{"date": "2027-01-01", "kind": "holiday", "name": "元旦"},
            {"date": "2027-02-06", "kind": "holiday", "name": "春节"}]
    assert deliver("reference", "calendar:cn", {"calendar": "cn", "days": days}) == ("applied", "")
    deliver("reference", "calendar:营业厅", {"calendar": "营业厅", "days": [
        {"date": "2027-03-03", "kind": "holiday", "name": "行庆"}]})
    deliver("reference", "calendar:cn", {"calendar": "cn", "days": days[1:]})
    assert store.pushed_calendar_days() == {
        "cn": [{"date": "2027-02-06", "kind": "holiday", "name": "春节"}],
        "营业厅": [{"date": "2027-03-03", "kind": "holiday", "name": "行庆"}]}
    assert store.reference_versions() == {"calendar:cn": 2, "calendar:营业厅": 1}


@pytest.mark.parametrize("scope, body, fragment", [
    ("calendar:cn", {"calendar": "other", "days": []}, "does not match"),
    ("calendar:cn", {"calendar": "cn", "days": [{"date": "2027-02-30", "kind": "holiday"}]},
     "days[0].date"),
    ("calendar:cn", {"calendar": "cn", "days": [{"date": "2027-02-06", "kind": "vacation"}]},
     "days[0].kind"),
    ("calendar:cn", {"calendar": "cn", "days": [{"date": "2027-02-06", "kind": "holiday"},
                                                {"date": "2027-02-06", "kind": "workday"}]},
     "listed twice"),
    ("calendars", {}, "scope"),
])
def test_bad_calendar_bodies_are_rejected(store, deliver, scope, body, fragment):
    result, error = deliver("reference", scope, body)
    assert result == "rejected" and fragment in error
    assert store.pushed_calendar_days() == {}
