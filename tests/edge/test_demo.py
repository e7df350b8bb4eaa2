"""``edge demo``: the edge driven by the HIL PBX simulator over loopback TCP, in one process."""
from __future__ import annotations

import io
import random
import re
import subprocess
import threading
import sys
import time
from pathlib import Path

import pytest

from edge import demo
from edge.commands import Notify
from edge.config import example_config
from edge.core import AgentView, CallView, QueueView, WaitingView
from edge.demo import (AREA_CODES, MOBILE_PREFIXES, CallerBook, DemoPhone, LiveScreen, Names,
                       Snapshot, Tally, demo_config, demo_world, fmt_duration, run_demo)
from edge.regions import RegionResolver
from hil.pbx.scripts import ANALOG, E1

ROOT = Path(__file__).parents[2]
SUMMARY = re.compile(r"Summary: (\d+) calls?, (\d+) answered, (\d+) abandoned")


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_run_demo_plain_stops_after_six_calls(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = run_demo(calls=6, rate=5, time_scale=0.01, seed=1, plain=True)
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0
    assert elapsed < 30, f"took {elapsed:.1f} s"
    summary = SUMMARY.search(out)
    assert summary, out[-2000:]
    assert summary.group(1) == "6"
    assert out.count(" CDR ") >= 6
    assert "link.state" in out and "up=True" in out


def test_run_demo_live_screen_renders_and_stops() -> None:
    out = FakeTty()
    code = run_demo(calls=3, rate=5, time_scale=0.01, seed=2, plain=False, out=out)
    text = out.getvalue()
    assert code == 0
    assert "Agents" in text and "Queues" in text and "Live calls" in text and "CDRs" in text
    assert "张伟" in text and "8001" in text
    assert "Summary: 3 calls" in text


def test_edge_demo_command_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--calls", "6", "--plain", "--time-scale", "0.01",
         "--rate", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Summary: 6 calls" in result.stdout


def test_bad_arguments_exit_two() -> None:
    assert run_demo(calls=-1, rate=1, time_scale=0.01, seed=1, plain=True) == 2
    assert run_demo(calls=1, rate=0, time_scale=0.01, seed=1, plain=True) == 2


def test_demo_config_is_the_example_on_loopback(tmp_path: Path) -> None:
    config = demo_config(time_scale=0.05, store=tmp_path / "s.sqlite3", ami_port=40001, agi_port=40002)
    example = example_config()
    assert config.edge.time_scale == 0.05
    assert config.edge.store == str(tmp_path / "s.sqlite3")
    assert (config.asterisk.ami_host, config.asterisk.ami_port) == ("127.0.0.1", 40001)
    assert (config.asterisk.fastagi_host, config.asterisk.fastagi_port) == ("127.0.0.1", 40002)
    assert config.agents == example.agents and config.groups == example.groups
    assert config.routing.vip == example.routing.vip
    assert set(example.trunks) <= set(config.trunks)  # the example's lines stay, more are added


def test_world_has_a_phone_per_agent_and_the_config_trunks(tmp_path: Path) -> None:
    config = demo_config(time_scale=0.05, store=tmp_path / "s", ami_port=1, agi_port=2)
    world = demo_world(config, seed=1)
    assert sorted(world.phones) == sorted(a.extension for a in config.agents)
    channels = {span.profile: span.channels for span in world.trunks}
    assert set(channels[ANALOG]) == {t.channel for t in config.trunks if t.profile == "fxo"}
    assert set(channels[E1]) == {t.channel for t in config.trunks if t.profile == "pri"}


def test_phone_answers_after_one_to_four_seconds_and_talks_twenty_to_ninety() -> None:
    phone = DemoPhone("8001", "张伟", seed="1/8001")
    rings = [phone.behaviour(i) for i in range(500)]
    answered = [r for r in rings if r.answer_after_ms is not None]
    assert 0 < len(rings) - len(answered) < 150  # some rings go unanswered
    assert all(1_000 <= r.answer_after_ms <= 4_000 for r in answered)
    assert all(20_000 <= r.hangup_after_ms <= 90_000 for r in answered)


def test_callers_come_from_several_provinces_with_vips_and_blacklisted_numbers() -> None:
    config = example_config()
    resolver = RegionResolver.from_config(config)
    book = CallerBook(config, random.Random(7))
    numbers = [book.next() for _ in range(1000)]
    regions = {resolver.resolve(n) for n in numbers}
    assert None not in regions
    assert len({r.province for r in regions}) >= 8
    assert any(r.province == "广东" for r in regions)  # routed to the gd group
    assert {v.number for v in config.routing.vip} & set(numbers)
    assert {b.number for b in config.routing.blacklist} <= set(numbers)


@pytest.mark.parametrize("prefix", MOBILE_PREFIXES + AREA_CODES)
def test_every_number_range_has_a_known_region(prefix: str) -> None:
    resolver = RegionResolver.from_config(example_config())
    rng = random.Random(prefix)
    for _ in range(5):
        tail = f"{rng.randrange(10**4):04d}" if prefix.startswith("1") else f"{rng.randint(2, 8)}{rng.randrange(10**7):07d}"
        assert resolver.resolve(prefix + tail) is not None, prefix + tail


def test_tally_counts_only_the_first_calls() -> None:
    tally = Tally(limit=2)
    for disposition, wait in (("answered", 4.0), ("abandoned", 2.0), ("answered", 9.0)):
        tally.add({"disposition": disposition, "wait_s": wait})
    assert tally.done.is_set()
    assert tally.summary() == "Summary: 2 calls, 1 answered, 1 abandoned, average wait 3.0 s (simulated)"


def test_frame_shows_agents_queues_calls_and_cdrs() -> None:
    from rich.console import Console

    config = example_config()
    names = Names(config)
    now = 1_795_392_000.0
    snap = Snapshot(
        now,
        [AgentView("a8001", "张伟", "8001", "talking", 3, "c1", now - 65, ("general", "gd")),
         AgentView("a8004", "刘洋", "8004", "logged_out", 0, "", 0.0, ("cards",))],
        [QueueView("general", "least_calls", 0, 3, (WaitingView("c2", "13800138000", 1, 42.0, False),))],
        [CallView("c1", "inbound", "talking", "13711112222", "", "广东广州", False, "gd", "a8001",
                  "8001", now - 80, now - 65, None),
         CallView("c2", "inbound", "queued", "13900001111", "", "新疆乌鲁木齐", False, "general", "", "",
                  now - 42, None, 1)])
    cdrs = [{"ended_at": now - 5, "caller": "13066666666", "region": "辽宁沈阳", "agent_id": None,
             "group": None, "rule": "blacklist", "disposition": "rejected", "wait_s": 0.0, "talk_s": 0.0}]
    status = {"ami_up": True, "tally": Tally(limit=10), "offered": 3, "no_line": 0, "log": []}
    frame = LiveScreen(config, names, 0.05, (5038, 4573)).frame(snap, cdrs, [(now, "call.rejected x")],
                                                                 status, 160, 50)
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(frame)
    text = console.export_text()
    for expected in ("张伟", "通话 talking", "未登录", "1:05", "广东广州", "13900001111 VIP", "queued",
                     "42s", "rejected", "blacklist", "AMI ● up", "×20", "call.rejected"):
        assert expected in text, expected


def test_fmt_duration() -> None:
    assert [fmt_duration(s) for s in (None, 0, 59.4, 61, 3725)] == ["", "0s", "59s", "1:01", "1:02:05"]


def test_an_agent_set_busy_dials_code_7_after_a_break(tmp_path: Path) -> None:
    """The edge's auto-busy (示忙 after missed rings) would take an agent out for good in a demo
    nobody touches: the agent's desk phone dials ##7 20-60 simulated seconds later."""
    config = demo_config(time_scale=0.01, store=tmp_path / "s", ami_port=1, agi_port=2)

    class FakeSim:
        added: list = []

        def add_phone(self, phone):
            self.added.append((phone.extension, [(d.at_ms, d.digits, d.id) for d in phone.dials]))

    run = demo._Demo(0, 1.0, 0.01, 1, True, io.StringIO(), random.Random(1), demo.LogTail(),
                     threading.Event(), tmp_path)
    run.config, run.world, run.sim = config, demo_world(config, seed=1), FakeSim()
    run._listen(Notify("agent.state", {"agent_id": "a8001", "extension": "8001", "state": "busy",
                                       "previous": "ringing", "reason": "missed_rings"}))
    run._listen(Notify("agent.state", {"agent_id": "a8005", "state": "idle", "previous": "busy"}))
    run._end_breaks()
    [(extension, dials)] = FakeSim.added
    assert extension == "8001"
    [(at_ms, digits, _)] = dials
    assert digits == "##7" and 20_000 <= at_ms <= 60_000
