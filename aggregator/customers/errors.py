"""The customers area's errors: one base under ``AggregatorError``, a subtype per HTTP outcome."""
from __future__ import annotations

from aggregator import AggregatorError


class CustomersError(AggregatorError):
    """Base of the customers area's errors."""


class InvalidInput(CustomersError):
    """A request body that does not validate; the message starts with the field's path
    (``numbers[1]: not a valid phone number: '12345'``)."""


class NotFound(CustomersError):
    """A customer, account or calendar day that does not exist (or was deleted)."""


class Conflict(CustomersError):
    """A member number or phone number another customer holds, or a stale ``if_version``."""
