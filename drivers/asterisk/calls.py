"""One call's FastAGI session: run the core's commands in order, notice the hang-up, report both.

The worker thread that Asterisk's connection landed on stays with the call to its end. Between
commands (after ``HoldMusic``, or while the core decides) the call is idle, and the caller may
hang up then: Asterisk sends a bare ``HANGUP`` line that nobody asked for. So the idle wait
watches the socket and the command queue together (``select`` on the socket and a wake-up
socketpair), and the hang-up is noticed at once, not when the next command fails.

Every way a call can end — ``HANGUP`` line, ``511`` dead-channel reply, EOF, reset, edge stop —
arrives here as ``AgiHangup`` and becomes exactly one ``CallHungUp``. The one exception is the
core's own ``Hangup`` command, which finishes with nothing (docs/architecture.md): the core
already knows.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
from typing import Callable

from drivers.asterisk.agi import HardenedAGI, quote_agi_arg
from drivers.asterisk.codec import AgiReply
from drivers.asterisk.errors import AgiError, AgiHangup
from drivers.asterisk.fastagi import FastAgiRequest
from edge.commands import (
    Answer, CallCommand, Collect, DialOut, HoldMusic, Hangup, PickupCall, Play, RecordMessage,
    RingAgent, Say, Spy,
)
from edge.events import CallHungUp, CommandDone, Event

log = logging.getLogger(__name__)

# How each way of losing the channel is reported: (by, cause, cause_txt).
HANGUP_REPORTS: dict[str, tuple[str, int, str]] = {
    "hangup-line": ("caller", 16, "Normal Clearing"),
    "hangup-result": ("caller", 16, "Normal Clearing"),
    "dead-channel": ("caller", 16, "Normal Clearing"),
    "closed": ("unknown", 0, "Unknown"),
    "reset": ("unknown", 0, "Unknown"),
    "system": ("system", 16, "Normal Clearing"),
    "error": ("system", 0, "Unknown"),
}
APP_NOT_FOUND = "-2"
# Dial's pre-dial handler on an agent's desk-phone leg (docs/asterisk.md, context cc-callee):
# it enables the *3 recording key on the agent's channel only, never on the customer's.
CALLEE_SETUP = "b(cc-callee^s^1)"


class CallSession:
    """Runs on the call's FastAGI worker thread (``run``); ``enqueue`` and ``stop`` from any thread."""

    def __init__(self, request: FastAgiRequest, post: Callable[[Event], None],
                 idle_poll_s: float = 1.0) -> None:
        self.request = request
        self.call_id = request.uniqueid
        self.agi: HardenedAGI = request.agi
        self._post = post
        self._idle_poll_s = idle_poll_s
        self._queue: "queue.Queue[CallCommand]" = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._music_on = False
        self._ended = threading.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def enqueue(self, command: CallCommand) -> None:
        if self._ended.is_set():
            log.info("call %s already ended; %s dropped", self.call_id, type(command).__name__)
            return
        self._queue.put(command)
        self._wake()

    def stop(self) -> None:
        """Edge shutting down: end the call's session (reported as a hang-up by ``system``)."""
        self._stopping.set()
        self._wake()

    # --- the worker loop -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                command = self._next_command()
                if not self._execute(command):
                    return  # the core's own Hangup: it needs no CallHungUp
        except AgiHangup as hangup:
            self._report_hangup(hangup)
        except Exception:  # a bug must not leak the call: report it gone and let Asterisk move on
            log.exception("call %s: session failed; closing it", self.call_id)
            self.request.stream.close()
            self._report_hangup(AgiHangup("error", "edge session failed"))
        finally:
            self._ended.set()
            self._wake_r.close()
            self._wake_w.close()

    def _next_command(self) -> CallCommand:
        """The next queued command; while there is none, watch the socket for a hang-up."""
        while True:
            if self._stopping.is_set():
                raise AgiHangup("system", "edge stopping")
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            try:
                ready = self.request.stream.poll(self._idle_poll_s, self._wake_r)
            except (OSError, ValueError) as exc:
                raise AgiHangup("reset", f"poll failed: {exc}") from exc
            if self._wake_r in ready:
                self._drain_wake()
            if self.request.stream in ready:
                line = self.agi.read_idle_line()
                log.warning("call %s: unexpected line while idle, ignored: %r", self.call_id, line)

    def _report_hangup(self, hangup: AgiHangup) -> None:
        reason = "system" if self._stopping.is_set() else hangup.reason
        by, cause, cause_txt = HANGUP_REPORTS.get(reason, ("unknown", 0, "Unknown"))
        log.info("call %s (%s) hung up: %s", self.call_id, self.request.channel, hangup)
        self._post(CallHungUp(self.call_id, cause=cause, cause_txt=cause_txt, by=by))

    # --- commands --------------------------------------------------------------------------------

    def _execute(self, command: CallCommand) -> bool:
        """Run one command; False when the session is over (the core's Hangup)."""
        name = type(command).__name__
        try:
            if isinstance(command, Hangup):
                self._hangup(command)
                return False
            self._run_command(command)
        except AgiHangup:
            raise
        except AgiError as exc:
            log.error("call %s: %s failed: %s", self.call_id, name, exc)
            self._done(name, ok=False)
        return True

    def _run_command(self, command: CallCommand) -> None:
        agi = self.agi
        if isinstance(command, Answer):
            agi.answer()
            self._done("Answer")
        elif isinstance(command, Play):
            self._play(command)
        elif isinstance(command, Collect):
            digits, timed_out = agi.collect(command.prompt, command.timeout_ms, command.max_digits)
            self._music_on = False  # GET DATA stops music on hold, like STREAM FILE
            self._done("Collect", digits=digits, timed_out=timed_out)
        elif isinstance(command, Say):
            self._say(command)
        elif isinstance(command, RecordMessage):
            self._record(command)
        elif isinstance(command, HoldMusic):
            agi.set_music(True, command.moh_class)
            self._music_on = True
        elif isinstance(command, RingAgent):
            if command.caller_id:
                agi.run("SET CALLERID", quote_agi_arg(command.caller_id))
            options = CALLEE_SETUP if command.dial_string.startswith("PJSIP/") else ""
            self._dial("RingAgent", command.dial_string, command.timeout_s, options)
        elif isinstance(command, DialOut):
            self._dial("DialOut", command.dial_string, command.timeout_s)
        elif isinstance(command, Spy):
            self._exec("Spy", "ChanSpy", f"{command.target},{command.options}")
        elif isinstance(command, PickupCall):
            self._exec("PickupCall", "PickupChan", command.target)
        else:
            log.error("call %s: command %r is not a FastAGI command; skipped", self.call_id, command)
            self._done(type(command).__name__, ok=False)

    def _play(self, command: Play) -> None:
        reply = self.agi.play(command.prompt)
        self._music_on = False  # STREAM FILE stops music on hold and does not restart it
        if reply.result == "-1":
            log.warning("call %s: prompt %r did not play (missing file?): %s",
                        self.call_id, command.prompt, reply.text)
        self._done("Play")

    def _say(self, command: Say) -> None:
        """Each part in order: ``SAY NUMBER n ""``, ``SAY DIGITS d ""``, ``STREAM FILE p ""``."""
        for kind, value in command.parts:
            if kind == "prompt":
                reply = self.agi.play(value)
            else:
                reply = self.agi.run(f"SAY {kind.upper()}", value, '""')
            if reply.result == "-1":
                log.warning("call %s: SAY %s %r failed: %s", self.call_id, kind, value, reply.text)
        self._music_on = False
        self._done("Say")

    def _record(self, command: RecordMessage) -> None:
        """``RECORD FILE``; ``(dtmf)``, ``(timeout)`` or silence end it. A hang-up raises
        ``AgiHangup`` from the reply, and the message on disk is still the caller's."""
        reply = self.agi.run("RECORD FILE", quote_agi_arg(command.path), "wav", '"#"',
                             command.max_s * 1000, 0, "beep", f"s={command.silence_s}")
        self._music_on = False
        ended = reply.data or ("dtmf" if reply.result not in ("0", "-1") else "timeout")
        self._done("RecordMessage", status=ended, ok=reply.result != "-1")

    def _dial(self, name: str, dial_string: str, timeout_s: int, options: str = "") -> None:
        """``EXEC Dial``; ``result=-1`` after an answered far end hung up is normal, so the
        outcome comes from ``DIALSTATUS``/``ANSWEREDTIME``, not from the result."""
        data = f"{dial_string},{timeout_s}" + (f",{options}" if options else "")
        reply = self._exec_app("Dial", data)
        if reply.result == APP_NOT_FOUND:
            self._done(name, ok=False)
            return
        status, hangup = self._read_after_dial("DIALSTATUS", None)
        talk, hangup = self._read_after_dial("ANSWEREDTIME", hangup)
        self._done(name, status=status, talk_s=_seconds(talk), caller_gone=hangup is not None)
        if hangup is not None:
            raise hangup

    def _read_after_dial(self, variable: str, hangup: AgiHangup | None) -> tuple[str, AgiHangup | None]:
        """Read a Dial outcome variable even when the caller hung up during the bridge.

        Asterisk then writes the bare ``HANGUP`` line and still answers ``GET VARIABLE`` (a
        dead-channel-safe command), so the reply follows the HANGUP line. Reporting the outcome
        first keeps an answered call answered when AMI's ``DialEnd`` comes late or not at all.
        """
        if hangup is not None and hangup.reason != "hangup-line":
            return "", hangup  # 511, EOF or reset: nothing more will be answered
        try:
            if hangup is not None:
                return self.agi.get_variable_after_hangup(variable), hangup
            return self.agi.get_variable(variable), hangup
        except AgiHangup as gone:
            if gone.reason != "hangup-line":
                return "", hangup or gone
            try:
                reply = self.agi.read_reply()  # the GET VARIABLE's own reply, after the HANGUP line
            except AgiHangup:
                return "", hangup or gone
            return (reply.data or "") if reply.result == "1" else "", hangup or gone

    def _exec(self, name: str, application: str, data: str) -> None:
        reply = self._exec_app(application, data)
        self._done(name, ok=reply.result != APP_NOT_FOUND)

    def _exec_app(self, application: str, data: str) -> AgiReply:
        if self._music_on:
            self.agi.set_music(False)
            self._music_on = False
        reply = self.agi.exec_app(application, data)
        if reply.result == APP_NOT_FOUND:
            log.error("call %s: Asterisk has no application %r (EXEC result=-2)", self.call_id, application)
        return reply

    def _hangup(self, command: Hangup) -> None:
        log.info("call %s: hanging up (%s)", self.call_id, command.reason or "core")
        try:
            self.agi.hangup()
        except AgiHangup:
            pass  # the HANGUP line or EOF is the expected answer to our own HANGUP
        except AgiError as exc:
            log.warning("call %s: HANGUP answered oddly: %s", self.call_id, exc)
        self.request.stream.close()

    def _done(self, command: str, **fields: object) -> None:
        self._post(CommandDone(self.call_id, command, **fields))  # type: ignore[arg-type]

    # --- wake-up pipe ----------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:  # full (already awake) or closed (session over): nothing to do
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass


def _seconds(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0
