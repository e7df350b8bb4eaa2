"""``edge enroll`` against a real HQ (gunicorn) and a real Mosquitto with the dynamic-security
plugin, then the enrolled edge reporting its health over the broker into HQ's fleet view:
token → credentials file → outbox → broker → ingest → ``GET /api/v1/fleet/edges``."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from aggregator.db import HqDb
from aggregator.ingest import IngestConsumer
from aggregator.web.serve import GunicornServer
from edge.cli import main
from edge.store import Store
from edge.sync.enroll import load_credentials
from edge.sync.health import HealthReporter
from edge.sync.publisher import SyncPublisher
from hil.broker import HQ_USER, MosquittoBroker, free_port
from tests.aggregator.helpers import TEST_SECRET, make_user

PASSWORD = "correct horse battery"


class Hq:
    def __init__(self, server: GunicornServer, broker: MosquittoBroker, db_path: Path) -> None:
        self.server, self.broker, self.db_path = server, broker, db_path
        self.url = server.url
        self.session = requests.Session()
        answer = self.session.post(self.url + "/api/v1/auth/login",
                                   json={"username": "root", "password": PASSWORD}, timeout=10)
        assert answer.status_code == 200, answer.text
        self.csrf = answer.json()["csrf"]

    def token(self, **body) -> str:
        answer = self.session.post(self.url + "/api/v1/fleet/enrollment-tokens", json=body,
                                   headers={"X-CSRF-Token": self.csrf}, timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()["token"]

    def edges(self) -> list[dict]:
        answer = self.session.get(self.url + "/api/v1/fleet/edges", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["edges"]


@pytest.fixture(scope="module")
def hq(tmp_path_factory):
    root = tmp_path_factory.mktemp("hq")
    db_path = root / "hq.sqlite3"
    with HqDb.open(str(db_path)) as db:
        make_user(db, "root", PASSWORD, ["admin"])
    with MosquittoBroker(root / "broker", {}, dynsec=True) as broker:
        env = {"CC_HQ_DB": str(db_path), "CC_HQ_SECRET_KEY": TEST_SECRET,
               "CC_HQ_RECORDINGS": str(root / "recordings"), "CC_HQ_LOG_LEVEL": "warning",
               "CC_HQ_ACCESS_LOG": "", "CC_HQ_BROKER_HOST": "127.0.0.1",
               "CC_HQ_BROKER_PORT": str(broker.port), "CC_HQ_BROKER_ADMIN_USER": broker.admin_user,
               "CC_HQ_BROKER_ADMIN_PASSWORD": broker.admin_password}
        with GunicornServer(env, log_path=root / "gunicorn.log") as server:
            yield Hq(server, broker, db_path)


def enroll(hq_url: str, token: str, out: Path, *extra: str):
    return CliRunner().invoke(main, ["enroll", "--hq", hq_url, "--token", token, "--out",
                                     str(out), *extra])


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


@pytest.mark.hil
def test_an_enrolled_edge_reports_its_health_into_the_fleet_view(hq, tmp_path):
    out = tmp_path / "etc" / "credentials.json"
    result = enroll(hq.url, hq.token(edge_name="苏州工业园区"), out)
    assert result.exit_code == 0, result.output
    creds = load_credentials(out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert f"enrolled as {creds.edge_id}" in result.output
    assert creds.password not in result.output and creds.api_token not in result.output
    assert creds.name == "苏州工业园区"
    assert "苏州工业园区" in out.read_text(encoding="utf-8")
    assert (creds.broker_host, creds.broker_port, creds.username) == (
        "127.0.0.1", hq.broker.port, creds.edge_id)
    assert creds.hq_url == hq.url

    store_path = tmp_path / "edge.sqlite3"
    ingest = IngestConsumer(hq.db_path, "127.0.0.1", hq.broker.port, HQ_USER,
                            hq.broker.hq_password, client_id=f"ingest-{creds.edge_id}")
    store = Store(store_path, outbox=True)
    publisher = SyncPublisher(str(store_path), creds.edge_id, creds.broker_host,
                              creds.broker_port, creds.username, creds.password)
    reporter = HealthReporter(store, lambda: {"version": "0.1.0", "trunks": {"total": 2, "up": 2},
                                              "agents": {"total": 5, "logged_in": 4},
                                              "calls_active": 2}, interval_s=3600)
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        store.on_outbox = publisher.wake
        publisher.start()
        assert reporter.report_once()
        edge = wait(lambda: next((e for e in hq.edges() if e["id"] == creds.edge_id
                                  and e["state"] == "online"), None), 20, "the edge online")
        assert edge["name"] == "苏州工业园区" and edge["version"] == "0.1.0"
        assert edge["trunks"] == {"total": 2, "up": 2}
        assert edge["agents"] == {"total": 5, "logged_in": 4}
        assert edge["calls_active"] == 2 and edge["outbox_depth"] == 0
        wait(lambda: store.outbox_depth() == 0, 10, "HQ to acknowledge the report")
    finally:
        publisher.stop()
        ingest.stop()
        store.close()


@pytest.mark.hil
def test_a_token_used_twice_or_unknown_fails_with_hqs_reason(hq, tmp_path):
    token = hq.token()
    assert enroll(hq.url, token, tmp_path / "first.json").exit_code == 0
    second = enroll(hq.url, token, tmp_path / "second.json")
    assert second.exit_code == 1
    assert "HQ refused the token: enrollment token already used by edge" in second.output
    assert not (tmp_path / "second.json").exists()
    unknown = enroll(hq.url, "cet_nope", tmp_path / "third.json")
    assert unknown.exit_code == 1 and "HQ refused the token" in unknown.output


@pytest.mark.hil
def test_an_enrolled_box_is_not_enrolled_again_by_accident(hq, tmp_path):
    out = tmp_path / "credentials.json"
    assert enroll(hq.url, hq.token(), out).exit_code == 0
    before = out.read_text()
    token = hq.token()
    again = enroll(hq.url, token, out)
    assert again.exit_code == 2 and "--force" in again.output
    assert out.read_text() == before
    forced = enroll(hq.url, token, out, "--force")      # the token was not spent above
    assert forced.exit_code == 0, forced.output
    assert json.loads(out.read_text())["edge_id"] != json.loads(before)["edge_id"]


def test_an_unreachable_hq_is_a_clear_error(tmp_path):
    result = enroll(f"http://127.0.0.1:{free_port()}", "cet_x", tmp_path / "c.json")
    assert result.exit_code == 1
    assert "HQ unreachable at http://127.0.0.1:" in result.output
    assert not (tmp_path / "c.json").exists()
    bad_url = enroll("hq.example.cn", "cet_x", tmp_path / "c.json")
    assert bad_url.exit_code == 1 and "expected an http:// or https:// URL" in bad_url.output


def test_the_token_can_come_from_the_environment(tmp_path):
    result = CliRunner().invoke(main, ["enroll", "--hq", f"http://127.0.0.1:{free_port()}",
                                       "--out", str(tmp_path / "c.json")],
                                env={"CC_ENROLL_TOKEN": "cet_from_env"})
    assert result.exit_code == 1 and "HQ unreachable" in result.output
