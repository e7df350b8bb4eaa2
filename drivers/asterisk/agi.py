"""``HardenedAGI``: pyst2's ``asterisk.agi.AGI`` made safe for FastAGI worker threads and real replies.

What is kept from pyst2 and what is replaced:

* **Kept**: ``send_command`` (formats and writes the command line) and the command helpers that
  read their reply correctly once ``get_result`` is fixed: ``answer``, ``get_variable``,
  ``set_variable``, ``verbose``, ``hangup``, ``noop``, ``channel_status``. The result dict shape
  ``{'result': (value, data), 'endpos': (n, '')}`` is pyst2's, so its helpers read it unchanged.
* **Replaced ``__init__``**: pyst2's installs a SIGHUP handler, which Python allows only in the
  main thread (``ValueError`` in a worker), prints ``sys.argv`` to stderr and reads the env block
  itself. Here the env comes from ``read_agi_env`` (EOF-aware) or the caller, and pyst2's stderr
  chatter goes to ``logging`` at DEBUG.
* **Replaced ``get_result``** (on ``codec.parse_agi_reply``): pyst2 treats ``100 result=0
  Trying...`` (sent before ``GOSUB``'s final line) as unknown and raises; here it is skipped. The
  bare ``HANGUP`` line Asterisk sends when the caller hangs up, ``511 Command Not Permitted on a
  dead channel``, EOF and a reset all raise ``AgiHangup``, which the call session turns into one
  ``CallHungUp``. ``result=-1`` is not an error by itself: ``STREAM FILE`` of a missing file is
  ``200 result=-1 endpos=0`` and ``EXEC Dial`` to a far end that answered and hung up is ``-1``
  with the channel still up, so the caller judges it (pyst2 raised ``AGIAppError``). ``510``
  raises ``AgiInvalidCommand``; a multi-line ``520-`` usage block is read to its ``520 `` line,
  so the stream stays in step, then raises ``AgiUsageError``.
* **Replaced ``execute``**: a socket error while writing is a hang-up, whatever its errno, and a
  line break inside an argument is refused (it would inject a second command).
* **Not used**: ``stream_file``/``appexec``/``get_data`` (they turn ``-1`` into exceptions, always
  quote the EXEC argument, or drop the ``(timeout)`` flag) — see ``play``, ``exec_app``, ``collect``.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, TextIO

from asterisk.agi import AGI

from drivers.asterisk.codec import AgiReply, parse_agi_env, parse_agi_reply, quote_agi_arg
from drivers.asterisk.errors import (
    AgiError, AgiHangup, AgiInvalidCommand, AgiProtocolError, AgiUsageError,
)

log = logging.getLogger(__name__)


class _LogStream:
    """Where pyst2 writes its debugging chatter (it expects a file): DEBUG log lines."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger

    def write(self, text: str) -> int:
        if text.strip():
            self._log.debug("pyst2: %s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


def read_agi_env(stream: Any) -> dict[str, str]:
    """Read the ``agi_*`` block up to its empty line. EOF before it means the call is gone."""
    lines: list[str] = []
    while True:
        line = stream.readline()
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if line == "":
            raise AgiHangup("closed", f"connection closed inside the AGI env block after {len(lines)} lines")
        line = line.rstrip("\r\n")
        if line == "":
            break
        if ":" not in line:
            log.warning("AGI env: skipped line without ':': %r", line)
            continue
        lines.append(line)
    return parse_agi_env(lines)


class HardenedAGI(AGI):
    """pyst2's AGI on any pair of text streams, in any thread, with a reply parser that matches
    Asterisk 22. ``run`` returns the parsed ``AgiReply``; pyst2's helpers still work."""

    def __init__(self, stdin: TextIO | Any, stdout: TextIO | Any,
                 env: Mapping[str, str] | None = None, logger: logging.Logger | None = None) -> None:
        # AGI.__init__ is deliberately not called: see the module docstring.
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = _LogStream(logger or log)
        self._got_sighup = False
        self.env = dict(env) if env is not None else read_agi_env(stdin)
        self.last_reply: AgiReply | None = None
        self.hangup_seen: AgiHangup | None = None

    # --- pyst2 overrides -------------------------------------------------------------------------

    def execute(self, command: str, *args: Any) -> dict[str, tuple[str, str]]:
        if self.hangup_seen is not None:
            raise self.hangup_seen
        for arg in (command, *args):
            if "\n" in str(arg) or "\r" in str(arg):
                raise AgiError(f"line break in AGI command {command!r} argument {arg!r}")
        try:
            self.send_command(command, *args)
        except OSError as exc:
            raise self._hangup("reset", f"write failed: {exc}") from exc
        return self.get_result()

    def get_result(self, stdin: Any = None) -> dict[str, tuple[str, str]]:
        reply = self.read_reply()
        result = {"result": (reply.result, reply.data or "")}
        result.update({key: (value, "") for key, value in reply.extras.items()})
        return result

    # --- reply reading ---------------------------------------------------------------------------

    def read_reply(self) -> AgiReply:
        """The final reply to the command just sent (``100 Trying`` lines skipped)."""
        while True:
            line = self.read_line()
            if line == "":
                log.debug("AGI: blank line skipped")
                continue
            reply = parse_agi_reply(line)
            if reply.kind == "trying":
                log.debug("AGI: %s (waiting for the final reply)", line)
                continue
            return self._judge(reply, line)

    def read_idle_line(self) -> str:
        """A line nobody asked for (between commands). ``HANGUP`` and ``511`` raise ``AgiHangup``;
        anything else is returned so the caller can log it."""
        line = self.read_line()
        reply = parse_agi_reply(line)
        if reply.ends_call:
            self._judge(reply, line)
        return line

    def read_line(self) -> str:
        """One line without its end; ``AgiHangup`` on EOF or reset."""
        try:
            line = self.stdin.readline()
        except OSError as exc:
            raise self._hangup("reset", str(exc)) from exc
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if line == "":
            raise self._hangup("closed", "connection closed by Asterisk")
        return line.rstrip("\r\n")

    def _judge(self, reply: AgiReply, line: str) -> AgiReply:
        if reply.kind == "hangup":
            raise self._hangup("hangup-line", line)
        if reply.kind == "dead":
            raise self._hangup("dead-channel", line)
        if reply.kind == "invalid":
            raise AgiInvalidCommand(reply.text)
        if reply.kind == "usage":
            raise AgiUsageError(self._read_usage(line))
        if reply.kind != "ok":
            raise AgiProtocolError(reply.code, f"not an AGI reply: {line!r}")
        if reply.data == "hangup":  # older Asterisk: "200 result=-1 (hangup)"
            raise self._hangup("hangup-result", line)
        self.last_reply = reply
        return reply

    def _read_usage(self, first: str) -> str:
        lines = [first]
        if first.startswith("520-"):
            while True:
                line = self.read_line()
                lines.append(line)
                if line.startswith("520 "):
                    break
        return "\n".join(lines)

    def _hangup(self, reason: str, detail: str) -> AgiHangup:
        self.hangup_seen = AgiHangup(reason, detail)
        return self.hangup_seen

    # --- commands the edge needs, where pyst2's helper does not fit -----------------------------

    def get_variable_after_hangup(self, name: str) -> str:
        """``GET VARIABLE`` once the bare ``HANGUP`` line came: Asterisk still answers the
        dead-channel-safe commands of ``res_agi.c`` (511 answers the others)."""
        seen, self.hangup_seen = self.hangup_seen, None
        try:
            return self.get_variable(name)
        finally:
            self.hangup_seen = self.hangup_seen or seen

    def run(self, command: str, *args: Any) -> AgiReply:
        """Send one command, return its parsed final reply."""
        self.execute(command, *args)
        assert self.last_reply is not None
        return self.last_reply

    def play(self, prompt: str) -> AgiReply:
        """``STREAM FILE prompt ""``; ``result=-1 endpos=0`` (missing file) is returned, not raised."""
        return self.run("STREAM FILE", quote_agi_arg(prompt), '""')

    def collect(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """``GET DATA``: the digits keyed and whether it ended on timeout (``result= (timeout)``)."""
        reply = self.run("GET DATA", quote_agi_arg(prompt), int(timeout_ms), int(max_digits))
        digits = reply.result if reply.result not in ("-1",) else ""
        return digits, reply.data == "timeout"

    def set_music(self, on: bool, moh_class: str = "default") -> AgiReply:
        if on:
            return self.run("SET MUSIC", "ON", quote_agi_arg(moh_class))
        return self.run("SET MUSIC", "OFF")

    def exec_app(self, application: str, data: str = "") -> AgiReply:
        """``EXEC app data``; ``result=-2`` means no such application (returned, not raised)."""
        if data:
            return self.run("EXEC", application, quote_agi_arg(data))
        return self.run("EXEC", application)
