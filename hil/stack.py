"""A whole HQ on loopback for the demo (and the tests that drive it): broker, web app, ingest,
downlink dispatcher, demo users, a department tree and one enrolled edge.

Every part is the real one, as production runs it, only small and private to ``workdir``:

* Mosquitto (``hil.broker.MosquittoBroker``) in dynamic-security mode, so enrollment adds the
  edge's broker user at runtime exactly as at a real HQ;
* the HQ database (SQLite in ``workdir``, or ``db_url``), migrated, with the department tree
  总行 → 广州分行 / 深圳分行 → 支行 and four demo users (admin, supervisor, QA, technician) with
  Chinese display names and passwords generated for this run;
* gunicorn serving ``aggregator.wsgi:app`` (``aggregator.web.serve.GunicornServer``);
* one ingest consumer (``python -m aggregator.ingest``) and the downlink dispatcher
  (``python -m aggregator.downlink.dispatch``) as child processes;
* one edge enrolled through the real endpoints: the admin signs in, creates a one-time token for
  the branch's department, and ``edge.sync.enroll`` spends it at ``POST /api/v1/fleet/enroll``;
  the credentials file it writes is what the edge's ``[sync] credentials`` points at.

Logs (``mosquitto.log``, ``gunicorn.log``, ``ingest.log``, ``dispatch.log``) stay in ``workdir``.
``edge_credentials`` (and the file ``edge_credentials_path``) are what HQ issued to the edge.
``stop()`` takes everything down in reverse order and waits for each process::

    with HqStack(tmp / "hq") as hq:
        print(hq.hq_url, hq.broker_port, hq.logins)
        run_edge(credentials=hq.edge_credentials_path)
"""
from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Sequence

import requests

from aggregator.web.serve import die_with_parent, terminate
from hil.broker import HQ_USER, BrokerError, MosquittoBroker

if TYPE_CHECKING:
    from aggregator.web.serve import GunicornServer
    from edge.sync.enroll import Credentials

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 10.0

# (name, parent): the bank's tree; the demo branch (the example edge, 深圳福田) is under 深圳分行
DEPARTMENTS: tuple[tuple[str, str | None], ...] = (
    ("总行", None),
    ("广州分行", "总行"),
    ("天河支行", "广州分行"),
    ("深圳分行", "总行"),
    ("福田支行", "深圳分行"),
)
# (username, display name, role, department): HQ staff, none of them an agent of the example edge
USERS: tuple[tuple[str, str, str, str], ...] = (
    ("admin", "周建国", "admin", "总行"),
    ("supervisor", "黄晓梅", "supervisor", "深圳分行"),
    ("qa", "吴婷", "qa", "深圳分行"),
    ("technician", "郑强", "technician", "深圳分行"),
)
EDGE_NAME = "福田支行 sz-futian-01"   # HQ makes the edge id from the ASCII part: edge-sz-futian-01
EDGE_DEPARTMENT = "福田支行"


class StackError(RuntimeError):
    """A part of the HQ stack did not come up; the message names it and quotes its log."""


@dataclass(frozen=True)
class Login:
    """A demo user: printed by the demo, good for ``POST /api/v1/auth/login``."""
    username: str
    password: str
    display_name: str
    role: str
    department: str


class HqStack:
    def __init__(self, workdir: str | os.PathLike[str], *, db_url: str | None = None,
                 edge_name: str = EDGE_NAME, edge_department: str = EDGE_DEPARTMENT,
                 log_level: str = "info") -> None:
        """``db_url``: SQLite path or ``postgresql://…`` (default: ``workdir/hq.sqlite3``)."""
        self.workdir = Path(workdir)
        self.db_url = db_url or str(self.workdir / "hq.sqlite3")
        self.edge_name, self.edge_department = edge_name, edge_department
        self.log_level = log_level
        self.logins: list[Login] = []
        self.edge_credentials_path = self.workdir / "edge-credentials.json"
        self.edge_credentials: "Credentials | None" = None
        self.edge_id = ""
        self.broker: MosquittoBroker | None = None
        self.server: "GunicornServer | None" = None
        self._edge_department_id = 0
        self._exit = contextlib.ExitStack()

    # --- what callers read --------------------------------------------------------------------

    @property
    def hq_url(self) -> str:
        assert self.server is not None, "HqStack is not started"
        return self.server.url

    @property
    def broker_port(self) -> int:
        assert self.broker is not None, "HqStack is not started"
        return self.broker.port

    def login(self, role: str) -> Login:
        return next(login for login in self.logins if login.role == role)

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> "HqStack":
        """Bring everything up; on any failure, take down what did come up and raise."""
        from aggregator import AggregatorError
        from edge.errors import EdgeError

        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except (AggregatorError, BrokerError, EdgeError, OSError, requests.RequestException) as exc:
            self.stop()
            raise StackError(f"HQ did not start: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from aggregator.web.serve import GunicornServer

        hq_password = secrets.token_urlsafe(18)
        self.broker = MosquittoBroker(self.workdir / "broker", {}, dynsec=True,
                                      hq_password=hq_password,
                                      admin_password=secrets.token_urlsafe(18))
        self._exit.callback(self._stop_broker)   # each stop is registered before its start
        self.broker.start()
        self._seed_database()
        self.server = GunicornServer(self._web_env(), log_path=self.workdir / "gunicorn.log")
        self._exit.callback(self._stop_server)
        self.server.start()
        password_file = self.workdir / "hq.password"
        _write_private(password_file, hq_password)
        mqtt = ["--db", self.db_url, "--host", "127.0.0.1", "--port", str(self.broker.port),
                "--user", HQ_USER, "--password-file", str(password_file),
                "--log-level", self.log_level.upper()]
        ingest = _Child("ingest", [sys.executable, "-m", "aggregator.ingest", *mqtt,
                                   "--client-id", "demo-ingest-1"],
                        self.workdir / "ingest.log", ready="subscribed to")
        self._exit.callback(ingest.stop)
        ingest.start()
        dispatch = _Child("dispatcher", [sys.executable, "-m", "aggregator.downlink.dispatch",
                                         *mqtt, "--client-id", "demo-downlink"],
                          self.workdir / "dispatch.log", ready="connected to")
        self._exit.callback(dispatch.stop)
        dispatch.start()
        ingest.wait_ready()
        dispatch.wait_ready()
        self._enroll_edge()

    def stop(self) -> None:
        """Reverse order: dispatcher, ingest, gunicorn, broker. Safe to call twice."""
        self._exit.close()

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> "HqStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the pieces ---------------------------------------------------------------------------

    def _web_env(self) -> dict[str, str]:
        assert self.broker is not None
        return {"CC_HQ_DB": self.db_url, "CC_HQ_SECRET_KEY": secrets.token_hex(32),
                "CC_HQ_RECORDINGS": str(self.workdir / "recordings"),
                "CC_HQ_LOG_LEVEL": self.log_level, "CC_HQ_BROKER_HOST": "127.0.0.1",
                "CC_HQ_BROKER_PORT": str(self.broker.port),
                "CC_HQ_BROKER_ADMIN_USER": self.broker.admin_user,
                "CC_HQ_BROKER_ADMIN_PASSWORD": self.broker.admin_password}

    def _seed_database(self) -> None:
        """Migrate, then the department tree and the demo users, audited as the system."""
        from aggregator.auth import directory
        from aggregator.auth.audit_log import Actor, record
        from aggregator.db import HqDb

        actor, now = Actor.system("demo"), time.time()
        with HqDb.open(self.db_url) as db, db.transaction() as tx:
            ids: dict[str, int] = {}
            for name, parent in DEPARTMENTS:
                ids[name] = directory.create_department(tx, name, ids.get(parent or ""), now=now)
                record(tx, actor, "department.create", str(ids[name]), {"name": name})
            for username, display, role, department in USERS:
                password = "-".join(secrets.token_hex(2) for _ in range(3))
                directory.create_user(tx, username, password, display_name=display, roles=[role],
                                      department_id=ids[department], now=now)
                record(tx, actor, "user.create", username, {"display_name": display,
                                                            "roles": [role]})
                self.logins.append(Login(username, password, display, role, department))
            self._edge_department_id = ids[self.edge_department]

    def _enroll_edge(self) -> None:
        """As an HQ admin would: sign in, create a token, and let the box spend it."""
        from edge.sync.enroll import enroll, write_credentials

        admin = self.login("admin")
        with requests.Session() as http:
            answer = http.post(f"{self.hq_url}/api/v1/auth/login", timeout=HTTP_TIMEOUT_S,
                               json={"username": admin.username, "password": admin.password})
            _expect(answer, 200, "sign-in as admin")
            answer = http.post(f"{self.hq_url}/api/v1/fleet/enrollment-tokens",
                               timeout=HTTP_TIMEOUT_S,
                               headers={"X-CSRF-Token": answer.json()["csrf"]},
                               json={"department_id": self._edge_department_id,
                                     "edge_name": self.edge_name, "ttl_s": 600})
            _expect(answer, 201, "enrollment token")
            token = answer.json()["token"]
        credentials = enroll(self.hq_url, token, version=_edge_version())
        write_credentials(self.edge_credentials_path, credentials, overwrite=True)
        self.edge_credentials, self.edge_id = credentials, credentials.edge_id


class _Child:
    """One HQ service as a child process, logging to a file. It runs in a session of its own, so
    a Ctrl-C in the terminal reaches only the demo, which stops the services in order; and it
    gets SIGTERM if the demo dies without stopping it (Linux ``PR_SET_PDEATHSIG``)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, ready: str) -> None:
        self.name, self.argv, self.log_path, self.ready = name, list(argv), log_path, ready
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until its log says ``ready`` (e.g. the ingest's subscription is in place)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready in self._log_text():
                return
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with {self.process.returncode}: "
                                 f"{self._log_text()[-2000:]}")
            time.sleep(0.05)
        raise StackError(f"{self.name} not ready within {timeout_s:g} s: "
                         f"{self._log_text()[-2000:]}")

    def stop(self) -> None:
        terminate(self.process, STOP_TIMEOUT_S)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""




def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")


def _expect(answer: requests.Response, status: int, what: str) -> None:
    if answer.status_code != status:
        raise StackError(f"{what}: HQ answered {answer.status_code}: {answer.text[:300]}")


def _edge_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callcenter-edge")
    except PackageNotFoundError:
        return "unknown"
