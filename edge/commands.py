"""Commands: everything the core wants done, returned from ``Core.handle``.

Per-call commands (they carry ``call_id``) are executed in order on that call's FastAGI session;
each finishes with a ``CommandDone`` or a ``CallHungUp`` event, except ``HoldMusic`` and ``Hangup``,
which finish at once. Commands without ``call_id`` go to AMI or to the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """Base of every command."""


@dataclass(frozen=True)
class CallCommand(Command):
    """A command executed on one call's FastAGI session, in order."""
    call_id: str


@dataclass(frozen=True)
class Answer(CallCommand):
    """AGI ``ANSWER``."""


@dataclass(frozen=True)
class Play(CallCommand):
    """AGI ``STREAM FILE <prompt> ""`` (a missing prompt is ``result=-1``, not a failure)."""
    prompt: str


@dataclass(frozen=True)
class Collect(CallCommand):
    """AGI ``GET DATA <prompt> <timeout_ms> <max_digits>``: the caller keys digits after a prompt."""
    prompt: str
    max_digits: int = 1
    timeout_ms: int = 5000


@dataclass(frozen=True)
class Say(CallCommand):
    """Read a value back (``edge.speech.spoken``): AGI ``SAY NUMBER``/``SAY DIGITS`` and
    ``STREAM FILE`` for each part in order; finishes with one ``CommandDone("Say")``."""
    parts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RecordMessage(CallCommand):
    """AGI ``RECORD FILE <path> wav "#" <max ms> 0 beep s=<silence>``: the caller leaves a
    message (INB-13); ``path`` is absolute, without extension. Finishes with
    ``CommandDone("RecordMessage", status=dtmf|timeout|silence)``; a caller who hangs up
    mid-message ends it with ``CallHungUp`` and the file keeps what was said."""
    path: str
    max_s: int = 120
    silence_s: int = 5


@dataclass(frozen=True)
class HoldMusic(CallCommand):
    """AGI ``SET MUSIC ON <moh_class>``: the caller hears music while the session waits for the core."""
    moh_class: str = "default"


@dataclass(frozen=True)
class RingAgent(CallCommand):
    """AGI ``EXEC Dial <dial_string>,<timeout_s>`` toward an agent's desk phone.

    Finishes with ``CommandDone(status=...)`` once the Dial returns: ``NOANSWER`` after the ring
    timeout, ``ANSWER`` after a bridged call ended. ``AgentAnswered`` arrives in between from AMI.
    """
    extension: str
    dial_string: str
    timeout_s: int
    caller_id: str = ""  # AGI SET CALLERID first: the number a roaming agent's mobile shows


@dataclass(frozen=True)
class DialOut(CallCommand):
    """AGI ``EXEC Dial <dial_string>,<timeout_s>`` toward an outside number on a trunk."""
    dial_string: str
    timeout_s: int = 60


@dataclass(frozen=True)
class Spy(CallCommand):
    """AGI ``EXEC ChanSpy <target>,<options>``: ``q`` listen, ``qw`` whisper, ``qB`` barge."""
    target: str
    options: str


@dataclass(frozen=True)
class PickupCall(CallCommand):
    """AGI ``EXEC PickupChan <target>``: answer a call ringing at another extension."""
    target: str


@dataclass(frozen=True)
class Hangup(CallCommand):
    """AGI ``HANGUP``; ``reason`` is for logs and the CDR."""
    reason: str = ""


@dataclass(frozen=True)
class ForceHangup(Command):
    """AMI ``Hangup`` of every channel of a device (``Channel: /^PJSIP/8001-.*$/``): 强拆."""
    channel_prefix: str


@dataclass(frozen=True)
class StartRecording(Command):
    """AMI ``MixMonitor`` on the call's channel: Asterisk writes ``<spool_dir>/<file>`` (WAV).

    An AMI action, not AGI, because the call's FastAGI session is busy in ``Dial`` while it talks.
    ``options`` ``b``: only bridged audio. ``leg`` numbers the recordings of one call (on-demand
    toggles and transfers make several); ``agent_id`` files it.
    """
    call_id: str
    channel: str
    file: str
    leg: int = 1
    agent_id: str = ""
    options: str = "b"


@dataclass(frozen=True)
class StopRecording(Command):
    """AMI ``StopMixMonitor``: the agent switched an on-demand recording off mid-call."""
    call_id: str
    channel: str
    file: str


@dataclass(frozen=True)
class MuteRecording(Command):
    """AMI ``MixMonitorMute``: silence the recording while a sensitive IVR step (PIN) runs."""
    call_id: str
    channel: str
    muted: bool


@dataclass(frozen=True)
class EncodeRecording(Command):
    """The call is over: encode its WAV ``file`` to MP3 (``edge.recordings``), with ``meta``
    (agent, numbers, direction, start, duration, result) for the tags, the folder and the store."""
    call_id: str
    file: str
    leg: int = 1
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lookup(Command):
    """Ask the store (the edge's customer cache) on the IVR's behalf; answered by ``LookupDone``.

    ``kind`` ``member``: is ``key`` a member number; ``account``: ``field`` (balance, amount_due,
    due_date) of customer ``key``'s account.
    """
    call_id: str
    kind: str
    key: str
    field: str = ""


@dataclass(frozen=True)
class CreateTask(Command):
    """Put a follow-up on someone's list (a bad rating's 差评回访 for the team lead, a callback).

    ``key`` makes it idempotent (``bad_rating:<call_id>``): the same task is never created twice.
    """
    key: str
    kind: str
    assignee: str = ""
    group: str = ""
    call_id: str = ""
    number: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateTask(Command):
    """A task's new state (``dialing``, ``open`` again, ``done``, ``failed``) and result."""
    key: str
    state: str
    result: str = ""
    attempt: bool = False


@dataclass(frozen=True)
class OriginateCallback(Command):
    """AMI ``Originate``: ring the agent's phone (``dial_string``); when they answer, Asterisk
    runs FastAGI ``callback`` with ``number`` (context ``callback``, exten = number), which
    posts ``CallbackAnswered``. A phone that does not answer posts ``CallbackFailed``."""
    task_key: str
    extension: str
    dial_string: str
    number: str
    timeout_s: int = 20
    caller_id: str = ""  # shown on the agent's phone and then to the customer (OUT-13)


@dataclass(frozen=True)
class RedirectCall(Command):
    """AMI ``Redirect``: send the caller's channel out of its bridge to ``context``/``exten``
    (a blind transfer: context ``transfer`` brings it back to FastAGI ``transfer`` with the
    target). Answered by ``CallTransferred`` when the new session arrives, or ``TransferFailed``."""
    call_id: str
    channel: str
    context: str
    exten: str


@dataclass(frozen=True)
class ConsultTransfer(Command):
    """AMI ``Atxfer`` on the agent's channel: the caller holds (music), the agent's phone calls
    ``exten`` in ``context``; when the agent hangs up, Asterisk bridges the caller with the
    target and reports ``AttendedTransfer``."""
    call_id: str
    agent_channel: str
    exten: str
    context: str = "consult"


@dataclass(frozen=True)
class WriteCdr(Command):
    """Persist one call detail record; ``record`` holds the columns of the store's ``cdrs`` table."""
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notify(Command):
    """Something an agent, supervisor or wallboard would want to see (agent state, queue position).

    ``topic`` is e.g. ``agent.state``, ``queue.position``, ``code.refused``; ``data`` is JSON-able.
    """
    topic: str
    data: dict[str, Any] = field(default_factory=dict)
