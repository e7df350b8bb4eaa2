"""The codec parses every byte a real Asterisk 22 sent (tests/fixtures/asterisk-22/*.txt)."""
from __future__ import annotations

from pathlib import Path

import pytest

from drivers.asterisk.codec import (
    AmiBanner, AmiMalformed, AmiMessage, AmiParser, parse_agi_env, parse_agi_reply,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"
AMI_FILES = sorted(p for p in FIXTURES.glob("*.txt") if p.name.startswith("ami-") or ".ami." in p.name)
AGI_FILES = sorted(p for p in FIXTURES.glob("agi-*.txt") if ".ami." not in p.name)


def parse_ami(path: Path, chunk: int = 0) -> list:
    data = path.read_bytes()
    parser = AmiParser()
    if not chunk:
        return parser.feed(data)
    items = []
    for start in range(0, len(data), chunk):
        items += parser.feed(data[start:start + chunk])
    return items


def test_the_fixture_set_is_all_there():
    assert len(AMI_FILES) + len(AGI_FILES) == len(list(FIXTURES.glob("*.txt"))) == 33


@pytest.mark.parametrize("path", AMI_FILES, ids=lambda p: p.stem)
def test_every_ami_fixture_parses_into_banner_then_messages(path):
    items = parse_ami(path)
    assert isinstance(items[0], AmiBanner) and items[0].version == "11.0.0"
    messages = items[1:]
    assert messages and all(isinstance(m, AmiMessage) for m in messages), [
        m for m in messages if not isinstance(m, AmiMessage)]
    assert {m.kind for m in messages} <= {"response", "event"}
    blocks = path.read_bytes().split(b"\r\n", 1)[1].split(b"\r\n\r\n")
    assert sum(m.kind == "response" for m in messages) == sum(b.startswith(b"Response:") for b in blocks)
    assert sum(m.kind == "event" for m in messages) == sum(b.startswith(b"Event:") for b in blocks)


@pytest.mark.parametrize("path", AMI_FILES[:6], ids=lambda p: p.stem)
def test_parsing_is_independent_of_how_tcp_cut_the_bytes(path):
    assert parse_ami(path, chunk=7) == parse_ami(path)


def test_originate_response_with_a_response_header_is_an_event():
    items = parse_ami(FIXTURES / "ami-04-originate-100-success-app.txt")
    outcome = [m for m in items[1:] if m.name == "OriginateResponse"]
    assert len(outcome) == 1
    event = outcome[0]
    assert event.kind == "event" and event["Response"] == "Success" and event["Reason"] == "4"
    assert event.chan_variables == {"ACC_TAG": "", "CUSTOMER_ID": ""}  # ChanVariable(<chan>): form


def test_chan_variable_headers_are_parsed_on_channel_events():
    items = parse_ami(FIXTURES / "ami-04-originate-100-success-app.txt")
    newchannel = next(m for m in items[1:] if m.name == "Newchannel")
    assert newchannel.chan_variables == {"ACC_TAG": "", "CUSTOMER_ID": ""}


def test_list_responses_start_items_complete():
    items = [m for m in parse_ami(FIXTURES / "ami-19-coreshowchannels-and-regex-hangup.txt")[1:]]
    csc = [m for m in items if m.action_id == "csc-1"]
    assert csc[0].kind == "response" and csc[0].is_list_start
    assert [m.name for m in csc[1:-1]] == ["CoreShowChannel"] * 4
    assert csc[-1].is_list_end and csc[-1]["ListItems"] == "4"
    hung = [m for m in items if m.action_id == "hangup-regex"]
    assert [m.name for m in hung[1:-1]] == ["ChannelHungup"] * 4 and hung[-1].name == "ChannelsHungupListComplete"
    empty = [m for m in items if m.action_id == "csc-empty"]
    assert empty[0].is_list_start and empty[-1].is_list_end and empty[-1]["ListItems"] == "0"


def test_failed_originate_has_dial_string_and_unknown_uniqueid():
    items = parse_ami(FIXTURES / "ami-06-originate-200-busy.txt")
    event = next(m for m in items[1:] if m.name == "OriginateResponse")
    assert (event["Response"], event["Reason"], event["Channel"], event["Uniqueid"]) == (
        "Failure", "5", "Local/200@sim-trunk", "<unknown>")


def test_a_header_line_without_colon_is_reported_not_raised():
    items = AmiParser(expect_banner=False).feed(b"Event: X\r\nno colon here\r\n\r\nResponse: Success\r\n\r\n")
    assert isinstance(items[0], AmiMalformed) and "no colon" in items[0].reason
    assert isinstance(items[1], AmiMessage)


@pytest.mark.parametrize("path", AGI_FILES, ids=lambda p: p.stem)
def test_every_agi_fixture_env_and_replies_parse(path):
    text = path.read_text()
    assert "\r" not in text  # FastAGI is LF only
    env_part, _, replies = text.partition("\n\n")
    env = parse_agi_env(env_part.split("\n"))
    assert env["agi_network"] == "yes" and not env["agi_network_script"].startswith("/")
    assert "agi_threadid" in env and not any(k.startswith("agi_arg_") for k in env)
    in_usage = False
    for line in replies.splitlines():
        if in_usage:
            in_usage = not line.startswith("520 ")
            continue
        reply = parse_agi_reply(line)
        assert reply.kind in ("ok", "invalid", "usage"), line
        in_usage = line.startswith("520-")


def test_agi_replies_that_trip_pyst2():
    assert parse_agi_reply("100 result=0 Trying...").kind == "trying"
    assert parse_agi_reply("511 Command Not Permitted on a dead channel or intercept routine").ends_call
    assert parse_agi_reply("HANGUP").ends_call
    missing = parse_agi_reply("200 result=-1 endpos=0")
    assert missing.kind == "ok" and missing.result == "-1" and missing.extras == {"endpos": "0"}
    timeout = parse_agi_reply("200 result= (timeout)")
    assert timeout.kind == "ok" and timeout.result == "" and timeout.data == "timeout"
