"""``python -m aggregator.cli``: init-db, create-department, create-user (click's runner,
in process, on a real database; one run through ``python -m`` checks the entry point)."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from aggregator.auth.login import authenticate
from aggregator.cli import main
from aggregator.db import HqDb
from aggregator.web.serve import ROOT


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(db_url, *args, stdin=""):
    result = CliRunner().invoke(main, ["--db", db_url, *args], input=stdin)
    return Result(result.exit_code, result.stdout, result.stderr)


def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "aggregator.cli", "--db",
                           str(tmp_path / "hq.sqlite3"), "init-db"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "schema version" in done.stdout


def test_cli_bootstraps_departments_and_an_admin(hq_db_url):
    assert "schema version" in cli(hq_db_url, "init-db").stdout
    assert cli(hq_db_url, "create-department", "华东区").returncode == 0
    assert cli(hq_db_url, "create-department", "上海分行", "--parent", "华东区").returncode == 0
    made = cli(hq_db_url, "create-user", "Ops", "--roles", "admin,qa", "--display-name", "运维",
               "--department", "上海分行", "--password-stdin", stdin="a long enough secret\n")
    assert made.returncode == 0, made.stderr
    assert "ops (admin, qa)" in made.stdout
    with HqDb.open(hq_db_url) as db:
        assert db.query("SELECT u.display_name, d.name FROM users u JOIN departments d"
                        " ON d.id = u.department_id") == [("运维", "上海分行")]
        outcome = authenticate(db, "ops", "a long enough secret", now=0, max_failures=5,
                               lockout_s=60)
        assert outcome.reason == "ok"
        audit = db.query("SELECT actor_kind, actor_name, action FROM audit_log ORDER BY id")
        assert audit == [("system", "cli", "department.create")] * 2 + [
            ("system", "cli", "user.create")]


def test_cli_refuses_bad_input_with_a_message(tmp_path):
    hq_db_url = str(tmp_path / "hq.sqlite3")      # the URL handling is covered above on both
    weak = cli(hq_db_url, "create-user", "ops", "--roles", "admin", "--password-stdin",
               stdin="short\n")
    assert weak.returncode == 1 and "at least 8 characters" in weak.stderr
    role = cli(hq_db_url, "create-user", "ops", "--roles", "boss", "--password-stdin")
    assert role.returncode == 2 and "boss" in role.stderr
    dept = cli(hq_db_url, "create-user", "ops", "--roles", "agent", "--department", "火星",
               "--password-stdin", stdin="a long enough secret\n")
    assert dept.returncode == 1 and "火星" in dept.stderr
    with HqDb.open(hq_db_url) as db:
        assert db.scalar("SELECT count(*) FROM users") == 0
