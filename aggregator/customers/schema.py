"""The customers area's tables (migration v6 in ``aggregator.migrations``).

``customers.edge`` is the branch edge whose cache holds the customer (its share); NULL keeps the
customer at HQ only. ``version`` goes up on every change to the customer, its numbers or its
accounts (optimistic locking for the views; the edge gets the whole customer each time).
Customers are deleted softly (``deleted = 1``) so an edge's delete can be re-sent and the CRM
keeps history; their numbers are released at once. Amounts are decimal text, never floats.

Importing this module registers the area's projection (``aggregator.customers.projections``).
"""
from __future__ import annotations

from typing import Any

from aggregator.customers import projections  # noqa: F401  (registers the skipped-part repair)


def migrate(tx: Any, d: Any) -> None:
    tx.execute("""
        CREATE TABLE customers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            member_no TEXT,
            owner_agent TEXT NOT NULL DEFAULT '',
            region TEXT NOT NULL DEFAULT '',
            type TEXT NOT NULL DEFAULT '',
            vip INTEGER NOT NULL DEFAULT 0,
            edge TEXT,
            version BIGINT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""")
    # partial unique index (SQLite and PostgreSQL alike): a deleted customer frees its member no.
    tx.execute("CREATE UNIQUE INDEX idx_customers_member_no ON customers (member_no)"
               " WHERE deleted = 0 AND member_no IS NOT NULL")
    tx.execute("CREATE INDEX idx_customers_edge ON customers (edge, id)")
    tx.execute("""
        CREATE TABLE customer_numbers (
            number TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL REFERENCES customers (id)
        )""")
    tx.execute("CREATE INDEX idx_customer_numbers_customer ON customer_numbers (customer_id)")
    tx.execute("""
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL REFERENCES customers (id),
            balance TEXT NOT NULL DEFAULT '',
            amount_due TEXT NOT NULL DEFAULT '',
            due_date TEXT NOT NULL DEFAULT '',
            updated_at DOUBLE PRECISION NOT NULL
        )""")
    tx.execute("CREATE INDEX idx_accounts_customer ON accounts (customer_id)")
    tx.execute("""
        CREATE TABLE number_prefixes (
            prefix TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            carrier TEXT NOT NULL DEFAULT '',
            updated_at DOUBLE PRECISION NOT NULL
        )""")
    tx.execute("""
        CREATE TABLE calendar_days (
            calendar TEXT NOT NULL,
            day TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (calendar, day)
        )""")
