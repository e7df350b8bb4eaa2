"""The simulator's FastAGI side against a tiny raw-socket AGI server written here (the "edge"),
plus the audio-path model and AGI faults. Formats are compared with the agi-* fixtures."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import BinaryIO, Callable

import pytest

from drivers.asterisk.codec import AmiMessage, AmiParser, parse_agi_env
from hil.pbx.simulator import PbxSimulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"
SCALE = 0.01


class Agi:
    """One FastAGI session seen from the edge: send a command, read its whole reply."""

    def __init__(self, conn: socket.socket, file: BinaryIO) -> None:
        self.conn = conn
        self.file = file
        self.hangup_lines = 0
        self.log: list[tuple[str, list[str]]] = []
        lines = []
        while True:
            line = self.file.readline().decode()
            if line in ("\n", ""):
                break
            lines.append(line)
        self.raw_env = lines
        self.env = parse_agi_env(lines)

    def cmd(self, command: str) -> list[str]:
        self.conn.sendall((command + "\n").encode())
        out: list[str] = []
        while True:
            line = self.file.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if line == "HANGUP":
                self.hangup_lines += 1
                continue
            out.append(line)
            if line.startswith("520-") or line.startswith("100 "):
                continue
            if out[0].startswith("520-") and not line.startswith("520 "):
                continue
            break
        self.log.append((command, out))
        return out

    def last(self, command: str) -> str:
        return self.cmd(command)[-1]

    def read_unsolicited(self, timeout: float = 2.0) -> str:
        self.conn.settimeout(timeout)
        try:
            return self.file.readline().decode().rstrip("\n")
        finally:
            self.conn.settimeout(None)


class FakeEdge:
    """A FastAGI server (``agi_server``): ``flows[script](agi)`` runs per session in its own thread."""

    def __init__(self, flows: dict[str, Callable[[Agi], None]], agi_server) -> None:
        self.flows = flows
        self.sessions: list[Agi] = []
        self.errors: list[BaseException] = []
        self.server = agi_server(self._serve)
        self.port = self.server.port

    def _serve(self, conn: socket.socket, file: BinaryIO) -> None:
        try:
            agi = Agi(conn, file)
            self.sessions.append(agi)
            flow = self.flows.get(agi.env.get("agi_network_script", ""))
            if flow:
                flow(agi)
        except (OSError, ValueError):
            pass
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def world(agi_server):
    """Build (edge, simulator) pairs and stop them after the test."""
    made: list = []

    def make(flows, world=None, **kwargs):
        edge = FakeEdge(flows, agi_server)
        sim = PbxSimulator(world or {}, agi_port=edge.port, time_scale=SCALE, **kwargs).start()
        made.append((edge, sim))
        return edge, sim

    yield make
    for edge, sim in made:
        sim.stop()
        edge.close()
        assert not edge.errors, edge.errors


E1 = {"trunks": [{"profile": "e1", "channels": "1-4"}]}


def test_env_block_matches_the_fixture_shape(world):
    edge, sim = world({}, {**E1, "calls": [{"id": "c1", "caller": "13800138000", "did": "88880000"}]})
    sim.wait_record("agi_closed", 3, call="c1")
    agi = edge.sessions[0]
    fixture = (FIXTURES / "agi-01-env-and-basic-commands.txt").read_text().split("\n\n")[0].split("\n")
    assert [line.split(":")[0] for line in agi.raw_env] == [l.split(":")[0] for l in fixture] + ["agi_arg_1"]
    env = agi.env
    assert env["agi_network"] == "yes" and env["agi_network_script"] == "incoming"
    assert env["agi_request"] == f"agi://127.0.0.1:{edge.port}/incoming"
    assert env["agi_channel"] == "DAHDI/1-1" and env["agi_type"] == "DAHDI"
    assert env["agi_version"] == "22.10.1" and env["agi_callerid"] == "13800138000"
    assert env["agi_dnid"] == "88880000" and env["agi_arg_1"] == "88880000"
    assert env["agi_uniqueid"].count(".") == 1 and env["agi_threadid"].isdigit()
    assert all(line.endswith("\n") and not line.endswith("\r\n") for line in agi.raw_env)


def test_analog_call_has_no_did_and_desk_phone_dial_session(world):
    edge, sim = world({}, {"phones": {"8001": {"dials": [{"at_ms": 0, "digits": "13912345678"}]}},
                           "calls": [{"id": "a1", "caller": "8675512345678"}]})
    sim.wait_for(lambda: len(edge.sessions) == 2, 3)
    by_script = {a.env["agi_network_script"]: a.env for a in edge.sessions}
    assert by_script["incoming"]["agi_arg_1"] == "s" and by_script["incoming"]["agi_extension"] == "s"
    dial = by_script["dial"]
    assert dial["agi_channel"].startswith("PJSIP/8001-") and len(dial["agi_channel"]) == len("PJSIP/8001-") + 8
    assert dial["agi_arg_1"] == "13912345678" and dial["agi_type"] == "PJSIP" and dial["agi_callerid"] == "8001"


def test_basic_replies_match_the_fixture_formats(world):
    replies: dict[str, list[str]] = {}

    def flow(agi: Agi) -> None:
        for command in ("ANSWER", "CHANNEL STATUS", 'SET VARIABLE ACC_X "hello world"', "GET VARIABLE ACC_X",
                        "GET VARIABLE ACC_UNSET", 'GET FULL VARIABLE "${CHANNEL}-${ACC_X}"',
                        'STREAM FILE acc-welcome ""', 'STREAM FILE no-such-file ""', "FOO BAR",
                        "STREAM FILE", "CHANNEL STATUS Local/none-ffffffff;1", "EXEC NoSuchApp foo"):
            replies[command] = agi.cmd(command)

    edge, sim = world({"incoming": flow}, {**E1, "prompts": {"acc-welcome": 2389},
                                            "calls": [{"id": "c1", "caller": "5551000", "did": "1"}]})
    sim.wait_record("agi_closed", 3, call="c1")
    fixture = dict(_fixture_exchanges("agi-01-env-and-basic-commands.log"))
    for command in ("ANSWER", "CHANNEL STATUS", 'SET VARIABLE ACC_X "hello world"', "GET VARIABLE ACC_X",
                    "GET VARIABLE ACC_UNSET", 'STREAM FILE acc-welcome ""', 'STREAM FILE no-such-file ""',
                    "FOO BAR", "STREAM FILE", "CHANNEL STATUS Local/none-ffffffff;1"):
        assert replies[command] == fixture[command], command
    assert replies['GET FULL VARIABLE "${CHANNEL}-${ACC_X}"'] == ["200 result=1 (DAHDI/1-1-hello world)"]
    assert replies["EXEC NoSuchApp foo"] == ["200 result=-2"]


def _fixture_exchanges(name: str) -> list[tuple[str, list[str]]]:
    """(command, reply lines) pairs from an agi-*.log transcript."""
    pairs: list[tuple[str, list[str]]] = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("> "):
            pairs.append((line[2:], []))
        elif line.startswith("< ") and pairs:
            pairs[-1][1].append(line[2:])
    return pairs


def test_get_data_and_wait_for_digit(world):
    out: dict[str, str] = {}

    def flow(agi: Agi) -> None:
        agi.cmd("ANSWER")
        out["get"] = agi.last("GET DATA acc-menu 6000 5")
        out["wait"] = agi.last("WAIT FOR DIGIT 8000")
        out["timeout"] = agi.last("GET DATA acc-welcome 2000 3")
        out["wait0"] = agi.last("WAIT FOR DIGIT 1000")

    edge, sim = world({"incoming": flow}, {**E1, "calls": [{"id": "c1", "did": "1", "menu_input": ["1234#", "5"]}]})
    sim.wait_record("agi_closed", 3, call="c1")
    assert out == {"get": "200 result=1234", "wait": "200 result=53", "timeout": "200 result= (timeout)",
                   "wait0": "200 result=0"}
    assert [r.get("digit") for r in sim.records("dtmf", heard=True)] == list("1234#5")


def test_caller_hangup_sends_bare_hangup_then_511(world):
    out: dict[str, object] = {}

    def flow(agi: Agi) -> None:
        agi.cmd("ANSWER")
        out["unsolicited"] = agi.read_unsolicited(3)
        out["answer"] = agi.cmd("ANSWER")
        out["stream"] = agi.cmd('STREAM FILE welcome ""')
        out["getvar"] = agi.cmd("GET VARIABLE ACC_GONE")
        out["hangup"] = agi.cmd("HANGUP")

    edge, sim = world({"incoming": flow}, {**E1, "calls": [{"id": "c1", "did": "1", "hangup_after_answer_ms": 500}]})
    sim.wait_record("agi_closed", 3, call="c1")
    dead = ["511 Command Not Permitted on a dead channel or intercept routine"]
    assert out["unsolicited"] == "HANGUP"
    assert out["answer"] == dead and out["stream"] == dead and out["hangup"] == dead
    assert out["getvar"] == ["200 result=0"]  # GET VARIABLE stays allowed on a dead channel (res_agi.c)
    assert edge.sessions[0].hangup_lines == 0  # exactly one HANGUP line, read above
    hung = sim.wait_record("hung_up", 1, call="c1")
    assert (hung.get("by"), hung.get("cause")) == ("caller", 16)


def test_gosub_answers_100_trying_first(world):
    out: dict[str, list[str]] = {}

    def flow(agi: Agi) -> None:
        out["exec"] = agi.cmd("EXEC Gosub sub-survey,s,1")
        out["gosub"] = agi.cmd("GOSUB sub-survey s 1")

    edge, sim = world({"incoming": flow}, {**E1, "calls": [{"id": "c1", "did": "1"}]})
    sim.wait_record("agi_closed", 3, call="c1")
    assert out["exec"] == ["100 result=0 Trying...", "200 result=0"]
    assert out["gosub"] == ["100 result=0 Trying...", "200 result=0 Gosub complete"]


def agent_flow(status: dict[str, object], dial: str = "PJSIP/8001,20") -> Callable[[Agi], None]:
    def flow(agi: Agi) -> None:
        agi.cmd("ANSWER")
        status["dial"] = agi.last(f"EXEC Dial {dial}")
        status["status"] = agi.last("GET VARIABLE DIALSTATUS")
        status["talk"] = agi.last("GET VARIABLE ANSWEREDTIME")
    return flow


@pytest.mark.parametrize("phone,expected,result", [
    ({"busy": True}, "BUSY", "200 result=0"),
    ({"no_answer": True}, "NOANSWER", "200 result=0"),
    ({"answer_after_ms": 1000, "hangup_after_ms": 5000}, "ANSWER", "200 result=-1"),
])
def test_dial_a_desk_phone(world, phone, expected, result):
    status: dict[str, object] = {}
    edge, sim = world({"incoming": agent_flow(status)},
                      {**E1, "phones": {"8001": phone}, "calls": [{"id": "c1", "did": "1"}]})
    sim.wait_record("agi_closed", 5, call="c1")
    assert status["dial"] == result and status["status"] == f"200 result=1 ({expected})"
    if expected == "ANSWER":
        assert status["talk"] == "200 result=1 (5)"
        assert sim.records("rang", call="c1", extension="8001", order=1)
        assert sim.records("bridged", call="c1")[0].get("extensions") == ["8001"]


def test_dial_events_carry_caller_and_dest_headers_like_agi03(world):
    status: dict[str, object] = {}
    edge, sim = world({"incoming": agent_flow(status)},
                      {**E1, "phones": {"8001": {"answer_after_ms": 500, "hangup_after_ms": 1000}},
                       "calls": [{"id": "c1", "did": "1", "at_ms": 10_000}]})
    ami = socket.create_connection(("127.0.0.1", sim.ami_port))
    ami.sendall(b"Action: Login\r\nUsername: acceptance\r\nSecret: acceptance\r\n\r\n")
    sim.wait_record("ami", 2, what="login")
    assert not sim.records("call_arrived")
    sim.wait_record("agi_closed", 5, call="c1")
    time.sleep(0.1)
    ami.settimeout(0.5)
    data = b""
    try:
        while chunk := ami.recv(65536):
            data += chunk
    except socket.timeout:
        pass
    ami.close()
    got = [m for m in AmiParser().feed(data) if isinstance(m, AmiMessage)]
    want = [m for m in AmiParser().feed((FIXTURES / "agi-03-exec-dial.ami.txt").read_bytes()) if isinstance(m, AmiMessage)]
    for event in ("DialBegin", "DialEnd", "BridgeCreate", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "AGIExecEnd"):
        mine = next(m for m in got if m.name == event)
        theirs = next(m for m in want if m.name == event and (not event.startswith("Dial") or m.get("Channel")))
        assert [k for k, _ in mine.headers] == [k for k, _ in theirs.headers], event
    begin = next(m for m in got if m.name == "DialBegin")
    assert begin["Channel"] == "DAHDI/1-1" and begin["DestChannel"].startswith("PJSIP/8001-")
    assert begin["Uniqueid"] == edge.sessions[0].env["agi_uniqueid"]
    end = next(m for m in got if m.name == "DialEnd" and m["DialStatus"] == "ANSWER")
    assert end["Uniqueid"] == begin["Uniqueid"]


@pytest.mark.parametrize("trunk,outside,expected", [
    ({"profile": "e1", "channels": "1-2"}, {"number": "138*", "result": "busy"}, ("BUSY", 17)),
    ({"profile": "e1", "channels": "1-2"}, {"number": "138*", "result": "congestion"}, ("CONGESTION", 34)),
    ({"profile": "e1", "channels": "1-2"}, {"number": "138*", "result": "unallocated", "announcement_ms": 500},
     ("CHANUNAVAIL", 1)),
    # analog without polarity reversal: "answered" once dialled, busy tone or not; our caller
    # (the desk phone) ends it, and Dial hangs the trunk leg up itself
    ({"profile": "analog", "channels": "1-2"}, {"number": "138*", "result": "busy"}, ("ANSWER", 16)),
])
def test_outbound_trunk_profiles(world, trunk, outside, expected):
    status: dict[str, object] = {}

    def flow(agi: Agi) -> None:
        status["dial"] = agi.last("EXEC Dial DAHDI/g0/13800138000,30")
        status["status"] = agi.last("GET VARIABLE DIALSTATUS")

    phone = {"dials": [{"at_ms": 0, "digits": "13800138000", "hangup_after_ms": 3000}]}
    edge, sim = world({"dial": flow}, {"trunks": [trunk], "outside": [outside], "phones": {"8001": phone}})
    sim.wait_record("agi_closed", 5)
    assert status["status"] == f"200 result=1 ({expected[0]})"
    leg = sim.wait_record("hung_up", 2, role="outside")
    assert leg.get("cause") == expected[1] and leg.get("channel") == "DAHDI/1-1"


def test_whisper_never_reaches_the_customer(world):
    spy: dict[str, object] = {}

    def spy_flow(agi: Agi) -> None:
        agi.cmd("ANSWER")
        spy["result"] = agi.last("EXEC ChanSpy PJSIP/8001-,qw")

    edge, sim = world({"incoming": agent_flow({}), "dial": spy_flow},
                      {**E1, "phones": {"8001": {"answer_after_ms": 200},
                                        "8009": {"dials": [{"at_ms": 1000, "digits": "##58001", "hangup_after_ms": 2000}]}},
                       "calls": [{"id": "c1", "did": "1", "hangup_after_talk_ms": 4000}]})
    started = sim.wait_record("spy_started", 3)
    assert started.get("mode") == "whisper" and started.get("spyee_extension") == "8001"
    customer, agent, supervisor = "customer of c1", "agent of c1", "phone 8009"
    assert sim.wait_for(lambda: sim.hears(agent) >= set(sim.resolve(supervisor)), 2)
    assert set(sim.resolve(supervisor)) <= sim.hears(agent)
    assert set(sim.resolve(customer)) | set(sim.resolve(agent)) <= sim.hears(supervisor)
    assert not sim.hears(customer) & set(sim.resolve(supervisor))
    sim.wait_record("agi_closed", 5, call="c1")
    assert spy["result"] == "200 result=-1"
    assert sim.ever_heard(agent, supervisor) and sim.ever_heard(supervisor, customer)
    assert not sim.ever_heard(customer, supervisor)


@pytest.mark.parametrize("options,customer_hears_spy", [("q", False), ("qB", True)])
def test_listen_and_barge(world, options, customer_hears_spy):
    def spy_flow(agi: Agi) -> None:
        agi.cmd(f"EXEC ChanSpy PJSIP/8001-,{options}")

    edge, sim = world({"incoming": agent_flow({}), "dial": spy_flow},
                      {**E1, "phones": {"8001": {"answer_after_ms": 200},
                                        "8009": {"dials": [{"at_ms": 1000, "digits": "##5", "hangup_after_ms": 1500}]}},
                       "calls": [{"id": "c1", "did": "1", "hangup_after_talk_ms": 3000}]})
    sim.wait_record("agi_closed", 5, call="c1")
    assert sim.ever_heard("customer of c1", "phone 8009") is customer_hears_spy
    assert sim.ever_heard("agent of c1", "phone 8009") is customer_hears_spy
    assert sim.ever_heard("phone 8009", "customer of c1")


def test_abandon_while_on_hold(world):
    def flow(agi: Agi) -> None:
        agi.cmd("ANSWER")
        agi.cmd("SET MUSIC ON default")
        agi.read_unsolicited(3)

    edge, sim = world({"incoming": flow}, {**E1, "calls": [{"id": "c1", "did": "1", "abandon_on_hold_ms": 2000}]})
    hung = sim.wait_record("hung_up", 3, call="c1")
    moh = sim.records("moh", call="c1", on=True)[0]
    assert hung.get("by") == "caller" and hung.t_ms - moh.t_ms >= 2000
    assert sim.ever_heard("customer of c1", "moh:default")


def test_agi_reset_fault_sends_rst(world):
    seen: dict[str, object] = {}

    def flow(agi: Agi) -> None:
        try:  # an RST may even discard the ANSWER reply before we read it
            agi.cmd("ANSWER")
            seen["read"] = agi.conn.recv(100)  # b"" would be an orderly FIN, not what we want
        except ConnectionResetError:
            seen["read"] = "reset"

    edge, sim = world({"incoming": flow}, {**E1, "calls": [{"id": "c1", "did": "1"}],
                                            "faults": [{"kind": "agi_reset", "call": "c1", "after_commands": 1}]})
    sim.wait_record("agi_closed", 3, call="c1", how="reset")
    assert sim.wait_for(lambda: seen.get("read"), 2) == "reset"


def test_slow_agi_replies(world):
    took: dict[str, float] = {}

    def flow(agi: Agi) -> None:
        started = time.monotonic()
        agi.cmd("NOOP")
        took["noop"] = time.monotonic() - started

    edge, sim = world({"incoming": flow}, {**E1, "calls": [{"id": "c1", "did": "1", "at_ms": 100}],
                                            "faults": [{"kind": "agi_slow", "delay_ms": 20_000}]})
    sim.wait_record("agi_closed", 3, call="c1")
    assert took["noop"] >= 0.18


def test_edge_closing_the_session_hangs_the_channel_up(world):
    edge, sim = world({"incoming": lambda agi: agi.cmd("ANSWER")}, {**E1, "calls": [{"id": "c1", "did": "1"}]})
    hung = sim.wait_record("hung_up", 3, call="c1")
    assert (hung.get("by"), hung.get("cause")) == ("edge", 16)
    assert sim.wait_for(sim.idle, 2)
