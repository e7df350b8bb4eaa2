"""Working hours per queue (INB-7): weekly spans, breaks, public holidays and 调休.

``WorkCalendar.period_at(ts)`` says whether a queue is open, on a break, closed or on a public
holiday (which picks the welcome prompt or the out-of-hours action), and ``next_change(ts)`` when
that changes. China's holiday table is data (``HolidayTable``), seeded from ``chinese-calendar``
and replaceable by HQ; ``parse_calendars`` reads the ``[[calendars]]`` configuration.
"""
from edge.hours.calendar import (BREAK, CLOSED, HOLIDAY, OPEN, PERIOD_KINDS, WEEKDAYS, Period,
                                 Span, WorkCalendar)
from edge.hours.config import parse_calendars, read_calendar
from edge.hours.holidays import HolidayTable, HolidayTableError

__all__ = [
    "BREAK", "CLOSED", "HOLIDAY", "OPEN", "PERIOD_KINDS", "WEEKDAYS",
    "HolidayTable", "HolidayTableError", "Period", "Span", "WorkCalendar",
    "parse_calendars", "read_calendar",
]
