"""HardenedAGI over a real TCP connection: the replies pyst2's AGI mishandles, one test each."""
from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest
from asterisk.agi import AGI, AGIDBError

from drivers.asterisk.agi import HardenedAGI
from drivers.asterisk.errors import AgiError, AgiHangup, AgiInvalidCommand, AgiUsageError
from drivers.asterisk.transport import LineStream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"


@pytest.fixture
def wire():
    """(edge stream, asterisk socket): the two ends of one real TCP connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    asterisk = socket.create_connection(listener.getsockname())
    edge, _ = listener.accept()
    listener.close()
    asterisk.settimeout(3)
    edge.settimeout(3)
    yield LineStream(edge), asterisk
    edge.close()
    asterisk.close()


def open_agi(wire, env_bytes: bytes | None = None) -> tuple[HardenedAGI, socket.socket]:
    stream, asterisk = wire
    asterisk.sendall(env_bytes or (FIXTURES / "agi-03-exec-dial.txt").read_bytes().split(b"\n\n")[0] + b"\n\n")
    return HardenedAGI(stream, stream), asterisk


def read_command(asterisk: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        data += asterisk.recv(1)
    return data.decode().rstrip("\n")


def test_pyst2_agi_cannot_be_built_in_a_worker_thread_but_ours_can(wire):
    stream, asterisk = wire
    asterisk.sendall(b"agi_network: yes\n\n" * 2)
    errors: list[BaseException] = []
    built: list[HardenedAGI] = []
    before = signal.getsignal(signal.SIGHUP)

    def worker() -> None:
        with open(os.devnull, "w") as quiet:
            try:
                AGI(stdin=stream, stdout=stream, stderr=quiet)
            except ValueError as exc:  # "signal only works in main thread"
                errors.append(exc)
        built.append(HardenedAGI(stream, stream))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(3)
    assert errors and "main thread" in str(errors[0])
    assert built and built[0].env == {"agi_network": "yes"}
    assert signal.getsignal(signal.SIGHUP) is before


def test_env_block_from_a_recording(wire):
    agi, _ = open_agi(wire)
    assert agi.env["agi_network_script"] == "dial" and agi.env["agi_uniqueid"] == "1795392259.59"
    assert agi.env["agi_accountcode"] == ""


def test_100_trying_is_skipped_until_the_final_line(wire):
    agi, asterisk = open_agi(wire)
    asterisk.sendall(b"100 result=0 Trying...\n200 result=0 Gosub complete\n")
    reply = agi.run("GOSUB", "sub-agent", "s", "1")
    assert (reply.kind, reply.result) == ("ok", "0")
    assert read_command(asterisk) == "GOSUB sub-agent s 1"


@pytest.mark.parametrize("line, reason", [
    (b"511 Command Not Permitted on a dead channel or intercept routine\n", "dead-channel"),
    (b"HANGUP\n", "hangup-line"),
])
def test_dead_channel_and_bare_hangup_raise_agi_hangup(wire, line, reason):
    agi, asterisk = open_agi(wire)
    asterisk.sendall(line)
    with pytest.raises(AgiHangup) as hangup:
        agi.answer()
    assert hangup.value.reason == reason
    with pytest.raises(AgiHangup):  # no further command is written to a dead call
        agi.noop()
    asterisk.settimeout(0.1)
    assert read_command(asterisk) == "ANSWER"
    with pytest.raises(socket.timeout):
        asterisk.recv(1)


def test_eof_and_reset_are_hangups(wire):
    agi, asterisk = open_agi(wire)
    asterisk.close()
    with pytest.raises(AgiHangup) as hangup:
        agi.answer()
    assert hangup.value.reason in ("closed", "reset")


def test_result_minus_one_is_not_an_error(wire):
    agi, asterisk = open_agi(wire)
    asterisk.sendall(b"200 result=-1 endpos=0\n200 result=-1\n200 result=1 (ANSWER)\n")
    missing = agi.play("no-such-file")
    assert (missing.result, missing.extras) == ("-1", {"endpos": "0"})
    assert agi.exec_app("Dial", "PJSIP/8001,20").result == "-1"  # answered, far end hung up
    assert agi.get_variable("DIALSTATUS") == "ANSWER"
    assert [read_command(asterisk) for _ in range(3)] == [
        'STREAM FILE no-such-file ""', "EXEC Dial PJSIP/8001,20", 'GET VARIABLE "DIALSTATUS"']


def test_510_and_multiline_520_keep_the_stream_in_step(wire):
    agi, asterisk = open_agi(wire)
    recorded = (FIXTURES / "agi-01-env-and-basic-commands.txt").read_text()
    usage = recorded[recorded.index("520-"):recorded.index("520 End of proper usage.\n") + 25]
    asterisk.sendall(b"510 Invalid or unknown command\n" + usage.encode() + b"200 result=6\n")
    with pytest.raises(AgiInvalidCommand):
        agi.run("FOO", "BAR")
    with pytest.raises(AgiUsageError) as usage_error:
        agi.run("STREAM FILE")
    assert "PLAYBACKSTATUS" in str(usage_error.value) and str(usage_error.value).endswith("520 End of proper usage.")
    assert agi.channel_status() == 6


def test_get_data_digits_and_timeout(wire):
    agi, asterisk = open_agi(wire)
    asterisk.sendall(b"200 result=1234\n200 result= (timeout)\n200 result=12 (timeout)\n")
    assert agi.collect("acc-menu", 6000, 5) == ("1234", False)
    assert agi.collect("acc-menu", 2000, 3) == ("", True)
    assert agi.collect("acc-menu", 2000, 3) == ("12", True)
    assert read_command(asterisk) == "GET DATA acc-menu 6000 5"


def test_replay_of_the_basic_recording_through_pyst2_helpers(wire):
    """Every reply of agi-01 (a real Asterisk 22), read by pyst2's own helpers on our parser."""
    stream, asterisk = wire
    asterisk.sendall((FIXTURES / "agi-01-env-and-basic-commands.txt").read_bytes())
    agi = HardenedAGI(stream, stream)
    agi.answer()
    assert agi.channel_status() == 6
    agi.set_variable("ACC_X", "hello world")
    assert agi.get_variable("ACC_X") == "hello world"
    assert agi.get_variable("ACC_UNSET") == ""
    assert agi.get_full_variable("${CHANNEL}-${ACC_X}") == "Local/basic@fastagi-0000001b;2-hello world"
    assert agi.play("acc-welcome").extras == {"endpos": "19112"}
    assert agi.play("no-such-file").result == "-1"
    agi.run("SAY NUMBER", "1234", '""')
    agi.run("SAY DIGITS", "42", '""')
    agi.database_put("acc", "key1", "value1")
    assert agi.database_get("acc", "key1") == "value1"
    with pytest.raises(AGIDBError):
        agi.database_get("acc", "nokey")
    agi.verbose("hello from agi", 1)
    agi.noop()
    with pytest.raises(AgiInvalidCommand):
        agi.run("FOO", "BAR")
    with pytest.raises(AgiUsageError):
        agi.run("STREAM FILE")
    assert agi.channel_status("Local/none-ffffffff;1") == -1


def test_a_line_break_in_an_argument_is_refused(wire):
    agi, asterisk = open_agi(wire)
    with pytest.raises(AgiError, match="line break"):
        agi.play("x\nHANGUP")
