"""HQ's reference data: the 号段 prefix table and calendar days.

``edge.sync.reference`` writes them inside the inbox's transaction (the functions here that
take a ``sqlite3.Connection``); the runtime reads them through ``ReferenceRows`` at start and
again whenever ``reference_versions()`` changes, and lays them over the shipped data
(``RegionResolver.with_pushed``, ``edge.hours.with_pushed_days``). The store only keeps rows;
what they mean is decided there.

Rows::

    number_prefixes  ("1660755", "广东/深圳", "中国联通", version)
    calendar_days    ("cn", "2027-02-06", "holiday", "春节", version)
"""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Sequence


class ReferenceRows:
    """Mixed into ``Store``: uses its ``_guard``, ``_clock`` and ``_outbox_written``."""

    def pushed_prefixes(self) -> list[tuple[str, str, str]]:
        """HQ's 号段 table as ``(prefix, region, carrier)``, by prefix; empty until HQ pushes."""
        with self._guard("read number prefixes") as db:  # type: ignore[attr-defined]
            return [tuple(r) for r in db.execute(
                "SELECT prefix, region, carrier FROM number_prefixes ORDER BY prefix").fetchall()]

    def pushed_calendar_days(self) -> dict[str, list[dict[str, str]]]:
        """HQ's calendar days per calendar name, as ``HolidayTable`` rows in date order."""
        days: dict[str, list[dict[str, str]]] = {}
        with self._guard("read calendar days") as db:  # type: ignore[attr-defined]
            for calendar, day, kind, name in db.execute(
                    "SELECT calendar, day, kind, name FROM calendar_days"
                    " ORDER BY calendar, day").fetchall():
                days.setdefault(calendar, []).append({"date": day, "kind": kind, "name": name})
        return days

    def reference_versions(self) -> dict[str, int]:
        """The applied version of each ``reference`` scope (``prefixes``, ``calendar:cn``…):
        poll it and re-read the rows when it changes."""
        with self._guard("read reference versions") as db:  # type: ignore[attr-defined]
            return {scope: int(version) for scope, version in db.execute(
                "SELECT scope, version FROM downlink_applied WHERE kind = 'reference'"
                " ORDER BY scope").fetchall()}


# --- HQ's pushes, inside the inbox's transaction ------------------------------------------------

def replace_prefix_range(conn: sqlite3.Connection, after: str | None, through: str | None,
                         rows: Iterable[Sequence[str]], version: int) -> int:
    """Prefixes with ``after < prefix <= through`` (None: open end) become exactly ``rows``."""
    clauses, params = [], []
    if after is not None:
        clauses.append("prefix > ?")
        params.append(after)
    if through is not None:
        clauses.append("prefix <= ?")
        params.append(through)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    conn.execute(f"DELETE FROM number_prefixes{where}", params)
    rows = [(prefix, region, carrier, version) for prefix, region, carrier in rows]
    conn.executemany("INSERT INTO number_prefixes (prefix, region, carrier, version)"
                     " VALUES (?, ?, ?, ?) ON CONFLICT(prefix) DO UPDATE SET"
                     " region = excluded.region, carrier = excluded.carrier,"
                     " version = excluded.version", rows)
    return len(rows)


def replace_calendar(conn: sqlite3.Connection, calendar: str,
                     days: Iterable[dict[str, Any]], version: int) -> int:
    """The calendar's days become exactly ``days`` (rows of ``date``, ``kind``, ``name``)."""
    conn.execute("DELETE FROM calendar_days WHERE calendar = ?", [calendar])
    rows = [(calendar, d["date"], d["kind"], d.get("name", ""), version) for d in days]
    conn.executemany("INSERT INTO calendar_days (calendar, day, kind, name, version)"
                     " VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)
