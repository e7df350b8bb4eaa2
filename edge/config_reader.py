"""Typed reading of one TOML table, with key paths in every error message.

``edge.config`` describes *what* the configuration holds; this module knows *how* to read a table
strictly: every value is type-checked, every key not asked for is rejected as unknown, and every
problem is reported as a ``ConfigError`` whose message starts with the full key path
(``agents[2].extension: expected digits, got 'abc'``), so a technician on site can find the line.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, TypeVar

from edge.errors import ConfigError

T = TypeVar("T")
_REQUIRED: Any = object()
_DIGITS = re.compile(r"\d+")
_PHONE = re.compile(r"\+?\d[\d -]*")


def join_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


class TableReader:
    """Reads the keys of one table; ``finish()`` rejects whatever was not read."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"expected a table, got {_shown(data)}")
        self.data = data
        self.path = path
        self._seen: set[str] = set()

    def at(self, key: str | int) -> str:
        return join_path(self.path, key)

    def error(self, key: str | int, problem: str) -> ConfigError:
        return ConfigError(self.at(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _REQUIRED) -> Any:
        self._seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(key, "required")
        return default

    # --- scalars -----------------------------------------------------------------------------

    def text(self, key: str, default: Any = _REQUIRED, *, choices: tuple[str, ...] = (),
             allow_empty: bool = False) -> str:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_shown(value)}")
        if not allow_empty and not value.strip():
            raise self.error(key, "must not be empty")
        if choices and value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def digits(self, key: str, default: Any = _REQUIRED) -> str:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not _DIGITS.fullmatch(value):
            raise self.error(key, f"expected digits, got {_shown(value)}")
        return value

    def phone(self, key: str, default: Any = _REQUIRED) -> str:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not _PHONE.fullmatch(value.strip()):
            raise self.error(key, f"expected a phone number, got {_shown(value)}")
        return value.strip()

    def integer(self, key: str, default: Any = _REQUIRED, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_shown(value)}")
        self._check_range(key, value, minimum, maximum)
        return value

    def number(self, key: str, default: Any = _REQUIRED, *, minimum: float | None = None,
               positive: bool = False) -> float:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_shown(value)}")
        if positive and value <= 0:
            raise self.error(key, f"must be greater than 0, got {value}")
        self._check_range(key, value, minimum, None)
        return float(value)

    def flag(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_shown(value)}")
        return value

    def _check_range(self, key: str, value: float, minimum: float | None,
                     maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value}")

    # --- containers --------------------------------------------------------------------------

    def text_list(self, key: str, default: tuple[str, ...] = (), *,
                  choices: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key, list(default))
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of strings, got {_shown(value)}")
        for i, item in enumerate(value):
            item_path = join_path(self.at(key), i)
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(item_path, f"expected a non-empty string, got {_shown(item)}")
            if choices and item not in choices:
                raise ConfigError(item_path, f"expected one of {', '.join(choices)}, got {item!r}")
        if len(set(value)) != len(value):
            raise self.error(key, "contains duplicates")
        return tuple(value)

    def text_map(self, key: str) -> dict[str, str]:
        """A table of string -> string (``did_groups``, ``region_groups``)."""
        table = self.table(key)
        return {k: table.text(k) for k in list(table.data)}

    def table(self, key: str) -> "TableReader":
        """A sub-table; an absent one reads as empty."""
        return TableReader(self.raw(key, {}), self.at(key))

    def tables(self, key: str) -> list["TableReader"]:
        """An array of tables (``[[agents]]``); absent reads as empty."""
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of tables, got {_shown(value)}")
        return [TableReader(item, join_path(self.at(key), i)) for i, item in enumerate(value)]

    def each(self, key: str, read: Callable[["TableReader"], T]) -> tuple[T, ...]:
        """Read every table of an array with ``read`` and check it read all keys."""
        items = []
        for table in self.tables(key):
            items.append(read(table))
            table.finish()
        return tuple(items)

    def finish(self) -> None:
        for key in self.data:
            if key not in self._seen:
                raise self.error(key, "unknown key")
