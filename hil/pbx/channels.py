"""Channels and bridges as Asterisk 22 names and numbers them, and the header blocks AMI prints.

Names: trunks ``DAHDI/<n>-1``, desk phones ``PJSIP/<ext>-<8 hex>``, Local pairs
``Local/<exten>@<context>-<8 hex>;1`` / ``;2``. The 8-hex suffix is one global counter, as in
Asterisk. Uniqueids are ``<creation epoch seconds>.<global counter>`` (no ``systemname`` set),
linkedids the uniqueid of the call's first channel. Header order copies the fixtures
(``tests/fixtures/asterisk-22/ami-04-*.txt``).
"""
from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

STATE_DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up",
              7: "Busy", 8: "Dialing Offhook", 9: "Pre-ring"}
DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7

# derived from source: main/causes.h + the causes[] table of main/channel.c (ast_cause2str);
# 0 prints "Unknown" as in the fixtures (ami-06: "Cause: 0 / Cause-txt: Unknown").
CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
}

UNKNOWN = "<unknown>"


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


@dataclass(eq=False)
class Channel:
    """One Asterisk channel. Mutable; the PBX core's lock guards every field."""
    name: str
    uniqueid: str
    linkedid: str
    tech: str
    state: int = DOWN
    caller_num: str = UNKNOWN
    caller_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    language: str = "en"
    accountcode: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 1
    application: str = ""
    app_data: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    bridge: "Bridge | None" = None
    created_mono: float = field(default_factory=time.monotonic)
    answered_ms: float | None = None
    hungup: bool = False
    cause: int = 0
    hangup_by: str = ""
    role: str = ""               # customer, agent, outside, supervisor, local, phone
    call: str | None = None      # the scenario call this channel belongs to
    extension: str | None = None  # desk phone extension (PJSIP channels)
    trunk: int | None = None     # DAHDI channel number
    profile: str | None = None   # trunk profile: analog or e1
    moh: str | None = None
    redirect: tuple[str, str] | None = None  # (context, exten) after an AMI Redirect
    dtmf: list[str] = field(default_factory=list)
    dtmf_listening: bool = False
    gone: threading.Event = field(default_factory=threading.Event)

    @property
    def up(self) -> bool:
        return self.state == UP and not self.hungup

    @property
    def device(self) -> str:
        """``PJSIP/8001`` for ``PJSIP/8001-0000000a``; ``DAHDI/3`` for ``DAHDI/3-1``."""
        return self.name.rsplit("-", 1)[0] if self.tech in ("PJSIP", "DAHDI") else self.name

    def duration_s(self) -> int:
        return int(time.monotonic() - self.created_mono)


@dataclass(eq=False)
class Bridge:
    """A basic two-party bridge (what Dial builds): ``simple_bridge`` technology."""
    uniqueid: str = field(default_factory=lambda: str(uuid.uuid4()))
    bridge_type: str = "basic"
    technology: str = "simple_bridge"
    channels: list[Channel] = field(default_factory=list)


class Registry:
    """Creates channel names and uniqueids and holds the live channels."""

    def __init__(self) -> None:
        self._unique = itertools.count()
        self._suffix = itertools.count()
        self.live: dict[str, Channel] = {}
        self.all: list[Channel] = []

    def next_uniqueid(self) -> str:
        return f"{int(time.time())}.{next(self._unique)}"

    def next_suffix(self) -> str:
        return f"{next(self._suffix):08x}"

    def create(self, name: str, tech: str, linkedid: str | None = None, **fields) -> Channel:
        uniqueid = self.next_uniqueid()
        channel = Channel(name=name, uniqueid=uniqueid, linkedid=linkedid or uniqueid, tech=tech,
                          **fields)
        self.live[name] = channel
        self.all.append(channel)
        return channel

    def remove(self, channel: Channel) -> None:
        self.live.pop(channel.name, None)

    def find(self, name: str) -> Channel | None:
        return self.live.get(name)

    def by_uniqueid(self, uniqueid: str) -> Channel | None:
        for channel in self.live.values():
            if channel.uniqueid == uniqueid:
                return channel
        return None


def channel_headers(ch: Channel, chanvars: tuple[str, ...], prefix: str = "") -> list[tuple[str, str]]:
    """The standard channel snapshot block; ``prefix`` is ``Dest``, ``Spyer``, ``LocalOne``..."""
    pairs = [
        ("Channel", ch.name),
        ("ChannelState", str(ch.state)),
        ("ChannelStateDesc", STATE_DESC.get(ch.state, "Unknown")),
        ("CallerIDNum", ch.caller_num),
        ("CallerIDName", ch.caller_name),
        ("ConnectedLineNum", ch.connected_num),
        ("ConnectedLineName", ch.connected_name),
        ("Language", ch.language),
        ("AccountCode", ch.accountcode),
        ("Context", ch.context),
        ("Exten", ch.exten),
        ("Priority", str(ch.priority)),
        ("Uniqueid", ch.uniqueid),
        ("Linkedid", ch.linkedid),
    ]
    pairs += [("ChanVariable", f"{var}={ch.variables.get(var, '')}") for var in chanvars]
    return [(prefix + key, value) for key, value in pairs]


def bridge_headers(bridge: Bridge) -> list[tuple[str, str]]:
    """derived from fixture: agi-03-exec-dial.ami.txt (BridgeCreate/Enter/Leave/Destroy)."""
    return [
        ("BridgeUniqueid", bridge.uniqueid),
        ("BridgeType", bridge.bridge_type),
        ("BridgeTechnology", bridge.technology),
        ("BridgeCreator", UNKNOWN),
        ("BridgeName", UNKNOWN),
        ("BridgeNumChannels", str(len(bridge.channels))),
        ("BridgeVideoSourceMode", "none"),
    ]
