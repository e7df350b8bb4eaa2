"""Recordings linked to CDRs at HQ (the ``cdr`` projection and ``aggregator.recordings.catalog``)
and playback for people: roles, data scope by the edge's department, the audit of each play."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aggregator.auth.access import issue_edge_token
from aggregator.envelope import Envelope
from aggregator.recordings.catalog import list_cdrs, recordings_for_call
from tests.aggregator.helpers import db_of, login, make_app, make_department, make_user

UPLOADS = "/api/v1/recordings/uploads"
PASSWORD = "correct horse battery"
T0 = 1_795_392_187.0
_seq: dict[tuple[str, str], int] = {}


def cdr(edge: str, call_id: str, seq: int, **fields: Any) -> Envelope:
    body = {"call_id": call_id, "direction": "inbound", "caller": "13800138000",
            "callee": "075583210001", "agent_id": "wang", "group": "general",
            "started_at": T0, "answered_at": T0 + 8, "ended_at": T0 + 70, "wait_s": 8.0,
            "talk_s": 62.0, "disposition": "answered", "rating": "满意", **fields}
    return Envelope(f"01J{edge}{call_id}{seq}".replace(".", "x")[:60], edge, "cdr", seq,
                    T0 + 100, "cdr", body)


def upload(client: Any, token: str, data: bytes, call_id: str, leg: int = 1,
           agent: str = "wang") -> dict[str, Any]:
    sha = hashlib.sha256(data).hexdigest()
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post(UPLOADS, headers=headers, json={
        "sha256": sha, "bytes": len(data), "call_id": call_id, "leg": leg, "agent": agent,
        "day": "2026-11-23", "duration_s": 62.0, "started_at": T0})
    assert created.status_code == 201, created.get_json()
    done = client.put(f"{UPLOADS}/{sha}", data=data, headers={
        **headers, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
    assert done.status_code == 201, done.get_json()
    return done.get_json()


def add_edge(db: Any, edge: str, department: int | None) -> None:
    now = time.time()
    with db.transaction() as tx:
        tx.execute("INSERT INTO edges (id, name, department_id, state, enrolled_at, updated_at)"
                   " VALUES (?, ?, ?, 'active', ?, ?)", (edge, edge, department, now, now))


@pytest.fixture
def hq(hq_db_url: str, tmp_path: Path) -> SimpleNamespace:
    app, _clock = make_app(hq_db_url, tmp_path)
    db = db_of(app)
    with db.transaction() as tx:
        tokens = {edge: issue_edge_token(tx, edge) for edge in ("edge-a", "edge-b")}
    return SimpleNamespace(app=app, db=db, client=app.test_client(), tokens=tokens,
                           root=tmp_path / "recordings")


def test_a_cdr_that_arrives_first_shows_its_recording_once_uploaded(hq: SimpleNamespace) -> None:
    hq.db.store_batch([cdr("edge-a", "c1", 1)])
    [row] = list_cdrs(hq.db, edge="edge-a")
    assert (row["call_id"], row["agent_id"], row["group"], row["recordings"]) == \
        ("c1", "wang", "general", [])
    assert row["cdr"]["rating"] == "满意"

    filed = upload(hq.client, hq.tokens["edge-a"], b"ID3 first leg", "c1", leg=1)
    upload(hq.client, hq.tokens["edge-a"], b"ID3 second leg", "c1", leg=2, agent="li")

    [row] = list_cdrs(hq.db, edge="edge-a")
    assert [(r["leg"], r["agent"]) for r in row["recordings"]] == [(1, "wang"), (2, "li")]
    assert row["recordings"][0]["path"] == filed["path"]


def test_a_recording_that_arrives_first_is_linked_when_its_cdr_comes(hq: SimpleNamespace) -> None:
    upload(hq.client, hq.tokens["edge-a"], b"ID3 early", "c2")
    assert [r.call_id for r in recordings_for_call(hq.db, "edge-a", "c2")] == ["c2"]
    assert list_cdrs(hq.db) == []

    hq.db.store_batch([cdr("edge-a", "c2", 1)])

    [row] = list_cdrs(hq.db)
    assert [r["call_id"] for r in row["recordings"]] == ["c2"]


def test_calls_are_linked_per_edge(hq: SimpleNamespace) -> None:
    """Two branches may both have a call ``c3``: each CDR shows only its own edge's recording."""
    upload(hq.client, hq.tokens["edge-a"], b"ID3 from a", "c3")
    upload(hq.client, hq.tokens["edge-b"], b"ID3 from b", "c3")
    hq.db.store_batch([cdr("edge-a", "c3", 1), cdr("edge-b", "c3", 1)])

    rows = {row["edge"]: row for row in list_cdrs(hq.db)}

    assert [r["edge"] for r in rows["edge-a"]["recordings"]] == ["edge-a"]
    assert [r["edge"] for r in rows["edge-b"]["recordings"]] == ["edge-b"]


def test_a_rewritten_cdr_replaces_the_row_only_when_newer(hq: SimpleNamespace) -> None:
    hq.db.store_batch([cdr("edge-a", "c4", 2, disposition="transferred", talk_s=90.0)])
    hq.db.store_batch([cdr("edge-a", "c4", 1, disposition="answered")])   # older, stored later
    [row] = list_cdrs(hq.db)
    assert (row["disposition"], row["talk_s"]) == ("transferred", 90.0)

    hq.db.store_batch([cdr("edge-a", "c4", 3, disposition="callback", caller=None,
                           started_at="not a time")])
    [row] = list_cdrs(hq.db)
    assert (row["disposition"], row["caller"], row["started_at"]) == ("callback", "", None)


def test_a_cdr_without_call_id_is_dead_lettered_and_the_stream_goes_on(
        hq: SimpleNamespace) -> None:
    bad = Envelope("01JBAD", "edge-a", "cdr", 1, T0, "cdr", {"caller": "13800138000"})
    marks = hq.db.store_batch([bad, cdr("edge-a", "c5", 2)])
    assert marks[("edge-a", "cdr")] == 2                   # the message is kept, HQ acks it
    [letter] = hq.db.dead_letters()
    assert "a CDR needs a call_id" in letter.reason
    assert [row["call_id"] for row in list_cdrs(hq.db)] == ["c5"]


def test_a_qa_user_plays_a_recording_and_the_play_is_audited(hq: SimpleNamespace) -> None:
    data = b"ID3" + bytes(range(256)) * 40
    filed = upload(hq.client, hq.tokens["edge-a"], data, "c6")
    make_user(hq.db, "qa1", PASSWORD, ["qa"], department="华南")
    login(hq.client, "qa1", PASSWORD)
    add_edge(hq.db, "edge-a", hq.db.scalar("SELECT id FROM departments WHERE name = ?", ("华南",)))

    whole = hq.client.get(f"/api/v1/recordings/{filed['id']}/audio")
    seek = hq.client.get(f"/api/v1/recordings/{filed['id']}/audio",
                         headers={"Range": "bytes=100-199"})

    assert whole.status_code == 200 and whole.data == data
    assert whole.mimetype == "audio/mpeg"
    assert seek.status_code == 206 and seek.data == data[100:200]
    plays = hq.db.query("SELECT actor_name, action, target FROM audit_log WHERE action = ?",
                        ("recording.play",))
    assert plays == [("qa1", "recording.play", "edge-a/c6/1")]    # seeking is not a new play


def test_playback_needs_a_viewer_role(hq: SimpleNamespace) -> None:
    filed = upload(hq.client, hq.tokens["edge-a"], b"ID3 private", "c7")
    url = f"/api/v1/recordings/{filed['id']}/audio"
    assert hq.client.get(url).status_code == 401
    edge_token = {"Authorization": f"Bearer {hq.tokens['edge-a']}"}
    assert hq.client.get(url, headers=edge_token).status_code == 401
    make_user(hq.db, "agent1", PASSWORD, ["agent"])
    login(hq.client, "agent1", PASSWORD)
    assert hq.client.get(url).status_code == 403
    assert hq.db.scalar("SELECT count(*) FROM audit_log WHERE action = 'recording.play'") == 0


def test_a_supervisor_sees_only_the_edges_of_their_departments(hq: SimpleNamespace) -> None:
    south = make_department(hq.db, "华南")
    shenzhen = make_department(hq.db, "深圳", south)
    north = make_department(hq.db, "华北")
    add_edge(hq.db, "edge-a", shenzhen)
    add_edge(hq.db, "edge-b", north)
    mine = upload(hq.client, hq.tokens["edge-a"], b"ID3 shenzhen", "c8")
    theirs = upload(hq.client, hq.tokens["edge-b"], b"ID3 beijing", "c9")
    hq.db.store_batch([cdr("edge-a", "c8", 1), cdr("edge-b", "c9", 1)])
    make_user(hq.db, "sup", PASSWORD, ["supervisor"], department=south)
    login(hq.client, "sup", PASSWORD)

    listed = hq.client.get("/api/v1/recordings").get_json()["recordings"]
    cdrs = hq.client.get("/api/v1/recordings/cdrs").get_json()["cdrs"]

    assert [r["id"] for r in listed] == [mine["id"]]
    assert [(c["edge"], [r["id"] for r in c["recordings"]]) for c in cdrs] == \
        [("edge-a", [mine["id"]])]
    assert hq.client.get(f"/api/v1/recordings/{theirs['id']}/audio").status_code == 404
    assert hq.client.get(f"/api/v1/recordings/{theirs['id']}").status_code == 404
    assert hq.client.get("/api/v1/recordings/calls/edge-b/c9").status_code == 404
    call = hq.client.get("/api/v1/recordings/calls/edge-a/c8").get_json()
    assert [r["id"] for r in call["recordings"]] == [mine["id"]]


def test_an_admin_sees_every_edge_and_filters(hq: SimpleNamespace) -> None:
    upload(hq.client, hq.tokens["edge-a"], b"ID3 one", "c10", agent="张伟")
    upload(hq.client, hq.tokens["edge-b"], b"ID3 two", "c11")   # an edge with no department
    make_user(hq.db, "root", PASSWORD, ["admin"])
    login(hq.client, "root", PASSWORD)

    every = hq.client.get("/api/v1/recordings").get_json()["recordings"]
    by_agent = hq.client.get("/api/v1/recordings", query_string={"agent": "张伟"}).get_json()

    assert sorted(r["call_id"] for r in every) == ["c10", "c11"]
    assert [r["call_id"] for r in by_agent["recordings"]] == ["c10"]
    assert hq.client.get("/api/v1/recordings", query_string={"limit": "x"}).status_code == 400
