"""The HQ's ingest tables: every message the edges sent, each stream's high-water mark, gaps,
dead letters — on the data layer of ``aggregator.database`` (SQLite or PostgreSQL).

Idempotence is the database's job, not the consumer's: ``messages`` has a primary key on the
envelope ``id`` and a unique key on (edge, stream, seq), and every insert is ``ON CONFLICT DO
NOTHING``, so a message delivered twice — a resend from the edge, a redelivery after a consumer
crash, two consumers racing — is stored once however the writers interleave. Each batch is one
transaction that also moves the stream's high-water mark (``hwm``: every seq 1..hwm is stored),
so the mark another process reads is always backed by committed rows.

Several consumers: on SQLite their batches queue on the file's write lock. On PostgreSQL they
run side by side — a *shared* advisory lock keeps them apart only from ``transaction()``'s
writers — and each stream's row in ``streams`` is locked (``SELECT … FOR UPDATE``, streams in
sorted order) before its hwm moves. In READ COMMITTED every statement sees what committed before
it, so the last batch to take a stream's lock sees every earlier batch's rows, and no advance is
lost. A batch that loses a deadlock or a race (two consumers with redeliveries of the same
messages, a projection's check-then-insert) is rolled back and run again.

Example::

    db = HqDb.open("hq.sqlite3")              # or "postgresql://hq@db.example/hq"
    db.store_batch([Envelope("01J…", "edge-a", "cdr", 1, 1795392102.5, "cdr", {"call_id": "x"})])
    # {("edge-a", "cdr"): 1}
    db.hwm("edge-a", "cdr")        # 1
    db.record_gaps(settle_s=30)    # seqs still missing 30 s after a later one arrived
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from aggregator.database import (BUSY_TIMEOUT_S, SQLITE, Database, DbError, Dialect, Link,
                                 Migration, SchemaVersionError, Tx, connect_sqlite, link_for)
from aggregator.envelope import Envelope
from aggregator.projections import apply_projections

__all__ = ["BUSY_TIMEOUT_S", "SQLITE", "Database", "DbError", "DeadLetter", "Dialect", "Gap",
           "HqDb", "Link", "Migration", "Reject", "SchemaVersionError", "Tx", "connect_sqlite",
           "link_for", "v1_ingest"]

log = logging.getLogger(__name__)

HWM_SCAN_CHUNK = 1000
MAX_GAPS_PER_STREAM = 1000   # a seq that jumps by millions is one bug, not a million gaps
BATCH_ATTEMPTS = 5           # a batch that lost a deadlock or a race is retried this often
RETRY_BASE_S = 0.005
INSERT_CHUNK = 100           # rows per INSERT: 800 parameters, under SQLite's oldest limit (999)


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


class HqDb(Database):
    """The aggregator's database: the data layer (``transaction``, ``query``, ``scalar``) with
    every area's migrations, and the ingest's messages, marks, gaps and dead letters."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 busy_timeout_s: float = BUSY_TIMEOUT_S,
                 migrations: Sequence[Migration] | None = None) -> None:
        if migrations is None:
            from aggregator.migrations import MIGRATIONS
            migrations = MIGRATIONS
        super().__init__(path, migrations=migrations, clock=clock, busy_timeout_s=busy_timeout_s)

    @classmethod
    def open(cls, url: str | os.PathLike[str], **kwargs: Any) -> "HqDb":
        """``sqlite:///path``, a plain path, or ``postgresql://user@host:port/db`` (libpq also
        reads the password from ``PGPASSWORD`` or ``~/.pgpass``)."""
        return cls(url, **kwargs)

    def __enter__(self) -> "HqDb":
        return self

    # --- writes -------------------------------------------------------------------------------

    def store_batch(self, envelopes: Iterable[Envelope],
                    rejects: Iterable[Reject] = ()) -> dict[StreamKey, int]:
        """Store envelopes and file rejects in one transaction; returns the committed hwm of every
        (edge, stream) in the batch. A message already stored (same id, or same edge/stream/seq
        with the same id) is skipped; one that claims a stored seq under another id, or a stored
        id for another seq, is a conflict and becomes a dead letter, and so does one a projection
        refuses (its row stays) or one the database cannot hold as text.

        Envelopes are stored in (edge, stream, seq) order, so that two batches holding the same
        messages take their row locks in the same order; a batch that still loses a deadlock or
        a race is rolled back and retried whole."""
        batch = sorted(envelopes, key=lambda e: (e.edge, e.stream, e.seq))
        filed = sorted(rejects, key=lambda r: (r.topic, bytes(r.payload)))
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                return self._store_once(batch, filed)
            except DbError as exc:
                lost = self._link.broken(self._conn)      # reopened by the next attempt
                if attempt == BATCH_ATTEMPTS or not (lost or self._link.retryable(exc.__cause__)):
                    raise
                delay = RETRY_BASE_S * 2 ** attempt * random.uniform(0.5, 1.0)
                log.info("%s: batch of %s rolled back (%s); retrying in %.3f s", self.path,
                         len(batch), exc.__cause__, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.store_batch((), [Reject(topic, payload, reason)])

    def record_gaps(self, settle_s: float, now: float | None = None) -> list[Gap]:
        """Record every seq still missing ``settle_s`` after a later seq of its stream was stored
        (with several consumers, seqs arrive out of order: a hole is a gap only once it stays).
        Filled gaps are removed. Returns the gaps recorded by this call."""
        now = self._clock() if now is None else now
        recorded: list[Gap] = []
        with self._transaction() as cur:
            cur.execute(
                "DELETE FROM gaps WHERE EXISTS (SELECT 1 FROM messages m WHERE m.edge = gaps.edge"
                " AND m.stream = gaps.stream AND m.seq = gaps.seq)")
            open_streams = cur.execute(
                "SELECT edge, stream, hwm FROM streams WHERE max_seq > hwm"
                " ORDER BY edge, stream").fetchall()
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

    def _store_once(self, batch: Sequence[Envelope], rejects: Sequence[Reject]
                    ) -> dict[StreamKey, int]:
        with self._transaction(shared=True) as cur:
            now = self._clock()
            top: dict[StreamKey, int] = {}     # the highest seq inserted, per stream
            storable: list[tuple[Envelope, str]] = []     # with its body as JSON text
            for envelope in batch:
                body = envelope.body_json()
                problem = _unstorable(envelope, body)
                if problem is None:
                    storable.append((envelope, body))
                else:
                    self._reject(cur, envelope, problem, now)
            inserted = self._insert_messages(cur, storable, now)
            for envelope, _body in storable:
                if envelope.id in inserted:
                    inserted.discard(envelope.id)      # a second copy in the batch is a redelivery
                    key = (envelope.edge, envelope.stream)
                    top[key] = max(top.get(key, 0), envelope.seq)
                    refused = apply_projections(cur, envelope, now)
                    if refused:
                        self._reject(cur, envelope, "projection refused: " + "; ".join(refused),
                                     now)
                else:
                    conflict = self._conflict(cur, envelope)
                    if conflict:
                        self._reject(cur, envelope, conflict, now)
            for reject in rejects:
                self._insert_dead_letter(cur, reject, now)
            # sorted: every batch locks the stream rows in one order, so none waits in a circle
            seen = sorted({(envelope.edge, envelope.stream) for envelope in batch})
            return {key: self._advance(cur, key, top[key], now) if key in top
                    else self._hwm(cur, key) for key in seen}

    def _reject(self, cur: Tx, envelope: Envelope, reason: str, now: float) -> None:
        log.warning("dead letter %s seq %s: %s", envelope.topic, envelope.seq, reason)
        self._insert_dead_letter(cur, Reject(envelope.topic, _payload(envelope), reason), now)

    def _insert_messages(self, cur: Tx, rows: Sequence[tuple[Envelope, str]], now: float
                         ) -> set[str]:
        """Insert what is new, many rows per statement (one round trip each on PostgreSQL);
        returns the ids inserted."""
        inserted: set[str] = set()
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start:start + INSERT_CHUNK]
            params: list[object] = []
            for e, body in chunk:
                params.extend((e.id, e.edge, e.stream, e.seq, e.ts, e.type, body, now))
            returned = cur.execute(
                "INSERT INTO messages (id, edge, stream, seq, ts, type, body, received_at) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                + " ON CONFLICT DO NOTHING RETURNING id", params).fetchall()
            inserted.update(row[0] for row in returned)
        return inserted

    def _conflict(self, cur: Tx, e: Envelope) -> str | None:
        """Why a skipped envelope is not a plain redelivery, or None when it is one."""
        row = cur.execute("SELECT edge, stream, seq FROM messages WHERE id = ?",
                          (e.id,)).fetchone()
        if row is not None:
            if tuple(row) == (e.edge, e.stream, e.seq):
                return None
            return f"conflict: id {e.id} is already stored as {row[0]}/{row[1]} seq {row[2]}"
        row = cur.execute(
            "SELECT id FROM messages WHERE edge = ? AND stream = ? AND seq = ?",
            (e.edge, e.stream, e.seq)).fetchone()
        return f"conflict: {e.edge}/{e.stream} seq {e.seq} is already stored with id {row[0]}"

    def _insert_dead_letter(self, cur: Tx, reject: Reject, now: float) -> None:
        payload = bytes(reject.payload)
        cur.execute(
            "INSERT INTO dead_letters (topic, payload, reason, received_at, digest, times,"
            " last_received_at) VALUES (?, ?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (topic, digest) DO UPDATE SET times = dead_letters.times + 1,"
            " last_received_at = excluded.last_received_at",
            (_text(reject.topic), payload, _text(reject.reason), now,
             hashlib.sha256(payload).hexdigest(), now))

    def _hwm(self, cur: Tx, key: StreamKey) -> int:
        row = cur.execute("SELECT hwm FROM streams WHERE edge = ? AND stream = ?",
                          key).fetchone()
        return int(row[0]) if row else 0

    def _advance(self, cur: Tx, key: StreamKey, top: int, now: float) -> int:
        """Move the stream's hwm over every contiguous stored seq; note its highest seq. The
        stream's row is locked first, so the scan sees every batch that committed before."""
        edge, stream = key
        cur.execute("INSERT INTO streams (edge, stream, hwm, max_seq, updated_at)"
                    " VALUES (?, ?, 0, 0, ?) ON CONFLICT DO NOTHING", (edge, stream, now))
        row = cur.execute("SELECT hwm, max_seq FROM streams WHERE edge = ? AND stream = ?"
                          + self.dialect.for_update, key).fetchone()
        old_hwm, old_max = int(row[0]), int(row[1])
        hwm = old_hwm
        while True:
            seqs = cur.execute(
                "SELECT seq FROM messages WHERE edge = ? AND stream = ? AND seq > ?"
                " ORDER BY seq LIMIT ?", (edge, stream, hwm, HWM_SCAN_CHUNK)).fetchall()
            for (seq,) in seqs:
                if seq != hwm + 1:
                    break
                hwm = seq
            else:
                if len(seqs) == HWM_SCAN_CHUNK:
                    continue
            break
        max_seq = max(old_max, hwm, top)
        if (hwm, max_seq) != (old_hwm, old_max):
            cur.execute("UPDATE streams SET hwm = ?, max_seq = ?, updated_at = ? WHERE edge = ?"
                        " AND stream = ?", (hwm, max_seq, now, edge, stream))
        return hwm

    def _holes(self, cur: Tx, edge: str, stream: str, hwm: int) -> list[Gap]:
        """The missing seqs above hwm, each with the time it became visible: when the earliest
        stored message with a higher seq was received."""
        rows = cur.execute(
            "SELECT seq, received_at FROM messages WHERE edge = ? AND stream = ? AND seq > ?"
            " ORDER BY seq", (edge, stream, hwm)).fetchall()
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
        cur.execute(
            "INSERT INTO gaps (edge, stream, seq, first_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING", (gap.edge, gap.stream, gap.seq, gap.first_seen))
        return cur.rowcount == 1


def _unstorable(e: Envelope, body: str) -> str | None:
    """Why a valid envelope still cannot go into a text column, or None: PostgreSQL refuses a
    NUL character, and neither database takes a lone surrogate (``"\\ud800"`` in the JSON).
    Checked on SQLite too, so both databases dead-letter the same messages."""
    for name, value in (("id", e.id), ("type", e.type)):
        if "\x00" in value:
            return f"{name}: holds a NUL character, which a database text column cannot store"
    try:
        e.id.encode()
        e.type.encode()
        body.encode()
    except UnicodeEncodeError as exc:
        return f"not storable as UTF-8 text: {exc}"
    return None


def _payload(e: Envelope) -> bytes:
    try:
        return e.to_json()
    except UnicodeEncodeError:          # a lone surrogate: keep it, escaped
        return json.dumps({"id": e.id, "edge": e.edge, "stream": e.stream, "seq": e.seq,
                           "ts": e.ts, "type": e.type, "body": e.body}).encode()


def _text(value: str) -> str:
    """A dead letter's topic or reason, storable whatever it quotes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _filters(**columns: str | None) -> tuple[str, list[str]]:
    given = {name: value for name, value in columns.items() if value is not None}
    if not given:
        return "", []
    return " WHERE " + " AND ".join(f"{name} = ?" for name in given), list(given.values())
