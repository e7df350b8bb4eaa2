"""One live call as the core tracks it, from offer (or dial) to its CDR.

The core keeps a ``Call`` only while the call lives; once its CDR is written the call is
forgotten, so any later event for the same ``call_id`` (a late ``CallHungUp`` after our own
``Hangup``) finds nothing and cannot write a second record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from edge.regions import Region

INBOUND = "inbound"
OUTBOUND = "outbound"
INTERNAL = "internal"
CODE = "code"
CALLBACK = "callback"


class Phase(str, Enum):
    MENU = "menu"                # inbound: the customer-type menu is collecting a digit
    IVR = "ivr"                  # inbound: in an IVR flow (edge.ivr_calls)
    RATING = "rating"            # inbound: the agent hung up; the caller rates the call
    CALLBACK_OFFER = "callback_offer"    # inbound: "press 1 for a callback" (INB-9)
    CALLBACK_NUMBER = "callback_number"  # inbound: keying the number to call back
    CALLBACK = "callback"        # a callback: the agent answered, the customer is being dialled
    TRANSFERRING = "transferring"  # inbound: redirected, waiting for FastAGI transfer
    OUTSIDE = "outside"          # inbound: transferred to an outside number, DialOut running
    VOICEMAIL = "voicemail"      # inbound: the caller is leaving a message (INB-13)
    ROUTING = "routing"          # inbound: being placed (transient inside one event)
    WAITING_FOR_AGENT = "waiting_for_agent"  # inbound: holding for the last agent (sticky)
    QUEUED = "queued"            # inbound: in a group's queue with music on hold
    RINGING = "ringing"          # inbound: RingAgent running
    TALKING = "talking"          # inbound: an agent answered
    DESK = "desk"                # desk phone: DialOut / Spy / PickupCall running
    ENDING = "ending"            # the far side cancelled; waiting for CallHungUp


@dataclass(eq=False, slots=True)
class Call:
    call_id: str
    channel: str
    direction: str
    caller: str
    callee: str
    started_at: float
    seq: int = 0                 # arrival order at the edge: FIFO key in every queue
    number: str = ""             # the customer's national number (blacklist, VIP, last agent)
    trunk: int | None = None
    did: str = ""
    region: Region | None = None
    flagged: bool = False
    vip_owner: str = ""          # agent id when the caller is a VIP
    priority: int = 1
    phase: Phase = Phase.ROUTING
    group: str = ""
    group_rule: str = ""         # how the group was chosen: region, customer_type, or its strategy
    rule: str = ""               # the rule that placed the call with its agent (CDR "rule")
    agent_id: str = ""
    extension: str = ""
    placements: int = 0          # ACD decisions made so far; direct targets only on the first
    tried: set[str] = field(default_factory=set)      # agents rung in vain since last queued
    admitted: set[str] = field(default_factory=set)   # groups whose queue limits it passed
    visited: list[str] = field(default_factory=list)  # groups it overflowed from
    queued_at: float | None = None
    overflow_due: bool = False   # max wait passed while ringing: overflow if the ring fails
    waiting_for: str = ""        # agent id of a sticky wait
    music_on: bool = False
    answered_at: float | None = None
    reported_talk_s: float | None = None  # Asterisk's ANSWEREDTIME, preferred to our own clock
    code: str = ""
    action: str = ""             # desk calls: the running command (DialOut, Spy, PickupCall)
    target_extension: str = ""   # desk calls: the extension a code or internal call acts on
    disposition: str = ""        # set by the flow when it knows better than the default
    recording_file: str = ""     # the WAV MixMonitor is writing now ("" = not recording)
    recordings: list[tuple[int, str, str]] = field(default_factory=list)  # (leg, file, agent id)
    recording_muted: bool = False
    ivr_trace: str = ""          # the IVR steps walked, sensitive digits masked (CDR "ivr")
    roaming_to: str = ""         # the mobile number the current ring goes to (INB-8)
    roam_only: bool = False      # out of hours: rings only on-call mobiles
    legs: list[dict] = field(default_factory=list)  # other channels the call was bridged to
    task_key: str = ""           # the callback task a callback call works on
    rating: str = ""             # the caller's 1/2/3 after the agent hung up (INB-12)
    voicemail_box: str = ""      # the box a message is being left in
    transfer_to: str = ""        # a blind transfer in progress: its target (TEL-2)
    prior_talk_s: float = 0.0    # talk time with agents before the last transfer
    leg_answered_at: float | None = None  # when the current agent answered
    agent_channel: str = ""      # the answering agent's channel (AMI DialEnd DestChannel)
    hold_since: float | None = None
    hold_s: float = 0.0          # time the customer spent on hold (music)
    consult_to: str = ""         # an attended transfer's target while the agent consults
    forwarded: set[str] = field(default_factory=set)  # forward targets tried (no loops)
    data: dict = field(default_factory=dict)  # call data that follows a transfer (notes...)
    period: str = ""             # the group calendar's period at arrival (open, holiday...)
