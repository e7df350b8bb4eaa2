"""A real PostgreSQL for tests and benchmarks: a throw-away cluster on loopback.

Not a stand-in: the Debian ``postgresql`` package's own server (15), ``initdb`` into a private
directory and ``pg_ctl start`` on a free port, a Unix socket beside the data. Each test gets a
database of its own with ``create_database`` (a ``CREATE DATABASE`` takes a few tens of ms; a
cluster takes a second or two, so one per session).

Made fast for tests, and *not* crash-safe: ``fsync=off``, ``synchronous_commit=off`` and
``full_page_writes=off``. A SIGKILL of a client is still a real crash for the client, and the
server keeps every committed row while it runs; only a crash of the machine would lose data,
which no test does. Never point this at data you want to keep.

PostgreSQL refuses to run as root. Run as root (CI containers, the test command), the server
binaries run as the unprivileged ``postgres`` user that the Debian package creates (else
``nobody``), and the cluster lives in a fresh directory under the system temp dir owned by that
user, because pytest's directories of root are private to root. Run as anyone else, the cluster
lives under ``workdir``. Host connections need the generated password (SCRAM); the socket
directory is private to the server's user.

Example::

    with PostgresServer(tmp_path / "pg") as pg:
        url = pg.create_database("hq_test")   # postgresql://cc:…@127.0.0.1:54321/hq_test
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from hil.broker import free_port

SUPERUSER = "cc"
BIN_GLOB = "/usr/lib/postgresql/*/bin"
UNPRIVILEGED_USERS = ("postgres", "nobody")
SOCKET_PATH_MAX = 100        # sun_path holds 107 bytes; ".s.PGSQL.<port>" comes on top
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
TEST_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",                    # tests only: a machine crash would lose the cluster
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",          # a database per test, consumers in their own processes
    "deadlock_timeout": "'100ms'",     # a test that provokes a deadlock waits this long
    "log_min_messages": "warning",
    "log_statement": "'none'",
}


class PostgresError(RuntimeError):
    """PostgreSQL is missing or did not come up (its log is quoted)."""


def find_bindir() -> Path:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    found = sorted(glob.glob(f"{BIN_GLOB}/initdb"), key=_version_key)
    if not found:
        raise PostgresError(f"PostgreSQL server binaries not found under {BIN_GLOB}: "
                            "apt-get install postgresql (scripts/bootstrap.sh does)")
    return Path(found[-1]).parent


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


class PostgresServer:
    """One test cluster. ``start()`` (or ``with``) brings it up; ``stop()`` removes it."""

    def __init__(self, workdir: str | Path, *, port: int = 0, bindir: str | Path | None = None,
                 settings: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.bindir = Path(bindir) if bindir else None
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.password = secrets.token_urlsafe(18)
        self.home: Path | None = None       # data/, the socket and the server log
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None

    # --- paths --------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._home() / "data"

    @property
    def log_path(self) -> Path:
        return self._home() / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self._home()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    # --- life ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> "PostgresServer":
        self.bindir = self.bindir or find_bindir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home = self._make_home()
        try:
            self._initdb(timeout_s)
            self._configure()
            self._run([str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l",
                       str(self.log_path), "-w", "-t", str(int(timeout_s)), "-s"], timeout_s + 5,
                      "pg_ctl start")
        except BaseException:
            self.stop()           # no half-made cluster left behind in the temp dir
            raise
        return self

    def _initdb(self, timeout_s: float) -> None:
        pwfile = self._home() / "pwfile"
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(self.password + "\n")
        self._chown(pwfile)
        try:
            self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                       "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                       "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                      timeout_s, "initdb")
        finally:
            pwfile.unlink(missing_ok=True)

    def _configure(self) -> None:
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# hil/postgres.py: a throw-away test cluster\n")
            conf.write(f"port = {self.port}\nunix_socket_directories = '{self.socket_dir}'\n")
            for key, value in self.settings.items():
                conf.write(f"{key} = {value}\n")

    def stop(self) -> None:
        """Stop the server (``fast``: it rolls back open transactions) and delete the cluster."""
        if self.home is None:
            return
        if (self.data_dir / "postmaster.pid").exists() and self.bindir is not None:
            try:
                self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m",
                           "fast", "-w", "-s"], 60, "pg_ctl stop")
            except PostgresError:
                self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m",
                           "immediate", "-w", "-s"], 60, "pg_ctl stop")
        try:
            shutil.copyfile(self.log_path, self.workdir / "postgres.log")   # for a post-mortem
        except OSError:
            pass           # the work dir may be gone already: pytest prunes old base dirs
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- databases ----------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """A new empty database (UTF-8); returns its URL."""
        self._admin(f'CREATE DATABASE "{_checked(name)}" TEMPLATE template0 ENCODING \'UTF8\''
                    " STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop it even while clients are still connected (they are disconnected)."""
        self._admin(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg    # only the aggregator's tests need the driver

        try:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise PostgresError(f"{statement}: {exc}") from exc

    # --- internals ----------------------------------------------------------------------------

    def _home(self) -> Path:
        if self.home is None:
            raise PostgresError("the server has not been started")
        return self.home

    def _make_home(self) -> Path:
        """Under ``workdir`` when the server runs as us and the socket path fits; else a private
        directory in the system temp dir owned by the server's user."""
        if self._run_as is None and len(str(self.workdir)) + 30 < SOCKET_PATH_MAX:
            home = self.workdir / "pg"
            home.mkdir(mode=0o700)
            return home
        home = Path(tempfile.mkdtemp(prefix="cc-pg-"))
        self._chown(home)
        return home

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _run(self, argv: Sequence[str], timeout_s: float, what: str) -> None:
        kwargs: dict = {}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
            env["HOME"] = str(self._home())
        try:
            done = subprocess.run(argv, cwd=self._home(), env=env, capture_output=True, text=True,
                                  timeout=timeout_s, **kwargs)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresError(f"{what} failed: {exc}\n{self._log_tail()}") from exc
        if done.returncode != 0:
            raise PostgresError(f"{what} exited with {done.returncode}: {done.stderr.strip()}\n"
                                f"{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except (OSError, PostgresError):
            return "(no server log)"


def _unprivileged_user() -> pwd.struct_passwd:
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root, and PostgreSQL refuses root: no unprivileged user "
                        f"({', '.join(UNPRIVILEGED_USERS)}) to run it as; apt-get install "
                        "postgresql creates 'postgres'")


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise PostgresError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
    return name
