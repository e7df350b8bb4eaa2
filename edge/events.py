"""Domain events: everything the core learns about the world arrives as one of these.

Drivers translate wire traffic (FastAGI replies, AMI events) into events; the core never sees a
socket. Every event names the call it concerns by ``call_id``, which is the Asterisk ``Uniqueid``
of the channel whose FastAGI session carries the call (``agi_uniqueid``), so AMI events and AGI
sessions meet on the same key.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Base of every domain event."""


# --- calls -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallOffered(Event):
    """A trunk call reached the edge's FastAGI ``incoming`` script.

    ``trunk`` is the trunk channel number (``DAHDI/3-1`` -> 3), ``did`` the dialled number the trunk
    delivered (``s`` on analog lines, which carry none).
    """
    call_id: str
    channel: str
    caller: str
    caller_name: str = ""
    did: str = ""
    trunk: int | None = None


@dataclass(frozen=True)
class ExtensionDialled(Event):
    """A desk phone dialled ``digits`` (FastAGI ``dial`` script): an outside number or a ``##code``."""
    call_id: str
    channel: str
    extension: str
    digits: str


@dataclass(frozen=True)
class CommandDone(Event):
    """A per-call command finished without a hang-up.

    ``command`` is the class name of the command that finished (``"Play"``, ``"Collect"``...);
    ``digits`` holds collected DTMF (``""`` on timeout), ``status`` the Dial status
    (``ANSWER``, ``BUSY``, ``NOANSWER``, ``CONGESTION``, ``CHANUNAVAIL``, ``CANCEL``) for dials.
    ``talk_s`` is the answered time Asterisk reports for a bridged Dial (``ANSWEREDTIME``).
    ``caller_gone``: the caller hung up while the command ran; a ``CallHungUp`` follows and ends
    the call, so the Dial's outcome (an answer AMI may not have reported yet) is never lost.
    """
    call_id: str
    command: str
    digits: str = ""
    timed_out: bool = False
    status: str = ""
    talk_s: float = 0.0
    ok: bool = True
    caller_gone: bool = False


@dataclass(frozen=True)
class AgentAnswered(Event):
    """The agent's phone answered a call offered to it (AMI ``DialEnd`` with ``DialStatus: ANSWER``).

    ``extension`` is ``""`` when the answering channel is a trunk (a roaming agent's mobile);
    ``peer_channel``/``peer_uniqueid`` name the answering leg, for the CDR's ``legs``.
    """
    call_id: str
    extension: str
    peer_channel: str = ""
    peer_uniqueid: str = ""


@dataclass(frozen=True)
class CallHungUp(Event):
    """The call's channel is gone. A normal event, never an error.

    ``by`` is ``caller``, ``agent``, ``system`` or ``unknown``; ``cause`` the Q.850 code when the trunk
    gives one (E1/PRI), ``0`` when it does not (analog FXO lines carry no cause).
    """
    call_id: str
    cause: int = 16
    cause_txt: str = "Normal Clearing"
    by: str = "caller"


# --- agents ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentLogin(Event):
    agent_id: str


@dataclass(frozen=True)
class AgentLogout(Event):
    agent_id: str


@dataclass(frozen=True)
class AgentSetBusy(Event):
    """示忙 / 示闲: the agent (or a supervisor) marks the agent busy or free."""
    agent_id: str
    busy: bool


@dataclass(frozen=True)
class AgentSetAway(Event):
    """The agent left the desk (calls skip them; later issues roam to the mobile)."""
    agent_id: str
    away: bool


@dataclass(frozen=True)
class CallbackAnswered(Event):
    """The agent answered a callback's Originate: FastAGI ``callback`` with the number to dial."""
    call_id: str
    channel: str
    extension: str
    number: str


@dataclass(frozen=True)
class RemoteDialRequest(Event):
    """OUT-13 短信外呼 (the SMS part comes with the GSM issue; the API asks too): call the agent's
    mobile, then ``number``, and bridge them, showing the company number."""
    agent_id: str
    number: str


@dataclass(frozen=True)
class CallbackFailed(Event):
    """The agent's phone did not take a callback's Originate (``outcome``: no_answer, busy...)."""
    task_key: str
    extension: str
    outcome: str


@dataclass(frozen=True)
class TransferRequest(Event):
    """An agent (API) transfers their call (TEL-2): ``target`` is an extension, ``queue:<group>``
    or an outside number; ``data`` (customer, notes) goes with the call to the next agent.
    ``attended``: consult the target (an extension) first; the caller holds meanwhile."""
    agent_id: str
    target: str
    data: dict[str, str] = field(default_factory=dict)
    attended: bool = False


@dataclass(frozen=True)
class HoldChanged(Event):
    """A desk phone put its call on hold or took it back (AMI ``Hold`` / ``Unhold``): the
    customer hears music on hold meanwhile; the CDR counts the time (``hold_s``)."""
    extension: str
    on: bool


@dataclass(frozen=True)
class AttendedTransferred(Event):
    """AMI ``AttendedTransfer``: the agent consulted ``target_extension`` and handed the caller
    over (``success``), or the consult failed and the agent is back with the caller."""
    call_id: str
    target_extension: str
    success: bool
    detail: str = ""


@dataclass(frozen=True)
class CallTransferred(Event):
    """FastAGI ``transfer``: the redirected caller's channel is back at the edge, for ``target``."""
    call_id: str
    channel: str
    target: str


@dataclass(frozen=True)
class TransferFailed(Event):
    """Asterisk refused the ``Redirect`` (the channel is gone)."""
    call_id: str
    reason: str = ""


@dataclass(frozen=True)
class LookupDone(Event):
    """The store's answer to a ``Lookup``: ``values`` are text (amounts as decimal strings)."""
    call_id: str
    kind: str
    found: bool
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingToggle(Event):
    """Record on demand: the agent (phone or API) switches their current call's recording.

    ``on`` None toggles; True/False sets. Refused (``recording.refused``) when the agent's policy
    is ``never`` or they have no answered call. From the phone (``*3`` during the call, FastAGI
    ``record-toggle``) the driver knows only the ``extension``.
    """
    agent_id: str
    on: bool | None = None
    extension: str = ""


@dataclass(frozen=True)
class RecordingFailed(Event):
    """Asterisk refused a ``MixMonitor`` (``No such channel``): the call has no recording."""
    call_id: str
    file: str
    reason: str = ""


# --- infrastructure ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Tick(Event):
    """Time passed: the core fires every timer whose deadline is at or before the clock's now."""


@dataclass(frozen=True)
class LinkChanged(Event):
    """A driver's link (``ami``) went up or down; the core keeps routing on FastAGI regardless."""
    link: str
    up: bool
    detail: str = ""


@dataclass(frozen=True)
class ChannelsSnapshot(Event):
    """After an AMI reconnect: the live channels Asterisk reports (``CoreShowChannels``).

    The core ends every call it still holds whose channel is missing, so no CDR stays open.
    """
    channels: tuple[str, ...] = field(default_factory=tuple)
