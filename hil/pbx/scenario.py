"""Scenario runner: a YAML file describes one behaviour, the world and what the simulator must see.

File format (one scenario per file, data only)::

    name: inbound call reaches the first agent
    time_scale: 0.01            # scripted ms -> real; the CLI's --time-scale overrides it
    duration_ms: 60000          # give up after this much scripted time
    settle_ms: 500              # after the world went idle, re-check failing expectations this long
    wait_for_edge: true         # wait for the edge's AMI login before the calls start
    trunks:   [{profile: e1, channels: "1-4"}]
    phones:   {"8001": {answer_after_ms: 2000, hangup_after_ms: 5000}}
    outside:  [{number: "138*", result: busy}]
    calls:    [{id: c1, caller: "13800138000", did: "88880000", at_ms: 0, menu_input: ["1"]}]
    prompts:  {welcome: 2000}
    faults:   [{kind: ami_disconnect, at_ms: 3000}]
    expect:
      - rang: {call: c1, extension: "8001", order: 1}
      - bridged: {call: c1, extension: "8001"}
      - never_heard: {listener: customer of c1, speaker: phone 8009}
      - hung_up: {call: c1, by: caller}

Command line (against an edge that is already running and points its AMI client at --ami-port)::

    python -m hil.pbx.scenario run hil/scenarios/*.yaml --edge-host 127.0.0.1 --agi-port 4573 --ami-port 5038
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from hil.pbx.errors import PbxSimError, ScenarioError
from hil.pbx.expectations import ExpectationResult, evaluate
from hil.pbx.scripts import World
from hil.pbx.simulator import PbxSimulator

WORLD_KEYS = ("phones", "trunks", "calls", "outside", "prompts", "strict_prompts", "faults")
RUN_KEYS = ("name", "description", "time_scale", "duration_ms", "settle_ms", "wait_for_edge", "expect")
# Read by hil/harness.py, which starts the edge under test itself; the runner passes them by.
EDGE_KEYS = ("edge", "cdrs", "clock", "recordings", "customers", "api")
SimFactory = Callable[[World, float], PbxSimulator]


@dataclass
class ScenarioResult:
    name: str
    source: str
    passed: bool
    expectations: list[ExpectationResult] = field(default_factory=list)
    error: str = ""
    real_seconds: float = 0.0
    timed_out: bool = False
    simulator: PbxSimulator | None = None

    @property
    def failures(self) -> list[ExpectationResult]:
        return [e for e in self.expectations if not e.passed]

    def report(self) -> str:
        lines = [f"scenario: {self.name} ({self.source})"]
        lines += [f"  {'PASS' if e.passed else 'FAIL'} {e.describe()}: {e.detail}" for e in self.expectations]
        if self.error:
            lines.append(f"  ERROR {self.error}")
        verdict = "PASS" if self.passed else "FAIL"
        note = " (world still busy at duration_ms)" if self.timed_out else ""
        lines.append(f"=> {verdict}: {len(self.expectations) - len(self.failures)}/{len(self.expectations)} "
                     f"expectations in {self.real_seconds:.2f} s{note}")
        return "\n".join(lines)


def load(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, dict):
        return source, "<dict>"
    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping")
    return data, str(path)


def run_scenario(source: str | Path | dict[str, Any], *, sim_factory: SimFactory | None = None,
                 edge_host: str = "127.0.0.1", agi_port: int = 4573, ami_port: int = 0,
                 time_scale: float | None = None, wait_for_edge: bool | None = None,
                 login_timeout_s: float = 10.0, keep_simulator: bool = False,
                 on_started: Callable[[PbxSimulator], None] | None = None) -> ScenarioResult:
    """Run one scenario against an edge; returns its result (never raises for a failed check).

    ``sim_factory(world, time_scale)`` builds the simulator (tests pass one bound to their fake
    edge); by default FastAGI goes to ``edge_host:agi_port`` and AMI is served on ``ami_port``.
    ``on_started(sim)`` runs once AMI is served, before waiting for the edge's login: a harness
    starts its edge there so the edge's first AMI connect succeeds.
    """
    data, origin = load(source)
    name = str(data.get("name") or Path(origin).stem)
    started = time.monotonic()
    try:
        unknown = sorted(set(data) - set(WORLD_KEYS) - set(RUN_KEYS) - set(EDGE_KEYS))
        if unknown:
            raise ScenarioError(f"{origin}: unknown key {unknown[0]!r}")
        world = World.from_dict({k: v for k, v in data.items() if k in WORLD_KEYS})
        scale = float(time_scale or data.get("time_scale") or 1.0)
        factory = sim_factory or (lambda w, s: PbxSimulator(w, edge_host=edge_host, agi_port=agi_port,
                                                             ami_port=ami_port, time_scale=s))
        sim = factory(world, scale)
    except PbxSimError as exc:
        return ScenarioResult(name, origin, False, error=str(exc))
    must_wait = data.get("wait_for_edge", True) if wait_for_edge is None else wait_for_edge
    timed_out = False
    try:
        sim.start(scripts=False)
        if on_started is not None:
            on_started(sim)
        if must_wait and sim.wait_for(lambda: sim.records("ami", what="login"), login_timeout_s) is None:
            raise ScenarioError(f"the edge did not log in to AMI on port {sim.ami_port} within {login_timeout_s} s")
        sim.start_world()
        duration_s = sim.pbx.timebase.real_s(float(data.get("duration_ms", 120_000))) or 0.0
        settle_ms = float(data.get("settle_ms", 500))
        timed_out = sim.wait_for(sim.idle, duration_s) is None
        results = _settle(sim, list(data.get("expect") or []), 0.0 if timed_out else settle_ms)
        passed = all(r.passed for r in results)
        return ScenarioResult(name, origin, passed, results, real_seconds=time.monotonic() - started,
                              timed_out=timed_out, simulator=sim if keep_simulator else None)
    except PbxSimError as exc:
        return ScenarioResult(name, origin, False, error=str(exc), real_seconds=time.monotonic() - started,
                              timed_out=timed_out)
    finally:
        sim.stop()


def _settle(sim: PbxSimulator, expect: list[Any], settle_ms: float) -> list[ExpectationResult]:
    """Re-check until every expectation passes or ``settle_ms`` (scripted) is over: a positive one
    may come true late (an AMI re-login after back-off); a negative one cannot heal by waiting."""
    deadline = time.monotonic() + (sim.pbx.timebase.real_s(settle_ms) or 0.0)
    while True:
        results = evaluate(sim, expect)
        if all(r.passed for r in results) or time.monotonic() >= deadline:
            return results
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.pbx.scenario",
                                     description="Run HIL PBX scenarios against a running edge.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenario files; exit 0 when every expectation passed")
    run.add_argument("files", nargs="+", type=Path)
    run.add_argument("--edge-host", default="127.0.0.1", help="where the edge's FastAGI server listens")
    run.add_argument("--agi-port", type=int, default=4573)
    run.add_argument("--ami-port", type=int, default=5038, help="the port the simulator serves AMI on")
    run.add_argument("--time-scale", type=float, default=None, help="override the scenarios' time_scale")
    run.add_argument("--no-wait-for-edge", action="store_true",
                     help="start the calls without waiting for the edge's AMI login")
    run.add_argument("--login-timeout", type=float, default=10.0, help="seconds to wait for the AMI login")
    run.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    failed = 0
    for path in args.files:
        result = run_scenario(path, edge_host=args.edge_host, agi_port=args.agi_port, ami_port=args.ami_port,
                              time_scale=args.time_scale, login_timeout_s=args.login_timeout,
                              wait_for_edge=False if args.no_wait_for_edge else None)
        print(result.report(), flush=True)
        failed += not result.passed
    print(f"{len(args.files) - failed} of {len(args.files)} scenario(s) passed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
