"""AsteriskDriver end to end: Asterisk-side FastAGI peers and a fake AMI over TCP, core events out.

Follows the call-flow contract table in docs/architecture.md.
"""
from __future__ import annotations

import time

import pytest

from drivers.asterisk.driver import AsteriskDriver, phone_extension, trunk_number
from drivers.asterisk.fastagi import FastAgiSettings
from drivers.asterisk.session import AmiSettings
from drivers.asterisk.transport import BackoffPolicy
from edge.commands import (
    Answer, Collect, DialOut, ForceHangup, Hangup, HoldMusic, Notify, PickupCall, Play, RingAgent, Spy,
    WriteCdr,
)
from edge.events import (
    AgentAnswered, CallHungUp, CallOffered, ChannelsSnapshot, CommandDone, ExtensionDialled, LinkChanged,
)

CALL = "1795392300.7"
TRUNK = "DAHDI/3-1"


@pytest.fixture
def driver(ami_server, events, until):
    drv = AsteriskDriver(
        events,
        AmiSettings(host="127.0.0.1", port=ami_server.port, username="acceptance", secret="acceptance",
                    keepalive_s=0.0, action_timeout_s=2.0, backoff=BackoffPolicy(0.02, 0.2)),
        FastAgiSettings(host="127.0.0.1", port=0, max_workers=8),
    )
    drv.start()
    events.wait(LinkChanged, up=True)
    yield drv
    drv.stop()


@pytest.fixture
def call(driver, agi_peer, env_for, events):
    """A trunk call offered to the core; returns the Asterisk-side peer."""
    peer = agi_peer(driver.fastagi_address,
                    env_for("incoming", TRUNK, CALL, args=("95555",), agi_callerid="13800138000",
                            agi_calleridname="Zhang San"))
    events.wait(CallOffered, call_id=CALL)
    return peer


def hung_up_once(events, until, call_id: str = CALL, settle: float = 0.2) -> CallHungUp:
    event = events.wait(CallHungUp, call_id=call_id)
    time.sleep(settle)
    assert len(events.of(CallHungUp, call_id=call_id)) == 1
    return event


def test_channel_name_parsing():
    assert trunk_number("DAHDI/3-1") == 3 and trunk_number("DAHDI/12-1") == 12
    assert trunk_number("PJSIP/8001-0000000a") is None
    assert phone_extension("PJSIP/8001-0000000a") == "8001" and phone_extension("DAHDI/3-1") == ""


def test_incoming_trunk_call_is_offered(call, events):
    offered = events.wait(CallOffered, call_id=CALL)
    assert offered == CallOffered(call_id=CALL, channel=TRUNK, caller="13800138000", caller_name="Zhang San",
                                  did="95555", trunk=3)


def test_analog_call_without_arguments_takes_did_from_dnid(driver, agi_peer, env_for, events):
    agi_peer(driver.fastagi_address, env_for("incoming", "DAHDI/1-1", "1.1", agi_dnid="unknown",
                                             agi_callerid="unknown"))
    offered = events.wait(CallOffered, call_id="1.1")
    assert (offered.did, offered.caller, offered.trunk) == ("", "", 1)


def test_desk_phone_dial_is_reported(driver, agi_peer, env_for, events):
    agi_peer(driver.fastagi_address, env_for("dial", "PJSIP/8001-0000000a", "1.2", args=("##31",)))
    assert events.wait(ExtensionDialled, call_id="1.2") == ExtensionDialled(
        call_id="1.2", channel="PJSIP/8001-0000000a", extension="8001", digits="##31")


def test_ivr_commands_run_in_order_on_the_wire(driver, call, events, until):
    driver.execute([Answer(CALL), Play(CALL, "acc-welcome"), Collect(CALL, "acc-menu", 4, 5000)])
    call.expect("ANSWER")
    call.reply("200 result=0")
    call.expect('STREAM FILE acc-welcome ""')
    call.reply("100 result=0 Trying...", "200 result=0 endpos=19112")  # 100 Trying, then the final line
    call.expect("GET DATA acc-menu 5000 4")
    call.reply("200 result= (timeout)")
    done = events.wait(CommandDone, command="Collect")
    assert (done.digits, done.timed_out) == ("", True)
    assert [e.command for e in events.of(CommandDone)] == ["Answer", "Play", "Collect"]
    call.reply("HANGUP")
    assert hung_up_once(events, until).by == "caller"


def test_missing_prompt_is_not_a_failure(driver, call, events):
    driver.execute([Play(CALL, "no-such-file")])
    call.expect('STREAM FILE no-such-file ""')
    call.reply("200 result=-1 endpos=0")
    assert events.wait(CommandDone, command="Play").ok


def test_caller_hanging_up_on_hold_music_is_noticed_at_once(driver, call, events, until):
    driver.execute([Answer(CALL), HoldMusic(CALL)])
    call.expect("ANSWER")
    call.reply("200 result=0")
    call.expect("SET MUSIC ON default")
    call.reply("200 result=0")
    time.sleep(0.1)
    started = time.monotonic()
    call.reply("HANGUP")  # unsolicited: nobody sent a command
    hung = hung_up_once(events, until, settle=0.0)
    assert time.monotonic() - started < 0.5
    assert (hung.by, hung.cause) == ("caller", 16)
    assert [e.command for e in events.of(CommandDone)] == ["Answer"]  # HoldMusic finishes with nothing
    assert call.closed_by_edge()
    assert CALL not in driver.live_calls()


def test_ring_agent_stops_music_dials_and_reports_status(ami_server, driver, call, events, recording):
    driver.execute([HoldMusic(CALL)])
    call.expect("SET MUSIC ON default")
    call.reply("200 result=0")
    driver.execute([RingAgent(CALL, "8001", "PJSIP/8001", 20)])
    call.expect("SET MUSIC OFF")
    call.reply("200 result=0")
    call.expect("EXEC Dial PJSIP/8001,20,b(cc-callee^s^1)")
    dial_end = next(b for b in recording("agi-03-exec-dial.ami").events("DialEnd")
                    if b"DialStatus: ANSWER" in b and b"\r\nUniqueid:" in b)  # not the Originate one
    dial_end = (dial_end.replace(b"Uniqueid: 1795392259.59", f"Uniqueid: {CALL}".encode())
                .replace(b"DestChannel: Local/101@sim-trunk-00000021;1", b"DestChannel: PJSIP/8001-0000002a"))
    ami_server.wait_connections(1).send(dial_end)
    assert events.wait(AgentAnswered, call_id=CALL).extension == "8001"
    call.reply("200 result=-1")  # bridged, then the agent hung up: -1 is normal here
    call.expect('GET VARIABLE "DIALSTATUS"')
    call.reply("200 result=1 (ANSWER)")
    call.expect('GET VARIABLE "ANSWEREDTIME"')
    call.reply("200 result=1 (9)")
    done = events.wait(CommandDone, command="RingAgent")
    assert (done.status, done.talk_s, done.ok) == ("ANSWER", 9.0, True)


def test_caller_hanging_up_during_the_bridge_keeps_the_answer(driver, call, events, until):
    """No DialEnd from AMI (late or lost): the Dial outcome read after the bare HANGUP line still
    reports the answer, before the one CallHungUp, so the call is not filed as abandoned."""
    driver.execute([RingAgent(CALL, "8001", "PJSIP/8001", 20)])
    call.expect("EXEC Dial PJSIP/8001,20,b(cc-callee^s^1)")
    call.reply("200 result=-1")
    call.expect('GET VARIABLE "DIALSTATUS"')
    call.reply("HANGUP")  # the caller left; Asterisk still answers dead-channel-safe reads
    call.reply("200 result=1 (ANSWER)")
    call.expect('GET VARIABLE "ANSWEREDTIME"')
    call.reply("200 result=1 (12)")
    done = events.wait(CommandDone, command="RingAgent")
    assert (done.status, done.talk_s, done.caller_gone) == ("ANSWER", 12.0, True)
    assert hung_up_once(events, until).by == "caller"
    kinds = [type(e).__name__ for e in events.events if isinstance(e, (CommandDone, CallHungUp))]
    assert kinds == ["CommandDone", "CallHungUp"]


def test_no_answer_from_the_agent(driver, call, events):
    driver.execute([RingAgent(CALL, "8001", "PJSIP/8001", 3)])
    call.expect("EXEC Dial PJSIP/8001,3,b(cc-callee^s^1)")
    call.reply("200 result=0")
    call.expect('GET VARIABLE "DIALSTATUS"')
    call.reply("200 result=1 (NOANSWER)")
    call.expect('GET VARIABLE "ANSWEREDTIME"')
    call.reply("200 result=0")
    done = events.wait(CommandDone, command="RingAgent")
    assert (done.status, done.talk_s) == ("NOANSWER", 0.0)


def test_dial_out_spy_and_pickup_on_the_wire(driver, call, events):
    driver.execute([DialOut(CALL, "DAHDI/g0/13800138000", 60), Spy(CALL, "PJSIP/8001-", "qw"),
                    PickupCall(CALL, "PJSIP/8002")])
    call.expect("EXEC Dial DAHDI/g0/13800138000,60")
    call.reply("200 result=0")
    call.expect('GET VARIABLE "DIALSTATUS"')
    call.reply("200 result=1 (BUSY)")
    call.expect('GET VARIABLE "ANSWEREDTIME"')
    call.reply("200 result=0")
    call.expect("EXEC ChanSpy PJSIP/8001-,qw")
    call.reply("200 result=0")
    call.expect("EXEC PickupChan PJSIP/8002")
    call.reply("200 result=-2")  # no such application on this box
    events.wait(CommandDone, command="PickupCall")
    assert [(e.command, e.status, e.ok) for e in events.of(CommandDone)] == [
        ("DialOut", "BUSY", True), ("Spy", "", True), ("PickupCall", "", False)]


def test_dead_channel_reply_ends_the_call_once(driver, call, events, until):
    driver.execute([Play(CALL, "acc-welcome"), Play(CALL, "acc-bye")])
    call.expect('STREAM FILE acc-welcome ""')
    call.reply("511 Command Not Permitted on a dead channel or intercept routine")
    assert hung_up_once(events, until).by == "caller"
    assert events.of(CommandDone) == []
    assert call.closed_by_edge()


@pytest.mark.parametrize("while_busy", [False, True])
def test_socket_reset_ends_the_call_once(driver, call, events, until, while_busy):
    if while_busy:
        driver.execute([Answer(CALL)])
        call.expect("ANSWER")
    call.reset()
    hung = hung_up_once(events, until)
    assert (hung.by, hung.cause) == ("unknown", 0)


def test_core_hangup_sends_hangup_and_posts_nothing(driver, call, events, until):
    driver.execute([Hangup(CALL, "ivr done")])
    call.expect("HANGUP")
    call.reply("200 result=1", "HANGUP")
    assert call.closed_by_edge()
    assert until(lambda: CALL not in driver.live_calls())
    driver.execute([Play(CALL, "late")])  # a late command for a finished call is dropped
    time.sleep(0.1)
    assert events.of(CallHungUp) == [] and events.of(CommandDone) == []


def test_force_hangup_goes_to_ami_as_a_regex(ami_server, driver, events, recording, replay):
    rec = recording("ami-19-coreshowchannels-and-regex-hangup")
    ami_server.handlers["hangup"] = lambda conn, msg: conn.send(replay(rec.with_id("hangup-regex"), "hangup-regex", msg.action_id))
    driver.execute([ForceHangup("PJSIP/8001"), WriteCdr({"id": 1}), Notify("agent.state", {})])
    assert ami_server.wait_action("Hangup")[0]["Channel"] == "/^PJSIP/8001-.*$/"


def test_ami_reconnect_posts_link_changes_and_a_channel_snapshot(ami_server, driver, events, recording, replay):
    rec = recording("ami-19-coreshowchannels-and-regex-hangup")
    ami_server.handlers["coreshowchannels"] = lambda conn, msg: conn.send(replay(rec.with_id("csc-1"), "csc-1", msg.action_id))
    ami_server.wait_connections(1).close()
    assert "AMI" in events.wait(LinkChanged, up=False).detail
    snapshot = events.wait(ChannelsSnapshot)
    assert snapshot.channels == ("Local/600@sim-trunk-00000012;1", "Local/600@sim-trunk-00000012;2",
                                 "Local/700@sim-trunk-00000011;2", "Local/700@sim-trunk-00000011;1")
    links = [e.up for e in events.of(LinkChanged)]
    assert links == [True, False, True]
    assert events.events.index(snapshot) > max(i for i, e in enumerate(events.events) if isinstance(e, LinkChanged))


def test_stop_ends_live_calls_with_one_hangup_each(events, agi_peer, env_for):
    drv = AsteriskDriver(events, None, FastAgiSettings(host="127.0.0.1", port=0))  # FastAGI only
    drv.start()
    peers = [agi_peer(drv.fastagi_address, env_for("incoming", f"DAHDI/{n}-1", f"2.{n}")) for n in (1, 2)]
    events.wait(CallOffered, call_id="2.1")
    drv.execute([HoldMusic("2.1")])
    peers[0].expect("SET MUSIC ON default")
    peers[0].reply("200 result=0")
    events.wait(CallOffered, call_id="2.2")
    started = time.monotonic()
    drv.stop()
    assert time.monotonic() - started < 2
    hung = sorted((e.call_id, e.by) for e in events.of(CallHungUp))
    assert hung == [("2.1", "system"), ("2.2", "system")]


def test_a_bug_in_the_session_still_ends_the_call_once(driver, call, events, until):
    driver.execute([Collect(CALL, "acc-menu", max_digits="four")])  # type: ignore[arg-type]
    hung = hung_up_once(events, until)
    assert hung.by == "system"
    assert call.closed_by_edge()


def test_from_config_reads_the_edge_asterisk_table(events):
    from edge.config import example_config

    config = example_config()
    drv = AsteriskDriver.from_config(events, config, time_scale=0.01)
    ami, fastagi = drv.ami.settings, drv.fastagi.settings
    assert (ami.host, ami.port, ami.username, ami.secret) == (
        config.asterisk.ami_host, config.asterisk.ami_port, config.asterisk.ami_user, config.asterisk.ami_secret)
    assert (fastagi.host, fastagi.port, fastagi.max_workers) == (
        config.asterisk.fastagi_host, config.asterisk.fastagi_port, config.asterisk.fastagi_workers)
    assert ami.backoff.max_s == pytest.approx(0.3) and ami.keepalive_s == 0.5  # scaled, with floors
    drv.stop()  # never started: stopping is still clean
