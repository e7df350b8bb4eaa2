"""Run a scenario file against a real edge: the edge's own runtime, store and Asterisk driver,
talking to the HIL PBX simulator over loopback TCP (AMI + FastAGI), never an in-process shortcut.

A scenario may carry two keys the simulator does not read:

``edge``  top-level config tables (``agents``, ``groups``, ``routing``, ``trunks``, ``codes``) that
          replace those of ``hil/scenarios/edge-base.toml`` for this run.
``recordings``  expectations on the MP3s the edge made, e.g. ``- {call: c1, count: 1, state: done,
          agent_id: a8001, min_s: 19, max_s: 21}``. Every recording that is done is also checked
          against the simulator's witness copy of its WAV: the MP3 must decode to the same audio
          (duration within max(1 %, 200 ms), correlation >= 0.9 after alignment).
``api``   calls to the edge's HTTP API at scripted times after the world starts, e.g.
          ``- {at_ms: 12000, post: /api/agents/a8001/transfer, body: {target: "8002"}}``; the
          replies are kept in ``EdgeRun.api_replies``.
``customers``  rows for the edge's customer cache before the call, e.g. ``- {id: k1, name: 王五,
          member_no: "12345678", numbers: ["13800138000"], accounts: [{id: acc1, balance: "1234.56"}]}``.
``clock``  the edge's virtual start time (ISO 8601 with offset), e.g. a public holiday.
``cdrs``  expectations on the CDRs the edge wrote, e.g.
          ``- {call: c1, agent_id: a8001, rule: least_calls, disposition: answered}``; ``call``
          names a scenario call (matched through its channels' Uniqueids); ``count: 2`` asserts how
          many CDRs the call produced (default 1). Every other key must equal the CDR's column.
"""
from __future__ import annotations

import copy
import json
import os
import threading
import urllib.error
import urllib.request
import socket
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.config import EdgeConfig, parse_config
from edge.runtime import EdgeRuntime, ScaledClock
from edge.store import Store
from hil.pbx.scenario import ScenarioResult, load, run_scenario
from hil.pbx.simulator import PbxSimulator

BASE_CONFIG = Path(__file__).parent / "scenarios" / "edge-base.toml"
CDR_SETTLE_S = 5.0
RECORDING_SETTLE_S = 10.0
# Scenario files say 0.01 (100x); the edge, the simulator and pytest share one GIL, so a slow or
# loaded machine can squeeze a scripted 200 ms gap into jitter. HIL_TIME_SCALE sets a floor.
MIN_TIME_SCALE = float(os.environ.get("HIL_TIME_SCALE", "0.02"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edge_config(overrides: dict[str, Any] | None, *, store: Path, ami_port: int, agi_port: int,
                time_scale: float) -> EdgeConfig:
    """The base scenario config with a scenario's tables swapped in and the harness's ports set."""
    data = tomllib.loads(BASE_CONFIG.read_text(encoding="utf-8"))
    for key, value in (overrides or {}).items():
        if key in ("edge", "asterisk"):
            data[key].update(value)
        else:
            data[key] = copy.deepcopy(value)
    data["edge"].update(store=str(store), time_scale=time_scale)
    data.setdefault("recording", {}).update(spool_dir=str(store.parent / "spool"),
                                            root=str(store.parent / "recordings"))
    if "ivr" in data:  # the box's sounds folder holds exactly the prompts the simulated PBX has
        data["ivr"].setdefault("prompt_dirs", [str(store.parent / "sounds")])
    data["asterisk"].update(ami_host="127.0.0.1", ami_port=ami_port, fastagi_port=agi_port,
                            fastagi_host="127.0.0.1")
    return parse_config(data, base_dir=BASE_CONFIG.parent)


@dataclass
class CdrCheck:
    spec: dict[str, Any]
    passed: bool
    detail: str = ""


@dataclass
class EdgeRun:
    """What a scenario run left behind: the simulator's verdict and the edge's CDRs."""
    scenario: ScenarioResult
    cdrs: list[dict[str, Any]]
    cdr_checks: list[CdrCheck] = field(default_factory=list)
    runtime: EdgeRuntime | None = None
    recordings: list[dict[str, Any]] = field(default_factory=list)
    api_replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.scenario.passed and all(c.passed for c in self.cdr_checks)

    def report(self) -> str:
        lines = [self.scenario.report()]
        for check in self.cdr_checks:
            lines.append(f"  {'PASS' if check.passed else 'FAIL'} cdr {check.spec} {check.detail}")
        return "\n".join(lines)


def run_with_edge(source: str | Path | dict[str, Any], workdir: Path,
                  config_overrides: dict[str, Any] | None = None) -> EdgeRun:
    """Start a fresh edge (own store under ``workdir``), run the scenario against it, check CDRs."""
    data, _ = load(source)
    scale = max(float(data.get("time_scale") or 0.01), MIN_TIME_SCALE)
    ami_port, agi_port = free_port(), free_port()
    overrides = {**(data.get("edge") or {}), **(config_overrides or {})}
    _install_prompts(data.get("prompts") or {}, workdir / "sounds")
    (workdir / "spool").mkdir(exist_ok=True)  # Asterisk's monitor dir exists on a real box
    config = edge_config(overrides, store=workdir / "edge.sqlite3", ami_port=ami_port,
                         agi_port=agi_port, time_scale=scale)
    start = data.get("clock")
    clock = ScaledClock(scale, _epoch(start)) if start else None
    runtime = EdgeRuntime(config, clock=clock)
    for row in data.get("customers") or []:
        row = dict(row)
        runtime.store.upsert_customer(row, row.pop("numbers", ()), row.pop("accounts", ()))
    started: list[EdgeRuntime] = []

    api_replies: list[dict[str, Any]] = []

    def start_edge(sim: PbxSimulator) -> None:
        runtime.start()
        started.append(runtime)
        if data.get("api"):
            threading.Thread(target=_api_script, args=(sim, runtime, data["api"], api_replies),
                             name="harness-api", daemon=True).start()

    def simulator(world: Any, time_scale: float) -> PbxSimulator:
        return PbxSimulator(world, edge_host="127.0.0.1", agi_port=agi_port, ami_port=ami_port,
                            time_scale=time_scale, spool_dir=workdir / "spool",
                            witness_dir=workdir / "witness")

    try:
        result = run_scenario(data, sim_factory=simulator, keep_simulator=True,
                              time_scale=scale, on_started=start_edge)
        calls = call_ids(result.simulator) if result.simulator else {}
        expected = list(data.get("cdrs") or [])
        cdrs = _settled_cdrs(runtime.store, calls, expected)
        checks = [_check(spec, cdrs, calls) for spec in expected]
        recordings = _settled_recordings(runtime)
        checks += [_check_recordings(spec, recordings, calls) for spec in data.get("recordings") or []]
        messages = {m.file.name: m for m in result.simulator.messages()} if result.simulator else {}
        checks += [_check_audio(row, workdir / "witness", messages) for row in recordings
                   if row["state"] == "done"]
        return EdgeRun(result, cdrs, checks, runtime, recordings, api_replies)
    finally:
        if started:
            runtime.stop()


def _api_script(sim: PbxSimulator, runtime: EdgeRuntime, actions: list[dict[str, Any]],
                replies: list[dict[str, Any]]) -> None:
    """POST each action to the edge's API when its scripted time after world start comes."""
    while not sim.world_started_ms and sim.running:
        time.sleep(0.005)
    host, port = runtime.api.address if runtime.api else ("127.0.0.1", 0)
    for action in sorted(actions, key=lambda a: a.get("at_ms", 0)):
        due = sim.world_started_ms + float(action.get("at_ms", 0))
        while sim.running and sim.pbx.now_ms() < due:
            time.sleep(0.002)
        body = json.dumps(action.get("body") or {}).encode("utf-8")
        request = urllib.request.Request(f"http://{host}:{port}{action['post']}", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                replies.append({"post": action["post"], "status": reply.status,
                                "body": json.loads(reply.read())})
        except urllib.error.HTTPError as exc:
            replies.append({"post": action["post"], "status": exc.code,
                            "body": json.loads(exc.read() or b"{}")})


def _install_prompts(prompts: dict[str, Any], folder: Path) -> None:
    """A sounds folder like the box's: one short silent WAV per prompt the PBX can play, so the
    edge's flow loader finds what the simulated Asterisk will play."""
    header = _silent_wav(800)
    for name in prompts:
        path = folder / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header)


def _silent_wav(samples: int) -> bytes:
    data = bytes(2 * samples)
    return (b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt "
            + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
            + (8000).to_bytes(4, "little") + (16000).to_bytes(4, "little")
            + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
            + b"data" + len(data).to_bytes(4, "little") + data)


def _epoch(value: Any) -> float:
    """A scenario's ``clock``: YAML may already have parsed the ISO text into a datetime."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        raise ValueError(f"clock {value!r} needs a UTC offset, e.g. 2026-10-01T10:00:00+08:00")
    return when.timestamp()


def call_ids(sim: PbxSimulator) -> dict[str, set[str]]:
    """Scenario call id -> Uniqueids of its channels (one of them is the edge's call_id)."""
    out: dict[str, set[str]] = {}
    for ch in sim.channels(live=False):
        if ch.call:
            out.setdefault(ch.call, set()).add(ch.uniqueid)
    return out


def _settled_cdrs(store: Store, calls: dict[str, set[str]], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CDRs are written when the edge processes the hang-up: give it a moment to catch up."""
    wanted = {spec["call"] for spec in expected if "call" in spec}
    deadline = time.monotonic() + CDR_SETTLE_S
    while True:
        cdrs = store.cdrs(limit=10_000)
        have = {call for call, ids in calls.items() if any(c["call_id"] in ids for c in cdrs)}
        if wanted <= have or time.monotonic() > deadline:
            return cdrs
        time.sleep(0.02)


def _settled_recordings(runtime: EdgeRuntime) -> list[dict[str, Any]]:
    """Recordings are encoded after the hang-up, off the core thread: wait until none is pending."""
    service = runtime.recordings
    deadline = time.monotonic() + RECORDING_SETTLE_S
    while service is not None and not service.idle() and time.monotonic() < deadline:
        time.sleep(0.02)
    return runtime.store.recordings()


def _check_recordings(spec: dict[str, Any], rows: list[dict[str, Any]],
                      calls: dict[str, set[str]]) -> CdrCheck:
    spec = dict(spec)
    call = spec.pop("call", None)
    count = spec.pop("count", None)
    low, high = spec.pop("min_s", None), spec.pop("max_s", None)
    if call is not None:
        rows = [r for r in rows if r["call_id"] in calls.get(call, set())]
    label = {"recording of": call, **spec}
    if count is not None and len(rows) != count:
        return CdrCheck(label, False, f"expected {count} recording(s), found {len(rows)}: {rows}")
    for row in rows:
        if not all(_same(row.get(k), v) for k, v in spec.items()):
            return CdrCheck(label, False, f"does not match {row}")
        duration = float(row.get("duration_s") or 0.0)
        if (low is not None and duration < low) or (high is not None and duration > high):
            return CdrCheck(label, False, f"duration {duration:.3f} s not in [{low}, {high}]")
        if row["state"] == "done" and not Path(row["mp3_path"]).is_file():
            return CdrCheck(label, False, f"{row['mp3_path']} is missing")
    return CdrCheck(label, True)


def _check_audio(row: dict[str, Any], witness_dir: Path, messages: dict[str, Any]) -> CdrCheck:
    """The MP3 decodes to the audio the simulated Asterisk wrote: its witness copy of a
    MixMonitor WAV, or a voicemail's audio regenerated from the caller's script."""
    from edge.recordings.verify import correlate_aligned, decode
    from edge.recordings.wavfile import read_pcm
    import numpy as np

    label = {"audio of": row["file"]}
    witness = witness_dir / row["file"]
    if row["file"] in messages:
        reference, sample_rate = messages[row["file"]].expected_audio(), 8000
    elif witness.is_file():
        pcm, info = read_pcm(witness)
        reference, sample_rate = np.frombuffer(pcm, dtype="<i2"), info.sample_rate
    else:
        return CdrCheck(label, False, f"no witness copy {witness} (the PBX never closed it?)")
    decoded, rate = decode(Path(row["mp3_path"]).read_bytes())
    wav_s, mp3_s = len(reference) / sample_rate, len(decoded) / rate
    if abs(mp3_s - wav_s) > max(0.01 * wav_s, 0.2) + 0.072:  # + the encoder's 576-sample delay
        return CdrCheck(label, False, f"MP3 {mp3_s:.3f} s vs WAV {wav_s:.3f} s")
    if len(reference) < rate // 2:
        return CdrCheck(label, True, "too short to correlate")
    correlation, lag = correlate_aligned(reference, decoded, rate)
    if correlation < 0.9:
        return CdrCheck(label, False, f"correlation {correlation:.3f} < 0.9 (lag {lag})")
    return CdrCheck(label, True, f"correlation {correlation:.3f}")


def _check(spec: dict[str, Any], cdrs: list[dict[str, Any]], calls: dict[str, set[str]]) -> CdrCheck:
    spec = dict(spec)
    call = spec.pop("call", None)
    count = spec.pop("count", 1 if call else None)
    rows = cdrs
    if call is not None:
        ids = calls.get(call, set())
        rows = [c for c in cdrs if c["call_id"] in ids]
    if count is not None and len(rows) != count:
        return CdrCheck({"call": call, **spec}, False, f"expected {count} CDR(s), found {len(rows)}: {rows}")
    matching = [r for r in rows if all(_same(r.get(k), v) for k, v in spec.items())]
    if not matching:
        return CdrCheck({"call": call, **spec}, False, f"no CDR matches; have {rows}")
    return CdrCheck({"call": call, **spec}, True)


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return bool(actual) == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return abs(actual - expected) < 1e-6
    return str(actual) == str(expected)
