"""``AmiClient``: the AMI actions the edge uses, as typed methods over ``AmiSession``.

What comes from pyst2 0.5.1 and what does not:

* **Used**: ``asterisk.manager.Manager``'s action builders (``originate``, ``hangup``,
  ``redirect``, ``command``, ``ping``). Each builds the header dict and hands it to
  ``send_action``; ``_ActionBuilder`` overrides ``send_action`` to return the dict, and the
  session sends it. pyst2's exception types are the bases of ``errors.py``, so callers that catch
  ``ManagerException`` still work.
* **Replaced**: everything that touches the socket. ``Manager.send_action`` waits on one shared
  response queue, so replies are matched in arrival order, and reuses the caller's ``ActionID``;
  ``ManagerMsg.parse`` calls ``dict.has_key`` on a ``ChanVariable`` header (gone in Python 3), which
  kills the reader thread, after which every action hangs; a dead link is never noticed and never
  re-opened; ``login`` has no ``Events`` field. ``session.py`` does all of that instead, on
  ``codec.py``'s parser.
* **Added** (pyst2 has no builder): ``Getvar``, ``Setvar``, ``CoreShowChannels``, Originate's
  ``OriginateResponse`` outcome, ChanSpy, ``MixMonitor`` / ``StopMixMonitor`` /
  ``MixMonitorMute`` (call recording, fixture ami-22), ``Atxfer`` and ``PlayDTMF`` (attended
  transfer and its DTMF features).

Async Originate is always accepted (``Originate successfully queued``) even when it cannot work;
only the ``OriginateResponse`` event carrying the same ActionID says what happened, so
``originate`` waits for that event, not for the response.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable, Mapping

from asterisk.manager import Manager

from drivers.asterisk.codec import AmiMessage
from drivers.asterisk.errors import AmiActionError, AmiError, AmiTimeout
from drivers.asterisk.profiles import ASTERISK_22, AsteriskProfile
from drivers.asterisk.session import AmiResult, AmiSession, AmiSettings, EventCallback, LinkListener

log = logging.getLogger(__name__)

SPY_OPTIONS: Mapping[str, str] = {"listen": "q", "whisper": "qw", "barge": "qB"}
MUTE_DIRECTIONS = ("read", "write", "both")


class _ActionBuilder(Manager):
    """pyst2's ``Manager`` action builders without its socket, threads and queues."""

    def __init__(self) -> None:  # deliberately not Manager.__init__: it creates threads and queues
        pass

    def send_action(self, cdict: dict | None = None, **kwargs: object) -> dict:  # type: ignore[override]
        headers = dict(cdict or {})
        headers.update(kwargs)
        return headers

    def close(self) -> None:
        pass

    def __del__(self) -> None:
        pass


@dataclass(frozen=True)
class OriginateRequest:
    """An async Originate's fields; ``AmiClient.originate`` and ``originate_nowait`` take them
    (all but ``channel``) as keywords. ``timeout_ms`` is the ring timeout sent to Asterisk."""
    channel: str
    _: KW_ONLY
    application: str = ""
    data: str = ""
    context: str = ""
    exten: str = ""
    priority: int | str = ""
    timeout_ms: int = 30000
    caller_id: str = ""
    variables: Mapping[str, str] | None = None
    account: str = ""


@dataclass(frozen=True)
class OriginateResult:
    """What an async Originate came to (the ``OriginateResponse`` event).

    ``outcome``: ``answered`` (Reason 4), ``busy`` (5), ``congestion`` (8), ``no_answer`` (3,
    still ringing at Timeout), ``failed`` (0, never rang: no extension, context or technology).
    On failure ``channel`` is the dial string as requested and ``uniqueid`` is ``None``.
    """
    action_id: str
    success: bool
    reason: int
    outcome: str
    channel: str
    uniqueid: str | None
    event: AmiMessage


@dataclass(frozen=True)
class ChannelInfo:
    """One ``CoreShowChannel`` item."""
    channel: str
    uniqueid: str
    linkedid: str
    state: str
    application: str
    application_data: str
    duration: str
    bridge_id: str

    @classmethod
    def from_event(cls, event: AmiMessage) -> "ChannelInfo":
        g = event.get
        return cls(g("Channel") or "", g("Uniqueid") or "", g("Linkedid") or "",
                   g("ChannelStateDesc") or "", g("Application") or "", g("ApplicationData") or "",
                   g("Duration") or "", g("BridgeId") or "")


class AmiClient:
    """Typed AMI actions. Blocking calls; ``originate_nowait`` returns a ``Future`` of the outcome."""

    def __init__(
        self,
        settings: AmiSettings,
        *,
        on_link: LinkListener | None = None,
        sleep: Callable[[float], None] | None = None,
        profile: AsteriskProfile = ASTERISK_22,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.session = AmiSession(settings, on_link=on_link, sleep=sleep, profile=profile)
        self._build = _ActionBuilder()

    # --- life cycle ------------------------------------------------------------------------------

    def login(self) -> None:
        """Connect and log in now (raises ``AmiAuthError``, ``AmiDisconnected``); stays up after."""
        self.session.connect()

    def start(self) -> None:
        """Connect in the background, retrying with back-off until it works."""
        self.session.start()

    def close(self) -> None:
        self.session.close()

    @property
    def connected(self) -> bool:
        return self.session.connected

    def subscribe(self, event: str, callback: EventCallback) -> None:
        self.session.subscribe(event, callback)

    # --- actions ---------------------------------------------------------------------------------

    def ping(self) -> float:
        """Round trip to Asterisk; returns its ``Timestamp``."""
        result = self._send(self._build.ping())
        return float(result.get("Timestamp") or 0.0)

    def originate(self, channel: str, *, wait_s: float | None = None, **fields: Any) -> OriginateResult:
        """Async Originate, then wait for its ``OriginateResponse`` (keywords: ``OriginateRequest``).

        ``wait_s`` defaults to the ring timeout plus ``action_timeout_s``.
        """
        request = OriginateRequest(channel, **fields)
        action_id, future = self._originate(request)
        wait = wait_s if wait_s is not None else request.timeout_ms / 1000 + self.settings.action_timeout_s
        try:
            return future.result(wait)
        except TimeoutError:
            self.session.forget_event(action_id, "OriginateResponse")
            raise AmiTimeout(f"Originate {channel} ({action_id}): no OriginateResponse within {wait:.1f} s") from None

    def originate_nowait(self, channel: str, **fields: Any) -> Future[OriginateResult]:
        """Send an async Originate (keywords: ``OriginateRequest``); the Future resolves when
        Asterisk reports the outcome.

        Raises ``AmiActionError`` when Asterisk refuses the action itself (``Channel not
        specified``), ``AmiDisconnected`` when the link is down.
        """
        return self._originate(OriginateRequest(channel, **fields))[1]

    def _originate(self, r: OriginateRequest) -> tuple[str, Future[OriginateResult]]:
        headers = self._build.originate(
            r.channel, r.exten, context=r.context, priority=str(r.priority), timeout=str(r.timeout_ms),
            application=r.application, data=r.data, caller_id=r.caller_id, run_async=True,
            earlymedia="", account=r.account, variables=dict(r.variables or {}),
        )
        action_id = self.session.new_action_id()
        event = self.session.expect_event(action_id, "OriginateResponse")
        try:
            self._send(headers, action_id=action_id)
        except AmiError:
            self.session.forget_event(action_id, "OriginateResponse")
            raise
        outcome: Future[OriginateResult] = Future()
        event.add_done_callback(lambda done: self._resolve_originate(action_id, done, outcome))
        return action_id, outcome

    def spy(self, supervisor_dial: str, target: str, mode: str = "listen", *,
            caller_id: str = "", timeout_ms: int = 30000, wait_s: float | None = None) -> OriginateResult:
        """Ring the supervisor's phone; on answer it runs ``ChanSpy(target,q|qw|qB)``.

        ``mode``: ``listen`` (q), ``whisper`` (qw: the agent hears the supervisor, the customer
        does not), ``barge`` (qB: both hear).
        """
        if mode not in SPY_OPTIONS:
            raise ValueError(f"spy mode must be one of {sorted(SPY_OPTIONS)}, not {mode!r}")
        return self.originate(
            supervisor_dial, application="ChanSpy", data=f"{target},{SPY_OPTIONS[mode]}",
            caller_id=caller_id, timeout_ms=timeout_ms, wait_s=wait_s,
        )

    def redirect(self, channel: str, context: str, exten: str, priority: int | str = 1,
                 extra_channel: str = "") -> None:
        self._send(self._build.redirect(channel, exten, priority=str(priority),
                                        extra_channel=extra_channel, context=context))

    def atxfer(self, channel: str, exten: str, context: str = "") -> None:
        """Attended transfer by ``channel`` (the agent's leg, bridged with the caller) to
        ``exten@context`` (``context`` empty: the channel's own).

        Asterisk only queues the ``atxfer`` feature code and the digits on the channel and answers
        ``Atxfer successfully queued``: the outcome comes as events (``Hold``, the consultation's
        ``DialEnd`` from ``Local/<exten>@<context>-…;2``, ``AttendedTransfer`` once the agent hangs
        up, ``Unhold`` when the target did not answer). Raises ``AmiActionError`` with Asterisk's
        message: ``No channel specified``, ``No extension specified``, ``Channel specified does not
        exist``, ``No attended transfer feature code found`` (features.conf has no ``atxfer``)."""
        self._send({"Action": "Atxfer", "Channel": channel, "Exten": exten, "Context": context})

    def play_dtmf(self, channel: str, digits: str, receive: bool = False) -> None:
        """One ``PlayDTMF`` per digit. ``receive``: as if the channel's phone had keyed them (the
        transfer features during an attended transfer: ``*4`` swap, ``*1`` abort, ``*2``
        complete); otherwise they are sent out on the channel. ``Channel not found`` raises."""
        for digit in digits:
            headers = {"Action": "PlayDTMF", "Channel": channel, "Digit": digit}
            if receive:
                headers["Receive"] = "yes"
            self._send(headers)

    def hangup(self, channel: str, cause: int | None = None) -> list[str]:
        """Hang up one channel, or every channel matching ``/regex/`` (a list response).

        Returns the channels hung up (for a single channel, that channel).
        """
        headers = self._build.hangup(channel)
        if cause is not None:
            headers["Cause"] = str(cause)
        result = self._send(headers)
        if result.response.is_list_start:
            return [item.get("Channel") or "" for item in result.items]
        return [channel]

    def core_show_channels(self) -> list[ChannelInfo]:
        result = self._send({"Action": "CoreShowChannels"})
        return [ChannelInfo.from_event(item) for item in result.items]

    def getvar(self, variable: str, channel: str | None = None) -> str:
        """A channel variable, or a global one without ``channel``; ``""`` when unset."""
        headers = {"Action": "Getvar", "Variable": variable}
        if channel:
            headers["Channel"] = channel
        return self._send(headers).get("Value") or ""

    def setvar(self, variable: str, value: str, channel: str | None = None) -> None:
        headers = {"Action": "Setvar", "Variable": variable, "Value": value}
        if channel:
            headers["Channel"] = channel
        self._send(headers)

    def command(self, cli: str) -> list[str]:
        """A CLI command; its ``Output:`` lines. An unknown command raises with its output."""
        return list(self._send(self._build.command(cli)).response.get_all("Output"))

    def mix_monitor(self, channel: str, file: str, options: str = "b") -> None:
        """Record ``channel`` to ``file`` (a relative name lands in Asterisk's monitor directory;
        the ``MIXMONITOR_FILENAME`` VarSet that follows names the absolute path). ``b``: only
        while the channel is bridged. Raises ``AmiActionError`` (``No such channel``...)."""
        self._send({"Action": "MixMonitor", "Channel": channel, "File": file, "Options": options})

    def stop_mix_monitor(self, channel: str) -> None:
        """Stop ``channel``'s recording; Asterisk closes the file (its WAV header gets its sizes)
        before it answers. ``Could not stop monitoring channel`` when nothing records there."""
        self._send({"Action": "StopMixMonitor", "Channel": channel})

    def mix_monitor_mute(self, channel: str, muted: bool, direction: str = "both") -> None:
        """Mute or unmute ``channel``'s recording: ``read`` (what the channel says), ``write``
        (what it hears) or ``both``; muted audio is written as silence."""
        if direction not in MUTE_DIRECTIONS:
            raise ValueError(f"direction must be one of {MUTE_DIRECTIONS}, not {direction!r}")
        self._send({"Action": "MixMonitorMute", "Channel": channel, "Direction": direction,
                    "State": "1" if muted else "0"})

    # --- helpers ---------------------------------------------------------------------------------

    def _send(self, headers: Mapping[str, object], action_id: str | None = None) -> AmiResult:
        """Send pyst2-style headers; ``Response: Error`` becomes ``AmiActionError``."""
        fields = {k: v for k, v in headers.items() if k != "Action" and v not in ("", None, [], {})}
        action = str(headers["Action"])
        result = self.session.send(action, fields, action_id=action_id)  # type: ignore[arg-type]
        if not result.ok:
            output = tuple(result.response.get_all("Output"))
            log.warning("AMI %s refused: %s", action, result.message)
            raise AmiActionError(action, result.message, output)
        return result

    def _resolve_originate(self, action_id: str, done: Future[AmiMessage], outcome: Future[OriginateResult]) -> None:
        error = done.exception()
        if error is not None:
            outcome.set_exception(error)
            return
        event = done.result()
        reason = _int(event.get("Reason"))
        uniqueid = event.get("Uniqueid")
        outcome.set_result(OriginateResult(
            action_id=action_id,
            success=(event.get("Response") or "") == "Success",
            reason=reason,
            outcome=self.profile.originate_reasons.get(reason, "unknown"),
            channel=event.get("Channel") or "",
            uniqueid=None if not uniqueid or uniqueid == "<unknown>" else uniqueid,
            event=event,
        ))


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return -1
