"""Calendar days HQ pushed (``Store.pushed_calendar_days()``) laid over the configured calendars.

Calendar ``cn`` is HQ's national table. The State Council publishes a year as a whole, so every
year HQ holds replaces that year of the table shipped in chinese-calendar (a correction), and
years the package does not know (2027 on, with the pinned version) become covered: the
"no schedule for 2027" warning stops and the holidays close the queues. Any other name holds
HQ's overrides for the configured calendar of that name (a bank's own day off); they are laid on
top of its national table, and the branch's own edits from the config file on top of those.

``with_pushed_days`` is pure: the runtime calls it with the calendars as configured (never with
its own result, so a day HQ removes is gone again) at start and whenever the reference versions
change, and swaps the result in.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Mapping, Sequence

from edge.hours.calendar import WorkCalendar
from edge.hours.holidays import HolidayTable, HolidayTableError

log = logging.getLogger(__name__)

NATIONAL = "cn"
Rows = Sequence[Mapping[str, str]]


def national_table(pushed: Rows, shipped: HolidayTable | None = None) -> HolidayTable:
    """The shipped national table with each year HQ pushed replaced by HQ's days."""
    shipped = shipped if shipped is not None else HolidayTable.from_chinese_calendar()
    hq = HolidayTable.from_rows(pushed)
    years = set(hq.years())
    holidays = {d: n for d, n in shipped.holidays.items() if d.year not in years}
    workdays = {d: n for d, n in shipped.workdays.items() if d.year not in years}
    holidays.update(hq.holidays)
    workdays.update(hq.workdays)
    return HolidayTable(holidays, workdays, frozenset(shipped.years()) | years)


def with_pushed_days(calendars: Mapping[str, WorkCalendar], pushed: Mapping[str, Rows],
                     shipped: HolidayTable | None = None) -> dict[str, WorkCalendar]:
    """Each calendar re-based on HQ's days; unusable pushed days are logged and left out."""
    national = None
    if pushed.get(NATIONAL):
        try:
            national = national_table(pushed[NATIONAL], shipped)
        except HolidayTableError as exc:
            log.error("HQ's national calendar is unusable, keeping the shipped one: %s", exc)
    result: dict[str, WorkCalendar] = {}
    for name, calendar in calendars.items():
        if calendar.national:
            base = national or shipped or HolidayTable.from_chinese_calendar()
        else:
            base = HolidayTable.none()
        overrides = pushed.get(name, ()) if name != NATIONAL else ()
        try:
            base = base.merged(overrides)
        except HolidayTableError as exc:
            log.error("HQ's days for calendar %r are unusable, left out: %s", name, exc)
        result[name] = replace(calendar, holidays=base.merged(calendar.local_edits))
    return result
