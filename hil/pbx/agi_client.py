"""Asterisk's side of FastAGI: connect to the edge, send the env block, answer its commands.

Wire rules copied from ``res/res_agi.c`` (``run_agi`` / ``agi_handle_command``) and the fixtures:

* LF-only lines; the env block (``agi_network: yes`` first) ends with an empty line; ``agi_arg_N``
  only when there are arguments.
* When the channel hangs up, Asterisk sends the bare line ``HANGUP`` once: at once if the session
  is idle, after the running command's reply otherwise. From then on the channel is *dead*: the
  commands ``res_agi.c`` marks dead-safe (GET/SET VARIABLE, GET FULL VARIABLE, EXEC, DATABASE *,
  VERBOSE, NOOP) still answer, every other known command gets ``511``. The socket stays open until
  the edge closes it.
* An unknown command is ``510 Invalid or unknown command``; bad arguments a multi-line ``520``.
* When the edge closes the socket while the channel is up, the dialplan goes on to ``Hangup()``.
"""
from __future__ import annotations

import logging
import random
import socket
import threading
import time
from typing import TYPE_CHECKING

from drivers.asterisk.codec import format_agi_env
from hil.pbx.channels import Channel
from hil.pbx.faults import reset_socket

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

log = logging.getLogger(__name__)

AGI_VERSION = "22.10.1"
# derived from source: res/res_agi.c agi_handle_command (Asterisk 13+ wording; the fixtures do not
# show it). The edge must key on the code 511, not on the text.
DEAD_CHANNEL = "511 Command Not Permitted on a dead channel or intercept routine\n"
INVALID = "510 Invalid or unknown command\n"
CONNECT_TIMEOUT_S = 2.0


def start_agi(pbx: "Pbx", ch: Channel, script: str, args: list[str], host: str | None = None,
              port: int | None = None) -> "AgiSession":
    session = AgiSession(pbx, ch, script, args, host or pbx.agi_host, port or pbx.agi_port)
    session.reset_after = pbx.agi_reset_after.get(ch.call, pbx.agi_reset_after.get(None))
    with pbx.lock:
        pbx.agi_sessions[ch.name] = session
        pbx.newexten(ch, "AGI", f"agi://{session.host}:{session.port}/{script}"
                     + "".join(f",{a}" for a in args))
    pbx.spawn(session.run, f"agi-{ch.name}")
    return session


def agi_env(pbx: "Pbx", ch: Channel, script: str, args: list[str], host: str, port: int) -> dict[str, str]:
    """The env block of ``setup_env`` in res/res_agi.c, with FastAGI's two network lines first."""
    def cid(value: str) -> str:
        return "unknown" if value in ("", "<unknown>") else value
    dnid = ch.variables.get("__DNID", "")
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://{host}:{port}/{script}",
        "agi_channel": ch.name,
        "agi_language": ch.language,
        "agi_type": ch.tech,
        "agi_uniqueid": ch.uniqueid,
        "agi_version": AGI_VERSION,
        "agi_callerid": cid(ch.caller_num),
        "agi_calleridname": cid(ch.caller_name),
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": dnid or "unknown",
        "agi_rdnis": "unknown",
        "agi_context": ch.context,
        "agi_extension": ch.exten,
        "agi_priority": str(ch.priority),
        "agi_enhanced": "0.0",
        "agi_accountcode": ch.accountcode,
        "agi_threadid": str(random.randint(139_800_000_000_000, 139_899_999_999_999)),
    }
    env.update({f"agi_arg_{i}": arg for i, arg in enumerate(args, 1)})
    return env


class AgiSession:
    """One FastAGI connection for one channel; its own thread runs the command loop."""

    def __init__(self, pbx: "Pbx", ch: Channel, script: str, args: list[str], host: str, port: int) -> None:
        self.pbx, self.channel, self.script, self.args = pbx, ch, script, args
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._in_command = False
        self.hangup_sent = False
        self.closed = False
        self.commands = 0
        self.reset_after: int | None = None
        self.reset_requested = False

    # --- writing -----------------------------------------------------------------------------
    def write(self, text: str) -> None:
        delay = self.pbx.agi_delay_ms.get(self.channel.call, self.pbx.agi_delay_ms.get(None, 0))
        if delay and not text.startswith("HANGUP"):
            time.sleep(self.pbx.timebase.real_s(delay) or 0)
        sock = self.sock
        if sock is None or self.closed:
            return
        try:
            sock.sendall(text.encode("utf-8"))
        except OSError:
            self.closed = True

    def gone(self) -> bool:
        """Hung up, or redirected away (Asterisk's async goto also ends the AGI as a hang-up)."""
        return self.channel.hungup or self.channel.redirect is not None

    def channel_hung_up(self) -> None:
        """From the PBX (scheduler thread) when our channel is gone or redirected.

        derived from source: res/res_agi.c run_agi (``needhup`` -> ``ast_agi_send(fd, chan,
        "HANGUP\n")`` once, for FastAGI, unless AGISIGHUP=no; then ``dead = 1``)."""
        with self._lock:
            if self._in_command or self.hangup_sent or self.sock is None:
                return
            self.hangup_sent = True
        self.write("HANGUP\n")

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        from hil.pbx.agi_commands import execute

        pbx, ch = self.pbx, self.channel
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            pbx.record("agi_failed", call=ch.call, channel=ch.name, error=str(exc))
            log.warning("FastAGI connect to %s:%s failed: %s", self.host, self.port, exc)
            self._dialplan_continues("connect failed")
            return
        sock.settimeout(None)
        self.sock = sock
        reader = _LineReader(sock)
        self.write(format_agi_env(agi_env(pbx, ch, self.script, self.args, self.host, self.port)).decode())
        pbx.record("agi_connected", call=ch.call, channel=ch.name, script=self.script)
        if self.gone():
            self.channel_hung_up()
        how = "edge"
        while True:
            raw = reader.readline()
            if not raw or self.reset_requested:
                how = "reset" if self.reset_requested else "edge"
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.strip():
                continue
            with self._lock:
                self._in_command = True
            try:
                execute(self, line)
            finally:
                with self._lock:
                    self._in_command = False
                    send_hangup = self.gone() and not self.hangup_sent and not self.closed
                    if send_hangup:
                        self.hangup_sent = True
            if send_hangup:
                self.write("HANGUP\n")
            self.commands += 1
            if self.reset_after is not None and self.commands >= self.reset_after:
                self.reset_requested = True
                how = "reset"
                break
        if self.reset_requested:
            self._reset_now()
        self._close()
        pbx.record("agi_closed", call=ch.call, channel=ch.name, how=how)
        self._dialplan_continues(how)

    def reset(self) -> None:
        """Fault, from another thread. Mid-command (a long ``EXEC Dial``) the connection is reset at
        once, as a network fault would: the edge sees the RST while Asterisk's Dial goes on and only
        finds the socket dead when it writes the reply. Between commands the reader is woken and
        aborts the connection from its own thread."""
        self.reset_requested = True
        with self._lock:
            if self._in_command:
                self._reset_now()
                return
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RD)  # sends nothing; unblocks recv in our thread
            except OSError:
                pass

    def shutdown(self) -> None:
        """Simulator stopping: end the session as if the edge had closed it."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _reset_now(self) -> None:
        """RST instead of FIN (SO_LINGER 0), from the session's own thread."""
        self.closed = True
        sock, self.sock = self.sock, None
        if sock is not None:
            reset_socket(sock)
            self.pbx.record("fault", what="agi_reset", details=self.channel.name)

    def _close(self) -> None:
        self.closed = True
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _dialplan_continues(self, how: str) -> None:
        """After AGI() returns the modelled dialplan runs ``Hangup()`` (cause 16), or the target
        of a Redirect."""
        from hil.pbx.redirect import run_target

        with self.pbx.lock:
            if self.pbx.agi_sessions.get(self.channel.name) is self:
                del self.pbx.agi_sessions[self.channel.name]
            target = self.channel.redirect if not self.channel.hungup else None
            if target is None and not self.channel.hungup:
                self.pbx.hangup(self.channel, 16, by="edge" if how == "edge" else "system", soft=True)
        if target is not None:
            run_target(self.pbx, self.channel, *target)


class _LineReader:
    """LF-terminated lines from a socket we own (no makefile, so a close really closes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"
