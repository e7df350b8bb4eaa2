"""The ``[[calendars]]`` tables of the configuration, read into ``WorkCalendar``s.

Every key, with its default::

    [[calendars]]
    name = "branch"                        # queues refer to it by this name
    timezone = "Asia/Shanghai"             # default: the edge's [edge].timezone
    mon = ["08:30-12:00", "13:30-17:30"]   # 12:00-13:30 is a break (lunch)
    tue = ["08:30-12:00", "13:30-17:30"]   # wed, thu, fri, sat, sun alike; absent: closed
    makeup_day = "mon"                     # a make-up working day (调休) keeps Monday's hours
    # makeup_hours = ["09:00-15:00"]       # ... or hours of its own (not with makeup_day)
    holidays = "cn"                        # "cn": China's table (chinese-calendar); "none"
    extra_holidays = [{date = 2026-12-24, name = "Bank anniversary"}]
    extra_workdays = [{date = 2026-12-27, name = "Bank anniversary"}]    # a Saturday or Sunday
    removed_holidays = [2026-10-07]        # a public holiday this branch works through

Dates may be TOML dates (bare ``2026-12-24``) or "YYYY-MM-DD" strings. The branch's edits are
kept on the calendar (``local_edits``) so a holiday table pushed by HQ later keeps them.
"""
from __future__ import annotations

from datetime import date
from types import MappingProxyType
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.config_reader import TableReader, join_path
from edge.errors import ConfigError
from edge.hours.calendar import WEEKDAYS, Span, WorkCalendar
from edge.hours.holidays import HOLIDAY, REMOVED, WORKDAY, HolidayTable, as_date

HOLIDAY_SOURCES = ("cn", "none")
WEEKEND = (5, 6)


def parse_calendars(items: Any, default_tz: str,
                    path_prefix: str = "calendars") -> dict[str, WorkCalendar]:
    """Read an array of calendar tables; names must be unique."""
    if not isinstance(items, list):
        raise ConfigError(path_prefix, f"expected an array of tables, got {items!r}")
    calendars: dict[str, WorkCalendar] = {}
    for i, item in enumerate(items):
        table = TableReader(item, join_path(path_prefix, i))
        calendar = read_calendar(table, default_tz)
        if calendar.name in calendars:
            raise table.error("name", f"duplicate {calendar.name!r}")
        calendars[calendar.name] = calendar
    return calendars


def read_calendar(t: TableReader, default_tz: str) -> WorkCalendar:
    """One calendar table (also usable with ``TableReader.each``)."""
    name = t.text("name")
    tz = _read_zone(t, default_tz)
    weekly = {day: _read_spans(t, key) for day, key in enumerate(WEEKDAYS)}
    if not any(weekly.values()):
        raise ConfigError(t.path, "no working hours on any day: give spans for mon..sun")
    source = t.text("holidays", "cn", choices=HOLIDAY_SOURCES)
    base = HolidayTable.from_chinese_calendar() if source == "cn" else HolidayTable.none()
    edits = _read_edits(t, base)
    holidays = base.merged(edits)
    makeup_hours, makeup_day = _read_makeup(t, weekly, has_makeup_days=bool(holidays.workdays))
    t.finish()
    return WorkCalendar(name, weekly, holidays, makeup_hours, tz, makeup_day, edits,
                        national=source == "cn")


def _read_zone(t: TableReader, default_tz: str) -> ZoneInfo:
    name = t.text("timezone", default_tz)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise t.error("timezone", f"unknown time zone {name!r}") from exc


def _read_spans(t: TableReader, key: str) -> tuple[Span, ...]:
    value = t.raw(key, [])
    if not isinstance(value, list):
        raise t.error(key, f'expected a list of "HH:MM-HH:MM" spans, got {value!r}')
    spans: list[tuple[Span, str]] = []
    for j, text in enumerate(value):
        path = join_path(t.at(key), j)
        try:
            span = Span.parse(text)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from exc
        for other, _ in spans:
            if span.start < other.end and other.start < span.end:
                raise ConfigError(path, f'"{span}" overlaps "{other}"')
        spans.append((span, path))
    return tuple(sorted(span for span, _ in spans))


def _read_makeup(t: TableReader, weekly: Mapping[int, tuple[Span, ...]],
                 has_makeup_days: bool) -> tuple[tuple[Span, ...] | None, int]:
    if t.has("makeup_hours"):
        if t.has("makeup_day"):
            raise t.error("makeup_hours", "give either makeup_day or makeup_hours, not both")
        return _read_spans(t, "makeup_hours"), 0
    key = t.text("makeup_day", "mon", choices=WEEKDAYS[:5])
    day = WEEKDAYS.index(key)
    if has_makeup_days and not weekly[day]:
        raise t.error("makeup_day", f"{key} has no hours, so make-up working days (调休) would "
                                    "be closed; name a working weekday or give makeup_hours")
    return None, day


def _read_edits(t: TableReader, base: HolidayTable) -> tuple[Mapping[str, str], ...]:
    """The branch's edits as override rows: removals first, then added holidays and make-up
    days. A date may appear once across the three lists, since two entries would contradict."""
    edits: list[Mapping[str, str]] = []
    seen: dict[date, str] = {}

    def add(day: date, kind: str, name: str, path: str) -> None:
        if day in seen:
            raise ConfigError(path, f"{day} is already listed at {seen[day]}")
        seen[day] = path
        edits.append(MappingProxyType({"date": day.isoformat(), "kind": kind, "name": name}))

    removed = t.raw("removed_holidays", [])
    if not isinstance(removed, list):
        raise t.error("removed_holidays", f"expected a list of dates, got {removed!r}")
    for i, value in enumerate(removed):
        path = join_path(t.at("removed_holidays"), i)
        day = _date(value, path)
        if not base.is_holiday(day):
            raise ConfigError(path, f"{day} is not a public holiday in the table")
        add(day, REMOVED, "", path)
    for entry in t.tables("extra_holidays"):
        add(_entry_date(entry), HOLIDAY, entry.text("name"), entry.at("date"))
        entry.finish()
    for entry in t.tables("extra_workdays"):
        day = _entry_date(entry)
        if day.weekday() not in WEEKEND:
            raise entry.error("date", f"{day} is a {day.strftime('%A')}, already a working day; "
                                      "a make-up working day is a Saturday or Sunday")
        add(day, WORKDAY, entry.text("name", "", allow_empty=True), entry.at("date"))
        entry.finish()
    return tuple(edits)


def _entry_date(entry: TableReader) -> date:
    return _date(entry.raw("date"), entry.at("date"))


def _date(value: Any, path: str) -> date:
    day = as_date(value)
    if day is None:
        raise ConfigError(path, f"expected a date YYYY-MM-DD, got {value!r}")
    return day
