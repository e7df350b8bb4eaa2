"""HQ's reference data in use: pushed 号段 rows come first in region look-ups, and pushed calendar
days close queues on holidays the shipped chinese-calendar does not know (2027 on)."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from edge.hours import HOLIDAY, HolidayTable, Period, parse_calendars, with_pushed_days
from edge.regions import Region, RegionResolver
from edge.store import Store
from edge.store.reference_rows import replace_calendar, replace_prefix_range

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS = ["08:30-12:00", "13:30-17:30"]
WEEKDAYS = {day: HOURS for day in ("mon", "tue", "wed", "thu", "fri")}
OPEN, CLOSED = Period("open"), Period("closed")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


@pytest.fixture(scope="module")
def shipped() -> RegionResolver:
    return RegionResolver.from_files()


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "edge.sqlite3") as opened:
        yield opened


def push_prefixes(store: Store, rows) -> None:
    with store.db.conn as conn:
        replace_prefix_range(conn, None, None, rows, 1)


def push_days(store: Store, calendar: str, days) -> None:
    with store.db.conn as conn:
        replace_calendar(conn, calendar, days, 1)


# --- regions ------------------------------------------------------------------------------------

def test_a_pushed_prefix_resolves_a_range_nobody_knew(store, shipped):
    assert shipped.resolve("17212345678") is None          # geocoder: "中国"; not in the CSV
    push_prefixes(store, [("1721234", "广东/深圳", "中国联通")])
    resolver = shipped.with_pushed(store.pushed_prefixes())
    assert resolver.resolve("17212345678") == Region("广东", "深圳")
    assert resolver.resolve("+86 172 1234 5678") == Region("广东", "深圳")
    assert shipped.resolve("17212345678") is None          # the original is untouched


def test_pushed_rows_come_before_the_shipped_csv_and_the_geocoder(store, shipped):
    assert shipped.resolve("16607551234") == Region("广东", "深圳")   # shipped CSV
    assert shipped.resolve("02088888888") == Region("广东", "广州")   # geocoder
    push_prefixes(store, [("1660755", "广东省/东莞市", ""), ("020", "测试省/测试市", "")])
    resolver = shipped.with_pushed(store.pushed_prefixes())
    assert resolver.resolve("16607551234") == Region("广东", "东莞")
    assert resolver.resolve("02088888888") == Region("测试", "测试")
    # what HQ did not push still comes from the CSV, then the geocoder
    assert resolver.resolve("19920001234") == Region("广东", "广州")
    assert resolver.resolve("13912345678") == Region("江苏", "常州")


def test_region_text_may_be_province_only_or_geocoder_style(shipped):
    resolver = shipped.with_pushed([("1700001", "北京", ""), ("1700002", "广西壮族自治区南宁市", ""),
                                    ("1721299", "中国", ""), ("1700004", "浙江/", "")])
    assert resolver.resolve("17000011234") == Region("北京", "北京")
    assert resolver.resolve("17000021234") == Region("广西", "南宁")
    assert resolver.resolve("17212991234") is None           # "中国" names no place: skipped
    assert resolver.resolve("17000041234") == Region("浙江", "浙江")


def test_a_new_push_replaces_the_earlier_one(store, shipped):
    push_prefixes(store, [("1721234", "广东/深圳", "")])
    first = shipped.with_pushed(store.pushed_prefixes())
    push_prefixes(store, [("1729999", "浙江/杭州", "")])
    second = first.with_pushed(store.pushed_prefixes())
    assert second.resolve("17212345678") is None
    assert second.resolve("17299991234") == Region("浙江", "杭州")


# --- calendars ----------------------------------------------------------------------------------

def calendars(*extra):
    return parse_calendars([{"name": "branch", **WEEKDAYS},
                            {"name": "营业厅", **WEEKDAYS, "holidays": "none"}, *extra],
                           "Asia/Shanghai")


def test_a_2027_holiday_pushed_by_hq_closes_that_day(store):
    configured = calendars()
    branch = configured["branch"]
    new_year = at("2027-01-01 10:00")                 # a Friday
    assert branch.period_at(new_year) == OPEN          # the package stops at 2026
    assert branch.coverage_warning(new_year) is not None
    push_days(store, "cn", [{"date": "2027-01-01", "kind": "holiday", "name": "元旦"},
                            {"date": "2027-02-07", "kind": "workday", "name": "春节"}])
    current = with_pushed_days(configured, store.pushed_calendar_days())["branch"]
    assert current.period_at(new_year) == Period(HOLIDAY, "元旦")
    assert current.coverage_warning(new_year) is None
    assert current.period_at(at("2027-02-07 09:00")) == OPEN     # a Sunday worked (调休)
    assert current.period_at(at("2027-01-04 10:00")) == OPEN     # an ordinary Monday
    # 2026 still comes from the package
    assert current.period_at(at("2026-10-01 10:00")).kind == HOLIDAY
    # a queue that ignores the national table ignores HQ's national days too
    assert with_pushed_days(configured, store.pushed_calendar_days())["营业厅"].period_at(
        new_year) == OPEN


def test_a_year_hq_holds_replaces_the_shipped_year_whole():
    shipped = HolidayTable.from_chinese_calendar()
    assert shipped.is_holiday(date(2026, 10, 1))
    # HQ's corrected 2026 has National Day only on 1-3 October
    pushed = {"cn": [{"date": f"2026-10-0{d}", "kind": "holiday", "name": "国庆节"}
                     for d in (1, 2, 3)]}
    branch = with_pushed_days(calendars(), pushed)["branch"]
    assert branch.period_at(at("2026-10-02 10:00")) == Period(HOLIDAY, "国庆节")
    assert branch.period_at(at("2026-10-05 10:00")) == OPEN       # Monday: no longer a holiday
    assert not branch.holidays.is_makeup_workday(date(2026, 10, 10))
    assert branch.holidays.is_holiday(date(2025, 10, 1))          # other years: the package's


def test_hq_overrides_for_one_calendar_and_the_branch_edits_on_top():
    configured = calendars({"name": "vip", **WEEKDAYS,
                            "extra_holidays": [{"date": "2027-03-04", "name": "分行庆"}]})
    pushed = {"营业厅": [{"date": "2027-03-03", "kind": "holiday", "name": "行庆"}],
              "vip": [{"date": "2027-03-04", "kind": "workday", "name": "HQ 说上班"}]}
    current = with_pushed_days(configured, pushed)
    assert current["营业厅"].period_at(at("2027-03-03 10:00")) == Period(HOLIDAY, "行庆")
    assert current["branch"].period_at(at("2027-03-03 10:00")) == OPEN
    # the branch's own config edit wins over HQ's override for its calendar
    assert current["vip"].period_at(at("2027-03-04 10:00")) == Period(HOLIDAY, "分行庆")


def test_days_that_no_longer_come_from_hq_are_gone_on_the_next_overlay(store):
    configured = calendars()
    push_days(store, "cn", [{"date": "2027-01-01", "kind": "holiday", "name": "元旦"}])
    assert with_pushed_days(configured, store.pushed_calendar_days())["branch"].period_at(
        at("2027-01-01 10:00")).kind == HOLIDAY
    push_days(store, "cn", [])
    assert with_pushed_days(configured, store.pushed_calendar_days())["branch"].period_at(
        at("2027-01-01 10:00")) == OPEN


def test_unusable_pushed_days_are_logged_and_the_configured_calendar_stays(caplog):
    configured = calendars()
    current = with_pushed_days(configured, {"cn": [{"date": "2027-13-01", "kind": "holiday"}],
                                            "branch": [{"date": "x", "kind": "holiday"}]})
    assert current["branch"].period_at(at("2026-10-01 10:00")).kind == HOLIDAY
    assert current["branch"].period_at(at("2027-01-04 10:00")) == OPEN
    assert "unusable" in caplog.text
