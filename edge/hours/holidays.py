"""China's public holidays (节假日) and make-up working days (调休) as data.

The State Council publishes each year's table late in the previous year, and an edge box may be
offline when it does, so the table is data the box keeps, never code: it is seeded from the pinned
``chinese-calendar`` package, kept by the store as rows, edited at HQ and pushed over sync, and a
branch may lay its own edits on top (a bank's own day off, a holiday it works through).

A table *covers* the years whose official schedule it holds. For a year it does not cover the
calendar can only fall back to weekends off and weekdays on, which is wrong around every holiday,
so ``covers(year)`` lets the caller log a warning until HQ pushes that year's schedule. A table
that makes no claim about the national schedule (``HolidayTable.none()``, for a queue that ignores
it) covers every year: there is nothing missing to warn about.

Rows, the form the store keeps and HQ pushes::

    {"date": "2026-10-01", "kind": "holiday", "name": "National Day"}
    {"date": "2026-10-10", "kind": "workday", "name": "National Day"}   # a Saturday worked
    {"date": "2026-10-08", "kind": "removed", "name": ""}               # overrides only
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import chinese_calendar

from edge.errors import EdgeError

HOLIDAY = "holiday"
WORKDAY = "workday"
REMOVED = "removed"
ROW_KINDS = (HOLIDAY, WORKDAY)
OVERRIDE_KINDS = (HOLIDAY, WORKDAY, REMOVED)
NAME_LANGUAGES = ("en", "zh")


class HolidayTableError(EdgeError):
    """Rows (from the store, from HQ or from local edits) that do not make a table.

    The message starts with the row's position, e.g. ``rows[3].date: expected YYYY-MM-DD``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class HolidayTable:
    """Days off (``holidays``) and make-up working days (``workdays``), each with a holiday name.

    A date is in at most one of the two. ``covered`` holds the years whose official schedule the
    table holds; ``None`` means the table makes no claim about the national schedule.
    """
    holidays: Mapping[date, str]
    workdays: Mapping[date, str]
    covered: frozenset[int] | None = None

    def __post_init__(self) -> None:
        holidays, workdays = dict(self.holidays), dict(self.workdays)
        for day in (*holidays, *workdays):
            if isinstance(day, datetime) or not isinstance(day, date):
                raise TypeError(f"a holiday table is keyed by date, got {day!r}")
        both = sorted(set(holidays) & set(workdays))
        if both:
            raise ValueError(f"{both[0]} is both a holiday and a make-up working day")
        object.__setattr__(self, "holidays", MappingProxyType(holidays))
        object.__setattr__(self, "workdays", MappingProxyType(workdays))
        if self.covered is not None:
            object.__setattr__(self, "covered", frozenset(self.covered))

    # --- building ----------------------------------------------------------------------------

    @classmethod
    def none(cls) -> HolidayTable:
        """No national schedule at all: every day follows the weekly hours."""
        return cls({}, {}, None)

    @classmethod
    def from_chinese_calendar(cls, names: str = "en") -> HolidayTable:
        """The schedule shipped in the pinned ``chinese-calendar`` package, whatever years it has.

        ``names="en"`` keeps the package's names ("National Day"), ``"zh"`` gives 国庆节.
        """
        if names not in NAME_LANGUAGES:
            raise ValueError(f"names must be one of {', '.join(NAME_LANGUAGES)}, got {names!r}")
        return _chinese_calendar_table(names)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]],
                  covered: Iterable[int] | None = None) -> HolidayTable:
        """The table ``to_rows()`` wrote. Unless given, ``covered`` is every year a row names,
        because a year's official schedule always has holidays in it."""
        holidays: dict[date, str] = {}
        workdays: dict[date, str] = {}
        for i, row in enumerate(rows):
            day, kind, name = _read_row(row, f"rows[{i}]", ROW_KINDS)
            if day in holidays or day in workdays:
                raise HolidayTableError(f"rows[{i}].date", f"{day} is listed twice")
            (holidays if kind == HOLIDAY else workdays)[day] = name
        if covered is None:
            covered = {day.year for day in (*holidays, *workdays)}
        return cls(holidays, workdays, frozenset(covered))

    def to_rows(self) -> list[dict[str, str]]:
        """Every entry as a plain dict, in date order (for the store and for HQ)."""
        entries = [(day, HOLIDAY, name) for day, name in self.holidays.items()]
        entries += [(day, WORKDAY, name) for day, name in self.workdays.items()]
        return [{"date": day.isoformat(), "kind": kind, "name": name}
                for day, kind, name in sorted(entries)]

    def merged(self, overrides: Iterable[Mapping[str, Any]]) -> HolidayTable:
        """This table with local edits laid on top; for one date, the later entry wins.

        Each override is a row whose kind is ``holiday`` (a day off), ``workday`` (a make-up
        working day) or ``removed`` (an ordinary day again, e.g. a holiday the branch works).
        The covered years stay those of this table: a branch's edits are not a national schedule.
        """
        holidays, workdays = dict(self.holidays), dict(self.workdays)
        for i, row in enumerate(overrides):
            day, kind, name = _read_row(row, f"overrides[{i}]", OVERRIDE_KINDS)
            holidays.pop(day, None)
            workdays.pop(day, None)
            if kind == HOLIDAY:
                holidays[day] = name
            elif kind == WORKDAY:
                workdays[day] = name
        return HolidayTable(holidays, workdays, self.covered)

    # --- asking ------------------------------------------------------------------------------

    def is_holiday(self, day: date) -> bool:
        return day in self.holidays

    def is_makeup_workday(self, day: date) -> bool:
        return day in self.workdays

    def name(self, day: date) -> str:
        """The holiday's name, or for a make-up working day the holiday it makes up for; else ""."""
        return self.holidays.get(day) or self.workdays.get(day) or ""

    def years(self) -> tuple[int, ...]:
        """The years whose official schedule the table holds (none for ``HolidayTable.none()``)."""
        return tuple(sorted(self.covered or ()))

    def covers(self, year: int) -> bool:
        """False when the table has no schedule for ``year``: the calendar then treats weekends as
        days off and weekdays as working days, and the caller should log a warning."""
        return self.covered is None or year in self.covered


@cache
def _chinese_calendar_table(names: str) -> HolidayTable:
    def named(english: str) -> str:
        return chinese_calendar.Holiday(english).chinese if names == "zh" else english

    holidays = {day: named(name) for day, name in chinese_calendar.holidays.items()}
    workdays = {day: named(name) for day, name in chinese_calendar.workdays.items()}
    first, last = min(holidays).year, max(holidays).year
    return HolidayTable(holidays, workdays, frozenset(range(first, last + 1)))


def _read_row(row: Any, path: str, kinds: tuple[str, ...]) -> tuple[date, str, str]:
    if not isinstance(row, Mapping):
        raise HolidayTableError(path, f"expected a table with date, kind and name, got {row!r}")
    for key in row:
        if key not in ("date", "kind", "name"):
            raise HolidayTableError(f"{path}.{key}", "unknown key")
    kind = row.get("kind")
    if kind not in kinds:
        raise HolidayTableError(f"{path}.kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
    name = row.get("name", "")
    if not isinstance(name, str):
        raise HolidayTableError(f"{path}.name", f"expected a string, got {name!r}")
    day = as_date(row.get("date"))
    if day is None:
        raise HolidayTableError(f"{path}.date",
                                f"expected a date YYYY-MM-DD, got {row.get('date')!r}")
    return day, kind, name


def as_date(value: Any) -> date | None:
    """A ``date`` (TOML writes them bare: ``2026-10-08``) or a "YYYY-MM-DD" string; else None."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:  # fromisoformat also takes "20261001"
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None
