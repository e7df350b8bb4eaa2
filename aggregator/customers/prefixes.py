"""The 号段 table (number prefix -> region, carrier) uploaded as CSV, checked row by row.

Files come from carriers' lists and spreadsheets, so the reader is lenient about form and strict
about content: UTF-8 (with or without BOM) or GBK/GB18030 (what Excel on a Chinese Windows saves),
either English or Chinese headers, and either one ``region`` column or ``province`` + ``city``::

    prefix,province,city,carrier          号段,省份,城市,运营商
    1660755,广东,深圳,中国联通             1990755,广东,深圳,中国电信

A prefix is 3 to 8 digits (an area code like ``0755``, a 7-digit mobile range like ``1660755``).
The stored region is ``province/city`` (``广东/深圳``), or just the province when the city is
missing; ``edge.regions`` reads it back. Every bad row is reported with its line number and why;
the caller decides whether the good rows are stored without them.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from aggregator.customers.errors import InvalidInput

ENCODINGS = ("utf-8", "gbk", "gb18030")
HEADER_ALIASES = {
    "prefix": ("prefix", "号段", "number_prefix", "phone"),
    "region": ("region", "归属地"),
    "province": ("province", "省份", "省"),
    "city": ("city", "城市", "市"),
    "carrier": ("carrier", "isp", "运营商"),
}
MAX_TEXT = 64
MAX_REPORTED = 1000
_PREFIX = re.compile(r"\d{3,8}")


@dataclass(frozen=True)
class BadRow:
    line: int
    error: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error, "text": self.text}


@dataclass
class PrefixFile:
    """What an upload holds: good rows ``(prefix, region, carrier)`` and the bad ones."""
    encoding: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "good": len(self.rows), "bad": len(self.bad),
                "bad_rows": [b.to_json() for b in self.bad[:MAX_REPORTED]]}


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding used). Without ``encoding``: UTF-8 if it decodes, else GB18030 (a superset
    of GBK, so a GBK file reads the same)."""
    if encoding is not None:
        name = encoding.lower().replace("_", "-")
        if name not in ENCODINGS:
            raise InvalidInput(f"encoding: expected one of {', '.join(ENCODINGS)}, "
                               f"got {encoding!r}")
        try:
            return data.decode("utf-8-sig" if name == "utf-8" else name), name
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"file: not {name} at byte {exc.start}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"file: neither UTF-8 nor GBK (byte {exc.start}); save the CSV as "
                           "UTF-8") from None


def parse(data: bytes, encoding: str | None = None) -> PrefixFile:
    """Read an uploaded file. A file without a usable header is ``InvalidInput``; bad rows are
    collected in ``bad`` (a prefix seen twice is bad the second time)."""
    text, used = decode(data, encoding)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise InvalidInput("file: empty")
    columns = _columns(header)
    result = PrefixFile(used)
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not "".join(row).strip():
            continue
        try:
            prefix, region, carrier = _row(row, columns)
            if prefix in seen:
                raise ValueError(f"prefix {prefix} already on line {seen[prefix]}")
        except ValueError as exc:
            result.bad.append(BadRow(line, str(exc), ",".join(row)[:200]))
            continue
        seen[prefix] = line
        result.rows.append((prefix, region, carrier))
    return result


def _columns(header: Sequence[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    columns: dict[str, int] = {}
    for key, aliases in HEADER_ALIASES.items():
        for i, name in enumerate(names):
            if name in aliases:
                columns[key] = i
                break
    if "prefix" not in columns or not ({"region", "province"} & set(columns)):
        raise InvalidInput("file: the first line must name the columns: prefix and region, or "
                           "prefix, province and city (carrier optional); got "
                           f"{','.join(header)!r}")
    return columns


def _row(row: Sequence[str], columns: dict[str, int]) -> tuple[str, str, str]:
    def cell(key: str) -> str:
        i = columns.get(key)
        value = row[i].strip() if i is not None and i < len(row) else ""
        if len(value) > MAX_TEXT:
            raise ValueError(f"{key}: at most {MAX_TEXT} characters")
        return value

    if len(row) < max(columns.values()) + 1:
        raise ValueError(f"expected {max(columns.values()) + 1} columns, got {len(row)}")
    prefix = cell("prefix")
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix: expected 3 to 8 digits, got {prefix!r}")
    region = cell("region") if "region" in columns else region_text(cell("province"), cell("city"))
    if not region:
        raise ValueError("region: missing (give region, or province and city)")
    parts = region.split("/")
    if len(parts) > 2 or not all(part.strip() for part in parts):
        raise ValueError(f"region: expected 省 or 省/市, got {region!r}")
    return prefix, "/".join(part.strip() for part in parts), cell("carrier")


def region_text(province: str, city: str) -> str:
    """``广东``, ``深圳`` -> ``广东/深圳``; a missing or repeated city leaves the province."""
    if not province:
        return ""
    return province if not city or city == province else f"{province}/{city}"


def store(tx: Any, rows: Sequence[tuple[str, str, str]], now: float, replace: bool) -> int:
    """Write ``rows``; ``replace`` makes them the whole table. Returns the table's size."""
    if replace:
        tx.execute("DELETE FROM number_prefixes")
    # executemany: a national table has hundreds of thousands of rows (psycopg pipelines them)
    tx.cursor.executemany(tx.dialect.sql(
        "INSERT INTO number_prefixes (prefix, region, carrier, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (prefix) DO UPDATE SET region = excluded.region,"
        " carrier = excluded.carrier, updated_at = excluded.updated_at"),
        [(prefix, region, carrier, now) for prefix, region, carrier in rows])
    return int(tx.execute("SELECT count(*) FROM number_prefixes").fetchone()[0])
