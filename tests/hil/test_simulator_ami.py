"""The simulator's AMI side, driven over its real socket with a raw client, compared with the
Asterisk 22 recordings in tests/fixtures/asterisk-22."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from drivers.asterisk.codec import AmiBanner, AmiMalformed, AmiMessage, AmiParser
from hil.pbx.simulator import PbxSimulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"
VOLATILE = {"Uptime", "LastReload", "EventTV", "SessionTV", "SessionID", "LocalAddress",
            "RemoteAddress", "Timestamp", "Uniqueid", "Linkedid", "Channel", "DestChannel",
            "DestUniqueid", "DestLinkedid", "Duration"}


def fixture_items(name: str) -> list:
    return AmiParser().feed((FIXTURES / name).read_bytes())


def fixture_events(name: str, event: str) -> list[AmiMessage]:
    return [m for m in fixture_items(name) if isinstance(m, AmiMessage) and m.kind == "event" and m.name == event]


def names(msg: AmiMessage) -> list[str]:
    """Header names in order; ``ChanVariable(<channel>)`` keys lose the channel name."""
    return [("ChanVariable(*)" if k.startswith("ChanVariable(") else k) for k, _ in msg.headers]


class RawAmi:
    """A bare AMI client: bytes in, parsed items out."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = AmiParser()
        self.items: list = []
        self.raw = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.replace("\n", "\r\n").encode())

    def action(self, name: str, action_id: str | None = None, **fields: str) -> None:
        lines = [f"Action: {name}"] + [f"{k}: {v}" for k, v in fields.items()]
        if action_id:
            lines.append(f"ActionID: {action_id}")
        self.send("\n".join(lines) + "\n\n")

    def _pump(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            return False
        if not data:
            return False
        self.raw += data
        self.items.extend(self.parser.feed(data))
        return True

    def wait(self, predicate, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(self.messages())
            if found:
                return found
            if not self._pump(0.05):
                return predicate(self.messages())
        return predicate(self.messages())

    def messages(self) -> list[AmiMessage]:
        return [i for i in self.items if isinstance(i, AmiMessage)]

    def response(self, action_id: str, timeout: float = 5.0) -> AmiMessage:
        found = self.wait(lambda ms: [m for m in ms if m.kind == "response" and m.action_id == action_id], timeout)
        assert found, f"no response to {action_id}"
        return found[0]

    def events(self, name: str) -> list[AmiMessage]:
        return [m for m in self.messages() if m.kind == "event" and m.name == name]

    def closed(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pump(0.05):
                return True
        return False

    def login(self, action_id: str = "acc-1") -> AmiMessage:
        self.action("Login", None, Username="acceptance", Secret="acceptance", ActionID=action_id)
        return self.response(action_id)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sim():
    simulator = PbxSimulator(time_scale=0.01).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def ami(sim):
    client = RawAmi(sim.ami_port)
    yield client
    client.close()


def test_banner_login_and_logoff_match_the_fixture(sim, ami):
    ami.action("Login", None, Username="acceptance", Secret="acceptance", ActionID="login-1")
    ami.wait(lambda ms: [m for m in ms if m.name == "SuccessfulAuth"])
    ami.action("Logoff", "acc-1")
    assert ami.closed()
    expected = fixture_items("ami-01-banner-login-logoff.txt")
    assert ami.raw.startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: login-1\r\n"
                              b"Message: Authentication accepted\r\n\r\nEvent: FullyBooted\r\n")
    assert isinstance(ami.items[0], AmiBanner) and ami.items[0] == expected[0]
    got, want = ami.messages(), [m for m in expected if isinstance(m, AmiMessage)]
    assert [names(m) for m in got] == [names(m) for m in want]
    for g, w in zip(got, want):
        assert [(k, v) for k, v in g.headers if k not in VOLATILE] == \
               [(k, v) for k, v in w.headers if k not in VOLATILE]
    assert ami.raw.endswith(b"Response: Goodbye\r\nActionID: acc-1\r\nMessage: Thanks for all the fish.\r\n\r\n")


@pytest.mark.parametrize("fixture,user,secret,action_id", [
    ("ami-02-login-failure.txt", "acceptance", "wrong", "login-bad"),
    ("ami-02b-login-unknown-user.txt", "nobody", "x", "login-nouser"),
])
def test_failed_login_is_byte_identical_and_closes_at_once(sim, fixture, user, secret, action_id):
    watcher = RawAmi(sim.ami_port)
    watcher.login()
    client = RawAmi(sim.ami_port)
    client.action("Login", None, Username=user, Secret=secret, ActionID=action_id)
    assert client.closed()
    assert client.raw == (FIXTURES / fixture).read_bytes()
    wanted = "InvalidPassword" if user == "acceptance" else "InvalidAccountID"
    event = watcher.wait(lambda ms: [m for m in ms if m.name == wanted])[0]
    assert names(event) == names(fixture_events("ami-02c-login-failures-seen-by-other-session.txt", wanted)[0])
    watcher.close()


def test_ping_with_and_without_action_id(sim, ami):
    ami.login()
    ami.action("Ping", "ping-1")
    ami.send("Action: Ping\n\n")
    pongs = ami.wait(lambda ms: [m for m in ms if m.get("Ping") == "Pong"] if len(
        [m for m in ms if m.get("Ping") == "Pong"]) == 2 else None)
    want = [m for m in fixture_items("ami-03-ping.txt") if isinstance(m, AmiMessage) and m.get("Ping")]
    assert [names(m) for m in pongs] == [names(m) for m in want]
    assert float(pongs[0]["Timestamp"]) > 1e9


def test_originate_busy_matches_fixture_ami06(sim, ami):
    ami.login()
    ami.action("Originate", "orig-200", Channel="Local/200@sim-trunk", Application="Wait", Data="10",
               Async="true", Timeout="10000", CallerID="Acceptance <5551000>")
    assert ami.response("orig-200")["Message"] == "Originate successfully queued"
    hangups = ami.wait(lambda ms: [m for m in ms if m.name == "Hangup"] if len(
        [m for m in ms if m.name == "Hangup"]) == 2 else None)
    response = ami.wait(lambda ms: [m for m in ms if m.name == "OriginateResponse"])[0]
    want = fixture_events("ami-06-originate-200-busy.txt", "OriginateResponse")[0]
    assert names(response) == names(want)
    assert response["Response"] == "Failure" and response["Reason"] == "5"
    assert response["Channel"] == "Local/200@sim-trunk" and response["Uniqueid"] == "<unknown>"
    by_half = {m["Channel"][-2:]: m for m in hangups}
    want_hangups = {m["Channel"][-2:]: m for m in fixture_events("ami-06-originate-200-busy.txt", "Hangup")}
    for half in (";1", ";2"):
        assert names(by_half[half]) == names(want_hangups[half])
        assert by_half[half]["Cause"] == want_hangups[half]["Cause"]
        assert by_half[half]["Cause-txt"] == want_hangups[half]["Cause-txt"]
    assert by_half[";2"]["Cause"] == "17" and by_half[";1"]["Cause"] == "0"
    assert by_half[";2"].chan_variables == {"ACC_TAG": "", "CUSTOMER_ID": ""}
    for event in ("Newchannel", "LocalBridge", "DialBegin", "DialEnd", "NewCallerid"):
        assert names(ami.events(event)[0]) == names(fixture_events("ami-06-originate-200-busy.txt", event)[0])


def test_sync_originate_busy_fails_without_originate_response(sim, ami):
    ami.login()
    ami.action("Originate", "orig-sync-200", Channel="Local/200@sim-trunk", Application="Wait",
               Data="2", Timeout="10000")
    reply = ami.response("orig-sync-200")
    assert (reply.name, reply["Message"]) == ("Error", "Originate failed")
    ami.wait(lambda ms: len([m for m in ms if m.name == "Hangup"]) == 2)
    assert not ami.events("OriginateResponse")


def test_originate_answered_then_coreshowchannels_and_regex_hangup_like_ami19(sim, ami):
    ami.login()
    ami.action("Originate", "orig-700", Channel="Local/700@sim-trunk", Application="Wait", Data="30", Async="true")
    response = ami.wait(lambda ms: [m for m in ms if m.name == "OriginateResponse"])[0]
    want_response = fixture_events("ami-19-coreshowchannels-and-regex-hangup.txt", "OriginateResponse")[0]
    assert response["Reason"] == "4" and response["Channel"].endswith(";1")
    assert names(response) == names(want_response)
    assert [k for k, _ in response.headers if k.startswith("ChanVariable(")] == [
        f"ChanVariable({response['Channel']})"] * 2
    ami.action("CoreShowChannels", "csc-1")
    complete = ami.wait(lambda ms: [m for m in ms if m.name == "CoreShowChannelsComplete"])[0]
    listing = ami.messages()[ami.messages().index(ami.response("csc-1")):]
    items = [m for m in listing if m.name == "CoreShowChannel"]
    want = fixture_items("ami-19-coreshowchannels-and-regex-hangup.txt")
    want_start = next(m for m in want if isinstance(m, AmiMessage) and m.action_id == "csc-1" and m.kind == "response")
    want_item = next(m for m in want if isinstance(m, AmiMessage) and m.name == "CoreShowChannel")
    want_complete = next(m for m in want if isinstance(m, AmiMessage) and m.name == "CoreShowChannelsComplete")
    assert names(ami.response("csc-1")) == names(want_start)
    assert len(items) == 2 and all(names(i) == names(want_item) for i in items)
    assert names(complete) == names(want_complete) and complete["ListItems"] == "2"
    ami.action("Hangup", "hangup-regex", Channel="/^Local/700@sim-trunk-.*$/")
    done = ami.wait(lambda ms: [m for m in ms if m.name == "ChannelsHungupListComplete"])[0]
    assert ami.response("hangup-regex")["Message"] == "Channels hung up will follow"
    assert len([m for m in ami.messages() if m.name == "ChannelHungup"]) == 2 and done["ListItems"] == "2"
    want_hung = next(m for m in want if isinstance(m, AmiMessage) and m.name == "ChannelHungup")
    assert names([m for m in ami.messages() if m.name == "ChannelHungup"][0]) == names(want_hung)
    ami.wait(lambda ms: len([m for m in ms if m.name == "Hangup"]) == 2)
    ami.action("CoreShowChannels", "csc-empty")
    empty = ami.wait(lambda ms: [m for m in ms if m.name == "CoreShowChannelsComplete" and m.action_id == "csc-empty"])[0]
    assert empty["ListItems"] == "0"


def test_unknown_and_missing_action_like_ami24(sim, ami):
    ami.login()
    ami.action("NoSuchAction", "bad-1")
    ami.send("Foo: bar\nActionID: noaction-1\n\n")
    ami.action("Originate", "orig-missing")
    ami.response("orig-missing")
    expected = (FIXTURES / "ami-24-unknown-action.txt").read_bytes()
    for action_id in ("bad-1", "noaction-1", "orig-missing"):
        block = next(m for m in fixture_items("ami-24-unknown-action.txt")
                     if isinstance(m, AmiMessage) and m.action_id == action_id)
        assert block.to_bytes() in expected and block.to_bytes() in ami.raw
    bad = ami.wait(lambda ms: [m for m in ms if m.name == "RequestBadFormat"] if len(
        [m for m in ms if m.name == "RequestBadFormat"]) == 2 else None)
    want = fixture_events("ami-24-unknown-action.txt", "RequestBadFormat")
    assert [names(m) for m in bad] == [names(m) for m in want]
    assert [m["RequestType"] for m in bad] == ["Action: NoSuchAction", "Action: NONE"]


def test_events_off_gets_responses_only_like_ami29(sim):
    client = RawAmi(sim.ami_port)
    client.action("Login", "login-off", Username="acceptance", Secret="acceptance", Events="off")
    client.response("login-off")
    client.action("Originate", "orig-quiet", Channel="Local/101@sim-trunk", Application="Wait", Data="1", Async="true")
    client.response("orig-quiet")
    client.action("Ping", "ping-quiet")
    client.response("ping-quiet")
    time.sleep(0.2)
    client._pump(0.1)
    assert all(m.kind == "response" for m in client.messages())
    client.close()


def test_getvar_setvar_and_command_like_fixtures(sim, ami):
    ami.login()
    ami.action("Setvar", "setvar-g", Variable="ACC_GLOBAL", Value="hello")
    assert ami.response("setvar-g")["Message"] == "Variable Set"
    ami.action("Getvar", "getvar-g", Variable="ACC_GLOBAL")
    assert ami.response("getvar-g")["Value"] == "hello"
    ami.action("Getvar", "getvar-nochan", Channel="PJSIP/none-00000000", Variable="X")
    assert ami.response("getvar-nochan")["Message"] == "No such channel"
    ami.action("Command", "cmd-bad", Command="no such cli command")
    bad = ami.response("cmd-bad")
    want = next(m for m in fixture_items("ami-27-command-action.txt") if isinstance(m, AmiMessage) and m.action_id == "cmd-bad")
    assert bad.headers == want.headers


def test_ami_disconnect_fault_keeps_calls_and_allows_relogin(sim, ami):
    ami.login()
    ami.action("Originate", "orig-700", Channel="Local/700@sim-trunk", Application="Wait", Data="30", Async="true")
    ami.wait(lambda ms: [m for m in ms if m.name == "OriginateResponse"])
    sim.inject_fault(kind="ami_disconnect")
    assert ami.closed()
    again = RawAmi(sim.ami_port)
    assert again.login("relogin")["Message"] == "Authentication accepted"
    again.action("CoreShowChannels", "after")
    done = again.wait(lambda ms: [m for m in ms if m.name == "CoreShowChannelsComplete"])[0]
    assert done["ListItems"] == "2"
    again.close()


@pytest.mark.parametrize("variant", ["garbage", "no_colon", "chanvariable", "non_utf8", "split"])
def test_malformed_event_faults_reach_the_client(sim, ami, variant):
    ami.login()
    sim.inject_fault(kind="ami_malformed", variant=variant)
    if variant in ("garbage", "no_colon"):
        assert ami.wait(lambda ms: [i for i in ami.items if isinstance(i, AmiMalformed)])
    elif variant == "chanvariable":
        event = ami.wait(lambda ms: [m for m in ms if m.name == "VarSet"])[0]
        assert any(k.startswith("ChanVariable(") for k, _ in event.headers)
    elif variant == "non_utf8":
        ami.wait(lambda ms: [m for m in ms if m.name == "NewCallerid"])
        assert b"\xd5\xc5\xc8\xfd" in ami.raw
    else:
        event = ami.wait(lambda ms: [m for m in ms if m.name == "Newexten"])[0]
        assert event["AppData"] == "split across writes"
    ami.action("Ping", "still-alive")
    assert ami.response("still-alive")["Ping"] == "Pong"


def test_slow_ami_replies(sim, ami):
    ami.login()
    sim.inject_fault(kind="ami_slow", delay_ms=20_000)  # 0.2 s real at time_scale 0.01
    time.sleep(0.05)
    started = time.monotonic()
    ami.action("Ping", "slow")
    ami.response("slow")
    assert time.monotonic() - started >= 0.18
