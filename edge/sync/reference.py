"""Downlink handlers for kinds ``customers`` and ``reference`` (HQ: ``aggregator.customers.push``).

The inbox (``edge.sync.inbox``) calls them inside its SQLite transaction, after it has checked
that the message's version is new for its (kind, scope); they check the body, write the store's
tables and return. A body that does not validate is refused as a whole with ``DownlinkRejected``
(the inbox rolls back and acks ``rejected`` with the reason), so the cache never holds half a
message. Unknown keys inside a customer are ignored: the CRM issue may add fields HQ sends before
this edge knows them.

Scopes:

- ``customers``/``share``, type ``customers.delta``: ``{"upserts": [customer…], "deletes":
  [id…]}``; type ``customers.snapshot``, and ``reference``/``prefixes``: one part of a whole table,
  ``{"snapshot", "part", "parts", "after", "through", "customers"|"rows"}``; the rows with
  ``after < key <= through`` are replaced by the part's (see ``aggregator.customers.push``)
- ``reference``/``calendar:<name>``: ``{"calendar": name, "days": [{"date","kind","name"}…]}``

The runtime notices new reference data by polling ``Store.reference_versions()``; nothing here
calls back into it (the inbox may run in another process).
"""
from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any, Mapping

from edge.hours import HolidayTable, HolidayTableError
from edge.store.customer_rows import delete_customer_range, delete_customers, write_customers
from edge.store.reference_rows import replace_calendar, replace_prefix_range
from edge.sync.inbox import DownlinkRejected, DownMessage, register

log = logging.getLogger(__name__)

SHARE = "share"      # deltas and snapshots in one scope: one order for both
CALENDAR_SCOPE = "calendar:"
PREFIX_COLUMNS = ["prefix", "region", "carrier"]
MAX_TEXT = 200
_AMOUNT = re.compile(r"-?\d+(\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PREFIX = re.compile(r"\d{3,8}")
_NUMBER = re.compile(r"\d{3,24}")


@register("customers")
def apply_customers(conn: sqlite3.Connection, message: DownMessage) -> None:
    body, now = message.body, message.ts
    if message.scope != SHARE:
        raise DownlinkRejected(f"scope: expected {SHARE!r}, got {message.scope!r}")
    if message.type == "customers.delta":
        upserts = [_customer(c, f"upserts[{i}]") for i, c in enumerate(_list(body, "upserts"))]
        deletes = _list(body, "deletes")
        for i, customer_id in enumerate(deletes):
            _text(customer_id, f"deletes[{i}]", required=True)
        write_customers(conn, upserts, now)
        gone = delete_customers(conn, deletes)
        log.info("customers delta v%s: %s written, %s deleted", message.version, len(upserts),
                 gone)
    elif message.type == "customers.snapshot":
        after, through = _part_range(body)
        customers = [_customer(c, f"customers[{i}]")
                     for i, c in enumerate(_list(body, "customers"))]
        for i, c in enumerate(customers):
            _in_range(c["id"], after, through, f"customers[{i}].id")
        gone = delete_customer_range(conn, after, through)
        write_customers(conn, customers, now)
        log.info("customers snapshot %s part %s/%s: %s replaced by %s", body.get("snapshot"),
                 body.get("part"), body.get("parts"), gone, len(customers))
    else:
        raise DownlinkRejected(f"type: expected customers.delta or customers.snapshot, got "
                               f"{message.type!r}")


@register("reference")
def apply_reference(conn: sqlite3.Connection, message: DownMessage) -> None:
    scope, body, version = message.scope, message.body, message.version
    if scope == "prefixes":
        after, through = _part_range(body)
        if body.get("columns", PREFIX_COLUMNS) != PREFIX_COLUMNS:
            raise DownlinkRejected(f"columns: expected {PREFIX_COLUMNS}, "
                                   f"got {body.get('columns')!r}")
        rows = [_prefix_row(r, f"rows[{i}]") for i, r in enumerate(_list(body, "rows"))]
        for i, row in enumerate(rows):
            _in_range(row[0], after, through, f"rows[{i}][0]")
        count = replace_prefix_range(conn, after, through, rows, version)
        log.info("号段 table v%s part %s/%s: %s prefixes", version, body.get("part"),
                 body.get("parts"), count)
    elif scope.startswith(CALENDAR_SCOPE):
        name = scope[len(CALENDAR_SCOPE):]
        if body.get("calendar") != name:
            raise DownlinkRejected(f"calendar: {body.get('calendar')!r} does not match scope "
                                   f"{scope!r}")
        days = _list(body, "days")
        try:
            rows = HolidayTable.from_rows(days).to_rows()
        except HolidayTableError as exc:
            raise DownlinkRejected(f"days{exc.path.removeprefix('rows')}: {exc.problem}") from None
        count = replace_calendar(conn, name, rows, version)
        log.info("calendar %r v%s: %s days", name, version, count)
    else:
        raise DownlinkRejected(f"scope: expected prefixes or calendar:<name>, got {scope!r}")


# --- checks -------------------------------------------------------------------------------------

def _customer(c: Any, path: str) -> dict[str, Any]:
    if not isinstance(c, Mapping):
        raise DownlinkRejected(f"{path}: expected an object, got {c!r:.80}")
    out = {"id": _text(c.get("id"), f"{path}.id", required=True),
           "name": _text(c.get("name", ""), f"{path}.name"),
           "member_no": _text(c.get("member_no"), f"{path}.member_no") or None,
           "owner_agent": _text(c.get("owner_agent", ""), f"{path}.owner_agent"),
           "region": _text(c.get("region", ""), f"{path}.region"),
           "type": _text(c.get("type", ""), f"{path}.type")}
    vip = c.get("vip", False)
    if vip not in (True, False, 0, 1):
        raise DownlinkRejected(f"{path}.vip: expected true or false, got {vip!r}")
    out["vip"] = bool(vip)
    numbers = c.get("numbers", [])
    if not isinstance(numbers, list) or not all(
            isinstance(n, str) and _NUMBER.fullmatch(n) for n in numbers):
        raise DownlinkRejected(f"{path}.numbers: expected a list of digit strings, got "
                               f"{numbers!r:.80}")
    out["numbers"] = numbers
    accounts = c.get("accounts", [])
    if not isinstance(accounts, list):
        raise DownlinkRejected(f"{path}.accounts: expected a list, got {accounts!r:.80}")
    out["accounts"] = [_account(a, f"{path}.accounts[{i}]") for i, a in enumerate(accounts)]
    return out


def _account(a: Any, path: str) -> dict[str, str]:
    if not isinstance(a, Mapping):
        raise DownlinkRejected(f"{path}: expected an object, got {a!r:.80}")
    out = {"id": _text(a.get("id"), f"{path}.id", required=True)}
    for key in ("balance", "amount_due"):
        value = a.get(key, "")
        if not isinstance(value, str) or (value and not _AMOUNT.fullmatch(value)):
            raise DownlinkRejected(f"{path}.{key}: expected decimal text like \"12.30\", "
                                   f"got {value!r}")
        out[key] = value
    due = a.get("due_date") or ""
    if not isinstance(due, str) or (due and not _DATE.fullmatch(due)):
        raise DownlinkRejected(f"{path}.due_date: expected YYYY-MM-DD, got {due!r}")
    out["due_date"] = due
    return out


def _prefix_row(row: Any, path: str) -> tuple[str, str, str]:
    if not isinstance(row, list) or len(row) != 3 or not all(isinstance(v, str) for v in row):
        raise DownlinkRejected(f"{path}: expected [prefix, region, carrier], got {row!r:.80}")
    if not _PREFIX.fullmatch(row[0]) or not row[1].strip():
        raise DownlinkRejected(f"{path}: expected 3-8 digits and a region, got {row!r:.80}")
    return row[0], row[1], row[2]


def _part_range(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    after, through = body.get("after"), body.get("through")
    for key, value in (("after", after), ("through", through)):
        if value is not None and not isinstance(value, str):
            raise DownlinkRejected(f"{key}: expected a key or null, got {value!r:.80}")
    if after is not None and through is not None and through <= after:
        raise DownlinkRejected(f"through: {through!r} is not after {after!r}")
    return after, through


def _in_range(key: str, after: str | None, through: str | None, path: str) -> None:
    if (after is not None and key <= after) or (through is not None and key > through):
        raise DownlinkRejected(f"{path}: {key!r} is outside this part ({after!r}, {through!r}]")


def _text(value: Any, path: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT or (required and not value):
        raise DownlinkRejected(f"{path}: expected {'non-empty ' if required else ''}text of at "
                               f"most {MAX_TEXT} characters, got {value!r:.80}")
    return value


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise DownlinkRejected(f"{key}: expected a list, got {value!r:.80}")
    return value
