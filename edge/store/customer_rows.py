"""The edge's cache of its branch's customers and accounts (ARCHITECTURE.md "Contracts").

HQ owns the data and pushes the branch's share (the sync issue); the edge reads it for member
verification in the IVR, self-service look-ups, VIP routing and dunning. Amounts are kept as
decimal strings: a balance read back to a bank's customer must never pass through a float.

HQ's pushes arrive through ``edge.sync.reference`` inside the inbox's transaction, so the
functions they use (``write_customers``, ``delete_customers``, ``delete_customer_range``) take
the inbox's ``sqlite3.Connection`` and never commit: the rows, the applied version and the ack
commit together.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Mapping, Sequence


class CustomerRows:
    """Mixed into ``Store``: uses its ``_guard`` and ``_clock``."""

    def upsert_customer(self, customer: Mapping[str, Any], numbers: Iterable[str] = (),
                        accounts: Iterable[Mapping[str, Any]] = ()) -> None:
        now = self._clock()  # type: ignore[attr-defined]
        row = {"id": str(customer["id"]), "name": str(customer.get("name", "")),
               "member_no": customer.get("member_no") or None,
               "owner_agent": str(customer.get("owner_agent", "")),
               "region": str(customer.get("region", "")), "type": str(customer.get("type", "")),
               "vip": int(bool(customer.get("vip"))), "updated_at": now}
        with self._guard(f"customer {row['id']} not written") as db:  # type: ignore[attr-defined]
            with db.conn:
                db["customers"].upsert(row, pk="id")
                for number in numbers:
                    db["customer_numbers"].upsert({"number": number, "customer_id": row["id"]},
                                                  pk="number")
                for account in accounts:
                    db["accounts"].upsert({
                        "id": str(account["id"]), "customer_id": row["id"],
                        "balance": _decimal_text(account.get("balance")),
                        "amount_due": _decimal_text(account.get("amount_due")),
                        "due_date": str(account.get("due_date") or ""), "updated_at": now,
                    }, pk="id")

    def customer_by_member(self, member_no: str) -> dict[str, Any] | None:
        with self._guard("look up member") as db:  # type: ignore[attr-defined]
            rows = list(db.query("SELECT * FROM customers WHERE member_no = ?", [member_no]))
        return rows[0] if rows else None

    def customer_by_number(self, number: str) -> dict[str, Any] | None:
        with self._guard("look up caller") as db:  # type: ignore[attr-defined]
            rows = list(db.query("SELECT c.* FROM customers c JOIN customer_numbers n "
                                 "ON n.customer_id = c.id WHERE n.number = ?", [number]))
        return rows[0] if rows else None

    def accounts_of(self, customer_id: str) -> list[dict[str, Any]]:
        with self._guard("read accounts") as db:  # type: ignore[attr-defined]
            return list(db.query("SELECT * FROM accounts WHERE customer_id = ? ORDER BY id",
                                 [customer_id]))

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """One cached customer with ``numbers`` and ``accounts``, or None."""
        with self._guard("read customer") as db:  # type: ignore[attr-defined]
            rows = list(db.query("SELECT * FROM customers WHERE id = ?", [customer_id]))
            if not rows:
                return None
            row = rows[0]
            row["numbers"] = [r["number"] for r in db.query(
                "SELECT number FROM customer_numbers WHERE customer_id = ? ORDER BY number",
                [customer_id])]
            row["accounts"] = list(db.query(
                "SELECT * FROM accounts WHERE customer_id = ? ORDER BY id", [customer_id]))
        return row

    def customer_ids(self) -> list[str]:
        """Every cached customer's id, in order (status pages, tests)."""
        with self._guard("list customers") as db:  # type: ignore[attr-defined]
            return [r[0] for r in db.execute("SELECT id FROM customers ORDER BY id").fetchall()]


# --- HQ's pushes, inside the inbox's transaction ------------------------------------------------

def write_customers(conn: sqlite3.Connection, customers: Sequence[Mapping[str, Any]],
                    now: float) -> None:
    """Upsert whole customers: each one's numbers and accounts become exactly those given.

    A member number or phone number another cached customer still holds moves to this one: HQ
    keeps both unique, so the other customer's own update (later in this push, or in one to
    come) can only agree."""
    for c in customers:
        customer_id = str(c["id"])
        member_no = c.get("member_no") or None
        if member_no is not None:
            conn.execute("UPDATE customers SET member_no = NULL WHERE member_no = ? AND id <> ?",
                         [member_no, customer_id])
        conn.execute(
            "INSERT INTO customers (id, name, member_no, owner_agent, region, type, vip,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
            " name = excluded.name, member_no = excluded.member_no,"
            " owner_agent = excluded.owner_agent, region = excluded.region,"
            " type = excluded.type, vip = excluded.vip, updated_at = excluded.updated_at",
            [customer_id, str(c.get("name", "")), member_no, str(c.get("owner_agent", "")),
             str(c.get("region", "")), str(c.get("type", "")), int(bool(c.get("vip"))), now])
        conn.execute("DELETE FROM customer_numbers WHERE customer_id = ?", [customer_id])
        for number in c.get("numbers", ()):
            conn.execute("INSERT INTO customer_numbers (number, customer_id) VALUES (?, ?)"
                         " ON CONFLICT(number) DO UPDATE SET customer_id = excluded.customer_id",
                         [number, customer_id])
        conn.execute("DELETE FROM accounts WHERE customer_id = ?", [customer_id])
        for a in c.get("accounts", ()):
            conn.execute(
                "INSERT INTO accounts (id, customer_id, balance, amount_due, due_date, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " customer_id = excluded.customer_id, balance = excluded.balance,"
                " amount_due = excluded.amount_due, due_date = excluded.due_date,"
                " updated_at = excluded.updated_at",
                [str(a["id"]), customer_id, _decimal_text(a.get("balance")),
                 _decimal_text(a.get("amount_due")), str(a.get("due_date") or ""), now])


def delete_customers(conn: sqlite3.Connection, customer_ids: Iterable[str]) -> int:
    """Forget customers with their numbers and accounts; returns how many were cached."""
    gone = 0
    for customer_id in customer_ids:
        conn.execute("DELETE FROM customer_numbers WHERE customer_id = ?", [customer_id])
        conn.execute("DELETE FROM accounts WHERE customer_id = ?", [customer_id])
        gone += conn.execute("DELETE FROM customers WHERE id = ?", [customer_id]).rowcount
    return gone


def delete_customer_range(conn: sqlite3.Connection, after: str | None,
                          through: str | None) -> int:
    """Forget every customer with ``after < id <= through`` (None: open end), numbers and
    accounts included (also ones whose customer is already gone)."""
    where, params = _range("customer_id", after, through)
    conn.execute(f"DELETE FROM customer_numbers{where}", params)
    conn.execute(f"DELETE FROM accounts{where}", params)
    where, params = _range("id", after, through)
    return conn.execute(f"DELETE FROM customers{where}", params).rowcount


def _range(column: str, after: str | None, through: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    if after is not None:
        clauses.append(f"{column} > ?")
        params.append(after)
    if through is not None:
        clauses.append(f"{column} <= ?")
        params.append(through)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _decimal_text(value: Any) -> str:
    return "" if value is None else str(value)
