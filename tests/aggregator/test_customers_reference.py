"""HQ's reference data: the 号段 CSV (UTF-8 or GBK, bad rows reported by line), calendars
(set by year, seeded from chinese-calendar), and ``/push`` cutting whole tables into parts that
each fit the downlink's body limit (on SQLite and PostgreSQL; one test over real gunicorn)."""
from __future__ import annotations

import io
import json
import time

import pytest
import requests

from aggregator.customers import prefixes, push
from aggregator.db import HqDb
from aggregator.downlink.queue import MAX_BODY_BYTES
from aggregator.fleet import edges
from tests.aggregator.helpers import csrf, db_of, login, make_app, make_user

PASSWORD = "correct horse battery"
BASE = "/api/v1/customers"
CSV_EN = "prefix,province,city,carrier\n1660755,广东,深圳,中国联通\n0755,广东省,深圳市,\n010,北京,北京,\n"
CSV_ZH = "号段,省份,城市,运营商\r\n1721234,广东,深圳,中国联通\r\n1990755,广东,深圳,中国电信\r\n"


@pytest.fixture
def app(hq_db_url, tmp_path):
    app, _ = make_app(hq_db_url, tmp_path)
    make_user(db_of(app), "ops", PASSWORD, ["admin"])
    make_user(db_of(app), "boss", PASSWORD, ["supervisor"])
    return app


@pytest.fixture
def admin(app):
    client = app.test_client()
    client.csrf = login(client, "ops", PASSWORD)
    return client


def upload(client, data: bytes, query: str = "", **kwargs):
    return client.post(f"{BASE}/prefixes{query}", data=data, headers=csrf(client.csrf), **kwargs)


def table(app):
    return db_of(app).query("SELECT prefix, region, carrier FROM number_prefixes ORDER BY prefix")


def enroll(db, *names: str) -> list[str]:
    with db.transaction() as tx:
        ids = [edges.insert_new(tx, name, None, time.time()) for name in names]
        for edge_id in ids:
            edges.set_state(tx, edge_id, "active", time.time())
    return ids


def downlink(db, kind: str = "reference"):
    rows = db.query("SELECT edge, scope, version, type, body FROM downlink WHERE kind = ?"
                    " ORDER BY edge, scope, version", (kind,))
    return [(e, s, v, t, json.loads(b)) for e, s, v, t, b in rows]


# --- the 号段 CSV -------------------------------------------------------------------------------

def test_utf8_upload_with_province_and_city_columns(app, admin):
    response = upload(admin, CSV_EN.encode())
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert (report["encoding"], report["good"], report["bad"], report["total"]) == \
        ("utf-8", 3, 0, 3)
    assert table(app) == [("010", "北京", ""), ("0755", "广东省/深圳市", ""),
                          ("1660755", "广东/深圳", "中国联通")]


def test_gbk_upload_with_chinese_headers_as_a_multipart_file(app, admin):
    data = CSV_ZH.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")                      # really GBK, not UTF-8 by accident
    response = admin.post(f"{BASE}/prefixes", data={"file": (io.BytesIO(data), "号段.csv")},
                          headers=csrf(admin.csrf), content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["encoding"] == "gbk"
    assert table(app) == [("1721234", "广东/深圳", "中国联通"), ("1990755", "广东/深圳", "中国电信")]
    listed = admin.get(f"{BASE}/prefixes?limit=1").get_json()
    assert listed == {"prefixes": [{"prefix": "1721234", "region": "广东/深圳",
                                    "carrier": "中国联通"}], "total": 2}


BAD = ("prefix,region,carrier\n"
       "1660755,广东/深圳,中国联通\n"     # line 2: good
       "16607x5,广东/深圳,\n"             # 3: not digits
       "\n"                               # 4: blank, skipped
       "0755,,\n"                         # 5: no region
       "1660755,广东/广州,\n"             # 6: duplicate
       "12,北京,\n"                       # 7: too short
       "0571,浙江/杭州/西湖,\n"           # 8: three levels
       "0571\n"                           # 9: too few columns
       "020,广东/广州,中国移动\n")         # 10: good


def test_bad_rows_are_reported_by_line_and_nothing_is_stored(app, admin):
    upload(admin, CSV_EN.encode())
    response = upload(admin, BAD.encode("gbk"))
    assert response.status_code == 422
    report = response.get_json()
    assert (report["good"], report["bad"]) == (2, 6)
    assert [(b["line"], b["error"].split(":")[0]) for b in report["bad_rows"]] == [
        (3, "prefix"), (5, "region"), (6, "prefix 1660755 already on line 2"), (7, "prefix"),
        (8, "region"), (9, "expected 3 columns, got 1")]
    assert report["bad_rows"][0]["text"] == "16607x5,广东/深圳,"
    assert len(table(app)) == 3                    # the earlier table is intact


def test_partial_stores_the_good_rows_and_merge_keeps_the_rest(app, admin):
    upload(admin, CSV_EN.encode())
    response = upload(admin, BAD.encode(), "?partial=1&mode=merge")
    assert response.status_code == 200 and response.get_json()["stored"] == 2
    assert table(app) == [("010", "北京", ""), ("020", "广东/广州", "中国移动"),
                          ("0755", "广东省/深圳市", ""), ("1660755", "广东/深圳", "中国联通")]
    assert upload(admin, CSV_ZH.encode()).get_json()["total"] == 2     # replace: the whole table


@pytest.mark.parametrize("data, query, fragment", [
    (b"", "", "send the CSV"),
    (b"number,place\n1,2\n", "", "first line must name the columns"),
    (b"\xff\xfe\x00garbage\x81", "", "neither UTF-8 nor GBK"),
    (CSV_ZH.encode("gbk"), "?encoding=utf-8", "not utf-8"),
    (CSV_EN.encode(), "?encoding=latin1", "encoding"),
    (CSV_EN.encode(), "?mode=append", "mode"),
])
def test_unreadable_uploads_are_refused(app, admin, data, query, fragment):
    response = upload(admin, data, query)
    assert response.status_code == 400 and fragment in response.get_json()["error"]
    assert table(app) == []


def test_reference_data_is_for_admins(app):
    client = app.test_client()
    token = login(client, "boss", PASSWORD)
    assert client.post(f"{BASE}/prefixes", data=CSV_EN.encode(), headers=csrf(token)).status_code \
        == 403
    assert client.post(f"{BASE}/push", json={}, headers=csrf(token)).status_code == 403


# --- calendars ----------------------------------------------------------------------------------

def test_seed_a_year_from_chinese_calendar_then_edit_days(app, admin):
    response = admin.post(f"{BASE}/calendars/cn/years/2026/seed", headers=csrf(admin.csrf))
    assert response.status_code == 200
    days = {d["date"]: d for d in response.get_json()["days"]}
    assert days["2026-10-01"] == {"date": "2026-10-01", "kind": "holiday", "name": "国庆节"}
    assert days["2026-10-10"]["kind"] == "workday"
    assert all(d.startswith("2026-") for d in days)
    response = admin.post(f"{BASE}/calendars/cn/days", headers=csrf(admin.csrf), json={
        "days": [{"date": "2026-12-24", "kind": "holiday", "name": "平安夜"}]})
    assert response.status_code == 200
    assert admin.delete(f"{BASE}/calendars/cn/days/2026-10-10",
                        headers=csrf(admin.csrf)).status_code == 200
    assert admin.delete(f"{BASE}/calendars/cn/days/2026-10-10",
                        headers=csrf(admin.csrf)).status_code == 404
    stored = admin.get(f"{BASE}/calendars/cn/days?year=2026").get_json()["days"]
    assert len(stored) == len(days) and {"date": "2026-12-24", "kind": "holiday",
                                         "name": "平安夜"} in stored
    assert admin.get(f"{BASE}/calendars").get_json()["calendars"] == [
        {"calendar": "cn", "days": len(days), "first": "2026-01-01", "last": "2026-12-24"}]


def test_a_year_the_package_lacks_is_set_by_hand_and_replaced_whole(app, admin):
    response = admin.post(f"{BASE}/calendars/cn/years/2027/seed", headers=csrf(admin.csrf))
    assert response.status_code == 400 and "not 2027" in response.get_json()["error"]
    first = [{"date": "2027-01-01", "kind": "holiday", "name": "元旦"},
             {"date": "2027-02-06", "kind": "holiday", "name": "春节"}]
    assert admin.put(f"{BASE}/calendars/cn/years/2027", json={"days": first},
                     headers=csrf(admin.csrf)).status_code == 200
    admin.put(f"{BASE}/calendars/cn/years/2027", json={"days": first[1:]},
              headers=csrf(admin.csrf))
    assert admin.get(f"{BASE}/calendars/cn/days").get_json()["days"] == first[1:]


@pytest.mark.parametrize("path, body, fragment", [
    ("cn/years/2027", {"days": [{"date": "2026-12-31", "kind": "holiday", "name": ""}]},
     "days[0].date: 2026-12-31 is not in 2027"),
    ("cn/years/2027", {"days": [{"date": "2027-02-30", "kind": "holiday"}]}, "days[0].date"),
    ("cn/years/2027", {"days": [{"date": "2027-02-06", "kind": "off"}]}, "days[0].kind"),
    ("cn/years/2027", {"days": [{"date": "2027-02-06", "kind": "holiday", "when": 1}]},
     "days[0].when"),
    ("cn/years/twenty", {"days": []}, "year"),
    ("cn/years/2027", {"days": "2027-02-06"}, "days: expected a list"),
])
def test_bad_calendar_input_is_refused(app, admin, path, body, fragment):
    response = admin.put(f"{BASE}/calendars/{path}", json=body, headers=csrf(admin.csrf))
    assert response.status_code == 400 and fragment in response.get_json()["error"]


# --- push ---------------------------------------------------------------------------------------

def test_push_sends_each_table_to_every_enrolled_edge(app, admin):
    db = db_of(app)
    edge_a, edge_b = enroll(db, "a", "b")
    upload(admin, CSV_EN.encode())
    admin.put(f"{BASE}/calendars/cn/years/2027", json={"days": [
        {"date": "2027-01-01", "kind": "holiday", "name": "元旦"}]}, headers=csrf(admin.csrf))
    response = admin.post(f"{BASE}/push", json={"snapshot": False}, headers=csrf(admin.csrf))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"edges": [edge_a, edge_b], "messages": 4, "by_scope": {
        "reference/prefixes": 2, "reference/calendar:cn": 2}}
    sent = downlink(db)
    assert [(e, s, v, t) for e, s, v, t, _ in sent] == [
        (edge_a, "calendar:cn", 1, "reference.calendar"),
        (edge_a, "prefixes", 1, "reference.prefixes"),
        (edge_b, "calendar:cn", 1, "reference.calendar"),
        (edge_b, "prefixes", 1, "reference.prefixes")]
    assert sent[0][4] == {"calendar": "cn", "days": [
        {"date": "2027-01-01", "kind": "holiday", "name": "元旦"}]}
    prefixes_body = sent[1][4]
    assert (prefixes_body["part"], prefixes_body["parts"], prefixes_body["after"],
            prefixes_body["through"]) == (1, 1, None, None)
    assert prefixes_body["rows"][0] == ["010", "北京", ""]
    # a second push is the next version of the same scopes
    admin.post(f"{BASE}/push", json={"edges": [edge_a], "calendars": False, "snapshot": False},
               headers=csrf(admin.csrf))
    assert downlink(db)[2][1:3] == ("prefixes", 2)
    audit = db.query("SELECT action, target FROM audit_log WHERE action = 'reference.push'")
    assert audit == [("reference.push", f"{edge_a},{edge_b}"), ("reference.push", edge_a)]


def test_push_refuses_unknown_keys(app, admin):
    response = admin.post(f"{BASE}/push", json={"edge": "edge-a"}, headers=csrf(admin.csrf))
    assert response.status_code == 400 and "edge: unknown key" in response.get_json()["error"]


def test_big_tables_go_in_parts_that_fit_the_body_limit_and_tile_the_keys(hq_db_url):
    db = HqDb.open(hq_db_url)
    rows = [(f"{1300000 + i * 7}", "广东/深圳", "中国联通") for i in range(20000)]
    with db.transaction() as tx:
        prefixes.store(tx, rows, time.time(), replace=True)
        for i in range(3000):
            tx.execute("INSERT INTO customers (id, name, edge, version, created_at, updated_at)"
                       " VALUES (?, ?, 'edge-a', 1, 0, 0)", (f"c{i:05d}", "客户" * 20))
        push.enqueue_prefixes(tx, ["edge-a"])
        push.enqueue_snapshot(tx, "edge-a")
    for kind, field, keys in (("reference", "rows", [r[0] for r in rows]),
                              ("customers", "customers", [f"c{i:05d}" for i in range(3000)])):
        sent = downlink(db, kind)
        assert len(sent) > 1
        seen, after = [], None
        for edge, _, version, _, body in sent:
            assert len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()) \
                <= MAX_BODY_BYTES
            assert (body["part"], body["parts"], body["after"]) == (version, len(sent), after)
            items = [r[0] if field == "rows" else r["id"] for r in body[field]]
            assert all(after is None or k > after for k in items)
            after = body["through"]
            assert after is None or items[-1] == after
            seen += items
        assert after is None and seen == sorted(keys)
        assert len({m[4]["snapshot"] for m in sent}) == 1
    db.close()


# --- over real HTTP -----------------------------------------------------------------------------

def test_gbk_upload_and_push_over_gunicorn(hq_server):
    db = HqDb.open(hq_server.db_url)
    make_user(db, "ops", PASSWORD, ["admin"])
    [edge_a] = enroll(db, "a")
    http = requests.Session()
    token = http.post(f"{hq_server.url}/api/v1/auth/login",
                      json={"username": "ops", "password": PASSWORD}, timeout=10).json()["csrf"]
    response = http.post(f"{hq_server.url}{BASE}/prefixes", files={
        "file": ("号段.csv", CSV_ZH.encode("gbk"), "text/csv")}, headers={"X-CSRF-Token": token},
        timeout=10)
    assert response.status_code == 200 and response.json()["good"] == 2
    response = http.post(f"{hq_server.url}{BASE}", json={
        "id": "c1", "name": "王五", "edge": edge_a, "numbers": ["13800138000"]},
        headers={"X-CSRF-Token": token}, timeout=10)
    assert response.status_code == 201
    response = http.post(f"{hq_server.url}{BASE}/push", json={"calendars": False},
                         headers={"X-CSRF-Token": token}, timeout=10)
    assert response.json()["by_scope"] == {"reference/prefixes": 1, "customers/share": 1}
    [(_, _, _, _, body)] = downlink(db)
    assert body["rows"] == [["1721234", "广东/深圳", "中国联通"], ["1990755", "广东/深圳", "中国电信"]]
    snapshot = [m for m in downlink(db, "customers") if m[3] == "customers.snapshot"][0][4]
    assert snapshot["customers"][0]["name"] == "王五"
    db.close()
