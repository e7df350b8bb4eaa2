"""Holiday calendars at HQ: public holidays (节假日) and make-up working days (调休) by date.

Rows have the shape ``edge.hours`` reads (``HolidayTable.to_rows``/``from_rows``)::

    {"date": "2027-02-06", "kind": "holiday", "name": "春节"}
    {"date": "2027-02-14", "kind": "workday", "name": "春节"}

Calendar ``cn`` is the national table: the State Council publishes a year's schedule as a whole,
so a year is set as a whole (``set_year``), or seeded from the pinned chinese-calendar package for
the years it knows, and the edge takes every year HQ holds in place of the shipped one. Any other
name is a per-calendar override, matched by name to the edge's ``[[calendars]]`` entries.
"""
from __future__ import annotations

from typing import Any, Sequence

from aggregator.customers.errors import InvalidInput, NotFound
from aggregator.customers.queries import rows
from edge.hours import HolidayTable, HolidayTableError
MAX_NAME = 48
MAX_DAYS = 2000


def calendar_name(value: Any) -> str:
    """A calendar's name as the edge config spells it (Chinese allowed; no topic characters)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME \
            or any(c in value for c in "/+#\0"):
        raise InvalidInput(f"calendar: expected a name of 1-{MAX_NAME} characters without "
                           f"/ + #, got {value!r}")
    return value.strip()


def check_days(days: Any, path: str = "days") -> list[dict[str, str]]:
    """Validated rows in date order; dates, kinds (holiday|workday) and duplicates checked by
    ``HolidayTable.from_rows`` so HQ refuses exactly what an edge would."""
    if not isinstance(days, list):
        raise InvalidInput(f"{path}: expected a list of {{date, kind, name}}, got {days!r}")
    if len(days) > MAX_DAYS:
        raise InvalidInput(f"{path}: at most {MAX_DAYS} days at once")
    try:
        table = HolidayTable.from_rows(days)
    except HolidayTableError as exc:
        raise InvalidInput(f"{path}{exc.path.removeprefix('rows')}: {exc.problem}") from None
    return table.to_rows()


def year_of(value: Any) -> int:
    try:
        year = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"year: expected a year like 2027, got {value!r}") from None
    if not 1990 <= year <= 2200:
        raise InvalidInput(f"year: {year} is out of range")
    return year


def set_year(tx: Any, calendar: str, year: int, days: Sequence[dict[str, str]],
             now: float) -> int:
    """Replace the calendar's days of ``year`` with ``days`` (all of which must be in it)."""
    for i, day in enumerate(days):
        if not day["date"].startswith(f"{year}-"):
            raise InvalidInput(f"days[{i}].date: {day['date']} is not in {year}")
    tx.execute("DELETE FROM calendar_days WHERE calendar = ? AND day >= ? AND day <= ?",
               (calendar, f"{year}-01-01", f"{year}-12-31"))
    upsert_days(tx, calendar, days, now)
    return len(days)


def seed_year(tx: Any, calendar: str, year: int, now: float, names: str = "zh") -> int:
    """Set ``year`` from the pinned chinese-calendar package (names in Chinese by default)."""
    table = HolidayTable.from_chinese_calendar(names)
    if not table.covers(year):
        known = table.years()
        raise InvalidInput(f"year: the pinned chinese-calendar knows {known[0]}-{known[-1]}, not "
                           f"{year}; set that year's days by hand")
    days = [row for row in table.to_rows() if row["date"].startswith(f"{year}-")]
    return set_year(tx, calendar, year, days, now)


def upsert_days(tx: Any, calendar: str, days: Sequence[dict[str, str]], now: float) -> None:
    for day in days:
        tx.execute("INSERT INTO calendar_days (calendar, day, kind, name, updated_at)"
                   " VALUES (?, ?, ?, ?, ?) ON CONFLICT (calendar, day) DO UPDATE SET"
                   " kind = excluded.kind, name = excluded.name, updated_at = excluded.updated_at",
                   (calendar, day["date"], day["kind"], day["name"], now))


def delete_day(tx: Any, calendar: str, day: str) -> None:
    if tx.execute("DELETE FROM calendar_days WHERE calendar = ? AND day = ?",
                  (calendar, day)).rowcount != 1:
        raise NotFound(f"{calendar} has no entry on {day}")


def days_of(src: Any, calendar: str, year: int | None = None) -> list[dict[str, str]]:
    sql, params = "SELECT day, kind, name FROM calendar_days WHERE calendar = ?", [calendar]
    if year is not None:
        sql += " AND day >= ? AND day <= ?"
        params += [f"{year}-01-01", f"{year}-12-31"]
    return [{"date": d, "kind": k, "name": n} for d, k, n in rows(src, sql + " ORDER BY day",
                                                                   params)]


def summary(src: Any) -> list[dict[str, Any]]:
    """Each calendar with how many days it holds and its first and last date."""
    return [{"calendar": c, "days": int(n), "first": first, "last": last}
            for c, n, first, last in rows(src, "SELECT calendar, count(*), min(day), max(day)"
                                               " FROM calendar_days GROUP BY calendar"
                                               " ORDER BY calendar")]
