"""The HQ database: every message the edges sent, each stream's high-water mark, gaps, dead letters.

SQLite by default (stdlib ``sqlite3``, WAL, ``synchronous=NORMAL``); PostgreSQL comes later, so
the SQL here is the portable subset (``INSERT … ON CONFLICT``, ``LIMIT``, no SQLite-only
functions) and what differs between the two lives in ``Dialect``.

Idempotence is the database's job, not the consumer's: ``messages`` has a primary key on the
envelope ``id`` and a unique key on (edge, stream, seq), and every insert is ``ON CONFLICT DO
NOTHING``, so a message delivered twice — a resend from the edge, a redelivery after a consumer
crash, two consumers racing — is stored once however the writers interleave. Each batch is one
``BEGIN IMMEDIATE`` transaction that also moves the stream's high-water mark (``hwm``: every
seq 1..hwm is stored), so the mark another process reads is always backed by committed rows.

Example::

    db = HqDb("hq.sqlite3")
    db.store_batch([Envelope("01J…", "edge-a", "cdr", 1, 1795392102.5, "cdr", {"call_id": "x"})])
    # {("edge-a", "cdr"): 1}
    db.hwm("edge-a", "cdr")        # 1
    db.record_gaps(settle_s=30)    # seqs still missing 30 s after a later one arrived
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from aggregator import AggregatorError
from aggregator.envelope import Envelope
from aggregator.projections import apply_projections

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
HWM_SCAN_CHUNK = 1000
MAX_GAPS_PER_STREAM = 1000   # a seq that jumps by millions is one bug, not a million gaps


class DbError(AggregatorError):
    """The database could not be opened, migrated or written (the cause is chained)."""


class SchemaVersionError(DbError):
    """The database was written by a newer aggregator; opening it could corrupt what it relies on."""


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL, in one place."""

    name: str
    begin_write: str     # a write transaction that serialises writers from the start
    auto_id: str         # an integer primary key the database assigns
    blob: str
    placeholder: str

    @functools.lru_cache(maxsize=128)
    def sql(self, text: str) -> str:
        """Statements are written with ``?``; a driver that wants ``%s`` gets it here."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


SQLITE = Dialect(name="sqlite", begin_write="BEGIN IMMEDIATE",
                 auto_id="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB", placeholder="?")


def connect_sqlite(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    """Autocommit mode (transactions are explicit), WAL so readers never block the ingest."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class Tx:
    """A cursor inside a write transaction that takes ``?`` placeholders on every dialect.

    ``execute`` returns the driver's cursor (``fetchone``/``fetchall``/``rowcount``)."""

    def __init__(self, cursor: Any, dialect: "Dialect") -> None:
        self.cursor = cursor
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self.cursor.execute(self.dialect.sql(sql), params)

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


# --- schema -----------------------------------------------------------------------------------

def v1_ingest(cur: "Tx", d: Dialect) -> None:
    """Messages, per-stream marks, gaps and dead letters: the first slice of the aggregator."""
    cur.execute("""
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            edge TEXT NOT NULL,
            stream TEXT NOT NULL,
            seq BIGINT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            UNIQUE (edge, stream, seq)
        )""")
    cur.execute("CREATE INDEX idx_messages_type_ts ON messages (type, ts)")
    # max_seq > hwm means a hole: the gap scan looks only at those streams
    cur.execute("""
        CREATE TABLE streams (
            edge TEXT NOT NULL,
            stream TEXT NOT NULL,
            hwm BIGINT NOT NULL,
            max_seq BIGINT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (edge, stream)
        )""")
    cur.execute("""
        CREATE TABLE gaps (
            edge TEXT NOT NULL,
            stream TEXT NOT NULL,
            seq BIGINT NOT NULL,
            first_seen DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (edge, stream, seq)
        )""")
    # an edge re-sends what HQ never acks, so the same bad message comes back: count it, once
    cur.execute(f"""
        CREATE TABLE dead_letters (
            id {d.auto_id},
            topic TEXT NOT NULL,
            payload {d.blob} NOT NULL,
            reason TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            digest TEXT NOT NULL,
            times INTEGER NOT NULL,
            last_received_at DOUBLE PRECISION NOT NULL,
            UNIQUE (topic, digest)
        )""")


Migration = Callable[["Tx", Dialect], None]


# --- rows -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gap:
    edge: str
    stream: str
    seq: int
    first_seen: float   # when a later seq of the stream was first stored


@dataclass(frozen=True)
class DeadLetter:
    id: int
    topic: str
    payload: bytes
    reason: str
    received_at: float
    times: int
    last_received_at: float


@dataclass(frozen=True)
class Reject:
    """A message that is not a storable envelope, on its way to ``dead_letters``."""

    topic: str
    payload: bytes
    reason: str


StreamKey = tuple[str, str]


class HqDb:
    """The aggregator's database. One per process; methods are safe to call from any thread, and
    several processes may write the same file (writers queue on SQLite's lock)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 busy_timeout_s: float = BUSY_TIMEOUT_S,
                 migrations: Sequence[Migration] | None = None) -> None:
        self.path = os.fspath(path)
        self.dialect = SQLITE
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._conn = connect_sqlite(self.path, busy_timeout_s)
        except sqlite3.Error as exc:
            raise DbError(f"{self.path}: cannot open database: {exc}") from exc
        if migrations is None:
            from aggregator.migrations import MIGRATIONS
            migrations = MIGRATIONS
        self.version = self._migrate(migrations)

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> "HqDb":
        """``sqlite:///path``, a plain path, or ``postgresql://…`` (PostgreSQL comes with its
        connection module)."""
        if url.startswith(("postgresql://", "postgres://")):
            raise DbError(f"{url}: PostgreSQL is not wired yet")
        return cls(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "HqDb":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes -------------------------------------------------------------------------------

    def store_batch(self, envelopes: Iterable[Envelope],
                    rejects: Iterable[Reject] = ()) -> dict[StreamKey, int]:
        """Store envelopes and file rejects in one transaction; returns the committed hwm of every
        (edge, stream) in the batch. A message already stored (same id, or same edge/stream/seq
        with the same id) is skipped; one that claims a stored seq under another id, or a stored
        id for another seq, is a conflict and becomes a dead letter."""
        with self._transaction() as cur:
            now = self._clock()
            top: dict[StreamKey, int] = {}     # the highest seq inserted, per stream
            seen: set[StreamKey] = set()
            for envelope in envelopes:
                key = (envelope.edge, envelope.stream)
                seen.add(key)
                if self._insert_message(cur, envelope, now):
                    top[key] = max(top.get(key, 0), envelope.seq)
                    apply_projections(cur, envelope, now)
                else:
                    conflict = self._conflict(cur, envelope)
                    if conflict:
                        log.warning("dead letter %s: %s", envelope.topic, conflict)
                        self._insert_dead_letter(cur, Reject(envelope.topic, envelope.to_json(),
                                                             conflict), now)
            for reject in rejects:
                self._insert_dead_letter(cur, reject, now)
            return {key: self._advance(cur, key, top[key], now) if key in top
                    else self._hwm(cur, key) for key in seen}

    def dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.store_batch((), [Reject(topic, payload, reason)])

    def record_gaps(self, settle_s: float, now: float | None = None) -> list[Gap]:
        """Record every seq still missing ``settle_s`` after a later seq of its stream was stored
        (with several consumers, seqs arrive out of order: a hole is a gap only once it stays).
        Filled gaps are removed. Returns the gaps recorded by this call."""
        now = self._clock() if now is None else now
        recorded: list[Gap] = []
        with self._transaction() as cur:
            cur.execute(self._sql(
                "DELETE FROM gaps WHERE EXISTS (SELECT 1 FROM messages m WHERE m.edge = gaps.edge"
                " AND m.stream = gaps.stream AND m.seq = gaps.seq)"))
            open_streams = cur.execute(self._sql(
                "SELECT edge, stream, hwm FROM streams WHERE max_seq > hwm")).fetchall()
            for edge, stream, hwm in open_streams:
                for gap in self._holes(cur, edge, stream, hwm):
                    if now - gap.first_seen >= settle_s and self._insert_gap(cur, gap):
                        recorded.append(gap)
        for gap in recorded:
            log.warning("gap: %s/%s seq %s missing since %.3f", gap.edge, gap.stream, gap.seq,
                        gap.first_seen)
        return recorded

    # --- reads --------------------------------------------------------------------------------

    def count(self, edge: str | None = None, stream: str | None = None) -> int:
        where, params = _filters(edge=edge, stream=stream)
        return self._scalar(f"SELECT count(*) FROM messages{where}", params)

    def duplicates(self) -> int:
        """Rows beyond the first per id or per (edge, stream, seq): 0 by construction."""
        by_id = self._scalar("SELECT count(*) - count(DISTINCT id) FROM messages")
        by_seq = self._scalar("SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT edge, "
                              "stream, seq FROM messages) t) FROM messages")
        return by_id + by_seq

    def hwm(self, edge: str, stream: str) -> int:
        rows = self._query("SELECT hwm FROM streams WHERE edge = ? AND stream = ?", (edge, stream))
        return int(rows[0][0]) if rows else 0

    def hwms(self, edge: str) -> dict[str, int]:
        """Every stream's high-water mark of one edge: the body of its ack."""
        rows = self._query("SELECT stream, hwm FROM streams WHERE edge = ? ORDER BY stream", (edge,))
        return {stream: hwm for stream, hwm in rows}

    def messages(self, edge: str, stream: str) -> list[tuple[int, str]]:
        """(seq, id) of one stream, in seq order."""
        return [(seq, id_) for seq, id_ in self._query(
            "SELECT seq, id FROM messages WHERE edge = ? AND stream = ? ORDER BY seq",
            (edge, stream))]

    def gaps(self, edge: str | None = None, stream: str | None = None) -> list[Gap]:
        where, params = _filters(edge=edge, stream=stream)
        return [Gap(*row) for row in self._query(
            f"SELECT edge, stream, seq, first_seen FROM gaps{where} ORDER BY edge, stream, seq",
            params)]

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._query("SELECT id, topic, payload, reason, received_at, times, last_received_at"
                           " FROM dead_letters ORDER BY id")
        return [DeadLetter(i, t, bytes(p), r, ra, n, lr) for i, t, p, r, ra, n, lr in rows]

    # --- internals ----------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return self.dialect.sql(text)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(self._sql(sql), params).fetchall()
            except sqlite3.Error as exc:
                raise DbError(f"{self.path}: query failed: {exc}") from exc

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> int:
        return int(self._query(sql, params)[0][0] or 0)

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

    @contextmanager
    def _transaction(self) -> Iterator["Tx"]:
        with self._lock:
            cur = Tx(self._conn.cursor(), self.dialect)
            try:
                cur.execute(self.dialect.begin_write)
            except sqlite3.Error as exc:
                raise DbError(f"{self.path}: cannot begin a write: {exc}") from exc
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise DbError(f"{self.path}: write failed and was rolled back: {exc}") from exc
                raise

    def _insert_message(self, cur: Tx, e: Envelope, now: float) -> bool:
        cur.execute(self._sql(
            "INSERT INTO messages (id, edge, stream, seq, ts, type, body, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
            (e.id, e.edge, e.stream, e.seq, e.ts, e.type, e.body_json(), now))
        return cur.rowcount == 1

    def _conflict(self, cur: Tx, e: Envelope) -> str | None:
        """Why a skipped envelope is not a plain redelivery, or None when it is one."""
        row = cur.execute(self._sql("SELECT edge, stream, seq FROM messages WHERE id = ?"),
                          (e.id,)).fetchone()
        if row is not None:
            if tuple(row) == (e.edge, e.stream, e.seq):
                return None
            return f"conflict: id {e.id} is already stored as {row[0]}/{row[1]} seq {row[2]}"
        row = cur.execute(self._sql(
            "SELECT id FROM messages WHERE edge = ? AND stream = ? AND seq = ?"),
            (e.edge, e.stream, e.seq)).fetchone()
        return f"conflict: {e.edge}/{e.stream} seq {e.seq} is already stored with id {row[0]}"

    def _insert_dead_letter(self, cur: Tx, reject: Reject, now: float) -> None:
        payload = bytes(reject.payload)
        cur.execute(self._sql(
            "INSERT INTO dead_letters (topic, payload, reason, received_at, digest, times,"
            " last_received_at) VALUES (?, ?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (topic, digest) DO UPDATE SET times = dead_letters.times + 1,"
            " last_received_at = excluded.last_received_at"),
            (reject.topic, payload, reject.reason, now, hashlib.sha256(payload).hexdigest(), now))

    def _hwm(self, cur: Tx, key: StreamKey) -> int:
        row = cur.execute(self._sql("SELECT hwm FROM streams WHERE edge = ? AND stream = ?"),
                          key).fetchone()
        return int(row[0]) if row else 0

    def _advance(self, cur: Tx, key: StreamKey, top: int, now: float) -> int:
        """Move the stream's hwm over every contiguous stored seq; note its highest seq."""
        edge, stream = key
        row = cur.execute(self._sql(
            "SELECT hwm, max_seq FROM streams WHERE edge = ? AND stream = ?"), key).fetchone()
        old_hwm, old_max = (int(row[0]), int(row[1])) if row else (0, 0)
        hwm = old_hwm
        while True:
            seqs = cur.execute(self._sql(
                "SELECT seq FROM messages WHERE edge = ? AND stream = ? AND seq > ?"
                " ORDER BY seq LIMIT ?"), (edge, stream, hwm, HWM_SCAN_CHUNK)).fetchall()
            for (seq,) in seqs:
                if seq != hwm + 1:
                    break
                hwm = seq
            else:
                if len(seqs) == HWM_SCAN_CHUNK:
                    continue
            break
        max_seq = max(old_max, hwm, top)
        if row is None:
            cur.execute(self._sql(
                "INSERT INTO streams (edge, stream, hwm, max_seq, updated_at)"
                " VALUES (?, ?, ?, ?, ?)"), (edge, stream, hwm, max_seq, now))
        elif (hwm, max_seq) != (old_hwm, old_max):
            cur.execute(self._sql(
                "UPDATE streams SET hwm = ?, max_seq = ?, updated_at = ? WHERE edge = ? AND"
                " stream = ?"), (hwm, max_seq, now, edge, stream))
        return hwm

    def _holes(self, cur: Tx, edge: str, stream: str, hwm: int) -> list[Gap]:
        """The missing seqs above hwm, each with the time it became visible: when the earliest
        stored message with a higher seq was received."""
        rows = cur.execute(self._sql(
            "SELECT seq, received_at FROM messages WHERE edge = ? AND stream = ? AND seq > ?"
            " ORDER BY seq"), (edge, stream, hwm)).fetchall()
        earliest_after: list[float] = []
        earliest = float("inf")
        for _seq, received_at in reversed(rows):
            earliest = min(earliest, received_at)
            earliest_after.append(earliest)
        earliest_after.reverse()
        holes: list[Gap] = []
        expected = hwm + 1
        for (seq, _), first_seen in zip(rows, earliest_after):
            for missing in range(expected, seq):
                if len(holes) == MAX_GAPS_PER_STREAM:
                    log.warning("%s/%s: more than %s seqs missing above %s; recording the first",
                                edge, stream, MAX_GAPS_PER_STREAM, hwm)
                    return holes
                holes.append(Gap(edge, stream, missing, first_seen))
            expected = seq + 1
        return holes

    def _insert_gap(self, cur: Tx, gap: Gap) -> bool:
        cur.execute(self._sql(
            "INSERT INTO gaps (edge, stream, seq, first_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING"), (gap.edge, gap.stream, gap.seq, gap.first_seen))
        return cur.rowcount == 1

    def _migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply the migrations this file lacks, each in its own write transaction with its
        bookkeeping row, so a crash leaves the previous version and two processes opening a new
        file cannot both apply one. Migrations are never edited once shipped: append one."""
        with self._lock:
            self._query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
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
                    cur.execute(self._sql("INSERT INTO schema_migrations (version, name, applied_at)"
                                          " VALUES (?, ?, ?)"),
                                (version, migration.__name__, self._clock()))
        except DbError as exc:
            raise DbError(f"{self.path}: migration {version} ({migration.__name__}) failed and "
                          f"was rolled back: {exc}") from exc


def _filters(**columns: str | None) -> tuple[str, list[str]]:
    given = {name: value for name, value in columns.items() if value is not None}
    if not given:
        return "", []
    return " WHERE " + " AND ".join(f"{name} = ?" for name in given), list(given.values())
