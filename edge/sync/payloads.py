"""Reading an MQTT payload as strict JSON, the same way at both ends of the sync."""
from __future__ import annotations

import json
from typing import Any


class PayloadError(ValueError):
    """Not UTF-8, not JSON, or JSON with NaN/Infinity (which PostgreSQL and other readers refuse)."""


def decode_json(payload: bytes) -> Any:
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not UTF-8: {exc}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
