"""号码归属地: a caller's number -> (province, city), resolved once per call (INB-3).

Three sources, in order: the 号段 table HQ pushed (``Store.pushed_prefixes()``, laid on with
``with_pushed``; its region is ``省/市`` such as ``广东/深圳``), the branch's prefix table (号段表,
a CSV of ``prefix,province,city`` with 7-digit mobile prefixes like ``1660755`` and area codes like
``0755``), then phonenumbers' offline geocoder. The tables come first because the geocoder only
says "中国" for the newer mobile ranges (166, 172, 191, 192, 198, 199) that carriers keep
allocating; "中国" is treated as unknown.
Unknown numbers resolve to ``None`` and the call takes its DID's or the default group.

Place names are compared by ``place_key``: "广东省", "广东" and "广东 " are one key, so the
configuration may spell a region either way. Files are read at construction; look-ups are pure.
"""
from __future__ import annotations

import copy
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import phonenumbers
from phonenumbers import geocoder

from edge.errors import ConfigError
from edge.numbers import national_number

if TYPE_CHECKING:
    from edge.config import EdgeConfig

DATA_DIR = Path(__file__).with_name("data")
DEFAULT_PREFIX_TABLE = DATA_DIR / "prefixes.csv"
PROVINCES_FILE = DATA_DIR / "provinces.txt"
# Administrative suffixes dropped when comparing names; longest first ("壮族自治区" before "自治区").
_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市")
_COUNTRY_ONLY = "中国"


def place_key(name: str) -> str:
    """The comparable form of a province or city name: trimmed, administrative suffix dropped."""
    name = name.strip()
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Region:
    """Where a number is registered, as place keys (``Region("广东", "深圳")``)."""
    province: str
    city: str = ""

    def __str__(self) -> str:
        if not self.city or self.city == self.province:
            return self.province
        return f"{self.province}{self.city}"


class RegionResolver:
    """Resolves numbers from a prefix table first, then the phonenumbers geocoder."""

    def __init__(self, prefixes: Iterable[tuple[str, str, str]] = (),
                 provinces: Iterable[str] = (), use_geocoder: bool = True) -> None:
        self._table: dict[str, Region] = {}
        for prefix, province, city in prefixes:
            self._table[prefix] = Region(place_key(province), place_key(city or province))
        self._lengths = _lengths(self._table)
        self._pushed: dict[str, Region] = {}
        self._pushed_lengths: list[int] = []
        # Full names first, then short ones: "广西壮族自治区南宁市" and "广西南宁市" both occur.
        names = {n.strip() for n in provinces if n.strip()}
        names |= {place_key(n) for n in names}
        self._provinces = sorted(names, key=len, reverse=True)
        self._use_geocoder = use_geocoder

    def with_pushed(self, rows: Iterable[tuple[str, str, str]]) -> "RegionResolver":
        """A resolver that asks HQ's 号段 rows ``(prefix, region, carrier)`` first, then this
        one's sources; rows replace any pushed before. A region reads ``广东/深圳``, ``广东``
        or geocoder-style ``广东省深圳市``; one that names no place is skipped."""
        pushed: dict[str, Region] = {}
        parsed: dict[str, Region | None] = {}  # a national table names a few hundred places
        for prefix, region_text, _carrier in rows:
            if region_text not in parsed:
                parsed[region_text] = self.parse_region(region_text)
            region = parsed[region_text]
            if region is not None and prefix.isdigit():
                pushed[prefix] = region
        resolver = copy.copy(self)
        resolver._pushed, resolver._pushed_lengths = pushed, _lengths(pushed)
        return resolver

    def parse_region(self, text: str) -> Region | None:
        """HQ's region text -> Region: ``省/市`` or ``省``, else geocoder style."""
        text = text.strip()
        if "/" in text:
            province, _, city = text.partition("/")
            province, city = place_key(province), place_key(city)
            return Region(province, city or province) if province else None
        return self.split_description(text) or (Region(place_key(text), place_key(text))
                                                 if text and text != _COUNTRY_ONLY else None)

    # --- construction from files -------------------------------------------------------------

    @classmethod
    def from_config(cls, config: "EdgeConfig") -> "RegionResolver":
        path = config.routing.prefix_table
        return cls.from_files(Path(path) if path else DEFAULT_PREFIX_TABLE,
                              config_key="routing.prefix_table")

    @classmethod
    def from_files(cls, prefix_table: Path = DEFAULT_PREFIX_TABLE,
                   provinces_file: Path = PROVINCES_FILE,
                   config_key: str = "prefix_table") -> "RegionResolver":
        return cls(read_prefix_table(prefix_table, config_key), read_provinces(provinces_file))

    # --- look-ups ----------------------------------------------------------------------------

    def resolve(self, number: str) -> Region | None:
        """The region of ``number`` (any common format), or None when nobody knows it."""
        national = national_number(number)
        if len(national) < 3:
            return None  # withheld caller ID or an internal extension
        return (_longest(self._pushed, self._pushed_lengths, national)
                or _longest(self._table, self._lengths, national)
                or self._from_geocoder(national))

    def _from_geocoder(self, national: str) -> Region | None:
        if not self._use_geocoder:
            return None
        try:
            parsed = phonenumbers.parse(national, "CN")
        except phonenumbers.NumberParseException:
            return None
        return self.split_description(geocoder.description_for_number(parsed, "zh"))

    def split_description(self, text: str) -> Region | None:
        """Geocoder text ("广东省深圳市", "广西南宁市", "北京市") -> Region; "中国" or "" -> None."""
        first = text.split("、")[0].strip()
        if not first or first == _COUNTRY_ONLY:
            return None
        for name in self._provinces:
            if first.startswith(name):
                province = place_key(name)
                rest = first[len(name):]
                for suffix in _SUFFIXES:  # "广西壮族自治区南宁市" read with the short name "广西"
                    if rest.startswith(suffix):
                        rest = rest[len(suffix):]
                        break
                return Region(province, place_key(rest) if rest else province)
        return None


def _lengths(table: dict[str, Region]) -> list[int]:
    return sorted({len(p) for p in table}, reverse=True)


def _longest(table: dict[str, Region], lengths: list[int], national: str) -> Region | None:
    """The region of the longest prefix of ``national`` in ``table``."""
    for length in lengths:
        region = table.get(national[:length])
        if region is not None:
            return region
    return None


def read_prefix_table(path: Path, config_key: str = "prefix_table") -> list[tuple[str, str, str]]:
    """Rows of a ``prefix,province,city`` CSV; a bad row is a ConfigError naming file and line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ConfigError(config_key, f"cannot read {path}: {exc.strerror or exc}") from exc
    if not rows or [c.strip().lower() for c in rows[0]] != ["prefix", "province", "city"]:
        raise ConfigError(config_key, f"{path}: the first line must be prefix,province,city")
    table = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3 or not row[0].strip().isdigit() or not row[1].strip():
            raise ConfigError(config_key, f"{path} line {line}: expected prefix,province,city, "
                                          f"got {','.join(row)!r}")
        table.append((row[0].strip(), row[1].strip(), row[2].strip()))
    return table


def read_provinces(path: Path = PROVINCES_FILE) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]
