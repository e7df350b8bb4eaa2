"""AGI RECORD FILE in the simulator: the reply bytes of fixture agi-04, and the voicemail file it
writes (duration in scripted time, content regenerated from the caller's voice), driven by a raw
FastAGI server written here (the "edge") over the real TCP wire."""
from __future__ import annotations

import re
import socket
import wave
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import pytest

from hil.pbx.errors import ScriptError
from hil.pbx.mixmonitor import wav_sizes
from hil.pbx.scripts import parse_call
from hil.pbx.simulator import PbxSimulator
from hil.pbx.voicemail import BEEP_MS, file_samples, message_audio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22"
SCALE = 0.01
E1 = {"trunks": [{"profile": "e1", "channels": "1-4"}]}
REPLY = re.compile(r"200 result=(-?\d+) \((dtmf|timeout|hangup)\) endpos=(\d+)\n")
FRAME = 160


class Edge:
    """A FastAGI session seen from the edge: raw reply lines, as bytes on the wire."""

    def __init__(self, conn: socket.socket, reader: BinaryIO) -> None:
        self.conn, self.reader = conn, reader
        while reader.readline() not in (b"\n", b""):
            pass

    def cmd(self, command: str) -> str:
        self.conn.sendall((command + "\n").encode())
        return self.reader.readline().decode()

    def line(self) -> str:
        return self.reader.readline().decode()


@pytest.fixture
def run(agi_server):
    """``run(flow, call)``: one trunk call c1 whose FastAGI session runs ``flow(edge)``; returns
    (simulator, what the flow returned) once the session ended."""
    made: list[PbxSimulator] = []

    def start(flow: Callable[[Edge], object], call: dict | None = None, **world) -> tuple[PbxSimulator, object]:
        out: list[object] = []

        def serve(conn: socket.socket, reader: BinaryIO) -> None:
            out.append(flow(Edge(conn, reader)))

        server = agi_server(serve)
        spec = {"trunks": E1["trunks"], "calls": [{"id": "c1", "did": "1", **(call or {})}], **world}
        sim = PbxSimulator(spec, agi_port=server.port, time_scale=SCALE).start()
        made.append(sim)
        sim.wait_record("agi_closed", 5, call="c1")
        assert out, "the flow did not finish"
        return sim, out[0]

    yield start
    for sim in made:
        sim.stop()


def expect_reply(line: str) -> tuple[int, str, int]:
    match = REPLY.fullmatch(line)
    assert match, line
    return int(match.group(1)), match.group(2), int(match.group(3))


def silence_trip(audio: np.ndarray, limit_ms: int) -> int:
    """Frames read when a 256-threshold detector has heard more than ``limit_ms`` of silence."""
    level = np.abs(audio[:len(audio) // FRAME * FRAME].reshape(-1, FRAME).astype(np.int32)).mean(axis=1)
    run_ms = 0
    for i, quiet in enumerate(level.astype(int) < 256):
        run_ms = run_ms + 20 if quiet else 0
        if run_ms > limit_ms:
            return i + 1
    raise AssertionError("no silence")


def test_fixture_replies_have_the_shape_we_answer():
    lines = (FIXTURES / "agi-04-record-file.txt").read_text().splitlines(keepends=True)[-3:]
    assert [expect_reply(line)[1] for line in lines] == ["dtmf", "timeout", "timeout"]


def test_message_ended_by_hash_is_the_callers_words(run, tmp_path):
    base = tmp_path / "vm" / "msg-c1"
    base.parent.mkdir()
    sim, reply = run(lambda e: (e.cmd("ANSWER"), e.cmd(f'RECORD FILE {base} wav "#" 10000 0 beep'))[1],
                     {"message_ms": 5000, "message_end": "#"})
    assert reply == "200 result=35 (dtmf) endpos=38400\n"  # 5 s spoken, the last 200 ms rewound
    path = base.with_suffix(".wav")
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == 38400
    assert wav_sizes(path) == (36 + 38400 * 2, 38400 * 2)
    assert np.array_equal(file_samples(path), message_audio("msg-c1.wav", 38400, speech_ms=5000))
    [msg] = sim.messages(call="c1")
    assert (msg.file, msg.format, msg.samples, msg.ended, msg.digit) == (path, "wav", 38400, "dtmf", "#")
    assert abs(msg.duration_ms - (5000 - 200)) < 20
    assert abs(msg.stop_ms - msg.start_ms - 5000) < 1e-6
    assert np.array_equal(msg.expected_audio(), file_samples(path))
    assert msg.start_ms - sim.records("agi_command", command="ANSWER")[0].t_ms >= BEEP_MS


def test_timeout_keeps_every_frame_and_the_caller_talks_on(run, tmp_path):
    base = tmp_path / "long"
    sim, reply = run(lambda e: (e.cmd("ANSWER"), e.cmd(f'RECORD FILE {base} wav "#" 2000'))[1])
    assert reply == "200 result=0 (timeout) endpos=16000\n"
    audio = file_samples(base.with_suffix(".wav"))
    assert np.array_equal(audio, message_audio("long.wav", 16000))
    assert np.abs(audio).max() > 3000  # words, not silence
    assert sim.messages()[0].ended == "timeout"


@pytest.mark.parametrize("seconds", [1, 2])
def test_silence_detection_answers_the_time_left_like_agi04(run, tmp_path, seconds):
    base = tmp_path / f"quiet-{seconds}"
    sim, reply = run(lambda e: (e.cmd("ANSWER"), e.cmd(f'RECORD FILE {base} wav "#" 20000 0 s={seconds}'))[1],
                     {"message_ms": 1500, "message_end": "silence"})
    trip = silence_trip(message_audio(base.name + ".wav", 8000 * 10, speech_ms=1500), seconds * 1000)
    kept = (trip - 50 * (seconds - 1)) * FRAME  # Asterisk rewinds s-1 seconds
    assert expect_reply(reply) == (20000 - trip * 20, "timeout", kept)
    assert 1500 + seconds * 1000 < trip * 20 <= 1500 + seconds * 1000 + 400
    assert np.array_equal(file_samples(base.with_suffix(".wav")),
                          message_audio(base.name + ".wav", kept, speech_ms=1500))
    assert sim.messages()[0].ended == "silence"


def test_caller_hanging_up_mid_message_keeps_what_was_said(run, tmp_path):
    base = tmp_path / "cut"
    sim, lines = run(lambda e: (e.cmd("ANSWER"), e.cmd(f'RECORD FILE {base} wav "#" 10000'), e.line())[1:],
                     {"message_ms": 3000, "message_end": "hangup"})
    assert lines == ("200 result=-1 (hangup) endpos=24000\n", "HANGUP\n")
    path = base.with_suffix(".wav")
    assert wav_sizes(path) == (36 + 48000, 48000)  # closed: the header is fixed
    assert np.array_equal(file_samples(path), message_audio("cut.wav", 24000, speech_ms=3000))
    [msg] = sim.messages()
    assert (msg.ended, msg.samples) == ("hangup", 24000)
    assert sim.records("hung_up", call="c1")[0].get("by") == "caller"


def test_relative_name_lands_in_the_spool_dir_headerless(run):
    sim, reply = run(lambda e: (e.cmd("ANSWER"), e.cmd('RECORD FILE vm-rel sln "#" 1000'))[1])
    assert reply == "200 result=0 (timeout) endpos=8000\n"
    path = sim.spool_dir / "vm-rel.sln"
    assert path.stat().st_size == 16000  # no header
    assert np.array_equal(file_samples(path), message_audio("vm-rel.sln", 8000))
    assert sim.messages()[0].file == path


def test_offset_keeps_the_start_of_an_earlier_take(run, tmp_path):
    base = tmp_path / "again"

    def flow(e: Edge) -> tuple[str, str]:
        e.cmd("ANSWER")
        return e.cmd(f'RECORD FILE {base} wav "#" 1000'), e.cmd(f'RECORD FILE {base} wav "#" 500 4000')

    sim, (first, second) = run(flow)
    assert (first, second) == ("200 result=0 (timeout) endpos=8000\n", "200 result=0 (timeout) endpos=8000\n")
    take = message_audio("again.wav", 8000)
    assert np.array_equal(file_samples(base.with_suffix(".wav")), np.concatenate([take[:4000], take[:4000]]))
    assert [m.kept for m in sim.messages()] == [0, 4000]


def test_failures_answer_like_res_agi(run, tmp_path):
    def flow(e: Edge) -> list[str]:
        e.cmd("ANSWER")
        return [e.cmd(f'RECORD FILE {tmp_path}/x wav "#" 1000 BEEP'),  # '#' keyed during the beep
                e.cmd(f'RECORD FILE {tmp_path}/no/such/dir/x wav "#" 1000'),
                e.cmd(f'RECORD FILE {tmp_path}/x gsm "#" 1000'),
                e.cmd(f'RECORD FILE {tmp_path}/x wav "#"')]

    sim, replies = run(flow, {"dtmf": [{"at_ms": 1500, "digits": "#"}]}, prompts={"beep": 5000})
    assert replies == ["200 result=35 (randomerror) endpos=0\n",
                       "200 result=-1 (writefile)\n", "200 result=-1 (writefile)\n",
                       "520 Invalid command syntax.  Proper usage not available.\n"]
    assert not sim.messages() and not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("spec,error", [
    ({"message_ms": 1000, "message_end": "##"}, "calls[0].message_end: expected one DTMF key"),
    ({"message_end": "hangup"}, "calls[0].message_end: needs message_ms"),
    ({"message_ms": -5}, "calls[0].message_ms: expected milliseconds"),
])
def test_message_scripting_is_validated(spec, error):
    with pytest.raises(ScriptError, match=re.escape(error)):
        parse_call({"id": "c1", **spec}, "calls[0]")
    assert parse_call({"id": "c1", "message_ms": 0, "message_end": "hangup"}, "calls[0]").message_end == "hangup"
