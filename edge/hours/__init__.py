"""Working hours per queue (INB-7): weekly spans, breaks, public holidays and 调休.

``WorkCalendar.period_at(ts)`` says whether a queue is open, on a break, closed or on a public
holiday (which picks the welcome prompt or the out-of-hours action), and ``next_change(ts)`` when
that changes. China's holiday table is data (``HolidayTable``), seeded from ``chinese-calendar``
and replaceable by HQ; ``parse_calendars`` reads the ``[[calendars]]`` configuration and
``with_pushed_days`` lays the days HQ pushed over it.
"""
from edge.hours.calendar import (BREAK, CLOSED, HOLIDAY, OPEN, PERIOD_KINDS, WEEKDAYS, Period,
                                 Span, WorkCalendar)
from edge.hours.config import parse_calendars, read_calendar
from edge.hours.holidays import HolidayTable, HolidayTableError
from edge.hours.pushed import NATIONAL, national_table, with_pushed_days

__all__ = [
    "BREAK", "CLOSED", "HOLIDAY", "OPEN", "PERIOD_KINDS", "WEEKDAYS",
    "HolidayTable", "HolidayTableError", "NATIONAL", "Period", "Span", "WorkCalendar",
    "national_table", "parse_calendars", "read_calendar", "with_pushed_days",
]
