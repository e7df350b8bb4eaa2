"""How the IVR reads a value back to a caller (INB-11 自动语音查询), as Asterisk sound parts.

Asterisk's ``SAY NUMBER`` speaks an integer in the channel's language (``zh`` for Mandarin); an
amount or a date needs the unit words between the numbers, which are prompts of ours
(``cc/yuan`` 元, ``cc/jiao`` 角, ``cc/fen`` 分, ``cc/year`` 年, ``cc/month`` 月, ``cc/day`` 日,
``cc/minus`` 负). ``spoken`` turns a value into the parts; the driver plays them in order.
Amounts are decimal strings, never floats: 0.1 + 0.2 must not be read to a customer as 0.30000004.
"""
from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from edge.errors import EdgeError

Part = tuple[str, str]  # ("number", "1234") | ("digits", "0755") | ("prompt", "cc/yuan")
UNIT_PROMPTS = {"yuan": "cc/yuan", "jiao": "cc/jiao", "fen": "cc/fen", "year": "cc/year",
                "month": "cc/month", "day": "cc/day", "minus": "cc/minus"}
KINDS = ("number", "digits", "money", "date")


class SpeechError(EdgeError):
    """A value cannot be read as the kind asked (``money`` of ``"abc"``)."""


def spoken(kind: str, value: str) -> tuple[Part, ...]:
    value = str(value).strip()
    if kind == "digits":
        if not value.isdigit():
            raise SpeechError(f"digits: {value!r} is not a string of digits")
        return (("digits", value),)
    if kind == "number":
        return _integer(value)
    if kind == "money":
        return _money(value)
    if kind == "date":
        return _date(value)
    raise SpeechError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _integer(value: str) -> tuple[Part, ...]:
    try:
        number = int(value)
    except ValueError as exc:
        raise SpeechError(f"number: {value!r} is not an integer") from exc
    sign = (("prompt", UNIT_PROMPTS["minus"]),) if number < 0 else ()
    return (*sign, ("number", str(abs(number))))


def _money(value: str) -> tuple[Part, ...]:
    """``1234.56`` -> 一千二百三十四 元 五 角 六 分; zero jiao/fen are left out (一百元整)."""
    try:
        amount = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise SpeechError(f"money: {value!r} is not an amount") from exc
    parts: list[Part] = [("prompt", UNIT_PROMPTS["minus"])] if amount < 0 else []
    cents = int(abs(amount) * 100)
    yuan, jiao, fen = cents // 100, (cents // 10) % 10, cents % 10
    parts += [("number", str(yuan)), ("prompt", UNIT_PROMPTS["yuan"])]
    if jiao:
        parts += [("number", str(jiao)), ("prompt", UNIT_PROMPTS["jiao"])]
    if fen:
        parts += [("number", str(fen)), ("prompt", UNIT_PROMPTS["fen"])]
    return tuple(parts)


def _date(value: str) -> tuple[Part, ...]:
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise SpeechError(f"date: {value!r} is not YYYY-MM-DD") from exc
    return (("number", str(day.year)), ("prompt", UNIT_PROMPTS["year"]),
            ("number", str(day.month)), ("prompt", UNIT_PROMPTS["month"]),
            ("number", str(day.day)), ("prompt", UNIT_PROMPTS["day"]))
