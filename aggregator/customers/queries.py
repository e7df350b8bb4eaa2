"""Customers and accounts in the HQ database: reads, and writes inside the caller's transaction.

Reads take an ``HqDb`` or a ``Tx`` alike. A customer is returned as one record with its numbers
and accounts, the same shape the views answer with and the edge caches::

    {"id": "c1", "name": "王五", "member_no": "M1001", "owner_agent": "a8001", "region": "广东",
     "type": "personal", "vip": True, "edge": "edge-a", "version": 3, "updated_at": 1795392102.5,
     "numbers": ["13800138000"], "accounts": [{"id": "k1", "balance": "1234.50",
     "amount_due": "300.00", "due_date": "2026-12-01", "updated_at": 1795392102.5}]}

Uniqueness is checked before writing so the caller gets a ``Conflict`` that names the holder;
the database's own constraints stay as the last word when two writers race.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from ulid import ULID

from aggregator.customers.errors import Conflict, NotFound

CUSTOMER_COLUMNS = ("id", "name", "member_no", "owner_agent", "region", "type", "vip", "edge",
                    "version", "updated_at")
ACCOUNT_COLUMNS = ("id", "balance", "amount_due", "due_date", "updated_at")
WRITABLE = ("name", "member_no", "owner_agent", "region", "type", "vip", "edge")
MAX_PAGE = 1000


def rows(src: Any, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """Read from an ``HqDb`` or from inside a transaction (``Tx``) alike."""
    if hasattr(src, "query"):
        return src.query(sql, params)
    return [tuple(r) for r in src.execute(sql, params).fetchall()]


def new_id() -> str:
    return str(ULID())


# --- reads --------------------------------------------------------------------------------------

def get_customer(src: Any, customer_id: str) -> dict[str, Any] | None:
    """The live (not deleted) customer with numbers and accounts, or None."""
    found = customers_by_ids(src, [customer_id])
    return found[0] if found else None


def customers_by_ids(src: Any, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Live customers among ``ids``, in id order, each with numbers and accounts."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    found = rows(src, f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers"
                      f" WHERE deleted = 0 AND id IN ({marks}) ORDER BY id", list(ids))
    return _with_details(src, found)


def list_customers(src: Any, *, edge: str | None = None, member_no: str | None = None,
                   number: str | None = None, after: str = "",
                   limit: int = 100) -> list[dict[str, Any]]:
    """Live customers ordered by id, ``limit`` after the id ``after`` (keyset paging)."""
    where, params = ["c.deleted = 0", "c.id > ?"], [after]
    if edge is not None:
        where.append("c.edge = ?")
        params.append(edge)
    if member_no is not None:
        where.append("c.member_no = ?")
        params.append(member_no)
    if number is not None:
        where.append("c.id IN (SELECT customer_id FROM customer_numbers WHERE number = ?)")
        params.append(number)
    columns = ", ".join(f"c.{c}" for c in CUSTOMER_COLUMNS)
    found = rows(src, f"SELECT {columns} FROM customers c WHERE {' AND '.join(where)}"
                      " ORDER BY c.id LIMIT ?", [*params, min(max(limit, 1), MAX_PAGE)])
    return _with_details(src, found)


def _with_details(src: Any, found: list[tuple]) -> list[dict[str, Any]]:
    records = [_customer(row) for row in found]
    if not records:
        return []
    by_id = {r["id"]: r for r in records}
    marks = ", ".join("?" for _ in by_id)
    for number, customer_id in rows(src, "SELECT number, customer_id FROM customer_numbers"
                                         f" WHERE customer_id IN ({marks}) ORDER BY number",
                                    list(by_id)):
        by_id[customer_id]["numbers"].append(number)
    for row in rows(src, f"SELECT customer_id, {', '.join(ACCOUNT_COLUMNS)} FROM accounts"
                         f" WHERE customer_id IN ({marks}) ORDER BY id", list(by_id)):
        by_id[row[0]]["accounts"].append(dict(zip(ACCOUNT_COLUMNS, row[1:])))
    return records


def _customer(row: tuple) -> dict[str, Any]:
    record = dict(zip(CUSTOMER_COLUMNS, row))
    record["vip"] = bool(record["vip"])
    record["version"] = int(record["version"])
    record["numbers"], record["accounts"] = [], []
    return record


def account_row(src: Any, customer_id: str, account_id: str) -> dict[str, Any] | None:
    found = rows(src, f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts"
                      " WHERE id = ? AND customer_id = ?", (account_id, customer_id))
    return dict(zip(ACCOUNT_COLUMNS, found[0])) if found else None


# --- writes (inside the caller's transaction) ---------------------------------------------------

def insert_customer(tx: Any, fields: dict[str, Any], now: float) -> str:
    """A new customer from validated ``fields``; returns its id."""
    customer_id = fields.get("id") or new_id()
    if rows(tx, "SELECT 1 FROM customers WHERE id = ?", (customer_id,)):
        raise Conflict(f"id: customer {customer_id} already exists")
    _check_member_no(tx, fields.get("member_no"), customer_id)
    values = {key: fields.get(key, "") for key in ("name", "owner_agent", "region", "type")}
    tx.execute("INSERT INTO customers (id, name, member_no, owner_agent, region, type, vip, edge,"
               " version, deleted, created_at, updated_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?)",
               (customer_id, values["name"], fields.get("member_no"), values["owner_agent"],
                values["region"], values["type"], fields.get("vip", 0), fields.get("edge"),
                now, now))
    if "numbers" in fields:
        set_numbers(tx, customer_id, fields["numbers"])
    for account in fields.get("accounts", ()):
        insert_account(tx, customer_id, account, now, bump_version=False)
    return customer_id


def update_customer(tx: Any, customer_id: str, fields: dict[str, Any], now: float) -> None:
    """Change the given columns (and replace numbers/accounts when given); bumps the version."""
    lock_customer(tx, customer_id, fields.get("if_version"))
    if "member_no" in fields:
        _check_member_no(tx, fields["member_no"], customer_id)
    changes = {key: fields[key] for key in WRITABLE if key in fields}
    sets = "".join(f"{key} = ?, " for key in changes)
    tx.execute(f"UPDATE customers SET {sets}version = version + 1, updated_at = ? WHERE id = ?",
               (*changes.values(), now, customer_id))
    if "numbers" in fields:
        set_numbers(tx, customer_id, fields["numbers"])
    if "accounts" in fields:
        _replace_accounts(tx, customer_id, fields["accounts"], now)


def delete_customer(tx: Any, customer_id: str, now: float, if_version: int | None = None) -> None:
    """Soft delete: the row stays (history, re-sent deletes), its numbers are released."""
    lock_customer(tx, customer_id, if_version)
    tx.execute("UPDATE customers SET deleted = 1, version = version + 1, updated_at = ?"
               " WHERE id = ?", (now, customer_id))
    tx.execute("DELETE FROM customer_numbers WHERE customer_id = ?", (customer_id,))


def lock_customer(tx: Any, customer_id: str,
                  if_version: int | None = None) -> tuple[int, str | None]:
    """(version, edge) of a live customer; NotFound / Conflict (stale ``if_version``)."""
    found = rows(tx, "SELECT version, edge FROM customers WHERE id = ? AND deleted = 0",
                 (customer_id,))
    if not found:
        raise NotFound(f"customer {customer_id} not found")
    current = int(found[0][0])
    if if_version is not None and if_version != current:
        raise Conflict(f"if_version: customer {customer_id} is at version {current}, "
                       f"not {if_version}; reload it and try again")
    return current, found[0][1]


def bump(tx: Any, customer_id: str, now: float) -> None:
    tx.execute("UPDATE customers SET version = version + 1, updated_at = ? WHERE id = ?",
               (now, customer_id))


def set_numbers(tx: Any, customer_id: str, numbers: Iterable[str]) -> None:
    numbers = list(numbers)
    for number in numbers:
        held = rows(tx, "SELECT customer_id FROM customer_numbers WHERE number = ?", (number,))
        if held and held[0][0] != customer_id:
            raise Conflict(f"numbers: {number} belongs to customer {held[0][0]}")
    tx.execute("DELETE FROM customer_numbers WHERE customer_id = ?", (customer_id,))
    for number in numbers:
        tx.execute("INSERT INTO customer_numbers (number, customer_id) VALUES (?, ?)",
                   (number, customer_id))


def insert_account(tx: Any, customer_id: str, fields: dict[str, Any], now: float,
                   bump_version: bool = True) -> str:
    account_id = fields.get("id") or new_id()
    held = rows(tx, "SELECT customer_id FROM accounts WHERE id = ?", (account_id,))
    if held:
        raise Conflict(f"id: account {account_id} already exists (customer {held[0][0]})")
    tx.execute("INSERT INTO accounts (id, customer_id, balance, amount_due, due_date, updated_at)"
               " VALUES (?, ?, ?, ?, ?, ?)",
               (account_id, customer_id, fields.get("balance", ""), fields.get("amount_due", ""),
                fields.get("due_date", ""), now))
    if bump_version:
        bump(tx, customer_id, now)
    return account_id


def update_account(tx: Any, customer_id: str, account_id: str, fields: dict[str, Any],
                   now: float, bump_version: bool = True) -> None:
    if account_row(tx, customer_id, account_id) is None:
        raise NotFound(f"account {account_id} of customer {customer_id} not found")
    changes = {k: fields[k] for k in ("balance", "amount_due", "due_date") if k in fields}
    sets = "".join(f"{key} = ?, " for key in changes)
    tx.execute(f"UPDATE accounts SET {sets}updated_at = ? WHERE id = ?",
               (*changes.values(), now, account_id))
    if bump_version:
        bump(tx, customer_id, now)


def delete_account(tx: Any, customer_id: str, account_id: str, now: float) -> None:
    if account_row(tx, customer_id, account_id) is None:
        raise NotFound(f"account {account_id} of customer {customer_id} not found")
    tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
    bump(tx, customer_id, now)


def _replace_accounts(tx: Any, customer_id: str, accounts: list[dict[str, Any]],
                      now: float) -> None:
    """The customer's accounts become exactly ``accounts`` (kept ids are updated in place)."""
    keep = {a["id"] for a in accounts if "id" in a}
    for (account_id,) in rows(tx, "SELECT id FROM accounts WHERE customer_id = ?", (customer_id,)):
        if account_id not in keep:
            tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
    for account in accounts:
        if "id" in account and account_row(tx, customer_id, account["id"]) is not None:
            update_account(tx, customer_id, account["id"], account, now,
                           bump_version=False)
        else:
            insert_account(tx, customer_id, account, now, bump_version=False)


def _check_member_no(tx: Any, member_no: str | None, customer_id: str) -> None:
    if member_no is None:
        return
    held = rows(tx, "SELECT id FROM customers WHERE member_no = ? AND deleted = 0 AND id <> ?",
                (member_no, customer_id))
    if held:
        raise Conflict(f"member_no: {member_no} belongs to customer {held[0][0]}")
