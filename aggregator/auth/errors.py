"""The auth area's errors: one base under ``AggregatorError``, a subtype per way a request fails."""
from __future__ import annotations

from aggregator import AggregatorError


class AuthError(AggregatorError):
    """Base of the auth area's errors."""


class InvalidInput(AuthError):
    """A user, department or role that does not pass validation (the message names the field)."""


class NotFound(AuthError):
    """A user, department or token id that does not exist."""


class Conflict(AuthError):
    """A unique name already taken, or a department move that would make a cycle."""
