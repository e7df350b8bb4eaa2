"""A real Mosquitto broker for tests, benchmarks and the demo, with the production ACLs.

Not a simulator: the Debian ``mosquitto`` package (2.0), started on loopback with a generated
config — per-edge credentials, ``pattern write cc/v1/%u/up/#`` / ``pattern read cc/v1/%u/down/#``
(ARCHITECTURE.md "Sync over MQTT"), an HQ user that may read and write every edge's topics,
persistence on (so a SIGKILL-and-restart keeps queued QoS 1 messages that were saved) and
``max_queued_messages`` lifted (the default 1000 drops QoS 1 messages for an offline client).
``kill()`` is a real SIGKILL; ``start()`` again restarts on the same port and data dir.

Two ways to hold users and ACLs:

* password mode (default): ``passwd`` + ``acl`` files, the pattern ACLs above; adding an edge
  means rewriting them and a reload.
* ``dynsec=True``: Mosquitto's dynamic-security plugin with a generated
  ``dynamic-security.json`` (``aggregator.fleet.broker_acl``): an admin client for the control
  API, the ``hq`` user, and one role per edge. HQ's enrollment adds edges at runtime through
  ``aggregator.fleet.dynsec``; the plugin rewrites the file, so they survive a restart.
"""
from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from aggregator.web.serve import die_with_parent, terminate

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HQ_USER = "hq"
DYNSEC_ADMIN = "dynsec-admin"
DYNSEC_PLUGINS = ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                  "/usr/lib/mosquitto_dynamic_security.so")


class BrokerError(RuntimeError):
    """Mosquitto is missing or did not come up (its log is quoted)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoBroker:
    def __init__(self, workdir: str | Path, edges: dict[str, str], *, hq_password: str = "hq-secret",
                 port: int = 0, autosave_s: int = 1, dynsec: bool = False,
                 admin_password: str = "admin-secret") -> None:
        """``edges``: edge id (= MQTT user name) -> password. ``dynsec``: users and roles in the
        dynamic-security plugin (admin ``DYNSEC_ADMIN`` / ``admin_password``) instead of files."""
        self.workdir = Path(workdir)
        self.edges = dict(edges)
        self.hq_password = hq_password
        self.dynsec = dynsec
        self.admin_user = DYNSEC_ADMIN
        self.admin_password = admin_password
        self.port = port or free_port()
        self.autosave_s = autosave_s
        self.process: subprocess.Popen[bytes] | None = None

    # --- files ------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def dynsec_path(self) -> Path:
        return self.workdir / "dynamic-security.json"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        auth = self._write_dynsec() if self.dynsec else self._write_password_files()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            # as root Mosquitto would drop to user "mosquitto", who cannot read a private work dir
            f"user {getpass.getuser()}",
            "allow_anonymous false",
            *auth,
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            f"autosave_interval {self.autosave_s}",
            "max_queued_messages 0",          # no limit: the default drops QoS 1 for offline clients
            "max_inflight_messages 0",        # HQ PUBACKs after its commit: a batch must fit
            "set_tcp_nodelay true",            # Nagle would add ~60-80 ms to every HQ ack
            "persistent_client_expiration 7d",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "",
        ]))
        return conf

    def _write_password_files(self) -> list[str]:
        passwd, acl = self.workdir / "passwd", self.workdir / "acl"
        passwd.write_text("")
        for user, password in {HQ_USER: self.hq_password, **self.edges}.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True,
                           capture_output=True)
        acl.write_text("\n".join([
            f"user {HQ_USER}",
            "topic readwrite cc/v1/#",
            "",
            "# every other user is an edge, confined to its own topics",
            "pattern write cc/v1/%u/up/#",
            "pattern read cc/v1/%u/down/#",
            "",
        ]))
        for path in (passwd, acl):
            os.chmod(path, 0o600)
        return [f"password_file {passwd}", f"acl_file {acl}"]

    def _write_dynsec(self) -> list[str]:
        """The plugin's file, written once: after that the plugin owns it (edges added at runtime
        are in it), so a second ``write_config`` must not reset it."""
        from aggregator.fleet.broker_acl import initial_config

        plugin = next((path for path in DYNSEC_PLUGINS if Path(path).exists()), None)
        if plugin is None:
            raise BrokerError(f"the dynamic-security plugin is missing (looked in "
                              f"{DYNSEC_PLUGINS})")
        if not self.dynsec_path.exists():
            document = initial_config(admin_user=self.admin_user,
                                      admin_password=self.admin_password, hq_user=HQ_USER,
                                      hq_password=self.hq_password, edges=self.edges)
            fd = os.open(self.dynsec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=1, ensure_ascii=False)
        return [f"plugin {plugin}", f"plugin_opt_config_file {self.dynsec_path}"]

    # --- life -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> "MosquittoBroker":
        if not Path(MOSQUITTO).exists():
            raise BrokerError("mosquitto is not installed (scripts/bootstrap.sh installs it)")
        conf = self.workdir / "mosquitto.conf"
        if not conf.exists():
            conf = self.write_config()
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited ({self.process.returncode}): {self._log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise BrokerError(f"mosquitto did not listen on {self.port}: {self._log_tail()}")

    def kill(self) -> None:
        """A real crash: SIGKILL, no chance to save what autosave has not saved yet."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        terminate(self.process, 10.0)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> "MosquittoBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
