"""What HQ sends down for customers and reference data, and how it is cut to size.

Kinds and scopes (``aggregator.downlink.queue.enqueue``; the edge side is ``edge.sync.reference``):

- ``customers`` / ``share``, type ``customers.delta``: ``{"upserts": [customer…], "deletes":
  [id…]}``. Enqueued in the same transaction as the change, for the customer's branch edge; a
  customer moved to another branch is a delete for the old edge and an upsert for the new one.
  An upsert is the whole customer (numbers and accounts included), so it never depends on what
  the edge had before.
- ``customers`` / ``share``, type ``customers.snapshot``, and ``reference`` / ``prefixes``
  (``reference.prefixes``): a whole table, on request. Big tables go in *parts*, each a message of
  its own within ``MAX_BODY_BYTES`` that replaces one key range::

      {"snapshot": "01J…", "part": 2, "parts": 3, "after": "c0500", "through": "c0999",
       "customers": [...]}

  The edge deletes its rows with ``after < key <= through`` (``null`` = open end) and writes the
  part's rows. Parts are sorted by key and their ranges tile the whole key space, so the edge's
  cache is consistent after every part (old rows in ranges still to come, new ones in ranges
  done) and exact after the last, with no staging table; a one-part snapshot has both ends open.
- ``reference`` / ``calendar:<name>`` (``reference.calendar``): ``{"calendar": name, "days":
  [{"date", "kind", "name"}…]}``, the calendar's every day (a few dozen per year), to every edge.

Deltas and snapshots share one scope on purpose: versions (and so the dispatcher's order and the
edge's) are per scope, and a snapshot must never overtake a delta queued after it, nor the other
way round, or the edge would end with the older state of a customer. A message the edge skipped
because a newer one overtook it is queued again by ``aggregator.customers.projections``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ulid import ULID

from aggregator.customers import queries
from aggregator.customers.errors import InvalidInput
from aggregator.downlink.queue import MAX_BODY_BYTES, enqueue
from aggregator.envelope import DownMessage

CUSTOMERS, REFERENCE = "customers", "reference"
SHARE, PREFIXES = "share", "prefixes"
DELTA_TYPE, SNAPSHOT_TYPE = "customers.delta", "customers.snapshot"
CALENDAR_SCOPE = "calendar:"
EDGE_FIELDS = ("id", "name", "member_no", "owner_agent", "region", "type", "vip")
ACCOUNT_FIELDS = ("id", "balance", "amount_due", "due_date")
PREFIX_COLUMNS = ("prefix", "region", "carrier")
# room for the part's own keys (snapshot id, part numbers, range ends) within the queue's limit
PART_BUDGET = MAX_BODY_BYTES - 2048
SNAPSHOT_PAGE = 1000


def edge_customer(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an HQ customer record its edge caches."""
    out = {key: record[key] for key in EDGE_FIELDS}
    out["vip"] = bool(out["vip"])
    out["numbers"] = list(record["numbers"])
    out["accounts"] = [{key: account[key] for key in ACCOUNT_FIELDS}
                       for account in record["accounts"]]
    return out


# --- what an admin asks for -------------------------------------------------------------------

@dataclass(frozen=True)
class PushRequest:
    """``POST /push``: which edges (None: every known one) get what."""
    edges: tuple[str, ...] | None = None
    prefixes: bool = True
    calendars: bool | tuple[str, ...] = True
    snapshot: bool = True

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "PushRequest":
        unknown = sorted(set(body) - {"edges", "prefixes", "calendars", "snapshot"})
        if unknown:
            raise InvalidInput(f"{unknown[0]}: unknown key (edges, prefixes, calendars, snapshot)")
        edges = body.get("edges")
        if edges is not None and (not isinstance(edges, list) or not all(
                isinstance(e, str) and e for e in edges)):
            raise InvalidInput(f"edges: expected a list of edge ids, got {edges!r}")
        calendars = body.get("calendars", True)
        if not isinstance(calendars, bool) and not (isinstance(calendars, list) and all(
                isinstance(c, str) and c for c in calendars)):
            raise InvalidInput(f"calendars: true, false or a list of names, got {calendars!r}")
        flags = {}
        for key in ("prefixes", "snapshot"):
            flags[key] = body.get(key, True)
            if not isinstance(flags[key], bool):
                raise InvalidInput(f"{key}: true or false, got {flags[key]!r}")
        return cls(tuple(edges) if edges is not None else None, flags["prefixes"],
                   calendars if isinstance(calendars, bool) else tuple(calendars),
                   flags["snapshot"])


def push(tx: Any, request: PushRequest, *, created_by: str = "",
         now: float | None = None) -> dict[str, Any]:
    """Queue what ``request`` asks for; returns the edges and message counts per scope."""
    edges = list(request.edges) if request.edges is not None else known_edges(tx)
    counts: dict[str, int] = {}

    def count(messages: list[DownMessage]) -> None:
        for m in messages:
            counts[f"{m.kind}/{m.scope}"] = counts.get(f"{m.kind}/{m.scope}", 0) + 1

    if request.prefixes:
        count(enqueue_prefixes(tx, edges, created_by=created_by, now=now))
    names = calendar_names(tx) if request.calendars is True else list(request.calendars or ())
    for name in names:
        count(enqueue_calendar(tx, name, edges, created_by=created_by, now=now))
    if request.snapshot:
        for edge in edges:
            count(enqueue_snapshot(tx, edge, created_by=created_by, now=now))
    return {"edges": edges, "messages": sum(counts.values()), "by_scope": counts}


def known_edges(tx: Any) -> list[str]:
    """Every edge of the fleet that is enrolled or enrolling (not disabled or removed)."""
    return [r[0] for r in queries.rows(tx, "SELECT id FROM edges WHERE state IN"
                                           " ('active', 'enrolling') ORDER BY id")]


# --- customers ----------------------------------------------------------------------------------

def customer_changed(tx: Any, customer_id: str, old_edge: str | None, *, created_by: str = "",
                     now: float | None = None) -> list[DownMessage]:
    """After a write to a customer (or its numbers/accounts), in the same transaction: tell the
    edges concerned. ``old_edge`` is the branch that held the customer before the write."""
    record = queries.get_customer(tx, customer_id)
    new_edge = record["edge"] if record else None
    sent: list[DownMessage] = []
    if old_edge and old_edge != new_edge:
        sent += enqueue_delta(tx, old_edge, deletes=[customer_id], created_by=created_by, now=now)
    if record is not None and new_edge:
        sent += enqueue_delta(tx, new_edge, upserts=[edge_customer(record)],
                              created_by=created_by, now=now)
    return sent


def enqueue_delta(tx: Any, edge: str, upserts: Sequence[Mapping[str, Any]] = (),
                  deletes: Sequence[str] = (), *, created_by: str = "",
                  now: float | None = None) -> list[DownMessage]:
    """One message per ``PART_BUDGET`` of upserts and deletes (usually one), in order."""
    items = [("u", dict(c)) for c in upserts] + [("d", d) for d in deletes]
    messages = []
    for chunk in chunks(items, _encoded_size):
        body = {"upserts": [c for k, c in chunk if k == "u"],
                "deletes": [c for k, c in chunk if k == "d"]}
        messages.append(enqueue(tx, edge, CUSTOMERS, SHARE, DELTA_TYPE, body,
                                created_by=created_by, now=now))
    return messages


def enqueue_snapshot(tx: Any, edge: str, *, after: str | None = None,
                     through: str | None = None, created_by: str = "",
                     now: float | None = None) -> list[DownMessage]:
    """The edge's share, replacing its cache, in as many parts as it takes; ``after`` and
    ``through`` limit it to one key range (a part the edge skipped, sent again)."""
    items = [(r["id"], edge_customer(r)) for r in _all_customers_of(tx, edge)
             if _within(r["id"], after, through)]
    return _enqueue_parts(tx, edge, CUSTOMERS, SHARE, SNAPSHOT_TYPE, "customers",
                          items, {}, created_by, now, after, through)


def enqueue_current(tx: Any, edge: str, customer_ids: Iterable[str], *, created_by: str = "",
                    now: float | None = None) -> list[DownMessage]:
    """A delta with the current state of ``customer_ids`` as ``edge`` should cache it: an upsert
    for each one still in its share, a delete for the others."""
    ids = sorted(set(customer_ids))
    upserts = [edge_customer(r) for r in queries.customers_by_ids(tx, ids) if r["edge"] == edge]
    kept = {c["id"] for c in upserts}
    return enqueue_delta(tx, edge, upserts, [i for i in ids if i not in kept],
                         created_by=created_by, now=now)


def _all_customers_of(tx: Any, edge: str) -> Iterator[dict[str, Any]]:
    after = ""
    while True:
        page = queries.list_customers(tx, edge=edge, after=after, limit=SNAPSHOT_PAGE)
        yield from page
        if len(page) < SNAPSHOT_PAGE:
            return
        after = page[-1]["id"]


# --- reference data -----------------------------------------------------------------------------

def enqueue_prefixes(tx: Any, edges: Iterable[str], *, after: str | None = None,
                     through: str | None = None, created_by: str = "",
                     now: float | None = None) -> list[DownMessage]:
    """The whole 号段 table to each edge (rows as ``[prefix, region, carrier]``), or the key
    range ``after < prefix <= through`` of it."""
    rows = queries.rows(tx, "SELECT prefix, region, carrier FROM number_prefixes ORDER BY prefix")
    items = [(prefix, [prefix, region, carrier]) for prefix, region, carrier in rows
             if _within(prefix, after, through)]
    sent: list[DownMessage] = []
    for edge in edges:
        sent += _enqueue_parts(tx, edge, REFERENCE, PREFIXES, "reference.prefixes", "rows",
                               items, {"columns": list(PREFIX_COLUMNS)}, created_by, now,
                               after, through)
    return sent


def enqueue_calendar(tx: Any, calendar: str, edges: Iterable[str], *, created_by: str = "",
                     now: float | None = None) -> list[DownMessage]:
    """Every day of one calendar to each edge, as one message (a calendar is small)."""
    days = [{"date": day, "kind": kind, "name": name} for day, kind, name in queries.rows(
        tx, "SELECT day, kind, name FROM calendar_days WHERE calendar = ? ORDER BY day",
        (calendar,))]
    body = {"calendar": calendar, "days": days}
    return [enqueue(tx, edge, REFERENCE, CALENDAR_SCOPE + calendar, "reference.calendar", body,
                    created_by=created_by, now=now) for edge in edges]


def calendar_names(tx: Any) -> list[str]:
    return [r[0] for r in queries.rows(tx, "SELECT DISTINCT calendar FROM calendar_days"
                                           " ORDER BY calendar")]


# --- parts --------------------------------------------------------------------------------------

def _enqueue_parts(tx: Any, edge: str, kind: str, scope: str, type_: str, field: str,
                   items: list[tuple[str, Any]], extra: Mapping[str, Any], created_by: str,
                   now: float | None, after: str | None = None,
                   through: str | None = None) -> list[DownMessage]:
    """``items`` (key, row) of the range (after, through] in parts that tile that range."""
    snapshot = str(ULID())
    # code-point order is the edge's SQLite (BINARY) order, whatever PostgreSQL's collation is
    items = sorted(items, key=lambda item: item[0])
    parts = list(chunks(items, _encoded_size)) or [[]]
    messages = []
    for number, part in enumerate(parts, start=1):
        end = part[-1][0] if number < len(parts) else through
        body = {"snapshot": snapshot, "part": number, "parts": len(parts), "after": after,
                "through": end, **extra, field: [item for _, item in part]}
        messages.append(enqueue(tx, edge, kind, scope, type_, body, created_by=created_by,
                                now=now))
        after = end
    return messages


def _within(key: str, after: str | None, through: str | None) -> bool:
    """``after < key <= through`` in code-point order (None: open end)."""
    return (after is None or key > after) and (through is None or key <= through)


def chunks(items: Sequence[tuple[Any, Any]], size_of: Any,
           budget: int = PART_BUDGET) -> Iterator[list[tuple[Any, Any]]]:
    """Consecutive runs of ``items`` whose encoded sizes add up to at most ``budget`` bytes
    (an item bigger than the budget alone still goes, alone, and the queue will refuse it)."""
    current: list[tuple[Any, Any]] = []
    used = 0
    for item in items:
        size = size_of(item[1]) + 1
        if current and used + size > budget:
            yield current
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        yield current


def _encoded_size(value: Any) -> int:
    """Bytes of ``value`` as the queue encodes it (compact JSON, UTF-8)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
