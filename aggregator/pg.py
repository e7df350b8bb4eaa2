"""PostgreSQL for the HQ database (psycopg 3): its dialect, its connection, what a retry fixes.

``HqDb("postgresql://hq@db/hq")`` picks this link. The connection runs in autocommit mode, like
the SQLite one: a read outside a transaction is one statement, and ``HqDb`` opens every write
transaction itself (``BEGIN ISOLATION LEVEL READ COMMITTED``, then one of two advisory locks:
``aggregator.database`` and ``aggregator.db`` say which and why). READ COMMITTED is what the
locks rely on: each statement sees every commit that came before it, including those made while
it waited for a lock.

What else makes results look like SQLite's: statements go out with ``$1, $2 …`` as they are
(``RawCursor``), so a ``%`` in SQL is just a ``%``; ``numeric`` (what ``sum()`` and ``avg()``
return on integers) comes back as ``int`` when it is whole and as ``float`` otherwise, never as
``Decimal`` (which ``json`` cannot write); ``busy_timeout_s`` becomes ``lock_timeout``.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import NumericLoader

from aggregator.database import Dialect

CONNECT_TIMEOUT_S = 10
APPLICATION_NAME = "cc-aggregator"
# advisory lock keys are per database; these two are ours ("cc-hq" + a letter)
WRITERS_KEY = 0x63632D6871_57
POSTGRES = Dialect(
    name="postgresql",
    begin_write="BEGIN ISOLATION LEVEL READ COMMITTED",
    writer_lock=f"SELECT pg_advisory_xact_lock({WRITERS_KEY})",
    shared_lock=f"SELECT pg_advisory_xact_lock_shared({WRITERS_KEY})",
    for_update=" FOR UPDATE",
    auto_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    blob="BYTEA",
    placeholder="$n",
)
# a batch that lost one of these to another consumer succeeds when run again: a deadlock between
# two batches of redelivered messages, or a projection's check-then-insert that lost the race
RETRYABLE = (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation)
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class _NumberLoader(NumericLoader):
    """``numeric`` as SQLite would hand it back: an int, or a float."""

    def load(self, data: Any) -> int | float:
        value: Decimal = super().load(data)
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return _PASSWORD.sub(r"\1***@", url)


class PostgresLink:
    """One PostgreSQL database. Several processes (ingest consumers, the web app) share it."""

    dialect = POSTGRES
    errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def __init__(self, url: str, busy_timeout_s: float) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.name = redact(self.url)
        self.busy_timeout_s = busy_timeout_s

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name=APPLICATION_NAME, cursor_factory=psycopg.RawCursor)
        try:
            conn.adapters.register_loader("numeric", _NumberLoader)
            # a writer waits this long for another one's lock, then fails (SQLite: busy_timeout)
            conn.execute(f"SET lock_timeout = {max(1, int(self.busy_timeout_s * 1000))}")
        except BaseException:
            conn.close()
            raise
        return conn

    def in_transaction(self, conn: psycopg.Connection) -> bool:
        return conn.info.transaction_status in (
            TransactionStatus.INTRANS, TransactionStatus.INERROR, TransactionStatus.ACTIVE)

    def broken(self, conn: psycopg.Connection) -> bool:
        return conn.closed or conn.broken

    def retryable(self, exc: BaseException | None) -> bool:
        return isinstance(exc, RETRYABLE)
