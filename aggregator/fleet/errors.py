"""The fleet area's errors: one base under ``AggregatorError``, a subtype per way a request fails.

Each carries the HTTP status the views answer with, so a view maps any ``FleetError`` in one place.
"""
from __future__ import annotations

from aggregator import AggregatorError


class FleetError(AggregatorError):
    """Base of the fleet area's errors."""

    status = 400


class InvalidInput(FleetError):
    """A request body or edge id that does not pass validation (the message names the field)."""


class NotFound(FleetError):
    """An edge that HQ does not know."""

    status = 404


class TokenUnknown(FleetError):
    """An enrollment token HQ never issued (or a mistyped one)."""

    status = 403


class TokenUsed(FleetError):
    """An enrollment token that already enrolled an edge: each one is good for one edge only."""

    status = 409


class TokenExpired(FleetError):
    """An enrollment token past its ``expires_at``; an admin issues a new one."""

    status = 410


class BrokerControlError(FleetError):
    """The broker's dynamic-security plugin could not be reached or refused a command."""

    status = 502
