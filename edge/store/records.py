"""CDR records <-> ``cdrs`` rows: which keys exist, their column and type. Pure, no I/O.

The core writes a CDR as a plain dict (``WriteCdr.record``). Its keys are the names used across the
code (``group``, not ``queue_group``); this module maps them to columns and coerces values, so the
store can keep a row even when one value is odd. Unknown keys and unusable values are *reported*
(the store logs them) rather than raised, because losing a finished call's record is worse than
losing one field of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from edge.store.errors import InvalidRecord


@dataclass(frozen=True)
class CdrField:
    """One CDR key: ``key`` in the record, ``column`` in the table, ``kind`` its Python type."""
    key: str
    column: str
    kind: type


def _f(key: str, kind: type, column: str | None = None) -> CdrField:
    return CdrField(key, column or key, kind)


CDR_FIELDS: tuple[CdrField, ...] = (
    _f("call_id", str),
    _f("direction", str),
    _f("caller", str),
    _f("callee", str),
    _f("trunk", int),
    _f("agent_id", str),
    _f("extension", str),
    _f("group", str, "queue_group"),
    _f("rule", str),
    _f("region", str),
    _f("flagged", bool, "flagged"),
    _f("started_at", float),
    _f("answered_at", float),
    _f("ended_at", float),
    _f("wait_s", float),
    _f("talk_s", float),
    _f("hangup_cause", int),
    _f("hangup_cause_txt", str),
    _f("hung_up_by", str),
    _f("disposition", str),
    _f("code", str),
    _f("ivr", str),
    _f("rating", str),
    _f("legs", str),
    _f("hold_s", float),
)

BY_KEY: Mapping[str, CdrField] = MappingProxyType({f.key: f for f in CDR_FIELDS})
BY_COLUMN: Mapping[str, CdrField] = MappingProxyType({f.column: f for f in CDR_FIELDS})
# Set by the store, not by the record: when the row was (last) written.
RECORDED_AT = "recorded_at"


@dataclass
class Normalised:
    """A row ready for the table, plus what had to be left out and why."""
    row: dict[str, Any]
    unknown_keys: list[str] = field(default_factory=list)
    bad_values: list[str] = field(default_factory=list)


def to_row(record: Mapping[str, Any]) -> Normalised:
    """Map a CDR record to a ``cdrs`` row; raises ``InvalidRecord`` only when no row is possible.

    Accepts the column name ``queue_group`` as well as the key ``group``. Every known column is
    present in the row (``None`` when absent), so writing it replaces the whole previous row.
    """
    if not isinstance(record, Mapping):
        raise InvalidRecord(f"a CDR must be a mapping, got {type(record).__name__}")
    call_id = _call_id(record)
    result = Normalised(row={f.column: None for f in CDR_FIELDS})
    result.row["flagged"] = 0
    for key, value in record.items():
        spec = BY_KEY.get(key) or BY_COLUMN.get(key)
        if spec is None:
            result.unknown_keys.append(str(key))
            continue
        coerced, ok = _coerce(value, spec.kind)
        if not ok:
            result.bad_values.append(f"{key}={value!r} (expected {spec.kind.__name__})")
            continue
        if coerced is not None or spec.kind is not bool:
            result.row[spec.column] = coerced
    result.row["call_id"] = call_id
    return result


def to_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``cdrs`` row back in the record's vocabulary (``group``), plus ``recorded_at``."""
    record = {spec.key: row.get(spec.column) for spec in CDR_FIELDS}
    record[RECORDED_AT] = row.get(RECORDED_AT)
    return record


def column_for(key: str) -> str | None:
    """The column behind a record key or column name; ``None`` when there is none."""
    spec = BY_KEY.get(key) or BY_COLUMN.get(key)
    return spec.column if spec else None


def _call_id(record: Mapping[str, Any]) -> str:
    value = record.get("call_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        shown = sorted(str(k) for k in record)[:8]
        raise InvalidRecord(f"a CDR needs a non-empty call_id, got {value!r} (keys: {shown})")
    return str(value).strip()


def _coerce(value: Any, kind: type) -> tuple[Any, bool]:
    """``(value, True)`` when usable as ``kind`` (``None`` always is), else ``(None, False)``."""
    if value is None:
        return None, True
    try:
        if kind is bool:
            if isinstance(value, (bool, int)) and value in (0, 1):
                return int(value), True
            return None, False
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                return None, False
            return int(value), True
        if kind is float:
            if isinstance(value, bool):
                return None, False
            number = float(value)
            return (number, True) if math.isfinite(number) else (None, False)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value), True
        return None, False
    except (TypeError, ValueError, OverflowError):
        return None, False
