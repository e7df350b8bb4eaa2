"""``edge demo`` with its HQ: a real Mosquitto (dynamic security), the aggregator under gunicorn,
an ingest consumer and the downlink dispatcher as processes (``hil.stack.HqStack``), and the demo
edge enrolled through HQ's endpoint, syncing its CDRs over the broker into HQ's database."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from aggregator.db import HqDb
from edge.demo import run_demo
from hil.stack import HqStack, StackError
from tests.aggregator.conftest import hq_db_url, postgres_server  # noqa: F401 - fixtures

ROOT = Path(__file__).parents[2]
LOGIN = re.compile(r"^ {8}(admin|supervisor|qa|technician) +(\S+) +([0-9a-f]{4}-[0-9a-f]{4}-"
                   r"[0-9a-f]{4}) +(\S+) +(\S+)$", re.M)
HQ_URL = re.compile(r"^HQ +(http://127\.0\.0\.1:\d+) ", re.M)
BROKER = re.compile(r"^broker +Mosquitto on 127\.0\.0\.1:(\d+) ", re.M)
HQ_CDRS = re.compile(r"^HQ: (\d+) CDRs and \d+ recordings of edge (\S+) in HQ's database$", re.M)
LOGS = re.compile(r"^logs +(\S+)/ ", re.M)
CDR_CALLER = re.compile(r" CDR +(\d+)")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (a work dir): what would be orphans."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def sign_in(url: str, username: str, password: str) -> tuple[requests.Session, dict]:
    session = requests.Session()
    answer = session.post(f"{url}/api/v1/auth/login", timeout=10,
                          json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return session, answer.json()


@pytest.mark.hil
def test_the_demo_edge_syncs_to_hq_and_the_printed_logins_work(tmp_path: Path) -> None:
    out = io.StringIO()
    with HqStack(tmp_path / "hq") as stack:
        code = run_demo(calls=3, rate=5, time_scale=0.01, seed=3, plain=True, out=out,
                        hq_stack=stack)
        text = out.getvalue()
        assert code == 0, text[-3000:]

        # printed before the calls and again in the summary
        assert HQ_URL.findall(text) == [stack.hq_url, stack.hq_url]
        assert BROKER.findall(text) == [str(stack.broker_port)] * 2
        logins = LOGIN.findall(text)
        assert len(logins) == 8 and logins[:4] == logins[4:], text[:3000]
        assert text.index("logins") < text.index(" CDR ")
        printed = {role: (user, password, name, dept) for role, user, password, name, dept
                   in logins[:4]}
        assert set(printed) == {"admin", "supervisor", "qa", "technician"}

        # every printed login signs in, as the Chinese name printed
        sessions = {}
        for role, (user, password, name, department) in printed.items():
            sessions[role], answer = sign_in(stack.hq_url, user, password)
            assert answer["user"]["display_name"] == name
            assert role in answer["user"]["roles"]
        wrong = requests.post(f"{stack.hq_url}/api/v1/auth/login", timeout=10,
                              json={"username": "admin", "password": "not-the-password"})
        assert wrong.status_code == 401

        # the edge's CDRs reached HQ's database through the broker and the ingest consumer
        edge_id = stack.edge_id
        summary = HQ_CDRS.search(text)
        assert summary and summary.group(2) == edge_id, text[-2000:]
        with HqDb.open(stack.db_url) as db:
            stored = db.scalar("SELECT COUNT(*) FROM hq_cdrs WHERE edge = ?", (edge_id,))
            callers = {row[0] for row in db.query("SELECT caller FROM hq_cdrs WHERE edge = ?",
                                                  (edge_id,))}
            marks = db.query("SELECT hwm, max_seq FROM streams WHERE edge = ? AND"
                             " stream = 'cdr'", (edge_id,))
            envelopes = db.scalar("SELECT COUNT(*) FROM messages WHERE edge = ? AND"
                                  " type = 'cdr'", (edge_id,))
        assert marks, "HQ never heard from the edge's cdr stream"
        hwm, max_seq = marks[0]
        assert stored >= 3 and int(summary.group(1)) == stored
        shown = set(CDR_CALLER.findall(text))
        assert len(shown) >= 2 and shown <= callers, (shown, callers)
        assert hwm == max_seq == envelopes >= stored      # no gap, each message once

        # the fleet view lists the enrolled edge, for the branch's supervisor too
        for role in ("admin", "supervisor"):
            answer = sessions[role].get(f"{stack.hq_url}/api/v1/fleet/edges", timeout=10)
            assert answer.status_code == 200, answer.text
            edges = {edge["id"]: edge for edge in answer.json()["edges"]}
            assert edge_id in edges, edges
            assert edges[edge_id]["name"] == "福田支行 sz-futian-01"
            assert edges[edge_id]["admin_state"] == "active"
        assert sessions["qa"].get(f"{stack.hq_url}/api/v1/fleet/edges",
                                  timeout=10).status_code == 403
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.hil
def test_edge_demo_command_starts_and_stops_its_own_hq() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--calls", "2", "--plain", "--time-scale",
         "0.01", "--rate", "5"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Summary: 2 calls" in out
    summary = HQ_CDRS.search(out)
    assert summary and int(summary.group(1)) >= 2 and summary.group(2) == "edge-sz-futian-01"
    assert len(LOGIN.findall(out)) == 8
    logs = LOGS.search(out)
    assert logs, out[:2000]
    workdir = Path(logs.group(1)).parent
    assert not workdir.exists()                      # the demo's temp dir is gone …
    assert processes_mentioning(str(workdir)) == []  # … and so is every process it started


def test_edge_demo_no_hq_is_the_edge_alone() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--no-hq", "--calls", "2", "--plain",
         "--time-scale", "0.01", "--rate", "5"], cwd=ROOT, capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Summary: 2 calls" in result.stdout
    assert "HQ" not in result.stdout and not LOGIN.search(result.stdout)


@pytest.mark.hil
def test_the_stack_runs_on_sqlite_and_postgresql(hq_db_url: str, tmp_path: Path) -> None:
    with HqStack(tmp_path / "hq", db_url=hq_db_url) as stack:
        creds = stack.edge_credentials
        assert creds is not None and creds.edge_id == stack.edge_id == "edge-sz-futian-01"
        assert (creds.broker_host, creds.broker_port) == ("127.0.0.1", stack.broker_port)
        assert creds.hq_url == stack.hq_url
        assert stack.edge_credentials_path.stat().st_mode & 0o077 == 0
        session, answer = sign_in(stack.hq_url, "technician", stack.login("technician").password)
        assert answer["user"]["display_name"] == "郑强"
        edges = session.get(f"{stack.hq_url}/api/v1/fleet/edges", timeout=10).json()["edges"]
        assert [edge["id"] for edge in edges] == [stack.edge_id]
        departments = session.get(f"{stack.hq_url}/api/v1/auth/departments", timeout=10)
        assert departments.status_code == 200, departments.text
        names = {d["name"] for d in departments.json()["departments"]}
        assert {"深圳分行", "福田支行"} <= names
        with HqDb.open(hq_db_url) as db:
            actions = {row[0] for row in db.query("SELECT action FROM audit_log", ())}
        assert {"user.create", "department.create", "fleet.token_create", "fleet.enroll"} <= actions
    assert processes_mentioning(str(tmp_path)) == []


def test_an_hq_that_cannot_start_leaves_nothing_running(tmp_path: Path) -> None:
    stack = HqStack(tmp_path / "hq", db_url="postgresql://nobody:x@127.0.0.1:1/none")
    with pytest.raises(StackError, match="HQ did not start"):
        stack.start()
    assert stack.broker is not None and stack.broker.process is not None
    assert stack.broker.process.poll() is not None   # the broker it had started is stopped
    assert processes_mentioning(str(tmp_path)) == []
    stack.stop()                                      # a second stop is harmless
