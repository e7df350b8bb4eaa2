"""Run the HQ web app under gunicorn as a child process (tests, the demo, a bench).

Production runs gunicorn directly (``gunicorn -c aggregator/gunicorn.conf.py aggregator.wsgi:app``
with ``CC_HQ_*`` set); this wraps that same command so tests exercise the real server::

    with GunicornServer({"CC_HQ_DB": "hq.sqlite3", "CC_HQ_SECRET_KEY": key}, log_path=log) as hq:
        requests.get(hq.url + "/api/v1/auth/me")
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from aggregator import AggregatorError
from aggregator.web.app import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "aggregator" / "gunicorn.conf.py"
READY_PATH = "/api/v1/auth/me"      # answers 401 without a session: the app is up


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the thread that started it goes (Linux
    ``PR_SET_PDEATHSIG``, best effort), so a SIGKILLed demo or test run leaves no server behind.
    With ``start_new_session`` a terminal's Ctrl-C reaches only the parent, which then stops its
    children in order."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def terminate(process: "subprocess.Popen[bytes] | None", timeout_s: float) -> None:
    """SIGTERM a child and wait; SIGKILL it if it has not gone within ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerError(AggregatorError):
    """gunicorn did not come up (its log is quoted)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GunicornServer:
    def __init__(self, env: dict[str, str], *, log_path: str | os.PathLike[str],
                 workers: int = 2, port: int | None = None, start_timeout_s: float = 30.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.start_timeout_s = start_timeout_s
        self.env = {**os.environ, **env, "CC_HQ_BIND": f"127.0.0.1:{self.port}",
                    "CC_HQ_WORKERS": str(workers),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                os.environ.get("PYTHONPATH")]))}
        self.env.setdefault("CC_HQ_PUBLIC_URL", self.url)
        self.settings = Settings.from_env(self.env)
        self.db_url = self.settings.db_url
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> "GunicornServer":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "aggregator.wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                self._fail(f"gunicorn exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(self.url + READY_PATH, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return                      # any HTTP answer: a worker is serving
            except OSError:
                time.sleep(0.05)
        self.stop()
        self._fail(f"gunicorn did not answer within {self.start_timeout_s} s")

    def _fail(self, why: str) -> None:
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        raise ServerError(f"{why}; log {self.log_path}:\n{tail}")

    def stop(self) -> None:
        terminate(self.process, 15.0)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "GunicornServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
