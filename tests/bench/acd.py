"""ACD benchmark: routing decisions per second and per-decision latency, indexed vs a linear scan.

Run from the repository root::

    .venv/bin/python tests/bench/acd.py            # full run
    .venv/bin/python tests/bench/acd.py --quick    # well under 30 s

At 10, 100, 1,000 and 10,000 logged-in agents (8 skill groups, about half the agents idle, the rest
talking, busy or away) with 1,000 calls waiting, each decision runs the full rule set the core runs
at offer: blacklist screen, VIP look-up, group choice (DID, region), last-agent stickiness, the
group's strategy with already-tried agents excluded, then commits it (the agent starts ringing, or
the call joins a queue). Latency is ``perf_counter_ns`` around that; decisions/s counts the whole
loop, including putting the state back after each decision, so it is the conservative figure.
The same decision stream runs against ``LinearPools``, which picks agents by scanning the group's
members, as the baseline. A second measurement times ``Core.handle(CallOffered)`` end to end.

The last line is machine-readable (``RESULT ...``). ``edge_cpu_ms_per_call_s`` comes from
``measure_edge_cpu``: a placeholder here; ``tests/bench/edge_load.py``, when present, provides the
HIL measurement (500 concurrent calls) under the same name and replaces it.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.acd import Acd, DecisionKind, IdlePools  # noqa: E402
from edge.agents import Activity, AgentBoard, AgentState  # noqa: E402
from edge.calls import INBOUND, Call  # noqa: E402
from edge.clock import ManualClock  # noqa: E402
from edge.config import EdgeConfig, parse_config  # noqa: E402
from edge.core import Core  # noqa: E402
from edge.events import CallHungUp, CallOffered  # noqa: E402
from edge.queueing import WaitQueues  # noqa: E402
from edge.regions import Region, RegionResolver  # noqa: E402

SIZES = (10, 100, 1_000, 10_000)
GROUPS = 8
WAITING_CALLS = 1_000
QUEUE_GROUP = f"g{GROUPS - 1}"  # every member talking: its callers wait
PROVINCES = ("广东", "浙江", "江苏", "北京")


def measure_edge_cpu(quick: bool) -> float | None:
    """Edge CPU milliseconds per call-second under load; None until the HIL measurement exists.

    ``tests/bench/edge_load.py`` defines the real one (500 concurrent calls through the simulator).
    """
    return None


def edge_cpu_hook() -> Callable[[bool], float | None]:
    path = Path(__file__).with_name("edge_load.py")
    if not path.exists():
        return measure_edge_cpu
    spec = importlib.util.spec_from_file_location("edge_load", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module.measure_edge_cpu


# --- the branch under test --------------------------------------------------------------------

def branch_config(agents: int, rng: random.Random) -> EdgeConfig:
    groups = [{"name": f"g{i}", "strategy": "least_calls" if i % 2 == 0 else "extension_order",
               "max_queue_len": 100_000} for i in range(GROUPS)]
    queue_members = max(1, agents // 20)
    agent_rows = []
    for i in range(agents):
        if i < queue_members:
            member_of = [QUEUE_GROUP]
        else:
            member_of = rng.sample([f"g{g}" for g in range(GROUPS - 1)], rng.choice((1, 2)))
        agent_rows.append({"id": f"a{i}", "name": f"坐席{i}", "extension": str(100_000 + i),
                           "groups": member_of, "wrap_up_s": 0})
    return parse_config({
        "edge": {"id": "bench"},
        "groups": groups,
        "agents": agent_rows,
        "routing": {
            "default_group": "g0",
            "did_groups": {"95001": "g1", "95007": QUEUE_GROUP},
            "region_groups": {p: f"g{i + 2}" for i, p in enumerate(PROVINCES)},
            "sticky_last_agent": True,
            "vip": [{"number": f"1390000{i:04d}", "owner": f"a{rng.randrange(agents)}"}
                    for i in range(50)],
            "blacklist": [{"number": f"1306666{i:04d}", "action": "flag"} for i in range(1000)],
        },
    })


def shape_floor(board: AgentBoard, rng: random.Random) -> None:
    """About half idle; the rest talking, busy or away. The queue group is all talking."""
    for agent in board:
        if QUEUE_GROUP in agent.config.groups:
            board.occupy(agent, f"busy-{agent.id}", Activity.TALKING)
            continue
        agent.calls_today = rng.randrange(40)
        roll = rng.random()
        if roll < 0.40:
            board.occupy(agent, f"busy-{agent.id}", Activity.TALKING)
        elif roll < 0.45:
            board.set_busy(agent, True)
        elif roll < 0.50:
            board.set_away(agent, True)
    if board.listener:
        board.listener.rebuild(board)


@dataclass
class Offer:
    number: str
    did: str
    region: Region | None
    tried: tuple[str, ...]


def offer_stream(count: int, agents: int, rng: random.Random) -> list[Offer]:
    offers = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.01:
            number = f"1390000{rng.randrange(50):04d}"  # VIP
        elif roll < 0.02:
            number = f"1306666{rng.randrange(1000):04d}"  # flagged
        else:
            number = f"138{rng.randrange(10**8):08d}"
        did = rng.choice(("", "", "", "95001", "95007"))
        region = Region(rng.choice(PROVINCES), "") if rng.random() < 0.5 else None
        tried = tuple(f"a{rng.randrange(agents)}" for _ in range(rng.choice((0, 0, 0, 1, 2))))
        offers.append(Offer(number, did, region, tried))
    return offers


def remember_callers(acd: Acd, offers: list[Offer], agents: int, rng: random.Random) -> None:
    for offer in offers[: len(offers) // 3]:  # a third are returning callers
        acd.remember(offer.number, f"a{rng.randrange(agents)}")


class LinearPools:
    """The baseline: scan the group's members for the best idle agent."""

    def __init__(self, config: EdgeConfig, board: AgentBoard) -> None:
        self._members = {g.name: [a for a in board if g.name in a.config.groups] for g in config.groups}
        self._least = {g.name: g.strategy == "least_calls" for g in config.groups}

    def first_idle(self, group: str, exclude=frozenset()):
        best, best_key = None, None
        least = self._least[group]
        for agent in self._members[group]:
            if agent.selectable and agent.id not in exclude:
                key = (agent.calls_today, agent.order) if least else (agent.order,)
                if best_key is None or key < best_key:
                    best, best_key = agent, key
        return best

    def idle_count(self, group: str) -> int:
        return sum(1 for a in self._members[group] if a.selectable)

    def logged_in_count(self, group: str) -> int:
        return sum(1 for a in self._members[group] if a.state is not AgentState.LOGGED_OUT)


# --- measurements -----------------------------------------------------------------------------

@dataclass
class Timing:
    decisions: int
    per_s: float
    mean_us: float
    p50_us: float
    p99_us: float


def run_decisions(acd: Acd, board: AgentBoard, queues: WaitQueues, offers: list[Offer]) -> Timing:
    """Decide and commit each offer (timed), then put the floor back (counted in decisions/s)."""
    calls = [Call(f"b{seq}", "DAHDI/1-1", INBOUND, o.number, o.did, 0.0, seq=seq, number=o.number,
                  did=o.did, region=o.region, tried=set(o.tried)) for seq, o in enumerate(offers)]
    latencies = []
    clock = time.perf_counter_ns
    gc.collect()
    started = clock()
    for seq, call in enumerate(calls):
        t0 = clock()
        call.flagged = acd.screen(call.number) == "flag"
        owner = acd.vip_owner(call.number)
        if owner is not None:
            call.vip_owner, call.priority = owner.id, 0
            call.group, call.group_rule = acd.vip_group(owner), "vip"
        else:
            call.group, call.group_rule = acd.group_for(call.did, call.region)
        decision = acd.decide(call)
        if decision.kind is DecisionKind.RING:
            board.occupy(decision.agent, call.call_id, Activity.RINGING)
        elif decision.kind is DecisionKind.QUEUE:
            queues.add(decision.group, call.call_id, call.priority, seq)
        t1 = clock()
        latencies.append(t1 - t0)
        if decision.kind is DecisionKind.RING:  # answered, talked, hung up: back to idle
            agent = decision.agent
            board.occupy(agent, call.call_id, Activity.TALKING)
            board.count_answered(agent)
            board.release(agent, call.call_id, wrap_up=False)
        elif decision.kind is DecisionKind.QUEUE:
            queues.remove(call.call_id)
    elapsed = clock() - started
    latencies.sort()
    return Timing(len(calls), len(calls) / (elapsed / 1e9), statistics.fmean(latencies) / 1e3,
                  latencies[len(latencies) // 2] / 1e3, latencies[int(len(latencies) * 0.99)] / 1e3)


def fill_queue(queues: WaitQueues) -> None:
    for i in range(WAITING_CALLS):
        queues.add(QUEUE_GROUP, f"w{i}", 1, -WAITING_CALLS + i)


def bench_indexed(agents: int, offers: list[Offer], seed: int) -> Timing:
    rng = random.Random(seed)
    config = branch_config(agents, rng)
    pools = IdlePools(config.groups)
    board = AgentBoard(config.agents, ManualClock(), listener=pools)
    shape_floor(board, rng)
    acd = Acd(config, board, pools)
    remember_callers(acd, offers, agents, rng)
    queues = WaitQueues(g.name for g in config.groups)
    fill_queue(queues)
    return run_decisions(acd, board, queues, offers)


def bench_linear(agents: int, offers: list[Offer], seed: int) -> Timing:
    rng = random.Random(seed)
    config = branch_config(agents, rng)
    board = AgentBoard(config.agents, ManualClock(), listener=None)
    shape_floor(board, rng)
    acd = Acd(config, board, LinearPools(config, board))
    remember_callers(acd, offers, agents, rng)
    queues = WaitQueues(g.name for g in config.groups)
    fill_queue(queues)
    return run_decisions(acd, board, queues, offers)


def bench_core_offer(agents: int, count: int, seed: int) -> Timing:
    """``Core.handle(CallOffered)`` end to end, 1,000 callers already queued in the core."""
    rng = random.Random(seed)
    config = branch_config(agents, rng)
    clock = ManualClock()
    core = Core(config, clock, RegionResolver.from_files())
    shape_floor(core.sb.board, rng)
    for i in range(WAITING_CALLS):
        core.handle(CallOffered(f"w{i}", "DAHDI/1-1", f"137{i:08d}", did="95007", trunk=1))
    callers = ["020" + f"{rng.randrange(10**8):08d}" if rng.random() < 0.3 else
               f"1{rng.choice('3589')}{rng.randrange(10**9):09d}" for _ in range(count)]
    latencies = []
    gc.collect()
    started = time.perf_counter_ns()
    for i, caller in enumerate(callers):
        event = CallOffered(f"o{i}", "DAHDI/2-1", caller, did=rng.choice(("", "95001")), trunk=2)
        t0 = time.perf_counter_ns()
        core.handle(event)
        latencies.append(time.perf_counter_ns() - t0)
        core.handle(CallHungUp(f"o{i}", by="caller"))
    elapsed = time.perf_counter_ns() - started
    latencies.sort()
    return Timing(count, count / (elapsed / 1e9), statistics.fmean(latencies) / 1e3,
                  latencies[count // 2] / 1e3, latencies[int(count * 0.99)] / 1e3)


# --- report -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions; under 30 s")
    args = parser.parse_args()
    indexed_n, linear_n, core_n = (30_000, 3_000, 3_000) if args.quick else (200_000, 20_000, 20_000)
    print(f"ACD decisions, {WAITING_CALLS} waiting calls, {GROUPS} groups, full rule set"
          f"{' (quick)' if args.quick else ''}")
    header = (f"{'agents':>7} | {'indexed/s':>10} {'p50 us':>7} {'p99 us':>7} {'mean us':>7} | "
              f"{'linear/s':>9} {'p50 us':>7} {'p99 us':>8} | {'speed-up':>8} | "
              f"{'core offer/s':>12} {'p99 us':>7}")
    print(header)
    print("-" * len(header))
    results: dict[int, tuple[Timing, Timing, Timing]] = {}
    for agents in SIZES:
        offers = offer_stream(indexed_n, agents, random.Random(agents))
        indexed = bench_indexed(agents, offers, seed=agents)
        linear = bench_linear(agents, offers[:linear_n], seed=agents)
        core = bench_core_offer(agents, core_n, seed=agents)
        results[agents] = (indexed, linear, core)
        print(f"{agents:>7} | {indexed.per_s:>10,.0f} {indexed.p50_us:>7.2f} {indexed.p99_us:>7.2f} "
              f"{indexed.mean_us:>7.2f} | {linear.per_s:>9,.0f} {linear.p50_us:>7.2f} "
              f"{linear.p99_us:>8.2f} | {linear.mean_us / indexed.mean_us:>7.1f}x | "
              f"{core.per_s:>12,.0f} {core.p99_us:>7.2f}", flush=True)
    one_k, ten_k = results[1_000][0], results[10_000][0]
    growth = ten_k.mean_us / one_k.mean_us
    ratio = results[10_000][1].mean_us / ten_k.mean_us
    cpu = edge_cpu_hook()(args.quick)
    cpu_text = "n/a" if cpu is None else f"{cpu:.3f}"
    print(f"growth 1k->10k (mean per decision): {growth:.2f}x; "
          f"linear scan / indexed at 10k: {ratio:.1f}x")
    print(f"RESULT decisions_per_s_1k={one_k.per_s:.0f} p99_us_1k={one_k.p99_us:.2f} "
          f"growth_1k_to_10k={growth:.2f} ratio_vs_linear_10k={ratio:.1f} "
          f"edge_cpu_ms_per_call_s={cpu_text}")


if __name__ == "__main__":
    main()
