"""The ``health`` projection and the fleet view: each edge's report, stored through
``HqDb.store_batch`` like every ingested message, updates its row; the view says online, stale or
offline by the age of ``last_seen``; reports from unknown edges or with unusable bodies are refused
with a reason and change nothing."""
from __future__ import annotations

import json
import time

import pytest

from aggregator.envelope import Envelope
from aggregator.fleet import edges
from aggregator.fleet.projections import parse_health
from aggregator.projections import ProjectionError, apply_projections
from tests.aggregator.helpers import db_of, login, make_app, make_department, make_user

PASSWORD = "correct horse battery"
REPORT = {"version": "0.1.0", "outbox_depth": 12, "trunks": {"total": 8, "up": 7},
          "agents": {"total": 20, "logged_in": 14}, "calls_active": 3, "uptime_s": 3600.5,
          "config_versions": {"agents": 4, "ivr": 2}}


@pytest.fixture
def app(hq_db_url, tmp_path):
    app, clock = make_app(hq_db_url, tmp_path)
    app.clock = clock
    db = db_of(app)
    department = make_department(db, "华东")
    make_user(db, "root", PASSWORD, ["admin"])
    with db.transaction() as tx:
        app.edge_id = edges.insert_new(tx, "杭州西湖", department, time.time())
        edges.set_state(tx, app.edge_id, "active", time.time())
    return app


def health(edge: str, seq: int, ts: float, body: dict | None = None) -> Envelope:
    return Envelope(f"01HEALTH{edge}{seq:06d}", edge, "health", seq, ts, "health",
                    REPORT if body is None else body)


def fleet_view(app) -> list[dict]:
    c = app.test_client()
    login(c, "root", PASSWORD)
    response = c.get("/api/v1/fleet/edges")
    assert response.status_code == 200
    return response.get_json()["edges"]


def test_a_health_report_updates_the_fleet_view(app):
    db = db_of(app)
    before = time.time()
    db.store_batch([health(app.edge_id, 1, before)])
    [edge] = fleet_view(app)
    assert edge["id"] == app.edge_id and edge["name"] == "杭州西湖"
    assert edge["state"] == "online"
    assert edge["last_seen"] >= before
    assert (edge["version"], edge["outbox_depth"], edge["calls_active"]) == ("0.1.0", 12, 3)
    assert edge["trunks"] == {"total": 8, "up": 7}
    assert edge["agents"] == {"total": 20, "logged_in": 14}
    assert edge["config_versions"] == {"agents": 4, "ivr": 2}
    c = app.test_client()
    login(c, "root", PASSWORD)
    detail = c.get(f"/api/v1/fleet/edges/{app.edge_id}").get_json()
    assert detail["health"] == REPORT


def test_state_goes_stale_then_offline_as_reports_stop(app):
    db_of(app).store_batch([health(app.edge_id, 1, time.time())])
    assert [e["state"] for e in fleet_view(app)] == ["online"]
    app.clock.advance(edges.ONLINE_S + 5)
    assert [e["state"] for e in fleet_view(app)] == ["stale"]
    app.clock.advance(edges.STALE_S)
    [edge] = fleet_view(app)
    assert edge["state"] == "offline" and edge["last_seen_age_s"] > edges.STALE_S
    db_of(app).store_batch([health(app.edge_id, 2, time.time())])
    app.clock.t = time.time()
    assert [e["state"] for e in fleet_view(app)] == ["online"]


def test_an_older_report_stored_late_moves_last_seen_but_not_the_figures(app):
    db = db_of(app)
    now = time.time()
    db.store_batch([health(app.edge_id, 2, now, {**REPORT, "calls_active": 9})])
    first_seen = edges.get(db, app.edge_id).last_seen
    time.sleep(0.01)
    db.store_batch([health(app.edge_id, 1, now - 60, {**REPORT, "calls_active": 1})])
    edge = edges.get(db, app.edge_id)
    assert edge.calls_active == 9 and edge.reported_at == now
    assert edge.last_seen > first_seen


def test_a_report_delivered_twice_is_applied_once(app):
    db = db_of(app)
    message = health(app.edge_id, 1, time.time())
    db.store_batch([message])
    with db.transaction() as tx:
        tx.execute("UPDATE edges SET calls_active = 0 WHERE id = ?", (app.edge_id,))
    db.store_batch([message])
    assert edges.get(db, app.edge_id).calls_active == 0


def test_reports_from_unknown_edges_or_with_bad_bodies_are_refused(app):
    db = db_of(app)
    with db.transaction() as tx:
        refused = apply_projections(tx, health("edge-stranger", 1, time.time()), time.time())
    assert len(refused) == 1 and "unknown edge 'edge-stranger'" in refused[0]
    for bad, field in (({"trunks": [8, 7]}, "health.trunks"),
                       ({"agents": {"total": -1}}, "health.agents.total"),
                       ({"outbox_depth": "12"}, "health.outbox_depth"),
                       ({"calls_active": True}, "health.calls_active"),
                       ({"uptime_s": float("inf")}, "health.uptime_s"),
                       ({"version": 7}, "health.version")):
        with db.transaction() as tx:
            refused = apply_projections(tx, health(app.edge_id, 1, time.time(), bad), time.time())
        assert len(refused) == 1 and field in refused[0], (bad, refused)
    edge = edges.get(db, app.edge_id)
    assert edge.last_seen is None and edge.health is None
    # through the ingest path the refusal crashes nothing, the stream still advances, and the
    # message is filed as a dead letter with the reason
    hwms = db.store_batch([health("edge-stranger", 1, time.time())])
    assert hwms == {("edge-stranger", "health"): 1}
    [dead] = db.dead_letters()
    assert dead.topic == "cc/v1/edge-stranger/up/health" and "unknown edge" in dead.reason


def test_a_partial_report_from_an_older_edge_is_kept(app):
    db = db_of(app)
    db.store_batch([health(app.edge_id, 1, time.time(), {"version": "0.0.9", "日志": "正常"})])
    edge = edges.get(db, app.edge_id)
    assert edge.version == "0.0.9" and edge.trunks_total is None
    assert edge.health == {"version": "0.0.9", "日志": "正常"}
    stored = db.query("SELECT health FROM edges WHERE id = ?", (app.edge_id,))[0][0]
    assert "正常" in stored and json.loads(stored)["日志"] == "正常"


def test_parse_health_reads_every_field():
    report = parse_health(REPORT)
    assert (report.trunks_total, report.trunks_up, report.agents_total, report.agents_logged_in,
            report.outbox_depth, report.calls_active, report.uptime_s) == (8, 7, 20, 14, 12, 3,
                                                                           3600.5)
    with pytest.raises(ProjectionError, match="health.trunks.up"):
        parse_health({"trunks": {"total": 1, "up": "x"}})
