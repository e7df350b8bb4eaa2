"""The scenario runner and its CLI, against a small fake edge (a raw FastAGI server playing a
plausible IVR/ACD, plus a raw AMI client that logs in and re-logs in after a drop)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest
import yaml

from hil.pbx.scenario import main, run_scenario
from hil.pbx.simulator import PbxSimulator

SCENARIOS = Path(__file__).resolve().parents[2] / "hil" / "scenarios"
AGENTS = ("8001", "8002")


class Session:
    def __init__(self, conn: socket.socket, file: BinaryIO) -> None:
        self.conn, self.file = conn, file
        self.env: dict[str, str] = {}
        while (line := self.file.readline().decode()) not in ("\n", ""):
            key, _, value = line.rstrip("\n").partition(": ")
            self.env[key] = value
        self.gone = False

    def cmd(self, command: str) -> str:
        self.conn.sendall((command + "\n").encode())
        while True:
            line = self.file.readline().decode()
            if not line:
                self.gone = True
                return ""
            line = line.rstrip("\n")
            if line == "HANGUP":
                self.gone = True
            elif not line.startswith("100 "):
                return line


def incoming(s: Session) -> None:
    """Like the real edge's inbound flow with no menu: answer, ring agents lowest first, hold."""
    s.cmd("ANSWER")
    while not s.gone:
        for ext in AGENTS:
            s.cmd("SET MUSIC OFF")
            s.cmd(f"EXEC Dial PJSIP/{ext},15")
            status = s.cmd("GET VARIABLE DIALSTATUS")
            s.cmd("GET VARIABLE ANSWEREDTIME")
            if status.endswith("(ANSWER)") or s.gone:
                if not s.gone:
                    s.cmd("HANGUP")
                return
        s.cmd("SET MUSIC ON default")
        s.cmd("EXEC Wait 2")


SPY_CODES = {"##1": "q", "##2": "qw", "##4": "qB"}  # the README's default ##codes


def dial(s: Session, ami_send) -> None:
    digits = s.env.get("agi_arg_1", "")
    if digits[:3] in SPY_CODES:
        s.cmd("ANSWER")
        s.cmd(f"EXEC ChanSpy PJSIP/{digits[3:]}-,{SPY_CODES[digits[:3]]}")
    elif digits.startswith("##5"):  # force hang-up goes over AMI, as the real edge does it
        ami_send(f"Action: Hangup\r\nChannel: /^PJSIP/{digits[3:]}-.*$/\r\n\r\n")
        s.cmd('STREAM FILE cc/code-done ""')
        s.cmd("HANGUP")
    elif digits.startswith("##6"):
        s.cmd(f"EXEC PickupChan PJSIP/{digits[3:]}")
        if not s.gone:
            s.cmd("HANGUP")
    else:
        s.cmd(f"EXEC Dial DAHDI/g0/{digits},60")
        s.cmd("GET VARIABLE DIALSTATUS")
        if not s.gone:
            s.cmd("HANGUP")


class FakeEdge:
    def __init__(self, agi_server) -> None:
        self.stopped = threading.Event()
        self.ami: socket.socket | None = None
        self.server = agi_server(self._serve)
        self.port = self.server.port

    def ami_send(self, text: str) -> None:
        if self.ami is not None:
            self.ami.sendall(text.encode())

    def _serve(self, conn: socket.socket, file: BinaryIO) -> None:
        session = Session(conn, file)
        script = session.env.get("agi_network_script")
        if script == "incoming":
            incoming(session)
        elif script == "dial":
            dial(session, self.ami_send)

    def ami_client(self, port_of: "callable") -> None:
        """Log in to the simulator's AMI; log in again whenever the connection drops."""
        def run() -> None:
            while not self.stopped.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port_of()), timeout=1) as ami:
                        ami.settimeout(None)
                        self.ami = ami
                        ami.sendall(b"Action: Login\r\nUsername: acceptance\r\nSecret: acceptance\r\n\r\n")
                        while not self.stopped.is_set() and ami.recv(65536):
                            pass
                except OSError:
                    pass
                self.stopped.wait(0.02)
        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.server.close()


@pytest.fixture
def edge(agi_server):
    fake = FakeEdge(agi_server)
    yield fake
    fake.close()


def factory_for(edge: FakeEdge):
    """A sim_factory that also starts the fake edge's AMI client against the new simulator."""
    def make(world, scale):
        sim = PbxSimulator(world, agi_port=edge.port, ami_port=0, time_scale=scale)
        edge.ami_client(lambda: sim.ami_port)
        return sim
    return make


# The runner's own check: the scenarios whose edge behaviour this small fake can play. Every scenario
# (the ACD, ##code and fault ones too) runs against the real edge in test_scenarios_edge.py.
FAKE_EDGE_SCENARIOS = ("inbound-first-agent-answers", "agent-no-answer-falls-back",
                       "whisper-never-reaches-customer", "caller-abandons-on-hold",
                       "analog-line-no-did-no-cause", "outbound-busy-e1", "ami-disconnect-mid-call",
                       "supervisor-force-hangup", "pickup-ringing-call")


@pytest.mark.parametrize("path", [SCENARIOS / f"{name}.yaml" for name in FAKE_EDGE_SCENARIOS],
                         ids=lambda p: p.stem)
def test_shipped_scenarios_pass_against_the_fake_edge(edge, path):
    result = run_scenario(path, sim_factory=factory_for(edge), login_timeout_s=3)
    assert result.passed, result.report()
    assert not result.timed_out


def test_a_failing_expectation_is_reported_not_raised(edge):
    scenario = yaml.safe_load((SCENARIOS / "whisper-never-reaches-customer.yaml").read_text())
    scenario["expect"] = [{"heard": {"listener": "customer of c1", "speaker": "phone 8009"}},
                          {"rang": {"call": "c1", "extension": "8001", "order": 1}}]
    result = run_scenario(scenario, sim_factory=factory_for(edge), login_timeout_s=3)
    assert not result.passed
    assert [e.passed for e in result.expectations] == [False, True]
    assert "FAIL heard" in result.report() and "PASS rang" in result.report()


def test_bad_scenario_names_the_key(edge):
    result = run_scenario({"calls": [{"id": "c1", "did": "123", "profile": "analog"}], "expect": []},
                          sim_factory=factory_for(edge))
    assert not result.passed and "calls[0].did" in result.error


def test_cli_runs_files_and_sets_the_exit_code(edge, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({
        "name": "analog call", "time_scale": 0.01, "phones": {"8001": {"answer_after_ms": 500}},
        "calls": [{"id": "a1", "menu_input": ["1"], "hangup_after_talk_ms": 2000}],
        "expect": [{"bridged": {"call": "a1", "extension": "8001"}}, {"hung_up": {"call": "a1", "cause": 0}}]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"time_scale": 0.01, "calls": [{"id": "a1", "hangup_after_ms": 1000}],
                                   "expect": [{"bridged": {"call": "a1"}}]}))
    args = ["run", "--agi-port", str(edge.port), "--ami-port", "0", "--no-wait-for-edge"]
    started = time.monotonic()
    assert main(args + [str(good)]) == 0
    assert main(args + [str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "PASS bridged" in out and "FAIL bridged" in out and "1 of 2 scenario(s) passed" in out
    assert time.monotonic() - started < 10
