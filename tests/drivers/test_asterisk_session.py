"""AMI session over a real socket against recorded Asterisk 22 bytes: one test per pyst2 defect,
plus login, lists, reconnect and keepalive."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from drivers.asterisk.errors import AmiAuthError, AmiDisconnected
from drivers.asterisk.session import AmiSession, AmiSettings
from drivers.asterisk.transport import BackoffPolicy


@pytest.fixture
def make_session(ami_server):
    sessions: list[AmiSession] = []

    def make(**overrides) -> AmiSession:
        options = dict(host="127.0.0.1", port=ami_server.port, username="acceptance", secret="acceptance",
                       keepalive_s=0.0, action_timeout_s=2.0, backoff=BackoffPolicy(0.05, 1.0))
        link = overrides.pop("on_link", None)
        sleep = overrides.pop("sleep", None)
        options.update(overrides)
        session = AmiSession(AmiSettings(**options), on_link=link, sleep=sleep)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close(logoff=False)


def test_login_sends_events_on_and_reads_the_banner(ami_server, make_session):
    session = make_session()
    session.connect()
    login = ami_server.wait_action("Login")[0]
    assert (login["Username"], login["Secret"], login["Events"]) == ("acceptance", "acceptance", "on")
    assert session.connected and session.banner_version == "11.0.0"


@pytest.mark.parametrize("mode", ["refuse-login", "no-close-on-failure"])
def test_login_failure_raises_and_closes_the_connection(ami_server, make_session, mode):
    ami_server.modes[0] = mode
    session = make_session()
    with pytest.raises(AmiAuthError, match="Authentication failed"):
        session.connect()
    assert not session.connected
    assert ami_server.wait_connections(1).client_eof.wait(1.0), "client left the socket open"


def test_two_actions_in_flight_get_their_own_responses_even_out_of_order(ami_server, make_session):
    """pyst2 matched responses by arrival order: the first caller would get the second's value."""
    held = []

    def getvar(conn, msg):
        held.append(msg)
        if len(held) == 2:  # answer the second request first
            for request in reversed(held):
                conn.send(f"Response: Success\r\nActionID: {request.action_id}\r\n"
                          f"Variable: {request['Variable']}\r\nValue: value-of-{request['Variable']}\r\n\r\n".encode())

    ami_server.handlers["getvar"] = getvar
    session = make_session()
    session.connect()
    results: dict[str, str] = {}

    def ask(name: str) -> None:
        results[name] = session.send("Getvar", {"Variable": name}).get("Value")

    first = threading.Thread(target=ask, args=("FIRST",))
    first.start()
    ami_server.wait_action("Getvar", 1)
    ask_second = threading.Thread(target=ask, args=("SECOND",))
    ask_second.start()
    first.join(3)
    ask_second.join(3)
    assert results == {"FIRST": "value-of-FIRST", "SECOND": "value-of-SECOND"}


def test_every_action_gets_a_fresh_prefixed_action_id(ami_server, make_session):
    """pyst2 reused the caller's default ActionID; here no two actions ever share one."""
    session = make_session(action_id_prefix="edge-test")
    session.connect()
    for _ in range(30):
        session.send("Ping")
    ids = [m.action_id for m in ami_server.received]
    assert len(ids) == 31 and len(set(ids)) == 31
    assert all(i and i.startswith("edge-test-") for i in ids)


def test_reader_survives_chanvariable_malformed_lines_and_garbage(ami_server, make_session, recording, replay,
                                                                  caplog):
    """pyst2's reader died on ChanVariable(...) headers; every later action then hung."""
    caplog.set_level(logging.WARNING, logger="drivers.asterisk.session")
    rec = recording("ami-04-originate-100-success-app")
    seen = []
    session = make_session()
    session.subscribe("Newchannel", seen.append)
    session.subscribe("OriginateResponse", seen.append)
    session.connect()
    conn = ami_server.wait_connections(1)
    conn.send(rec.events("Newchannel")[0])
    conn.send(b"this line is no header\r\n\r\n")
    conn.send(b"\x00\xff\xfe\x80garbage \x1b[31m\r\n\r\n")
    conn.send(b"Event: Broken\r\nHeaderWithoutColon\r\nAlso broken\r\n\r\n")
    conn.send(b"Event: BrandNewEventNobodyKnows\r\nFoo: bar\r\n\r\n")
    conn.send(b"Response: Success\r\nActionID: not-ours-1\r\n\r\n")
    conn.send(replay(rec.events("OriginateResponse"), "orig-100", "x"))
    assert session.send("Ping").get("Ping") == "Pong"
    assert session.stats.malformed >= 3 and session.stats.unmatched == 1
    assert "skipped malformed input (not a 'Key: value' header line" in caplog.text
    assert "unknown ActionID 'not-ours-1'" in caplog.text
    deadline = time.monotonic() + 2
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[0].chan_variables == {"ACC_TAG": "", "CUSTOMER_ID": ""}
    assert seen[1].name == "OriginateResponse" and seen[1].chan_variables == {"ACC_TAG": "", "CUSTOMER_ID": ""}


def test_junk_glued_in_front_of_a_response_still_delivers_it(ami_server, make_session, replay, recording):
    ping = recording("ami-03-ping").response("ping-1")
    ami_server.handlers["ping"] = lambda conn, msg: conn.send(b"\x07noise without colon\r\n" + replay(ping, "ping-1", msg.action_id))
    session = make_session()
    session.connect()
    assert session.send("Ping").get("Ping") == "Pong"
    assert session.stats.malformed == 1


def test_a_failing_subscriber_does_not_stop_the_others_nor_the_reader(ami_server, make_session, recording):
    seen = []
    session = make_session()
    session.subscribe("Newchannel", lambda e: 1 / 0)
    session.subscribe("*", seen.append)
    session.connect()
    ami_server.wait_connections(1).send(recording("ami-04-originate-100-success-app").events("Newchannel")[0])
    assert session.send("Ping").ok
    deadline = time.monotonic() + 2
    while not any(e.name == "Newchannel" for e in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(e.name == "Newchannel" for e in seen) and session.subscriber_errors == 1


def test_a_subscriber_may_send_actions_itself(ami_server, make_session):
    """Subscribers run on the dispatcher thread, not the reader: no dead-lock."""
    answers = []
    session = make_session()
    session.subscribe("FullyBooted", lambda e: answers.append(session.send("Ping").get("Ping")))
    session.connect()
    deadline = time.monotonic() + 2
    while not answers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answers == ["Pong"]


def test_list_response_is_collected_by_action_id_with_events_in_between(ami_server, make_session, recording, replay):
    rec = recording("ami-19-coreshowchannels-and-regex-hangup")
    blocks = rec.with_id("csc-1")
    stranger = rec.events("Newexten")[0]
    ami_server.handlers["coreshowchannels"] = lambda conn, msg: conn.send(
        replay(blocks[:3], "csc-1", msg.action_id) + stranger + replay(blocks[3:], "csc-1", msg.action_id))
    seen = []
    session = make_session()
    session.subscribe("*", seen.append)
    session.connect()
    result = session.send("CoreShowChannels")
    assert [i.name for i in result.items] == ["CoreShowChannel"] * 4
    assert result.complete is not None and result.complete["ListItems"] == "4"
    deadline = time.monotonic() + 2
    while not any(e.name == "Newexten" for e in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.name for e in seen if e.name in ("Newexten", "CoreShowChannel")] == ["Newexten"]


def test_drop_mid_stream_fails_pending_fast_then_reconnects_with_backoff(ami_server, make_session):
    ami_server.modes.update({1: "close", 2: "close"})  # the first two reconnects fail
    ami_server.handlers["getvar"] = lambda conn, msg: conn.close()  # drop instead of answering
    links: list[tuple[bool, str]] = []
    delays: list[float] = []
    gate = threading.Event()

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 1:
            gate.wait(2)

    session = make_session(on_link=lambda up, detail: links.append((up, detail)), sleep=sleep,
                           action_timeout_s=10.0)
    session.connect()
    started = time.monotonic()
    with pytest.raises(AmiDisconnected):
        session.send("Getvar", {"Variable": "X"})
    assert time.monotonic() - started < 1.0, "pending action waited instead of failing fast"
    with pytest.raises(AmiDisconnected):  # while down: refused at once, not queued
        session.send("Ping")
    gate.set()
    ami_server.wait_connections(4)
    ami_server.wait_action("Login", 2)
    deadline = time.monotonic() + 3
    while not session.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.send("Ping").ok
    assert delays[:3] == [0.05, 0.1, 0.2]
    deadline = time.monotonic() + 2
    while len(links) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [up for up, _ in links] == [True, False, True]
    assert "EOF" in links[1][1] or "lost" in links[1][1]


def test_silent_server_is_detected_by_keepalive_and_replaced(ami_server, make_session, recording, replay):
    ping = recording("ami-03-ping").response("ping-1")

    def pong_only_after_reconnect(conn, msg):
        if conn.index > 0:
            conn.send(replay(ping, "ping-1", msg.action_id))

    ami_server.handlers["ping"] = pong_only_after_reconnect
    links: list[tuple[bool, str]] = []
    session = make_session(keepalive_s=0.1, ping_timeout_s=0.2,
                           on_link=lambda up, detail: links.append((up, detail)))
    session.connect()
    ami_server.wait_connections(2, timeout=3)
    deadline = time.monotonic() + 3
    while len(links) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [up for up, _ in links][:3] == [True, False, True]
    assert "keepalive" in links[1][1]
    assert session.send("Ping").ok


def test_close_logs_off_without_reporting_a_link_loss(ami_server, make_session):
    links = []
    session = make_session(on_link=lambda up, detail: links.append(up))
    session.connect()
    session.close()
    assert ami_server.wait_action("Logoff")
    assert links == [True] and not session.connected
