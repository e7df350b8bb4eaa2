"""The edge's cache of its branch's customers and accounts (ARCHITECTURE.md "Contracts").

HQ owns the data and pushes the branch's share (the sync issue); the edge reads it for member
verification in the IVR, self-service look-ups, VIP routing and dunning. Amounts are kept as
decimal strings: a balance read back to a bank's customer must never pass through a float.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping


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


def _decimal_text(value: Any) -> str:
    return "" if value is None else str(value)
