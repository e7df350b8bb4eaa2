"""Canonical form of Chinese phone numbers, so blacklist, VIP and last-agent look-ups agree.

Trunks present the same caller in several shapes: ``+8613800138000``, ``008613800138000``,
``013800138000`` (a non-local mobile with the long-distance ``0`` the exchange prepends),
``0755-8888 8888``. Everything here reduces them to national digits: mobiles as 11 digits starting
with ``1``, fixed lines with their ``0`` area code.
"""
from __future__ import annotations

import re

_NON_DIGITS = re.compile(r"\D+")
_MOBILE = re.compile(r"1[3-9]\d{9}")


def national_number(raw: str) -> str:
    """``raw`` reduced to national digits; ``""`` if it holds no digits (withheld caller ID)."""
    digits = _NON_DIGITS.sub("", raw)
    international = raw.lstrip().startswith("+") or digits.startswith("00")
    if international:
        digits = digits.lstrip("0")
        if not digits.startswith("86"):
            return "00" + digits  # a foreign number stays international
        rest = digits[2:]
        return rest if _MOBILE.fullmatch(rest) else "0" + rest.lstrip("0")
    if len(digits) == 13 and digits.startswith("86") and _MOBILE.fullmatch(digits[2:]):
        return digits[2:]
    if len(digits) == 12 and digits.startswith("0") and _MOBILE.fullmatch(digits[1:]):
        return digits[1:]
    return digits


def is_mobile(number: str) -> bool:
    """True for an 11-digit mainland mobile number in national form."""
    return bool(_MOBILE.fullmatch(number))
