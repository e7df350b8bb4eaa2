"""号码归属地: prefix table first, phonenumbers' geocoder second, "中国" means unknown."""
from __future__ import annotations

import pytest

from edge.errors import ConfigError
from edge.numbers import national_number
from edge.regions import Region, RegionResolver, place_key


@pytest.fixture(scope="module")
def resolver() -> RegionResolver:
    return RegionResolver.from_files()


@pytest.mark.parametrize("number, region", [
    ("02088888888", Region("广东", "广州")),        # area code via phonenumbers
    ("075588888888", Region("广东", "深圳")),
    ("0755-8888 8888", Region("广东", "深圳")),
    ("+86 755 88888888", Region("广东", "深圳")),
    ("13912345678", Region("江苏", "常州")),        # an older mobile range via phonenumbers
    ("013912345678", Region("江苏", "常州")),       # non-local mobile with the trunk's leading 0
    ("+8613800138000", Region("北京", "北京")),      # a municipality is its own city
    ("07711234567", Region("广西", "南宁")),         # "广西南宁市": province without suffix
])
def test_geocoder_regions(resolver, number, region):
    assert resolver.resolve(number) == region


@pytest.mark.parametrize("number, region", [
    ("16607551234", Region("广东", "深圳")),
    ("19920001234", Region("广东", "广州")),
    ("19957101234", Region("浙江", "杭州")),
])
def test_prefix_table_knows_ranges_the_geocoder_calls_china(resolver, number, region):
    without_table = RegionResolver(provinces=["广东省"])
    assert without_table.resolve(number) is None  # the geocoder alone: "中国"
    assert resolver.resolve(number) == region


@pytest.mark.parametrize("number", ["17212345678", "19112345678", "8001", "", "anonymous"])
def test_unknown_numbers_resolve_to_none(resolver, number):
    assert resolver.resolve(number) is None


def test_prefix_table_takes_precedence_over_the_geocoder():
    resolver = RegionResolver([("0755", "广东省", "深圳市"), ("020", "测试省", "测试市")],
                              provinces=["广东省"])
    assert resolver.resolve("02088888888") == Region("测试", "测试")
    assert resolver.resolve("075512345678") == Region("广东", "深圳")


def test_longest_prefix_wins():
    resolver = RegionResolver([("0755", "广东", "深圳"), ("1660755", "广东", "深圳"),
                               ("166", "未知", "")], use_geocoder=False)
    assert resolver.resolve("16607551234") == Region("广东", "深圳")
    assert resolver.resolve("16612341234") == Region("未知", "未知")


def test_place_key_drops_administrative_suffixes():
    assert place_key("广东省") == place_key("广东") == "广东"
    assert place_key("广西壮族自治区") == "广西"
    assert place_key("深圳市") == "深圳"
    assert place_key("市") == "市"


def test_bad_prefix_table_names_the_line(tmp_path):
    table = tmp_path / "p.csv"
    table.write_text("prefix,province,city\n0755,广东,深圳\nabc,广东,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"routing.prefix_table: .* line 3"):
        RegionResolver.from_files(table, config_key="routing.prefix_table")
    with pytest.raises(ConfigError, match="cannot read"):
        RegionResolver.from_files(tmp_path / "missing.csv")


@pytest.mark.parametrize("raw, national", [
    ("+86 138 0013 8000", "13800138000"),
    ("008613800138000", "13800138000"),
    ("8613800138000", "13800138000"),
    ("013800138000", "13800138000"),
    ("+86 755 8888 8888", "075588888888"),
    ("0755-88888888", "075588888888"),
    ("+1 415 555 0100", "0014155550100"),
    ("", ""),
])
def test_national_number(raw, national):
    assert national_number(raw) == national
