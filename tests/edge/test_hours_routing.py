"""INB-7 in the core: a queue's calendar picks the welcome prompt or ends the call out of hours."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.commands import Hangup, Play
from edge.errors import ConfigError
from edge.config import parse_config
from tests.edge.conftest import branch

SHANGHAI = ZoneInfo("Asia/Shanghai")
CALENDAR = {"name": "branch", "mon": ["08:30-12:00", "13:30-17:30"], "tue": ["08:30-12:00", "13:30-17:30"],
            "wed": ["08:30-12:00", "13:30-17:30"], "thu": ["08:30-12:00", "13:30-17:30"],
            "fri": ["08:30-12:00", "13:30-17:30"], "holidays": "cn"}


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def hours_branch():
    data = branch()
    data["calendars"] = [CALENDAR]
    data["groups"][0].update(calendar="branch", welcome={"open": "cc/welcome",
                                                          "holiday": "cc/welcome-holiday"},
                             closed_prompts={"closed": "cc/after-hours"})
    return data


@pytest.mark.parametrize("when, period, prompt", [
    ("2026-10-01 10:00", "holiday", "cc/welcome-holiday"),   # National Day, a Thursday
    ("2026-10-03 10:00", "holiday", "cc/welcome-holiday"),   # a Saturday inside the holiday
    ("2026-11-21 10:00", "closed", "cc/after-hours"),        # an ordinary Saturday
    ("2026-11-23 12:30", "break", "cc/closed-break"),        # lunch on a Monday
    ("2026-11-23 18:00", "closed", "cc/after-hours"),
])
def test_out_of_hours_plays_the_periods_prompt_and_closes_the_call(make, when, period, prompt):
    h = make(data=hours_branch(), start=at(when))
    commands = h.offer("c1")
    assert [c for c in commands if isinstance(c, (Play, Hangup))][0] == Play("c1", prompt)
    assert h.rings(commands) == []
    record = h.cdr("c1")
    assert (record["disposition"], record["rule"]) == ("closed", f"hours:{period}")
    assert h.notifies("call.out_of_hours", commands)[0]["period"] == period


@pytest.mark.parametrize("when", ["2026-10-10 10:00",   # 调休: the Saturday after National Day
                                  "2026-11-23 10:00"])  # an ordinary Monday
def test_working_days_including_makeup_saturdays_welcome_and_route(make, when):
    h = make(data=hours_branch(), start=at(when))
    commands = h.offer("c1")
    assert commands[1] == Play("c1", "cc/welcome")
    assert [r.extension for r in h.rings(commands)] == ["8001"]


def test_a_group_naming_an_unknown_calendar_is_refused():
    data = hours_branch()
    data["groups"][0]["calendar"] = "nope"
    with pytest.raises(ConfigError, match=r"groups\[0\]\.calendar: unknown calendar 'nope'"):
        parse_config(data)


def test_a_welcome_for_an_unknown_period_is_refused():
    data = hours_branch()
    data["groups"][0]["welcome"] = {"lunch": "cc/x"}
    with pytest.raises(ConfigError, match=r"groups\[0\]\.welcome\.lunch: expected a period"):
        parse_config(data)
