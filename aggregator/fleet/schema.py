"""The fleet area's tables (migration v3 in ``aggregator.migrations``).

``edges``: one row per enrolled edge (branch box) with what its last ``health`` message said;
``state`` is the admin's view (``enrolling`` while the broker is being told, ``active``,
``disabled``, ``removed``), while online/stale/offline is computed from ``last_seen`` when read.
Rows are never deleted: recordings and CDRs keep their edge's department (``department_id`` is
the data scope of everything the edge sends).

``enrollment_tokens``: one-time tokens an admin or technician hands to whoever sets up a box;
stored as the SHA-256 of the token, like the edges' API tokens.
"""
from __future__ import annotations

from typing import Any

from aggregator.fleet import projections  # noqa: F401  (registers the ``health`` projection)


def migrate(tx: Any, d: Any) -> None:
    tx.execute("""
        CREATE TABLE edges (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            department_id BIGINT REFERENCES departments (id),
            state TEXT NOT NULL,
            enrolled_at DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION,
            reported_at DOUBLE PRECISION,
            version TEXT,
            outbox_depth BIGINT,
            trunks_total INTEGER,
            trunks_up INTEGER,
            agents_total INTEGER,
            agents_logged_in INTEGER,
            calls_active INTEGER,
            uptime_s DOUBLE PRECISION,
            health TEXT,
            updated_at DOUBLE PRECISION NOT NULL
        )""")
    tx.execute("CREATE INDEX idx_edges_department ON edges (department_id)")
    tx.execute(f"""
        CREATE TABLE enrollment_tokens (
            id {d.auto_id},
            token_hash TEXT NOT NULL UNIQUE,
            department_id BIGINT REFERENCES departments (id),
            edge_name TEXT NOT NULL,
            created_by BIGINT REFERENCES users (id),
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            used_at DOUBLE PRECISION,
            used_by_edge TEXT,
            revoked_at DOUBLE PRECISION
        )""")
