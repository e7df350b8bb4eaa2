"""AmiClient actions against replayed Asterisk 22 traffic, over a real socket."""
from __future__ import annotations

import pytest

from drivers.asterisk.ami import AmiClient
from drivers.asterisk.errors import AmiActionError, AmiDisconnected
from drivers.asterisk.session import AmiSettings
from drivers.asterisk.transport import BackoffPolicy


@pytest.fixture
def client(ami_server):
    ami = AmiClient(AmiSettings(host="127.0.0.1", port=ami_server.port, username="acceptance",
                                secret="acceptance", keepalive_s=0.0, action_timeout_s=2.0,
                                backoff=BackoffPolicy(0.05, 0.5)))
    ami.login()
    yield ami
    ami.close()


def serve_recorded(ami_server, recording, replay, action: str, fixture: str, recorded_ids: list[str],
                   last_event: str | None = None) -> None:
    """Answer the n-th ``action`` with the recorded traffic of ``recorded_ids[n]``."""
    rec = recording(fixture)
    queue = list(recorded_ids)

    def handler(conn, msg):
        recorded = queue.pop(0)
        blocks = rec.segment(recorded, last_event) if last_event else rec.with_id(recorded)
        conn.send(replay(blocks, recorded, msg.action_id))

    ami_server.handlers[action.lower()] = handler


@pytest.mark.parametrize("fixture, recorded_id, reason, outcome, answered", [
    ("ami-04-originate-100-success-app", "orig-100", 4, "answered", True),
    ("ami-06-originate-200-busy", "orig-200", 5, "busy", False),
    ("ami-07-originate-300-congestion", "orig-300", 8, "congestion", False),
    ("ami-08-originate-400-no-answer", "orig-400", 3, "no_answer", False),
    ("ami-16-originate-nonexistent-extension", "orig-999", 0, "failed", False),
    ("ami-16-originate-nonexistent-extension", "orig-noctx", 0, "failed", False),
    ("ami-16-originate-nonexistent-extension", "orig-badtech", 0, "failed", False),
    ("ami-16-originate-nonexistent-extension", "orig-noapp", 4, "answered", True),
])
def test_originate_outcome_comes_from_originate_response(ami_server, client, recording, replay,
                                                         fixture, recorded_id, reason, outcome, answered):
    serve_recorded(ami_server, recording, replay, "Originate", fixture, [recorded_id], "OriginateResponse")
    result = client.originate("Local/200@sim-trunk", application="Wait", data="10", timeout_ms=10000,
                              caller_id="Acceptance <5551000>", wait_s=3)
    assert (result.reason, result.outcome, result.success) == (reason, outcome, answered)
    assert (result.uniqueid is not None) == answered
    if not answered:
        assert ";" not in result.channel  # the dial string as requested, not a ;1 channel
    sent = ami_server.wait_action("Originate")[0]
    assert sent["Async"] in ("yes", "true") and sent["Application"] == "Wait" and sent["Timeout"] == "10000"
    assert "Exten" not in sent  # pyst2's builder adds an empty Exten; empty headers are dropped


def test_originate_refused_by_asterisk_raises(ami_server, client, recording, replay):
    serve_recorded(ami_server, recording, replay, "Originate", "ami-24-unknown-action", ["orig-missing"])
    with pytest.raises(AmiActionError, match="Channel not specified"):
        client.originate("", application="Wait", wait_s=1)


def test_originate_outcome_fails_fast_when_the_link_drops(ami_server, client, recording, replay):
    rec = recording("ami-04-originate-100-success-app")

    def accept_then_drop(conn, msg):
        conn.send(replay(rec.response("orig-100"), "orig-100", msg.action_id))
        conn.close()

    ami_server.handlers["originate"] = accept_then_drop
    future = client.originate_nowait("Local/100@sim-trunk", application="Wait", data="10")
    with pytest.raises(AmiDisconnected):
        future.result(2)


def test_spy_originates_the_supervisor_phone_into_chanspy(ami_server, client, recording, replay):
    serve_recorded(ami_server, recording, replay, "Originate", "ami-23-chanspy", ["orig-spy"], "OriginateResponse")
    result = client.spy("PJSIP/9000", "PJSIP/8001-", "whisper", caller_id="Supervisor <9000>", wait_s=3)
    sent = ami_server.wait_action("Originate")[0]
    assert (sent["Channel"], sent["Application"], sent["Data"]) == ("PJSIP/9000", "ChanSpy", "PJSIP/8001-,qw")
    assert result.outcome == "answered"
    with pytest.raises(ValueError):
        client.spy("PJSIP/9000", "PJSIP/8001-", "shout")


@pytest.mark.parametrize("mode, options", [("listen", "q"), ("whisper", "qw"), ("barge", "qB")])
def test_spy_modes_map_to_chanspy_options(ami_server, client, recording, replay, mode, options):
    serve_recorded(ami_server, recording, replay, "Originate", "ami-23-chanspy", ["orig-spy"], "OriginateResponse")
    client.spy("PJSIP/9000", "PJSIP/8002-", mode, wait_s=3)
    assert ami_server.wait_action("Originate")[0]["Data"] == f"PJSIP/8002-,{options}"


def test_core_show_channels_collects_the_list(ami_server, client, recording, replay):
    serve_recorded(ami_server, recording, replay, "CoreShowChannels",
                   "ami-19-coreshowchannels-and-regex-hangup", ["csc-1", "csc-empty"])
    channels = client.core_show_channels()
    assert [c.channel for c in channels] == [
        "Local/600@sim-trunk-00000012;1", "Local/600@sim-trunk-00000012;2",
        "Local/700@sim-trunk-00000011;2", "Local/700@sim-trunk-00000011;1"]
    assert channels[0].uniqueid == "1795392173.36" and channels[0].state == "Up"
    assert client.core_show_channels() == []


def test_hangup_by_regex_returns_the_channels_hung_up(ami_server, client, recording, replay):
    serve_recorded(ami_server, recording, replay, "Hangup", "ami-19-coreshowchannels-and-regex-hangup",
                   ["hangup-regex"])
    hung = client.hangup("/^Local/(600|700)@sim-trunk-.*$/")
    assert len(hung) == 4 and hung[0] == "Local/600@sim-trunk-00000012;1"
    assert ami_server.wait_action("Hangup")[0]["Channel"] == "/^Local/(600|700)@sim-trunk-.*$/"


def test_hangup_of_one_channel(ami_server, client, recording, replay):
    serve_recorded(ami_server, recording, replay, "Hangup", "ami-23-chanspy", ["hangup-spy", "hangup-target"])
    assert client.hangup("Local/700@sim-trunk-00000017;1") == ["Local/700@sim-trunk-00000017;1"]
    assert client.hangup("/^Local/600@sim-trunk-.*$/") == []


def test_getvar_setvar(ami_server, client, recording, replay):
    rec = "ami-28-getvar-setvar-global"
    serve_recorded(ami_server, recording, replay, "Setvar", rec, ["setvar-g"])
    serve_recorded(ami_server, recording, replay, "Getvar", rec, ["getvar-g", "getvar-unset", "getvar-nochan"])
    client.setvar("ACC_GLOBAL", "hello")
    assert client.getvar("ACC_GLOBAL") == "hello"
    assert client.getvar("ACC_UNSET_GLOBAL") == ""
    with pytest.raises(AmiActionError, match="No such channel"):
        client.getvar("X", channel="Local/none-ffffffff;1")
    setvar = ami_server.wait_action("Setvar")[0]
    assert (setvar["Variable"], setvar["Value"]) == ("ACC_GLOBAL", "hello") and "Channel" not in setvar


def test_command_returns_output_lines(ami_server, client, recording, replay):
    serve_recorded(ami_server, recording, replay, "Command", "ami-27-command-action", ["cmd-version", "cmd-bad"])
    assert client.command("core show version")[0].startswith("Asterisk 22.10.1")
    with pytest.raises(AmiActionError) as error:
        client.command("no such cli command")
    assert "No such command" in error.value.output[0]


def test_ping_and_redirect(ami_server, client):
    assert client.ping() > 1_700_000_000
    ami_server.handlers["redirect"] = lambda conn, msg: conn.send(
        f"Response: Success\r\nActionID: {msg.action_id}\r\nMessage: Redirect successful\r\n\r\n".encode())
    client.redirect("PJSIP/8001-00000001", "agents", "8002")
    sent = ami_server.wait_action("Redirect")[0]
    assert (sent["Channel"], sent["Context"], sent["Exten"], sent["Priority"]) == (
        "PJSIP/8001-00000001", "agents", "8002", "1")
