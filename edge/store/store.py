"""The edge's SQLite store: CDRs, answered-call counts, last agents, Notify history, recordings
(``recording_rows.py``) and the customer cache (``customer_rows.py``).

One ``Store`` per process, opened at start (``Store(config.edge.store)``). SQLite through
sqlite-utils, in WAL mode so readers (a report, the local web UI) never block the core's writes.

Durability: every write is its own committed transaction. ``synchronous="NORMAL"`` (the default)
survives a crash or ``kill -9`` of the edge with every committed row intact; after a *power cut*
the last few commits may be missing, but the file is never corrupt. ``synchronous="FULL"`` syncs
the WAL on every commit, so committed rows survive power loss too, at the cost of one fsync per
write (use it on boxes without a UPS, on storage that honours fsync).

Threads: the runtime writes from its one core thread, but a web view may read from another. The
connection is opened with ``check_same_thread=False`` and every method holds one lock, so a Store
can be shared between threads; SQLite's own busy timeout covers a second *process* (a CLI report).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

from sqlite_utils import Database

from edge.calls import INBOUND
from edge.store.announcement_rows import AnnouncementRows
from edge.store.customer_rows import CustomerRows
from edge.store.downlink_rows import DownlinkRows
from edge.store.outbox_rows import OutboxRows, add_to_outbox, stream_of
from edge.store.errors import InvalidQuery, InvalidRecord, StoreError, StoreOpenError
from edge.store.recording_rows import RecordingRows
from edge.store.reference_rows import ReferenceRows
from edge.store.task_rows import TaskRows
from edge.store.records import CDR_FIELDS, RECORDED_AT, column_for, to_record, to_row
from edge.store.schema import MIGRATIONS, Migration, migrate, schema_version

log = logging.getLogger(__name__)

SYNCHRONOUS_MODES = ("NORMAL", "FULL")
BUSY_TIMEOUT_S = 5.0
_RANGE_FILTERS = {"since": ('"started_at" >= ?'), "until": ('"started_at" < ?')}


PAGE_SIZE = 1024


class Store(RecordingRows, CustomerRows, TaskRows, OutboxRows, DownlinkRows, AnnouncementRows,
            ReferenceRows):
    """The edge's database. Methods are safe to call from any thread.

    Example::

        store = Store("edge.sqlite3")
        store.write_cdr({"call_id": "1795392102.12", "direction": "inbound",
                         "caller": "13800138000", "agent_id": "a8001", "group": "general",
                         "started_at": 1795392102.0, "answered_at": 1795392110.0})
        store.answered_counts_for_day(1795363200.0, 1795449600.0)   # {"a8001": 1}
        store.last_agents()                                          # {"13800138000": "a8001"}
        store.append_event("agent.state", {"agent_id": "a8001", "state": "busy"})
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
        outbox: bool = False,
    ) -> None:
        """``outbox``: also queue every CDR and notification for HQ (``edge.sync``), in the
        same transaction."""
        self.path = os.fspath(path)
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous: expected one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self._clock = clock
        self.outbox = outbox
        self.on_outbox: Callable[[], None] | None = None  # after a commit that queued rows
        self._lock = threading.RLock()
        self._warned_keys: set[str] = set()
        self._db = self._open(mode, migrations)

    def _open(self, mode: str, migrations: Sequence[Migration]) -> Database:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise StoreOpenError(f"{self.path}: cannot open database: {exc}") from exc
        try:
            db = Database(conn)
            # a new file gets 1 KiB pages: an event touches a few small rows in several B-trees,
            # and each commit writes every touched page to the WAL (4 KiB pages cost the writer
            # ~15 % of its time per event); ignored for an existing file
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            db.enable_wal()
            if self.path != ":memory:" and db.journal_mode != "wal":
                log.warning("%s: WAL mode refused (journal_mode=%s); readers will block writers",
                            self.path, db.journal_mode)
            db.execute(f"PRAGMA synchronous={mode}")
            migrate(db, self.path, migrations)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreOpenError(f"{self.path}: cannot set up database: {exc}") from exc
        return db

    # --- life cycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; WAL contents are checkpointed into the main file by SQLite."""
        with self._guard("close"):
            self._db.close()

    @contextmanager
    def _guard(self, doing: str) -> Iterator[Database]:
        """Hold the lock; a database failure (disk full, I/O error, closed) becomes a StoreError."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {doing}: {exc}") from exc

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def db(self) -> Database:
        """The sqlite-utils database, for tools and tests; hold no reference across threads."""
        return self._db

    def schema_version(self) -> int:
        with self._guard("schema version") as db:
            return schema_version(db)

    def pragma(self, name: str) -> Any:
        """One PRAGMA's current value (``journal_mode``, ``synchronous``...), for checks and tests."""
        if not name.isidentifier():
            raise InvalidQuery(f"not a pragma name: {name!r}")
        with self._guard(f"PRAGMA {name}") as db:
            return db.execute(f"PRAGMA {name}").fetchone()[0]

    # --- CDRs ------------------------------------------------------------------------------------

    def write_cdr(self, record: Mapping[str, Any]) -> None:
        """Store one call's record; writing the same ``call_id`` again replaces the row.

        Idempotent on purpose: a call can be finished twice (a hang-up seen on both AMI and
        FastAGI, a replay after a restart) and the latest version is the truest. Unknown keys and
        values of the wrong type are logged and left out; the row is always kept. Raises
        ``InvalidRecord`` only without a usable ``call_id``.
        """
        normalised = to_row(record)
        row = normalised.row
        with self._guard(f"CDR {row['call_id']} not written") as db, db.conn:
            self._report(row["call_id"], normalised.unknown_keys, normalised.bad_values)
            row[RECORDED_AT] = self._clock()
            db.conn.execute(f"INSERT OR REPLACE INTO cdrs ({', '.join(f'[{k}]' for k in row)}) "
                            f"VALUES ({', '.join('?' for _ in row)})", list(row.values()))
            if self.outbox:
                add_to_outbox(db.conn, "cdr", "cdr", to_record(row), row[RECORDED_AT])
        self._outbox_written()

    def _report(self, call_id: str, unknown: list[str], bad: list[str]) -> None:
        new = [key for key in unknown if key not in self._warned_keys]
        if new:
            self._warned_keys.update(new)
            log.warning("CDR %s: unknown keys dropped (no such column): %s", call_id, ", ".join(new))
        elif unknown:
            log.debug("CDR %s: unknown keys dropped: %s", call_id, ", ".join(unknown))
        if bad:
            log.warning("CDR %s: values stored as NULL (wrong type): %s", call_id, "; ".join(bad))

    def cdr(self, call_id: str) -> dict[str, Any] | None:
        """One CDR by ``call_id``, in record keys (``group``, not ``queue_group``); else ``None``."""
        rows = self.cdrs(limit=1, call_id=call_id)
        return rows[0] if rows else None

    def cdrs(self, limit: int = 100, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """CDRs newest first (by ``started_at``), as records.

        ``filters`` are equalities on record keys (``agent_id="a8001"``, ``group="general"``,
        ``caller=None`` for IS NULL) plus ``since``/``until`` on ``started_at`` (from inclusive,
        to exclusive). An unknown filter raises ``InvalidQuery`` instead of returning everything.
        """
        if not (isinstance(limit, int) and isinstance(offset, int)) or limit < 0 or offset < 0:
            raise InvalidQuery(f"limit and offset must be integers >= 0, got {limit!r}, {offset!r}")
        where, params = _where(filters)
        sql = (f"SELECT * FROM cdrs{where} "
               "ORDER BY started_at DESC, call_id LIMIT ? OFFSET ?")
        with self._guard("list CDRs") as db:
            return [to_record(row) for row in db.query(sql, [*params, limit, offset])]

    def count_cdrs(self, **filters: Any) -> int:
        """How many CDRs match ``filters`` (same filters as ``cdrs``); all of them by default."""
        where, params = _where(filters)
        with self._guard("count CDRs") as db:
            return int(db.execute(f"SELECT count(*) FROM cdrs{where}", params).fetchone()[0])

    def answered_counts_for_day(self, day_start: float, day_end: float, *,
                                direction: str | None = INBOUND) -> dict[str, int]:
        """Answered calls per agent with ``answered_at`` in ``[day_start, day_end)``.

        Seeds the core's "fewest answered today" counters (INB-1) after a restart, so it counts
        what the live counter counts: inbound calls, on answer. A call that rang at 23:59:50 and
        was answered at 00:00:05 belongs to the new day. ``direction=None`` counts every call.
        """
        sql = """
            SELECT agent_id, count(*) AS answered FROM cdrs
            WHERE agent_id IS NOT NULL AND agent_id != ''
              AND answered_at >= ? AND answered_at < ?
              AND (? IS NULL OR direction = ?)
            GROUP BY agent_id
        """
        params = [day_start, day_end, direction, direction]
        with self._guard("answered counts") as db:
            return {row[0]: int(row[1]) for row in db.execute(sql, params)}

    def last_agents(self, since: float | None = None, *,
                    direction: str | None = INBOUND) -> dict[str, str]:
        """For each caller number, the agent who answered that caller's latest answered call.

        Seeds "last agent" routing (INB-5) from inbound calls, as the core learns it live.
        ``since`` limits it to calls answered at or after that epoch time (a sticky agent from
        two years ago is no longer a relationship); ``direction=None`` looks at every call.
        """
        # SQLite takes the bare column agent_id from the row holding max(answered_at).
        sql = """
            SELECT caller, agent_id, max(answered_at) FROM cdrs
            WHERE caller IS NOT NULL AND caller != ''
              AND agent_id IS NOT NULL AND agent_id != ''
              AND answered_at IS NOT NULL AND (? IS NULL OR answered_at >= ?)
              AND (? IS NULL OR direction = ?)
            GROUP BY caller
        """
        params = [since, since, direction, direction]
        with self._guard("last agents") as db:
            return {row[0]: row[1] for row in db.execute(sql, params)}

    # --- Notify history --------------------------------------------------------------------------

    def append_event(self, topic: str, data: Mapping[str, Any] | None = None) -> int:
        """Keep one ``Notify`` (topic + JSON data) for history; returns its id (ever increasing)."""
        if not isinstance(topic, str) or not topic.strip():
            raise InvalidRecord(f"an event needs a non-empty topic, got {topic!r}")
        text = json.dumps(data if data is not None else {}, ensure_ascii=False, sort_keys=True,
                          default=_json_fallback(topic))
        with self._guard(f"event {topic} not written") as db, db.conn:
            ts = self._clock()
            cursor = db.conn.execute("INSERT INTO events (ts, topic, data) VALUES (?, ?, ?)",
                                     [ts, topic, text])
            if self.outbox:
                add_to_outbox(db.conn, stream_of(topic), topic,
                              f'{{"topic": {json.dumps(topic)}, "data": {text}}}', ts)
        self._outbox_written()
        return int(cursor.lastrowid)

    def _outbox_written(self) -> None:
        if self.outbox and self.on_outbox is not None:
            self.on_outbox()

    def events(self, limit: int = 100, *, topic: str | None = None,
               after_id: int | None = None) -> list[dict[str, Any]]:
        """Events oldest first: the latest ``limit`` ones, or the next ``limit`` after ``after_id``.

        Each is ``{"id", "ts", "topic", "data"}`` with ``data`` decoded. ``after_id`` is for a
        reader that tails the history: pass the last id it saw.
        """
        if not isinstance(limit, int) or limit < 0:
            raise InvalidQuery(f"limit must be an integer >= 0, got {limit!r}")
        clauses, params = [], []
        if topic is not None:
            clauses.append("topic = ?")
            params.append(topic)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "ASC" if after_id is not None else "DESC"
        sql = f"SELECT id, ts, topic, data FROM events{where} ORDER BY id {order} LIMIT ?"
        with self._guard("list events") as db:
            rows = [dict(row) for row in db.query(sql, [*params, limit])]
        rows.sort(key=lambda row: row["id"])
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def prune_events(self, before: float) -> int:
        """Delete events older than ``before`` (epoch seconds); returns how many went."""
        with self._guard("prune events") as db:
            return db.execute("DELETE FROM events WHERE ts < ?", [before]).rowcount


def _where(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        if key in _RANGE_FILTERS:
            clauses.append(_RANGE_FILTERS[key])
            params.append(value)
            continue
        column = RECORDED_AT if key == RECORDED_AT else column_for(key)
        if column is None:
            known = ", ".join([f.key for f in CDR_FIELDS] + [RECORDED_AT, *_RANGE_FILTERS])
            raise InvalidQuery(f"unknown CDR filter {key!r}; known: {known}")
        if value is None:
            clauses.append(f'"{column}" IS NULL')
        else:
            clauses.append(f'"{column}" = ?')
            params.append(value)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _json_fallback(topic: str) -> Callable[[Any], str]:
    def fallback(value: Any) -> str:
        log.warning("event %s: %s value %r is not JSON, stored as text", topic,
                    type(value).__name__, value)
        return str(value)
    return fallback
