"""One queue's working hours (作息时间): weekly spans, breaks, public holidays, make-up days (调休).

``period_at(ts)`` tells which welcome prompt (or out-of-hours action) applies at an instant, and
``next_change(ts)`` when that answer changes next, so the core can set one timer instead of
polling. Both are pure: the instant comes from the caller's clock.

The rules for a local date, in order:

1. a public holiday is ``"holiday"`` all day, labelled with the holiday's name, even on a weekday;
2. a make-up working day (a weekend day the State Council makes a working day) has
   ``makeup_hours`` if set, else the hours of the weekday ``makeup_day`` (0 = Monday, the default),
   because a make-up Saturday "works as a Monday" in most branches' rosters;
3. any other day has its weekday's spans; a weekday without spans is closed.

Within a day's hours an instant inside a span is ``"open"``, one between the first span's start
and the last span's end (lunch) is ``"break"``, anything else ``"closed"``.

Spans are local wall-clock times, so all arithmetic goes through the zone (zoneinfo) and never
adds 24 hours to a timestamp: Asia/Shanghai has no daylight saving, but an edge abroad might.
A span never crosses midnight; a night shift is written as two (``"22:00-24:00"`` on one day,
``"00:00-06:00"`` on the next).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, Iterator, Mapping
from zoneinfo import ZoneInfo

from edge.hours.holidays import HolidayTable

OPEN = "open"
BREAK = "break"
CLOSED = "closed"
HOLIDAY = "holiday"
PERIOD_KINDS = (OPEN, BREAK, CLOSED, HOLIDAY)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 400  # a long holiday plus a year: more than any real calendar stays unchanged
_DAY_S = 86_400
_OFFSET_PROBE_S = 6 * 3600  # zones change their offset at most once in six hours
_SPAN = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


@dataclass(frozen=True, order=True)
class Span:
    """Local opening time in minutes after midnight, ``start`` < ``end`` <= 1440 ("24:00")."""
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= 1440:
            raise ValueError(f"a span runs from 00:00 to 24:00 and ends after it starts: {self}")

    @classmethod
    def parse(cls, text: str) -> Span:
        """``"08:30-12:00"``; a ValueError says what is wrong, in words for the config file."""
        match = _SPAN.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            shown = f'"{text}"' if isinstance(text, str) else repr(text)
            raise ValueError(f'expected "HH:MM-HH:MM", got {shown}')
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f'"{text}" is not a time of day (00:00 to 24:00)')
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(f'"{text}" must end after it starts (a span cannot cross midnight)')
        return cls(start, end)

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class Period:
    """``kind`` is open, break, closed or holiday; ``label`` is the holiday's name, else ""."""
    kind: str
    label: str = ""


@dataclass(frozen=True)
class WorkCalendar:
    """A named calendar for one or more queues.

    ``weekly`` maps weekday (0 = Monday) to its spans; a missing weekday is closed.
    ``local_edits`` are the override rows already merged into ``holidays`` and ``national`` says
    whether the calendar follows the national table at all: together they let ``with_national``
    re-base the calendar on a table HQ pushes without losing the branch's own edits.
    """
    name: str
    weekly: Mapping[int, tuple[Span, ...]]
    holidays: HolidayTable
    makeup_hours: tuple[Span, ...] | None = None
    tz: tzinfo | str = "Asia/Shanghai"
    makeup_day: int = 0
    local_edits: tuple[Mapping[str, Any], ...] = ()
    national: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.tz, str):
            object.__setattr__(self, "tz", ZoneInfo(self.tz))
        if set(self.weekly) - set(range(7)) or self.makeup_day not in range(5):
            raise ValueError("weekdays are 0 (Monday) to 6; makeup_day is 0 to 4")
        weekly = {day: _checked(self.weekly.get(day, ())) for day in range(7)}
        object.__setattr__(self, "weekly", MappingProxyType(weekly))
        if self.makeup_hours is not None:
            object.__setattr__(self, "makeup_hours", _checked(self.makeup_hours))
        object.__setattr__(self, "local_edits", tuple(self.local_edits))

    # --- what applies when -------------------------------------------------------------------

    def period_at(self, ts: float) -> Period:
        """The period at epoch seconds ``ts`` (local date and time in the calendar's zone)."""
        local = datetime.fromtimestamp(ts, self.tz)
        day = local.date()
        if self.holidays.is_holiday(day):
            return Period(HOLIDAY, self.holidays.name(day))
        spans = self.hours_on(day)
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        if any(span.start <= minute < span.end for span in spans):
            return Period(OPEN)
        if spans and spans[0].start <= minute < spans[-1].end:
            return Period(BREAK)
        return Period(CLOSED)

    def hours_on(self, day: date) -> tuple[Span, ...]:
        """The spans of a local date: none on a holiday, the make-up hours on a make-up day."""
        if self.holidays.is_holiday(day):
            return ()
        if self.holidays.is_makeup_workday(day):
            if self.makeup_hours is not None:
                return self.makeup_hours
            return self.weekly[self.makeup_day]
        return self.weekly[day.weekday()]

    def next_change(self, ts: float) -> float:
        """The first instant after ``ts`` whose period differs from ``period_at(ts)``.

        Looks ``HORIZON_DAYS`` ahead; if nothing changes by then (a calendar closed every day),
        that horizon is returned, so a timer set to it simply asks again.
        """
        current = self.period_at(ts)
        start = ts
        for _ in range(HORIZON_DAYS):
            end = start + _DAY_S
            for instant in self._boundaries(start, end):
                if self.period_at(instant) != current:
                    return instant
            start = end
        return start

    def coverage_warning(self, ts: float) -> str | None:
        """A message to log when the holiday table has no schedule for the year of ``ts``."""
        year = datetime.fromtimestamp(ts, self.tz).year
        if self.holidays.covers(year):
            return None
        known = self.holidays.years()
        held = f"{known[0]}-{known[-1]}" if known else "no year"
        return (f"calendar {self.name!r}: the holiday table has no schedule for {year} "
                f"(it holds {held}); weekends count as days off and weekdays as working days "
                "until HQ sends that year's holidays and make-up days")

    def with_national(self, table: HolidayTable) -> WorkCalendar:
        """This calendar on a new national table (pushed by HQ), the branch's edits kept."""
        if not self.national:
            return self
        return replace(self, holidays=table.merged(self.local_edits))

    # --- candidate instants for next_change ---------------------------------------------------

    def _boundaries(self, start: float, end: float) -> list[float]:
        """Every instant in (start, end] where the period may change: local midnights, span
        edges and UTC-offset changes. Between two of them the period is constant."""
        instants = set(_offset_changes(self.tz, start, end))
        day = datetime.fromtimestamp(start, self.tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, self.tz).date() + timedelta(days=1)
        while day <= last:
            minutes = {0} | {edge for span in self.hours_on(day)
                             for edge in (span.start, span.end) if edge < 1440}
            for minute in minutes:
                instants.update(_instants_of(day, minute, self.tz))
            day += timedelta(days=1)
        return sorted(t for t in instants if start < t <= end)


def _checked(spans: tuple[Span, ...] | list[Span]) -> tuple[Span, ...]:
    ordered = tuple(sorted(spans))
    for before, after in zip(ordered, ordered[1:]):
        if after.start < before.end:
            raise ValueError(f"spans {before} and {after} overlap")
    return ordered


def _instants_of(day: date, minute: int, tz: tzinfo) -> Iterator[float]:
    """The instants showing this wall time: none in a spring-forward gap, two in a fall-back."""
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).timestamp()
        if datetime.fromtimestamp(instant, tz).replace(tzinfo=None) == wall:
            yield instant


def _offset_changes(tz: tzinfo, start: float, end: float) -> Iterator[float]:
    probes = [start + step for step in range(0, math.ceil(end - start), _OFFSET_PROBE_S)] + [end]
    for before, after in zip(probes, probes[1:]):
        if _offset(tz, before) != _offset(tz, after):
            yield _first_with_new_offset(tz, before, after)


def _first_with_new_offset(tz: tzinfo, before: float, after: float) -> float:
    """Bisection to the whole second where the offset changes (tz data changes on seconds)."""
    low, high = math.floor(before), math.ceil(after)
    old = _offset(tz, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(tz, middle) == old:
            low = middle
        else:
            high = middle
    return float(high)


def _offset(tz: tzinfo, ts: float) -> timedelta | None:
    return datetime.fromtimestamp(ts, tz).utcoffset()


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
