"""Changes to customers and accounts, each with its downlink delta in the same transaction.

The views validate (``validate``), open one transaction and call one function here; the change,
the delta for the customer's branch edge(s) and the audit row then commit or roll back together,
so an edge can never miss a committed change nor receive one that was rolled back.
"""
from __future__ import annotations

from typing import Any

from aggregator.customers import push, queries


def create_customer(tx: Any, fields: dict[str, Any], now: float, by: str = "") -> str:
    customer_id = queries.insert_customer(tx, fields, now)
    push.customer_changed(tx, customer_id, None, created_by=by, now=now)
    return customer_id


def update_customer(tx: Any, customer_id: str, fields: dict[str, Any], now: float,
                    by: str = "") -> None:
    _, old_edge = queries.lock_customer(tx, customer_id, fields.get("if_version"))
    queries.update_customer(tx, customer_id, fields, now)
    push.customer_changed(tx, customer_id, old_edge, created_by=by, now=now)


def delete_customer(tx: Any, customer_id: str, now: float, if_version: int | None = None,
                    by: str = "") -> None:
    _, old_edge = queries.lock_customer(tx, customer_id, if_version)
    queries.delete_customer(tx, customer_id, now)
    push.customer_changed(tx, customer_id, old_edge, created_by=by, now=now)


def add_account(tx: Any, customer_id: str, fields: dict[str, Any], now: float,
                by: str = "") -> str:
    _, edge = queries.lock_customer(tx, customer_id, fields.get("if_version"))
    account_id = queries.insert_account(tx, customer_id, fields, now)
    push.customer_changed(tx, customer_id, edge, created_by=by, now=now)
    return account_id


def update_account(tx: Any, customer_id: str, account_id: str, fields: dict[str, Any],
                   now: float, by: str = "") -> None:
    _, edge = queries.lock_customer(tx, customer_id, fields.get("if_version"))
    queries.update_account(tx, customer_id, account_id, fields, now)
    push.customer_changed(tx, customer_id, edge, created_by=by, now=now)


def delete_account(tx: Any, customer_id: str, account_id: str, now: float,
                   by: str = "") -> None:
    _, edge = queries.lock_customer(tx, customer_id)
    queries.delete_account(tx, customer_id, account_id, now)
    push.customer_changed(tx, customer_id, edge, created_by=by, now=now)
