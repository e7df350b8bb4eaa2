"""MixMonitor in the simulator: the AMI bytes of fixture ami-22, and the WAV files it writes, driven
through the real TCP wire (a raw AMI socket, and the driver's AmiClient) while a FastAGI fake edge
bridges a trunk call to a desk phone."""
from __future__ import annotations

import socket
import struct
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from drivers.asterisk.ami import AmiClient
from drivers.asterisk.codec import AmiMessage, AmiParser
from drivers.asterisk.errors import AmiActionError
from drivers.asterisk.session import AmiSettings
from hil.pbx.mixmonitor import HEADER_SIZE, recorded_audio, wav_header, wav_samples, wav_sizes
from hil.pbx.simulator import PbxSimulator
from hil.pbx.speech import SAMPLE_RATE, render, seed_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"
SCALE = 0.02
WORLD = {"trunks": [{"profile": "e1", "channels": "1-4"}], "phones": {"8001": {"answer_after_ms": 4000}}}


def fixture_messages(name: str) -> list[AmiMessage]:
    return [m for m in AmiParser().feed((FIXTURES / name).read_bytes()) if isinstance(m, AmiMessage)]


def names(msg: AmiMessage) -> list[str]:
    return [k for k, _ in msg.headers]


class RawAmi:
    """A bare AMI client keeping every byte it received."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser, self.raw, self.messages = AmiParser(), b"", []

    def action(self, name: str, action_id: str, **fields: str) -> None:
        lines = [f"Action: {name}"] + [f"{k}: {v}" for k, v in fields.items()] + [f"ActionID: {action_id}"]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def wait(self, predicate, timeout: float = 5.0) -> AmiMessage:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if predicate(m)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, "AMI message not seen"
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            self.raw += data
            self.messages += [i for i in self.parser.feed(data) if isinstance(i, AmiMessage)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def bridged_call(agi_server, tmp_path):
    """``start(talk_ms)``: trunk call c1 on DAHDI/1-1, answered by a fake edge that dials desk
    phone 8001 (answers after 4 s); the caller hangs up ``talk_ms`` after being bridged.
    Returns (simulator, logged-in AmiClient)."""
    made: list = []

    def serve(conn, reader) -> None:
        while reader.readline() not in (b"\n", b""):
            pass
        for command in ("ANSWER", "EXEC Dial PJSIP/8001,60"):
            conn.sendall((command + "\n").encode())
            while reader.readline() == b"HANGUP\n":
                pass

    def start(talk_ms: int) -> tuple[PbxSimulator, AmiClient]:
        edge = agi_server(serve)
        world = {**WORLD, "calls": [{"id": "c1", "caller": "13800138000", "did": "88880000",
                                     "hangup_after_talk_ms": talk_ms}]}
        sim = PbxSimulator(world, agi_port=edge.port, time_scale=SCALE, spool_dir=tmp_path / "spool",
                           witness_dir=tmp_path / "witness").start()
        ami = AmiClient(AmiSettings(port=sim.ami_port, username="acceptance", secret="acceptance",
                                    keepalive_s=0.0, action_timeout_s=3.0))
        made.append((sim, ami))
        ami.login()
        sim.wait_record("call_arrived", 3, call="c1")
        return sim, ami

    yield start
    for sim, ami in made:
        ami.close()
        sim.stop()


def bridged_ms(sim: PbxSimulator, start_ms: float) -> float:
    """Scripted time c1's caller spent bridged after ``start_ms``."""
    begin = sim.records("bridged", call="c1")[0].t_ms
    end = sim.records("unbridged", call="c1")[0].t_ms
    return end - max(begin, start_ms)


# --- the wire ------------------------------------------------------------------------------------
def test_mixmonitor_actions_answer_like_fixture_ami22(tmp_path):
    sim = PbxSimulator(time_scale=0.1, spool_dir=tmp_path / "monitor").start()
    ami = RawAmi(sim.ami_port)
    try:
        ami.action("Login", "acc-1", Username="acceptance", Secret="acceptance")
        ami.action("Originate", "orig-600", Channel="Local/600@sim-trunk", Application="Wait", Data="8",
                   Async="true")
        channel = ami.wait(lambda m: m.name == "OriginateResponse")["Channel"]
        ami.action("MixMonitor", "mixmon-1", Channel=channel, File="acc-mixmon-test.wav", Options="b")
        ami.wait(lambda m: m.name == "MixMonitorStart")
        ami.action("StopMixMonitor", "stopmix-1", Channel=channel)
        ami.wait(lambda m: m.name == "MixMonitorStop")
        ami.action("MixMonitor", "mixmon-bad", Channel="Local/nope-ffffffff;1", File="x.wav")
        ami.wait(lambda m: m.action_id == "mixmon-bad")
    finally:
        ami.close()
        sim.stop()
    want = fixture_messages("ami-22-mixmonitor.txt")
    raw = (FIXTURES / "ami-22-mixmonitor.txt").read_bytes()
    for action_id in ("mixmon-1", "stopmix-1", "mixmon-bad"):
        block = next(m for m in want if m.kind == "response" and m.action_id == action_id).to_bytes()
        assert block in raw and block in ami.raw  # byte for byte; Success has no Message line
    got = ami.messages
    start = next(i for i, m in enumerate(got) if m.action_id == "mixmon-1")
    varset = next(i for i, m in enumerate(got) if m.get("Variable") == "MIXMONITOR_FILENAME")
    started = next(i for i, m in enumerate(got) if m.name == "MixMonitorStart")
    assert start < varset < started
    for event in ("MixMonitorStart", "MixMonitorStop"):
        mine = next(m for m in got if m.name == event)
        theirs = next(m for m in want if m.name == event)
        assert names(mine) == names(theirs) and mine["Channel"] == channel
    want_varset = next(m for m in want if m.get("Variable") == "MIXMONITOR_FILENAME")
    assert names(got[varset]) == names(want_varset)
    path = tmp_path / "monitor" / "acc-mixmon-test.wav"
    assert got[varset]["Value"] == str(path)
    # option b on a channel in no bridge (the fixture's Local ;1 in Wait): the header, no audio
    assert path.read_bytes() == wav_header(0)
    assert sim.records("recording")[0].get("samples") == 0


def test_amiclient_errors_carry_asterisks_message(bridged_call):
    sim, ami = bridged_call(20_000)
    for call in (lambda: ami.mix_monitor("DAHDI/9-1", "x.wav"), lambda: ami.stop_mix_monitor("DAHDI/9-1"),
                 lambda: ami.mix_monitor_mute("DAHDI/9-1", True)):
        with pytest.raises(AmiActionError, match="No such channel"):
            call()
    with pytest.raises(AmiActionError, match="Could not stop monitoring channel"):
        ami.stop_mix_monitor("DAHDI/1-1")
    with pytest.raises(AmiActionError, match="Cannot set mute flag"):
        ami.mix_monitor_mute("DAHDI/1-1", True)
    with pytest.raises(ValueError):
        ami.mix_monitor_mute("DAHDI/1-1", True, direction="sideways")


# --- the files -----------------------------------------------------------------------------------
def test_recording_grows_while_bridged_and_is_fixed_at_hangup(bridged_call, tmp_path):
    sim, ami = bridged_call(20_000)  # 0.4 s real
    ami.mix_monitor("DAHDI/1-1", "c1.wav")
    path = tmp_path / "spool" / "c1.wav"
    assert ami.getvar("MIXMONITOR_FILENAME", "DAHDI/1-1") == str(path)
    sim.wait_record("bridged", 3, call="c1")
    sizes = []
    for _ in range(3):
        time.sleep(0.08)
        sizes.append(path.stat().st_size)
        assert wav_sizes(path) == (0, 0)  # format_wav fixes the sizes only at close
    assert sizes[0] < sizes[1] < sizes[2] and sim.active_recordings()[0].file == path
    done = sim.wait_record("recording", 3, channel="DAHDI/1-1")
    size = path.stat().st_size
    assert wav_sizes(path) == (size - 8, size - HEADER_SIZE)
    assert done.get("ended") == "hangup" and done.get("samples") * 2 == size - HEADER_SIZE
    assert abs(done.get("samples") / SAMPLE_RATE * 1000 - bridged_ms(sim, done.get("start_ms"))) < 200
    assert np.array_equal(wav_samples(path), recorded_audio("c1.wav", done.get("samples")))
    assert Path(done.get("witness")).read_bytes() == path.read_bytes()
    with wave.open(str(path)) as w:  # a standard reader agrees
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() == done.get("samples")
    assert not sim.active_recordings() and sim.finished_recordings()[0].ended == "hangup"


def test_mute_spans_are_silent(bridged_call, tmp_path):
    sim, ami = bridged_call(60_000)
    muted_events: list[AmiMessage] = []
    ami.subscribe("MixMonitorMute", muted_events.append)
    ami.mix_monitor("DAHDI/1-1", "c1-mute.wav")
    sim.wait_record("bridged", 3, call="c1")
    for direction in ("both", "read"):
        time.sleep(0.08)
        ami.mix_monitor_mute("DAHDI/1-1", True, direction)
        time.sleep(0.08)
        ami.mix_monitor_mute("DAHDI/1-1", False, direction)
    done = sim.wait_record("recording", 3, channel="DAHDI/1-1")
    both, read = done.get("muted")
    assert (both.direction, read.direction) == ("both", "read")
    assert both.stop_sample - both.start_sample > 0.04 / SCALE * SAMPLE_RATE  # ~4 s of scripted time
    data = wav_samples(tmp_path / "spool" / "c1-mute.wav")
    assert not data[both.start_sample:both.stop_sample].any()
    assert data[:both.start_sample].any() and data[both.stop_sample:read.start_sample].any()
    heard = render(seed_of("c1-mute.wav"), read.start_sample, read.stop_sample - read.start_sample,
                   mute_read=True)
    assert np.array_equal(data[read.start_sample:read.stop_sample], heard)  # only what the caller heard
    assert np.array_equal(data, recorded_audio("c1-mute.wav", done.get("samples"), done.get("muted")))
    assert [(e["Direction"], e["State"]) for e in muted_events] == [
        ("both", "1"), ("both", "0"), ("read", "1"), ("read", "0")]


def test_crash_leaves_sizes_unfixed_with_the_audio_there(bridged_call, tmp_path):
    sim, ami = bridged_call(20_000)
    target = tmp_path / "elsewhere" / "c1-crash.wav"  # an absolute path is used as it is
    ami.mix_monitor("DAHDI/1-1", str(target))
    sim.wait_record("bridged", 3, call="c1")
    time.sleep(0.15)
    sim.inject_fault(kind="mixmonitor_crash")
    crashed = sim.wait_record("recording_crashed", 3, channel="DAHDI/1-1")
    size = target.stat().st_size
    assert size > HEADER_SIZE and wav_sizes(target) == (0, 0)
    assert size == HEADER_SIZE + crashed.get("samples") * 2
    assert np.array_equal(wav_samples(target), recorded_audio(target.name, crashed.get("samples")))
    sim.wait_record("hung_up", 3, call="c1", channel="DAHDI/1-1")
    assert target.stat().st_size == size and wav_sizes(target) == (0, 0)
    assert not sim.records("recording") and not (tmp_path / "witness").exists()
    assert sim.finished_recordings()[0].ended == "crashed"


# --- the format ----------------------------------------------------------------------------------
def test_wav_header_is_format_wavs():
    opened = wav_header()
    assert len(opened) == HEADER_SIZE == 44
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)  # PCM, mono, 8 kHz, 16-bit
    assert opened == b"RIFF" + bytes(4) + b"WAVEfmt " + fmt + b"data" + bytes(4)
    closed = wav_header(3200)
    assert closed[:4] == b"RIFF" and struct.unpack_from("<I", closed, 4)[0] == 3236
    assert closed[8:36] == opened[8:36] and struct.unpack_from("<I", closed, 40)[0] == 3200
    assert struct.unpack_from("<I", wav_header(0), 4)[0] == 36  # an empty file that was closed


def test_speech_is_deterministic_and_not_a_tone():
    seed = seed_of("/var/spool/asterisk/monitor/a.wav")
    assert seed == seed_of("a.wav")
    whole = render(seed, 0, 40_000)
    assert np.array_equal(whole, np.concatenate([render(seed, 0, 12_345), render(seed, 12_345, 27_655)]))
    spectrum = np.abs(np.fft.rfft(whole.astype(float)))
    assert (spectrum > spectrum.max() / 10).sum() > 20  # many partials, not one sine
    loudness = np.sqrt((whole.reshape(-1, 800).astype(float) ** 2).mean(axis=1))
    assert loudness.min() < 50 < 500 < loudness.max()  # syllables and pauses
    assert not render(seed, 0, 800, mute_read=True, mute_write=True).any()
