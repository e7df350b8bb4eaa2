"""Working hours, breaks, China's public holidays and make-up days (INB-7), on the package's data.

The 2026 dates are the State Council's, as shipped in chinese-calendar 1.11.0: Mid-Autumn Festival
Fri 25 - Sun 27 September, National Day Thu 1 - Wed 7 October, worked on Sun 20 September and
Sat 10 October.
"""
from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from edge.errors import ConfigError
from edge.hours import (HolidayTable, HolidayTableError, Period, Span, WorkCalendar,
                        parse_calendars)

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAY_HOURS = ["08:30-12:00", "13:30-17:30"]
BRANCH = {"name": "branch", **{day: WEEKDAY_HOURS for day in ("mon", "tue", "wed", "thu", "fri")}}
OPEN, BREAK, CLOSED = Period("open"), Period("break"), Period("closed")


def at(text: str, tz: ZoneInfo = SHANGHAI) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def local(ts: float, tz: ZoneInfo = SHANGHAI) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def calendar(**keys) -> WorkCalendar:
    return parse_calendars([{**BRANCH, **keys}], "Asia/Shanghai")["branch"]


def config_error(**keys) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_calendars([{"name": "head office", "mon": ["09:00-17:00"]}, {**BRANCH, **keys}],
                        "Asia/Shanghai")
    return str(caught.value)


# --- the package's table ---------------------------------------------------------------------

def test_the_seed_table_holds_the_2026_schedule_from_the_package():
    table = HolidayTable.from_chinese_calendar()
    assert table.years()[0] == 2004 and table.covers(2026) and not table.covers(2003)
    assert table.is_holiday(date(2026, 10, 1)) and table.name(date(2026, 10, 1)) == "National Day"
    assert table.name(date(2026, 9, 25)) == "Mid-autumn Festival"
    assert table.is_makeup_workday(date(2026, 10, 10))  # a Saturday
    assert table.name(date(2026, 9, 20)) == "National Day"  # the Sunday worked for it
    assert not table.is_holiday(date(2026, 10, 8)) and table.name(date(2026, 10, 8)) == ""


def test_holiday_names_can_be_chinese():
    table = HolidayTable.from_chinese_calendar(names="zh")
    assert table.name(date(2026, 10, 1)) == "国庆节"
    assert table.name(date(2026, 2, 14)) == "春节"  # make-up Saturday before Spring Festival


def test_rows_round_trip_for_the_store_and_hq():
    table = HolidayTable.from_chinese_calendar()
    rows = table.to_rows()
    assert {"date": "2026-10-10", "kind": "workday", "name": "National Day"} in rows
    assert rows == sorted(rows, key=lambda row: row["date"])
    again = HolidayTable.from_rows(rows)
    assert again.holidays == table.holidays and again.workdays == table.workdays
    assert again.years() == table.years()


def test_bad_rows_are_rejected_with_their_position():
    good = {"date": "2026-10-01", "kind": "holiday", "name": "National Day"}
    with pytest.raises(HolidayTableError, match=r"rows\[1\]\.date: expected a date"):
        HolidayTable.from_rows([good, {"date": "2026-13-01", "kind": "holiday", "name": "x"}])
    with pytest.raises(HolidayTableError, match=r"rows\[1\]\.date: 2026-10-01 is listed twice"):
        HolidayTable.from_rows([good, {**good, "kind": "workday"}])
    with pytest.raises(HolidayTableError, match=r"overrides\[0\]\.kind"):
        HolidayTable.from_chinese_calendar().merged([{"date": "2026-10-01", "kind": "off"}])


def test_local_edits_add_remove_and_later_entries_win():
    table = HolidayTable.from_chinese_calendar().merged([
        {"date": "2026-12-24", "kind": "holiday", "name": "Bank anniversary"},
        {"date": "2026-10-07", "kind": "removed"},
        {"date": "2026-12-27", "kind": "workday", "name": "Bank anniversary"},
        {"date": "2026-12-24", "kind": "holiday", "name": "周年庆"},
    ])
    assert table.name(date(2026, 12, 24)) == "周年庆"
    assert not table.is_holiday(date(2026, 10, 7)) and table.is_holiday(date(2026, 10, 6))
    assert table.is_makeup_workday(date(2026, 12, 27))
    assert table.years() == HolidayTable.from_chinese_calendar().years()  # edits cover nothing


# --- periods -----------------------------------------------------------------------------------

def test_a_public_holiday_on_a_weekday_is_a_holiday_all_day():
    cal = calendar()
    assert cal.period_at(at("2026-10-01 10:00")) == Period("holiday", "National Day")  # Thursday
    assert cal.period_at(at("2026-09-25 09:00")) == Period("holiday", "Mid-autumn Festival")
    assert cal.period_at(at("2026-10-03 23:59")) == Period("holiday", "National Day")  # Saturday
    assert cal.period_at(at("2026-10-08 09:00")) == OPEN


def test_a_make_up_weekend_day_works_weekday_hours():
    cal = calendar(fri=["09:00-16:00"])
    assert cal.period_at(at("2026-10-10 08:45")) == OPEN  # Saturday, Monday's hours by default
    assert cal.period_at(at("2026-10-10 12:30")) == BREAK
    assert cal.period_at(at("2026-10-10 17:45")) == CLOSED
    assert cal.period_at(at("2026-09-20 16:30")) == OPEN  # Sunday
    friday_like = calendar(fri=["09:00-16:00"], makeup_day="fri")
    assert friday_like.period_at(at("2026-10-10 08:45")) == CLOSED
    assert friday_like.period_at(at("2026-10-10 12:30")) == OPEN
    own_hours = calendar(makeup_hours=["10:00-15:00"])
    assert own_hours.period_at(at("2026-10-10 09:00")) == CLOSED
    assert own_hours.period_at(at("2026-10-10 14:59")) == OPEN


def test_an_ordinary_weekend_is_closed_and_lunch_is_a_break():
    cal = calendar()
    assert cal.period_at(at("2026-10-17 10:00")) == CLOSED  # Saturday
    assert cal.period_at(at("2026-10-16 11:59")) == OPEN
    assert cal.period_at(at("2026-10-16 12:00")) == BREAK
    assert cal.period_at(at("2026-10-16 13:30")) == OPEN
    assert cal.period_at(at("2026-10-16 08:29")) == CLOSED
    assert cal.period_at(at("2026-10-16 17:30")) == CLOSED


def test_local_midnight_is_taken_in_the_calendars_zone_not_utc():
    cal = calendar(wed=["00:00-24:00"])  # open all of Wednesday 30 September
    before = datetime(2026, 9, 30, 15, 59, tzinfo=timezone.utc).timestamp()  # 23:59 local
    midnight = datetime(2026, 9, 30, 16, 0, tzinfo=timezone.utc).timestamp()  # 00:00 local
    assert cal.period_at(before) == OPEN
    assert cal.period_at(midnight) == Period("holiday", "National Day")
    assert cal.next_change(before) == midnight


def test_next_change_lands_on_the_exact_boundary():
    cal = calendar()
    assert cal.next_change(at("2026-10-16 11:59:59.500")) == at("2026-10-16 12:00")
    assert cal.next_change(at("2026-10-16 12:00")) == at("2026-10-16 13:30")
    # Friday evening -> Monday morning, skipping the weekend
    assert cal.next_change(at("2026-10-16 17:30")) == at("2026-10-19 08:30")
    # the make-up Saturday opens in the middle of a long weekend
    assert cal.next_change(at("2026-10-09 17:30")) == at("2026-10-10 08:30")


def test_next_change_into_and_out_of_a_holiday_week():
    cal = calendar()
    start = cal.next_change(at("2026-09-30 17:30"))
    assert local(start) == "2026-10-01 00:00:00" and cal.period_at(start).kind == "holiday"
    end = cal.next_change(start)  # the week's days share one period: no change at each midnight
    assert local(end) == "2026-10-08 00:00:00" and cal.period_at(end) == CLOSED
    assert local(cal.next_change(end)) == "2026-10-08 08:30:00"


def test_next_change_gives_the_horizon_when_nothing_ever_changes():
    always = calendar(holidays="none", **{day: ["00:00-24:00"] for day in
                                          ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    ts = at("2026-10-01 10:00")
    assert always.period_at(ts) == OPEN
    assert always.next_change(ts) == ts + 400 * 86_400


def test_a_branchs_own_holiday_and_a_removed_one():
    cal = calendar(extra_holidays=[{"date": date(2026, 12, 24), "name": "Bank anniversary"}],
                   extra_workdays=[{"date": "2026-12-27", "name": "Bank anniversary"}],
                   removed_holidays=["2026-10-07"])
    assert cal.period_at(at("2026-12-24 10:00")) == Period("holiday", "Bank anniversary")
    assert cal.period_at(at("2026-12-27 10:00")) == OPEN  # a Sunday
    assert cal.period_at(at("2026-10-07 10:00")) == OPEN  # Wednesday, worked by this branch
    assert cal.period_at(at("2026-10-06 10:00")).kind == "holiday"
    assert local(cal.next_change(at("2026-10-06 10:00"))) == "2026-10-07 00:00:00"


def test_hq_pushes_a_new_table_and_the_branchs_edits_stay():
    cal = calendar(removed_holidays=["2026-10-07"])
    pushed = HolidayTable.from_rows([
        {"date": "2026-10-07", "kind": "holiday", "name": "National Day"},
        {"date": "2027-10-01", "kind": "holiday", "name": "National Day"},
    ])
    rebased = cal.with_national(pushed)
    assert rebased.period_at(at("2027-10-01 10:00")).kind == "holiday"
    assert rebased.period_at(at("2026-10-07 10:00")) == OPEN
    assert rebased.holidays.covers(2027)
    unbound = calendar(holidays="none")
    assert unbound.with_national(pushed) is unbound


def test_a_year_the_table_does_not_cover_has_weekends_off_and_a_warning():
    cal = calendar()
    year = cal.holidays.years()[-1] + 1
    first = date(year, 10, 1)
    weekday = first + timedelta(days=(7 - first.weekday()) % 7)  # the first Monday of October
    saturday = weekday + timedelta(days=5)
    assert cal.period_at(at(f"{weekday} 10:00")) == OPEN  # National Day week or not: no data
    assert cal.period_at(at(f"{saturday} 10:00")) == CLOSED
    warning = cal.coverage_warning(at(f"{weekday} 10:00"))
    assert warning and str(year) in warning and "branch" in warning
    assert cal.coverage_warning(at("2026-10-16 10:00")) is None
    assert calendar(holidays="none").coverage_warning(at(f"{weekday} 10:00")) is None


def test_holidays_none_follows_the_weekly_hours_only():
    cal = calendar(holidays="none")
    assert cal.period_at(at("2026-10-01 10:00")) == OPEN
    assert cal.period_at(at("2026-10-10 10:00")) == CLOSED


# --- time zones --------------------------------------------------------------------------------

def test_a_spring_forward_gap_inside_a_span_opens_at_the_jump():
    new_york = ZoneInfo("America/New_York")
    cal = WorkCalendar("ny", {6: (Span.parse("02:30-04:00"),)}, HolidayTable.none(), tz=new_york)
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc).timestamp()  # 02:00 EST -> 03:00 EDT
    assert cal.next_change(at("2026-03-07 20:00", new_york)) == jump
    assert cal.period_at(jump) == OPEN
    assert cal.next_change(jump) == at("2026-03-08 04:00", new_york)


def test_a_fall_back_hour_is_open_twice():
    new_york = ZoneInfo("America/New_York")
    cal = WorkCalendar("ny", {6: (Span.parse("01:30-02:00"),)}, HolidayTable.none(), tz=new_york)
    utc = [datetime(2026, 11, 1, 5, m, tzinfo=timezone.utc).timestamp() for m in (0, 30)]
    utc += [datetime(2026, 11, 1, 6, m, tzinfo=timezone.utc).timestamp() for m in (0, 30)]
    utc.append(datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc).timestamp())
    changes = [cal.next_change(utc[0])]
    for _ in range(3):
        changes.append(cal.next_change(changes[-1]))
    assert changes == utc[1:]  # 01:30 EDT open, 01:00 EST closed, 01:30 EST open, 02:00 closed
    assert [cal.period_at(t) for t in changes] == [OPEN, CLOSED, OPEN, CLOSED]


def test_working_hours_keep_their_wall_clock_across_a_dst_change():
    london = ZoneInfo("Europe/London")
    weekly = {day: (Span.parse("09:00-17:00"),) for day in range(5)}
    cal = WorkCalendar("uk", weekly, HolidayTable.none(), tz=london)
    assert cal.next_change(at("2026-03-27 17:00", london)) == at("2026-03-30 09:00", london)


# --- configuration errors ----------------------------------------------------------------------

@pytest.mark.parametrize("keys, message", [
    ({"mon": ["8-12"]}, 'calendars[1].mon[0]: expected "HH:MM-HH:MM", got "8-12"'),
    ({"tue": ["08:00-12:00", "13:00-12:00"]}, 'calendars[1].tue[1]: "13:00-12:00" must end after'),
    ({"wed": ["08:00-12:00", "11:00-14:00"]},
     'calendars[1].wed[1]: "11:00-14:00" overlaps "08:00-12:00"'),
    ({"thu": ["08:00-25:00"]}, 'calendars[1].thu[0]: "08:00-25:00" is not a time of day'),
    ({"fri": "08:00-12:00"}, "calendars[1].fri: expected a list"),
    ({"opening": "08:00"}, "calendars[1].opening: unknown key"),
    ({"name": "head office"}, "calendars[1].name: duplicate 'head office'"),
    ({"timezone": "Mars/Olympus"}, "calendars[1].timezone: unknown time zone"),
    ({"holidays": "us"}, "calendars[1].holidays: expected one of cn, none"),
    ({"makeup_day": "sat"}, "calendars[1].makeup_day: expected one of mon, tue, wed, thu, fri"),
    ({"mon": [], "makeup_day": "mon"}, "calendars[1].makeup_day: mon has no hours"),
    ({"makeup_day": "tue", "makeup_hours": []}, "calendars[1].makeup_hours: give either"),
    ({"extra_holidays": [{"date": "2026/12/24", "name": "x"}]},
     "calendars[1].extra_holidays[0].date: expected a date YYYY-MM-DD"),
    ({"extra_holidays": [{"date": "2026-12-24"}]}, "calendars[1].extra_holidays[0].name: required"),
    ({"extra_holidays": [{"date": "2026-12-24", "name": "x", "note": "y"}]},
     "calendars[1].extra_holidays[0].note: unknown key"),
    ({"extra_workdays": [{"date": "2026-12-23"}]},
     "calendars[1].extra_workdays[0].date: 2026-12-23 is a Wednesday, already a working day"),
    ({"removed_holidays": ["2026-10-09"]},
     "calendars[1].removed_holidays[0]: 2026-10-09 is not a public holiday"),
    ({"removed_holidays": ["2026-10-07"],
      "extra_holidays": [{"date": "2026-10-07", "name": "x"}]},
     "calendars[1].extra_holidays[0].date: 2026-10-07 is already listed at "
     "calendars[1].removed_holidays[0]"),
])
def test_config_errors_name_the_key(keys, message):
    assert config_error(**keys).startswith(message)


def test_a_calendar_with_no_hours_at_all_is_rejected():
    with pytest.raises(ConfigError, match=r"^calendars\[0\]: no working hours"):
        parse_calendars([{"name": "empty"}], "Asia/Shanghai")


def test_the_timezone_defaults_to_the_edges_and_spans_are_sorted():
    cal = parse_calendars([{"name": "x", "mon": ["13:00-17:00", "09:00-12:00"]}],
                          "Asia/Urumqi")["x"]
    assert str(cal.tz) == "Asia/Urumqi"
    assert [str(span) for span in cal.weekly[0]] == ["09:00-12:00", "13:00-17:00"]
    assert cal.weekly[5] == ()


def test_a_toml_calendar_with_bare_dates():
    data = tomllib.loads("""
        [[calendars]]
        name = "cards"
        mon = ["09:00-18:00"]
        tue = ["09:00-18:00"]
        extra_holidays = [{date = 2026-12-24, name = "Bank anniversary"}]
        removed_holidays = [2026-10-06]
    """)
    cal = parse_calendars(data["calendars"], "Asia/Shanghai")["cards"]
    assert cal.period_at(at("2026-12-24 10:00")) == Period("holiday", "Bank anniversary")
    assert cal.period_at(at("2026-10-06 10:00")) == OPEN  # a Tuesday
    assert cal.period_at(at("2026-10-07 10:00")).kind == "holiday"
