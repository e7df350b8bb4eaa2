"""The auth area's tables (migration v2 in ``aggregator.migrations``).

Users belong to one department in a tree (``parent_id``); roles are rows (a user may hold several);
sessions and edge tokens are stored as hashes of what the client holds; the audit log only grows.
"""
from __future__ import annotations

from typing import Any


def migrate(tx: Any, d: Any) -> None:
    tx.execute(f"""
        CREATE TABLE departments (
            id {d.auto_id},
            name TEXT NOT NULL,
            parent_id BIGINT REFERENCES departments (id),
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""")
    tx.execute("CREATE INDEX idx_departments_parent ON departments (parent_id)")
    tx.execute(f"""
        CREATE TABLE users (
            id {d.auto_id},
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            department_id BIGINT REFERENCES departments (id),
            active INTEGER NOT NULL DEFAULT 1,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until DOUBLE PRECISION,
            password_changed_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""")
    tx.execute("CREATE INDEX idx_users_department ON users (department_id)")
    tx.execute("""
        CREATE TABLE user_roles (
            user_id BIGINT NOT NULL REFERENCES users (id),
            role TEXT NOT NULL,
            PRIMARY KEY (user_id, role)
        )""")
    tx.execute("""
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id),
            csrf TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION,
            ip TEXT
        )""")
    tx.execute("CREATE INDEX idx_sessions_user ON sessions (user_id)")
    tx.execute(f"""
        CREATE TABLE api_tokens (
            id {d.auto_id},
            edge_id TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION
        )""")
    tx.execute("CREATE INDEX idx_api_tokens_edge ON api_tokens (edge_id)")
    tx.execute(f"""
        CREATE TABLE audit_log (
            id {d.auto_id},
            ts DOUBLE PRECISION NOT NULL,
            actor_kind TEXT NOT NULL,
            actor_id TEXT NOT NULL,
            actor_name TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL,
            ip TEXT
        )""")
    tx.execute("CREATE INDEX idx_audit_ts ON audit_log (ts)")
    tx.execute("CREATE INDEX idx_audit_action ON audit_log (action, ts)")
    tx.execute("CREATE INDEX idx_audit_actor ON audit_log (actor_kind, actor_id, ts)")
