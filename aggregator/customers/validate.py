"""Request bodies -> clean values for customers and accounts. Pure: no database, no Flask.

Each function raises ``InvalidInput`` whose message starts with the field's path, so a view can
answer 422 with a message an admin can act on. Phone numbers are normalised with phonenumbers to
the national digits the edge looks callers up by (``edge.numbers.national_number``): mobiles as
11 digits, fixed lines with their ``0`` area code, foreign numbers as ``00`` + country code.
Amounts are ``Decimal`` text: JSON floats are refused because ``12.30`` would arrive as
``12.3`` and ``0.1 + 0.2`` is not a balance anyone wants read out to a customer.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

import phonenumbers

from aggregator.customers.errors import InvalidInput
from edge.numbers import national_number

CUSTOMER_TEXT = {"name": 200, "owner_agent": 64, "region": 64, "type": 32}
CUSTOMER_KEYS = frozenset({"id", "name", "member_no", "owner_agent", "region", "type", "vip",
                           "edge", "numbers", "accounts", "if_version"})
ACCOUNT_KEYS = frozenset({"id", "balance", "amount_due", "due_date", "if_version"})
MAX_NUMBERS = 20
MAX_ACCOUNTS = 50
MAX_AMOUNT_DIGITS = 18
MAX_AMOUNT_PLACES = 4
RESERVED_IDS = frozenset({"prefixes", "calendars", "push"})  # paths under /api/v1/customers
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_MEMBER_NO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_PLAIN_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


def customer_fields(body: Any, partial: bool = False) -> dict[str, Any]:
    """The customer's columns (and ``numbers``/``accounts`` lists when given) from a JSON body.

    ``partial`` (an update) takes only the keys present; a create needs ``name``."""
    body = _object(body, "customer", CUSTOMER_KEYS)
    out: dict[str, Any] = {}
    if "id" in body and not partial:
        out["id"] = identifier(body["id"], "id")
        if out["id"] in RESERVED_IDS:
            raise InvalidInput(f"id: {out['id']!r} is reserved (a path of the API)")
    if not partial and "name" not in body:
        raise InvalidInput("name: required")
    for key, limit in CUSTOMER_TEXT.items():
        if key in body:
            out[key] = text(body[key], key, limit, required=key == "name")
    if "member_no" in body:
        out["member_no"] = member_no(body["member_no"])
    if "vip" in body:
        out["vip"] = flag(body["vip"], "vip")
    if "edge" in body:
        out["edge"] = None if body["edge"] in (None, "") else identifier(body["edge"], "edge")
    if "numbers" in body:
        out["numbers"] = phone_numbers(body["numbers"], "numbers")
    if "accounts" in body:
        out["accounts"] = account_list(body["accounts"], "accounts")
    if "if_version" in body:
        out["if_version"] = version(body["if_version"], "if_version")
    return out


def account_fields(body: Any, path: str = "account", partial: bool = False) -> dict[str, Any]:
    """An account's columns: ``balance`` (may be negative), ``amount_due`` (>= 0), ``due_date``."""
    body = _object(body, path, ACCOUNT_KEYS)
    out: dict[str, Any] = {}
    prefix = "" if path == "account" else f"{path}."
    if "id" in body and not partial:
        out["id"] = identifier(body["id"], f"{prefix}id")
    if "balance" in body:
        out["balance"] = decimal_text(body["balance"], f"{prefix}balance")
    if "amount_due" in body:
        out["amount_due"] = decimal_text(body["amount_due"], f"{prefix}amount_due",
                                         negative=False)
    if "due_date" in body:
        out["due_date"] = iso_date(body["due_date"], f"{prefix}due_date")
    if "if_version" in body:
        out["if_version"] = version(body["if_version"], f"{prefix}if_version")
    return out


def account_list(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidInput(f"{path}: expected a list of accounts, got {value!r}")
    if len(value) > MAX_ACCOUNTS:
        raise InvalidInput(f"{path}: at most {MAX_ACCOUNTS} accounts per customer")
    accounts = [account_fields(item, f"{path}[{i}]") for i, item in enumerate(value)]
    ids = [a["id"] for a in accounts if "id" in a]
    if len(ids) != len(set(ids)):
        raise InvalidInput(f"{path}: an account id is listed twice")
    return accounts


# --- single values ------------------------------------------------------------------------------

def phone_number(raw: Any, path: str) -> str:
    """A caller's number in the edge's national form; InvalidInput if phonenumbers rejects it."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(f"{path}: expected a phone number as text, got {raw!r}")
    try:
        parsed = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        raise InvalidInput(f"{path}: not a phone number: {raw!r}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(f"{path}: not a valid phone number: {raw!r}")
    if parsed.country_code != 86:
        return national_number(phonenumbers.format_number(parsed,
                                                          phonenumbers.PhoneNumberFormat.E164))
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return national_number(national)


def phone_numbers(value: Any, path: str) -> list[str]:
    """A list of numbers, normalised, each once, in the order given."""
    if not isinstance(value, list):
        raise InvalidInput(f"{path}: expected a list of phone numbers, got {value!r}")
    if len(value) > MAX_NUMBERS:
        raise InvalidInput(f"{path}: at most {MAX_NUMBERS} numbers per customer")
    numbers: list[str] = []
    for i, raw in enumerate(value):
        number = phone_number(raw, f"{path}[{i}]")
        if number not in numbers:
            numbers.append(number)
    return numbers


def decimal_text(value: Any, path: str, negative: bool = True) -> str:
    """An amount as canonical decimal text (``"1234.50"`` stays ``"1234.50"``; ``"1e3"`` is
    refused: an amount is written the way a clerk reads it)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{path}: send amounts as strings (\"12.30\"), not JSON numbers "
                           f"with a fraction, got {value!r}")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _PLAIN_DECIMAL.fullmatch(value.strip()):
        raise InvalidInput(f"{path}: expected an amount like \"1234.50\", got {value!r}")
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidInput(f"{path}: expected an amount like \"1234.50\", got {value!r}") from None
    digits = amount.as_tuple()
    places = -int(digits.exponent)
    if places > MAX_AMOUNT_PLACES or len(digits.digits) > MAX_AMOUNT_DIGITS:
        raise InvalidInput(f"{path}: at most {MAX_AMOUNT_PLACES} decimal places and "
                           f"{MAX_AMOUNT_DIGITS} digits, got {value!r}")
    if amount < 0 and not negative:
        raise InvalidInput(f"{path}: must not be negative, got {value!r}")
    return format(amount, "f")


def iso_date(value: Any, path: str) -> str:
    """``YYYY-MM-DD`` (or "" / null for no date)."""
    if value in (None, ""):
        return ""
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise InvalidInput(f"{path}: expected a date YYYY-MM-DD, got {value!r}")


def identifier(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(f"{path}: expected 1-64 letters, digits or ._:- , got {value!r}")
    return value


def member_no(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _MEMBER_NO.fullmatch(value.strip()):
        raise InvalidInput(f"member_no: expected 1-32 letters, digits or -, got {value!r}")
    return value.strip()


def text(value: Any, path: str, limit: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{path}: expected text, got {value!r}")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{path}: must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{path}: at most {limit} characters")
    return value


def flag(value: Any, path: str) -> int:
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    raise InvalidInput(f"{path}: expected true or false, got {value!r}")


def version(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{path}: expected a version number (>= 1), got {value!r}")
    return value


def _object(body: Any, path: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput(f"{path}: expected a JSON object, got {body!r}")
    unknown = sorted(set(body) - keys)
    if unknown:
        where = "" if path in ("customer", "account") else f"{path}."
        raise InvalidInput(f"{where}{unknown[0]}: unknown key (expected one of "
                           f"{', '.join(sorted(keys))})")
    return body
