"""Desk-phone ``##codes`` (TEL-5): parse the digits, check the caller's roles, say what to do.

The table is configuration (``[codes]``, defaults in ``edge.config.DEFAULT_CODES``):

====== ============== ======================== =====================================
code   action         roles                    result
====== ============== ======================== =====================================
##1ext listen         supervisor or team_lead  ChanSpy ``PJSIP/<ext>-`` options ``q``
##2ext whisper        supervisor or team_lead  ChanSpy options ``qw`` (customer does not hear)
##3nn… trunk_dial     any agent                Dial ``DAHDI/<nn>/<number>``
##4ext barge          supervisor or team_lead  ChanSpy options ``qB`` (强插)
##5ext force_hangup   supervisor or team_lead  AMI Hangup of ``PJSIP/<ext>-*`` (强拆)
##6ext pickup         any agent                PickupChan ``PJSIP/<ext>``
##7    toggle_busy    any agent                示忙 / 示闲
##8    toggle_login   any agent                log in / log out
##9    toggle_away    any agent                away / back
====== ============== ======================== =====================================

A trailing ``#`` ends the digits and is dropped. The longest matching prefix wins, so a branch may
add ``##10`` beside ``##1``. This module decides; ``edge.desk`` turns the decision into commands.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from edge.config import AgentConfig, CodeRule

SPY_OPTIONS = {"listen": "q", "whisper": "qw", "barge": "qB"}
EXTENSION_ACTIONS = ("listen", "whisper", "barge", "force_hangup", "pickup")
TOGGLE_ACTIONS = ("toggle_busy", "toggle_login", "toggle_away")


@dataclass(frozen=True)
class CodeAction:
    """An allowed code: ``extension`` for spy/hang-up/pickup, ``channel``+``number`` for ##3."""
    code: str
    action: str
    extension: str = ""
    channel: int | None = None
    number: str = ""


@dataclass(frozen=True)
class CodeRefusal:
    code: str
    reason: str


class CodeBook:
    def __init__(self, rules: Mapping[str, CodeRule], trunk_channels: Iterable[int] = ()) -> None:
        self._rules = dict(rules)
        self._prefixes = sorted(self._rules, key=len, reverse=True)
        self._channels = frozenset(trunk_channels)

    def interpret(self, digits: str, agent: AgentConfig | None) -> CodeAction | CodeRefusal:
        """``digits`` as dialled (``##18001#``); ``agent`` is the dialling extension's agent."""
        digits = digits.strip().rstrip("#")
        rule = next((self._rules[p] for p in self._prefixes if digits.startswith(p)), None)
        if rule is None:
            return CodeRefusal(digits, "unknown code")
        if agent is None:
            return CodeRefusal(rule.prefix, "this extension belongs to no agent")
        if rule.roles and not rule.roles.intersection(agent.roles):
            needed = " or ".join(sorted(rule.roles))
            return CodeRefusal(rule.prefix, f"{rule.action} needs the role {needed}")
        argument = digits[len(rule.prefix):]
        if rule.action in EXTENSION_ACTIONS:
            return self._on_extension(rule, argument, agent)
        if rule.action == "trunk_dial":
            return self._trunk_dial(rule, argument)
        if argument:
            return CodeRefusal(rule.prefix, f"unexpected digits {argument!r} after {rule.prefix}")
        return CodeAction(rule.prefix, rule.action)

    def _on_extension(self, rule: CodeRule, argument: str,
                      agent: AgentConfig) -> CodeAction | CodeRefusal:
        if not argument.isdigit():
            return CodeRefusal(rule.prefix, f"{rule.prefix} needs an extension, e.g. {rule.prefix}8001")
        if argument == agent.extension:
            return CodeRefusal(rule.prefix, "a code cannot act on your own extension")
        return CodeAction(rule.prefix, rule.action, extension=argument)

    def _trunk_dial(self, rule: CodeRule, argument: str) -> CodeAction | CodeRefusal:
        channel, number = argument[:2], argument[2:]
        if len(channel) != 2 or not channel.isdigit() or not number.isdigit():
            return CodeRefusal(rule.prefix, f"{rule.prefix} needs a two-digit channel and a number")
        if self._channels and int(channel) not in self._channels:
            return CodeRefusal(rule.prefix, f"no trunk channel {channel}")
        return CodeAction(rule.prefix, rule.action, channel=int(channel), number=number)
