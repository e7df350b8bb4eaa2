"""The Asterisk driver's one error hierarchy.

Every error derives from ``AsteriskError``. Each one also derives from the matching pyst2 exception
(``ManagerException``, ``AGIHangup``...), so code written against pyst2's types, and pyst2's own
command helpers that catch them (``AGI.channel_status`` re-raises ``AGIHangup``), keep working.

A hang-up is not an error for the core: ``AgiHangup`` exists so the per-call worker can unwind a
command at once; the driver turns it into a ``CallHungUp`` event and nothing above the driver
ever sees it.
"""
from __future__ import annotations

from asterisk.agi import AGIError, AGIHangup, AGIInvalidCommand, AGIUnknownError, AGIUsageError
from asterisk.manager import ManagerAuthException, ManagerException, ManagerSocketException


class AsteriskError(Exception):
    """Base of every error the Asterisk driver raises."""


# --- AMI -----------------------------------------------------------------------------------------

class AmiError(AsteriskError, ManagerException):
    """Something went wrong on the AMI connection."""


class AmiAuthError(AmiError, ManagerAuthException):
    """Login refused (wrong user and wrong secret look the same); the connection is closed."""


class AmiTimeout(AmiError):
    """An action got no (complete) response in time; its ActionID is forgotten."""


class AmiDisconnected(AmiError, ManagerSocketException):
    """The AMI link is down: pending actions fail with this instead of hanging."""


class AmiProtocolError(AmiError):
    """The far side did not speak AMI as expected (no banner, unexpected reply)."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``; ``message`` is its ``Message:`` header."""

    def __init__(self, action: str, message: str, output: tuple[str, ...] = ()) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message
        self.output = output


# --- AGI -----------------------------------------------------------------------------------------

class AgiError(AsteriskError, AGIError):
    """A FastAGI command could not be carried out."""


class AgiHangup(AgiError, AGIHangup):
    """The call's channel is gone (bare ``HANGUP`` line, ``511``, socket closed or reset).

    ``reason`` names which, for the log: ``hangup-line``, ``dead-channel``, ``closed``, ``reset``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AgiInvalidCommand(AgiError, AGIInvalidCommand):
    """``510 Invalid or unknown command``."""


class AgiUsageError(AgiError, AGIUsageError):
    """``520`` multi-line usage block: the command's syntax was wrong."""


class AgiProtocolError(AgiError, AGIUnknownError):
    """A reply line that is no AGI reply at all."""


class FastAgiError(AsteriskError):
    """The FastAGI server could not start or serve a connection."""
