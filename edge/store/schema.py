"""The store's schema, as an ordered list of forward migrations.

Migration *n* (1-based position in ``MIGRATIONS``) takes a database from version *n-1* to *n*.
``schema_migrations`` records each applied version, so opening a database applies only what is
missing, and opening it again applies nothing. A migration is never edited once shipped: a box in
a branch may have run it a year ago. To change the schema, append a function.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with its bookkeeping row,
so a crash or an error leaves the database at the previous version, never half-way; the immediate
lock also means two processes opening the same new file cannot both apply version 1.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from sqlite_utils import Database

from edge.store.errors import MigrationError, SchemaVersionError

Migration = Callable[[Database], None]

_BOOKKEEPING_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


def _v1_cdrs_and_events(db: Database) -> None:
    """CDRs (one row per call, keyed by the AGI uniqueid) and the Notify history."""
    db["cdrs"].create(
        {
            "call_id": str,
            "direction": str,
            "caller": str,
            "callee": str,
            "trunk": int,
            "agent_id": str,
            "extension": str,
            "queue_group": str,   # the record's "group": GROUP is an SQL keyword
            "rule": str,
            "region": str,
            "flagged": int,
            "started_at": float,
            "answered_at": float,
            "ended_at": float,
            "wait_s": float,
            "talk_s": float,
            "hangup_cause": int,
            "hangup_cause_txt": str,
            "hung_up_by": str,
            "disposition": str,
            "code": str,
            "recorded_at": float,
        },
        pk="call_id",
        not_null={"flagged", "recorded_at"},
        defaults={"flagged": 0},
    )
    for column in ("started_at", "agent_id", "caller", "answered_at"):
        db["cdrs"].create_index([column], index_name=f"idx_cdrs_{column}")
    # AUTOINCREMENT (not just a rowid alias): ids are never reused after old events are pruned,
    # so a reader that remembers "the last id I saw" never misses or repeats one.
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            topic TEXT NOT NULL,
            data TEXT NOT NULL
        )
        """
    )
    db["events"].create_index(["ts"], index_name="idx_events_ts")
    db["events"].create_index(["topic", "id"], index_name="idx_events_topic_id")


def _v2_recordings_customers(db: Database) -> None:
    """Recordings (one row per WAV leg, its life from MixMonitor to a verified MP3), and the
    edge's cache of its branch's customers and accounts (ARCHITECTURE.md "Contracts")."""
    db["recordings"].create(
        {
            "file": str,          # the WAV's name in Asterisk's spool dir: <call_id>-<leg>.wav
            "call_id": str,
            "leg": int,
            "channel": str,
            "agent_id": str,
            "state": str,         # recording | stopped | done | failed
            "wav_path": str,
            "mp3_path": str,
            "sha256": str,
            "mp3_bytes": int,
            "duration_s": float,
            "decoded_duration_s": float,
            "header_repaired": int,
            "error": str,
            "meta": str,          # JSON: the CDR's facts the MP3 is tagged and filed with
            "created_at": float,
            "updated_at": float,
        },
        pk="file",
        not_null={"call_id", "state", "created_at", "updated_at"},
    )
    db["recordings"].create_index(["state"], index_name="idx_recordings_state")
    db["recordings"].create_index(["call_id"], index_name="idx_recordings_call_id")
    db["customers"].create(
        {"id": str, "name": str, "member_no": str, "owner_agent": str, "region": str,
         "type": str, "vip": int, "updated_at": float},
        pk="id",
    )
    db["customers"].create_index(["member_no"], index_name="idx_customers_member_no", unique=True)
    db["customer_numbers"].create({"number": str, "customer_id": str}, pk="number")
    db["accounts"].create(
        {"id": str, "customer_id": str, "balance": str, "amount_due": str, "due_date": str,
         "updated_at": float},
        pk="id",
    )
    db["accounts"].create_index(["customer_id"], index_name="idx_accounts_customer_id")
    # the IVR steps a call walked, sensitive digits already masked by the core
    db["cdrs"].add_column("ivr", str)
    db["cdrs"].add_column("rating", str)      # the caller's score after the agent hung up
    db["cdrs"].add_column("legs", str)        # JSON: the other legs (a roaming mobile, transfers)
    db["cdrs"].add_column("hold_s", float)    # seconds the customer was on hold
    # follow-ups for people: a bad rating's callback for the team lead, busy callbacks
    db["tasks"].create(
        {"key": str, "kind": str, "state": str, "assignee": str, "queue_group": str,
         "call_id": str, "number": str, "data": str, "result": str, "attempts": int,
         "created_at": float, "updated_at": float},
        pk="key", not_null={"kind", "state", "created_at", "updated_at"},
        defaults={"attempts": 0},
    )
    db["tasks"].create_index(["state", "kind"], index_name="idx_tasks_state_kind")


def _v3_outbox(db: Database) -> None:
    """The sync outbox (``edge.store.outbox_rows``) and each stream's last ``seq``."""
    db.execute("""
        CREATE TABLE outbox (
            stream TEXT NOT NULL,
            seq INTEGER NOT NULL,
            id TEXT NOT NULL UNIQUE,
            ts REAL NOT NULL,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (stream, seq)
        )""")
    db.execute("CREATE TABLE outbox_seq (stream TEXT PRIMARY KEY, last INTEGER NOT NULL)")


def _v4_downlink_reference_upload(db: Database) -> None:
    """What HQ sends down (applied versions, HQ's config sections, announcements and their read
    receipts, the 号段 prefix table and calendar days), and each recording's upload to HQ."""
    # the version of each (kind, scope) last applied: a redelivered or older message is skipped
    db.execute("""
        CREATE TABLE downlink_applied (
            kind TEXT NOT NULL,
            scope TEXT NOT NULL,
            version INTEGER NOT NULL,
            id TEXT NOT NULL,
            result TEXT NOT NULL,
            applied_at REAL NOT NULL,
            PRIMARY KEY (kind, scope)
        )""")
    db.execute("""
        CREATE TABLE hq_config (
            section TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""")
    # HQ's commands, run by the runtime's core thread (it polls this table), whichever process
    # the sync inbox runs in; state: pending -> done | failed
    db.execute("""
        CREATE TABLE hq_commands (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            args TEXT NOT NULL,
            state TEXT NOT NULL,
            result TEXT NOT NULL DEFAULT '',
            received_at REAL NOT NULL,
            done_at REAL
        )""")
    db.execute("""
        CREATE TABLE announcements (
            id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            audience TEXT NOT NULL,
            priority TEXT NOT NULL DEFAULT 'normal',
            published_at REAL NOT NULL,
            expires_at REAL,
            withdrawn INTEGER NOT NULL DEFAULT 0,
            received_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE announcement_reads (
            announcement_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            read_at REAL NOT NULL,
            PRIMARY KEY (announcement_id, agent_id)
        )""")
    db.execute("""
        CREATE TABLE number_prefixes (
            prefix TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            carrier TEXT NOT NULL DEFAULT '',
            version INTEGER NOT NULL
        )""")
    db.execute("""
        CREATE TABLE calendar_days (
            calendar TEXT NOT NULL,
            day TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            version INTEGER NOT NULL,
            PRIMARY KEY (calendar, day)
        )""")
    db["recordings"].add_column("upload_state", str)    # '' | pending | confirmed | failed
    db["recordings"].add_column("upload_offset", int)
    db["recordings"].add_column("upload_error", str)
    db["recordings"].add_column("uploaded_at", float)
    db["recordings"].add_column("local_deleted_at", float)
    db["recordings"].create_index(["upload_state"], index_name="idx_recordings_upload_state")


MIGRATIONS: tuple[Migration, ...] = (_v1_cdrs_and_events, _v2_recordings_customers, _v3_outbox,
                                     _v4_downlink_reference_upload)


def schema_version(db: Database) -> int:
    """The highest applied migration; 0 for a new, empty database."""
    if not db["schema_migrations"].exists():
        return 0
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(db: Database, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)``; returns the resulting version.

    Raises ``SchemaVersionError`` for a database written by a newer edge, and ``MigrationError``
    (after rolling back) when a migration fails.
    """
    db.execute(_BOOKKEEPING_SQL)
    known = len(migrations)
    found = schema_version(db)
    if found > known:
        raise SchemaVersionError(path, found, known)
    for version, migration in enumerate(migrations, start=1):
        if version > found:
            _apply(db, path, version, migration)
    return schema_version(db)


def _apply(db: Database, path: str, version: int, migration: Migration) -> None:
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_version(db) < version:  # another process may have applied it meanwhile
            migration(db)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                [version, migration.__name__, time.time()],
            )
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, Exception) and not isinstance(exc, MigrationError):
            raise MigrationError(
                f"{path}: migration {version} ({migration.__name__}) failed and was rolled back: {exc}"
            ) from exc
        raise

