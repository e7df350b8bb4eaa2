"""The data layer every part of HQ uses: one API over SQLite and PostgreSQL.

SQLite by default (stdlib ``sqlite3``, WAL, ``synchronous=NORMAL``), PostgreSQL for an HQ that
outgrows one machine (``aggregator.pg``, psycopg 3). SQL is the portable subset (``INSERT … ON
CONFLICT``, ``RETURNING``, ``LIMIT``, no SQLite-only functions) written with ``?``; what differs
between the two lives in a ``Dialect`` (SQL) and a ``Link`` (connecting, errors).

Writers: ``transaction()`` is serialised with every other writer from its start on both
databases — SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL an exclusive transaction-level advisory
lock in READ COMMITTED, so every statement after it sees all that committed before — and code
that reads and then writes (the next version, a migration's bookkeeping) is safe on both.
(``aggregator.db``'s ingest batches are the one exception, see there.)

Example::

    db = Database.open("hq.sqlite3", migrations=[v1_things])   # or "postgresql://hq@db/hq"
    with db.transaction() as tx:
        tx.execute("INSERT INTO things (name) VALUES (?)", ("坐席",))
    db.scalar("SELECT count(*) FROM things")      # 1
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from aggregator import AggregatorError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0


class DbError(AggregatorError):
    """The database could not be opened, migrated or written (the cause is chained)."""


class SchemaVersionError(DbError):
    """The database was written by a newer aggregator; opening it could corrupt what it relies on."""


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL in SQL, in one place."""

    name: str
    begin_write: str     # a write transaction
    writer_lock: str     # then: serialise it with every other writer ("" if BEGIN already does)
    shared_lock: str     # or, for a writer that locks its own rows: exclude those writers only
    for_update: str      # appended to a SELECT that locks the rows it reads
    auto_id: str         # an integer primary key the database assigns
    blob: str
    placeholder: str     # "?", or "$n": PostgreSQL's own numbered ones ($1, $2 …)

    @functools.lru_cache(maxsize=256)
    def sql(self, text: str) -> str:
        """Statements are written with ``?``; PostgreSQL gets ``$1, $2 …`` here, once per text,
        so the driver sends them as they are (psycopg's ``RawCursor``: no ``%`` rules, and no
        client-side parse of a long statement on every call)."""
        if self.placeholder == "?":
            return text
        head, *rest = text.split("?")
        return head + "".join(f"${n}{part}" for n, part in enumerate(rest, start=1))


SQLITE = Dialect(name="sqlite", begin_write="BEGIN IMMEDIATE", writer_lock="", shared_lock="",
                 for_update="", auto_id="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB",
                 placeholder="?")


def connect_sqlite(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    """Autocommit mode (transactions are explicit), WAL so readers never block the ingest."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class Link(Protocol):
    """How ``HqDb`` reaches one kind of database: connecting, and reading its errors."""

    name: str                               # for messages: a path, or a URL without password
    dialect: Dialect
    errors: tuple[type[BaseException], ...]

    def connect(self) -> Any: ...
    def in_transaction(self, conn: Any) -> bool: ...
    def broken(self, conn: Any) -> bool: ...
    def retryable(self, exc: BaseException | None) -> bool: ...


class SqliteLink:
    """A SQLite file. Writers queue on its lock (``busy_timeout_s``): nothing to retry."""

    dialect = SQLITE
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: str, busy_timeout_s: float) -> None:
        self.name = path
        self.busy_timeout_s = busy_timeout_s

    def connect(self) -> sqlite3.Connection:
        return connect_sqlite(self.name, self.busy_timeout_s)

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def broken(self, conn: sqlite3.Connection) -> bool:
        return False

    def retryable(self, exc: BaseException | None) -> bool:
        return False


def link_for(target: str | os.PathLike[str], busy_timeout_s: float) -> Link:
    """``postgresql://…`` / ``postgres://…``, ``sqlite:///path``, or a plain path."""
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        from aggregator.pg import PostgresLink   # psycopg is only needed for PostgreSQL
        return PostgresLink(text, busy_timeout_s)
    return SqliteLink(text.removeprefix("sqlite:///") if text.startswith("sqlite:///") else text,
                      busy_timeout_s)


class Tx:
    """A cursor inside a write transaction that takes ``?`` placeholders on every dialect.

    ``execute`` returns the driver's cursor (``fetchone``/``fetchall``/``rowcount``)."""

    def __init__(self, cursor: Any, dialect: "Dialect") -> None:
        self.cursor = cursor
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self.cursor.execute(self.dialect.sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> Any:
        """The same statement for each row (psycopg sends them all before it waits for one)."""
        return self.cursor.executemany(self.dialect.sql(sql), rows)

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount



Migration = Callable[["Tx", Dialect], None]


class Database:
    """One connection to the database, with its migrations applied. Methods are safe to call from
    any thread (one at a time); several processes may write the same database."""

    def __init__(self, path: str | os.PathLike[str], *, migrations: Sequence[Migration],
                 clock: Callable[[], float] = time.time,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        """``path``: a SQLite file, ``sqlite:///path`` or ``postgresql://…``. ``busy_timeout_s``:
        how long a writer waits for another one's lock before it fails."""
        self._link = link_for(path, busy_timeout_s)
        self.path = self._link.name
        self.dialect = self._link.dialect
        self._clock = clock
        self._lock = threading.RLock()
        self._tx_open = False        # inside _transaction(): a lost connection is not retried
        self._conn = self._connect()
        self.version = self._migrate(migrations)

    @classmethod
    def open(cls, url: str | os.PathLike[str], **kwargs: Any) -> Any:
        """``sqlite:///path``, a plain path, or ``postgresql://user@host:port/db`` (libpq also
        reads the password from ``PGPASSWORD`` or ``~/.pgpass``)."""
        return cls(url, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the data layer every area uses ------------------------------------------------------

    def transaction(self) -> "contextlib.AbstractContextManager[Tx]":
        """One write transaction (serialised with other writers from its start); statements are
        written with ``?`` and the dialect translates. Commits on exit, rolls back on an error."""
        return self._transaction()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """A read outside any transaction: every row."""
        return self._query(sql, params)

    def scalar(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._scalar(sql, params)

    # --- internals ----------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return self.dialect.sql(text)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            for attempt in (1, 2):
                self._reconnect_if_broken()
                try:
                    return self._conn.execute(self._sql(sql), params).fetchall()
                except self._link.errors as exc:
                    # a read outside a transaction on a connection the server dropped: once more
                    if attempt == 1 and not self._tx_open and self._link.broken(self._conn):
                        continue
                    raise DbError(f"{self.path}: query failed: {exc}") from exc
            raise AssertionError("unreachable")

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> int:
        return int(self._query(sql, params)[0][0] or 0)

    @contextmanager
    def _transaction(self, *, shared: bool = False) -> Iterator["Tx"]:
        """``shared``: a writer that runs beside other shared ones and locks the rows it depends
        on itself (an ingest batch); it still excludes the serialised writers. (One and the
        same on SQLite.)"""
        lock = self.dialect.shared_lock if shared else self.dialect.writer_lock
        with self._lock:
            if self._tx_open:   # PostgreSQL would only warn, and the inner COMMIT would end both
                raise DbError(f"{self.path}: a write transaction is already open in this thread")
            self._reconnect_if_broken()
            cur = Tx(self._conn.cursor(), self.dialect)
            try:
                cur.execute(self.dialect.begin_write)
                if lock:
                    cur.execute(lock)
            except self._link.errors as exc:
                self._rollback()
                raise DbError(f"{self.path}: cannot begin a write: {exc}") from exc
            self._tx_open = True
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, self._link.errors):
                    raise DbError(f"{self.path}: write failed and was rolled back: {exc}") from exc
                raise
            finally:
                self._tx_open = False

    def _rollback(self) -> None:
        try:
            if not self._link.broken(self._conn) and self._link.in_transaction(self._conn):
                self._conn.execute("ROLLBACK")
        except self._link.errors as exc:   # the connection is gone: so is the transaction
            log.warning("%s: rollback failed: %s", self.path, exc)

    def _connect(self) -> Any:
        try:
            return self._link.connect()
        except self._link.errors as exc:
            raise DbError(f"{self.path}: cannot open database: {exc}") from exc

    def _reconnect_if_broken(self) -> None:
        """A PostgreSQL server that restarted leaves a dead connection: open a new one."""
        if self._link.broken(self._conn):
            log.warning("%s: connection lost; reconnecting", self.path)
            with contextlib.suppress(*self._link.errors):
                self._conn.close()
            self._conn = self._connect()

    def _migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply the migrations this database lacks, each in its own write transaction with its
        bookkeeping row, so a crash leaves the previous version and two processes opening a new
        database cannot both apply one. Migrations are never edited once shipped: append one."""
        with self._lock:
            try:       # the common case, up to date: no writers' lock for a process starting
                found = self._version()
            except DbError:
                found = 0
            if found < len(migrations):
                with self._transaction() as cur:   # under the writers' lock: first opens race
                    cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER"
                                " PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION"
                                " NOT NULL)")
                found = self._version()
            if found > len(migrations):
                raise SchemaVersionError(
                    f"{self.path}: schema version {found} is newer than this aggregator knows "
                    f"({len(migrations)}); upgrade it, or restore a backup made by this version")
            for version, migration in enumerate(migrations, start=1):
                if version > found:
                    self._apply(version, migration)
            return self._version()

    def _version(self) -> int:
        return self._scalar("SELECT max(version) FROM schema_migrations")

    def _apply(self, version: int, migration: Migration) -> None:
        try:
            with self._transaction() as cur:
                if self._version() < version:   # another process may have applied it meanwhile
                    migration(cur, self.dialect)
                    cur.execute("INSERT INTO schema_migrations (version, name, applied_at)"
                                " VALUES (?, ?, ?)", (version, migration.__name__, self._clock()))
        except DbError as exc:
            raise DbError(f"{self.path}: migration {version} ({migration.__name__}) failed and "
                          f"was rolled back: {exc}") from exc
