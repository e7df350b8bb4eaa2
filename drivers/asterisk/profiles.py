"""Asterisk version quirks, as data.

Everything here was read off the Asterisk 22 recordings in ``tests/fixtures/asterisk-22``; a new
Asterisk release that behaves differently gets a new profile, not new ``if`` branches in the driver.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class AsteriskProfile:
    """What one Asterisk release does that a driver has to know.

    ``ami_banner_version`` is the AMI *protocol* version in the banner (``11.0.0`` on Asterisk 22),
    not the Asterisk version. ``local_answer_delay_s``: ANSWER on a Local channel takes this long
    (Asterisk waits for media); data for whoever sizes timeouts or scripts a simulator, as the
    driver sets no timeout on a call's commands. ``originate_reasons`` maps ``OriginateResponse``
    ``Reason:`` codes (the AST_CONTROL value the dial stopped on) to outcomes.
    """
    name: str
    ami_banner_version: str
    local_answer_delay_s: float
    originate_reasons: Mapping[int, str] = field(default_factory=dict)


ASTERISK_22 = AsteriskProfile(
    name="asterisk-22",
    ami_banner_version="11.0.0",
    local_answer_delay_s=0.5,
    originate_reasons=MappingProxyType({
        0: "failed",       # never rang: no extension, no context, unknown technology
        1: "hangup",
        3: "no_answer",    # still ringing when Timeout hit
        4: "answered",
        5: "busy",
        8: "congestion",
    }),
)

PROFILES: Mapping[str, AsteriskProfile] = MappingProxyType({ASTERISK_22.name: ASTERISK_22})


def profile_for_banner(banner_version: str, default: AsteriskProfile = ASTERISK_22) -> AsteriskProfile:
    """The profile whose AMI banner matches; ``default`` when none does (the caller logs it)."""
    for profile in PROFILES.values():
        if profile.ami_banner_version == banner_version:
            return profile
    return default
