"""``hil-pbx``: run the simulated Asterisk on its own (for the demo or poking at an edge by hand).

    hil-pbx --ami-port 5038 --edge-host 127.0.0.1 --agi-port 4573 --world hil/scenarios/x.yaml
    hil-pbx --phones 8001,8002,8003 --random-calls 20 --time-scale 0.1

Serves AMI, points FastAGI at the edge, prints what happens until Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
from pathlib import Path

from hil.pbx.records import Record
from hil.pbx.scenario import WORLD_KEYS, load
from hil.pbx.scripts import World
from hil.pbx.simulator import PbxSimulator

SHOWN = ("call_arrived", "rang", "answered", "dial_end", "bridged", "hung_up", "spy_started",
         "spy_stopped", "originate", "ami", "fault", "agi_failed", "call_rejected", "phone_dialled")


def describe(record: Record) -> str:
    data = " ".join(f"{k}={v}" for k, v in record.data.items() if v not in (None, "", []))
    return f"{record.t_ms / 1000:9.3f}s  {record.kind:<13} {data}"


def demo_world(phones: list[str], trunk: str) -> World:
    profile, _, channels = trunk.partition(":")
    world = World.from_dict({
        "trunks": [{"profile": profile or "analog", "channels": channels or "1-4"}],
        # one missed ring now and then; the last entry repeats, so it must be an answering one
        "phones": {ext: {"rings": [{"answer_after_ms": random.randint(1000, 6000),
                                    "hangup_after_ms": random.randint(20_000, 90_000)},
                                   {"no_answer": True},
                                   {"answer_after_ms": random.randint(1000, 6000),
                                    "hangup_after_ms": random.randint(20_000, 90_000)}]}
                   for ext in phones},
    })
    return world


def random_calls(sim: PbxSimulator, per_hour: float, stop: threading.Event, profile: str) -> None:
    """A light Poisson stream of inbound calls (scripted time), until ``stop``."""
    n = 0
    while not stop.is_set():
        gap_ms = random.expovariate(per_hour / 3_600_000)
        if stop.wait(sim.pbx.timebase.real_s(gap_ms)):
            return
        n += 1
        sim.add_trunk_call(id=f"r{n}", caller=f"13{random.randint(100000000, 999999999)}",
                           did="s" if profile == "analog" else "88880000",
                           menu_input=[random.choice("1239")],
                           hangup_after_talk_ms=random.randint(15_000, 120_000),
                           abandon_on_hold_ms=random.randint(20_000, 180_000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hil-pbx", description="Simulated Asterisk 22 (AMI + FastAGI).")
    parser.add_argument("--ami-host", default="127.0.0.1")
    parser.add_argument("--ami-port", type=int, default=5038)
    parser.add_argument("--edge-host", default="127.0.0.1", help="the edge's FastAGI host")
    parser.add_argument("--agi-port", type=int, default=4573)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--ami-user", default="acceptance:acceptance", help="user:secret")
    parser.add_argument("--world", type=Path, help="a scenario/world YAML file (its expectations are ignored)")
    parser.add_argument("--phones", default="8001,8002,8003", help="desk phones when no --world is given")
    parser.add_argument("--trunk", default="analog:1-4", help="profile:channels when no --world is given")
    parser.add_argument("--random-calls", type=float, default=0.0, help="inbound calls per scripted hour")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    if args.world:
        data, _ = load(args.world)
        world = World.from_dict({k: v for k, v in data.items() if k in WORLD_KEYS})
    else:
        world = demo_world([p for p in args.phones.split(",") if p], args.trunk)
    user, _, secret = args.ami_user.partition(":")
    sim = PbxSimulator(world, edge_host=args.edge_host, agi_port=args.agi_port, ami_host=args.ami_host,
                       ami_port=args.ami_port, time_scale=args.time_scale, ami_users={user: secret})
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sim.start()
    print(f"AMI on {args.ami_host}:{sim.ami_port} (user {user}); FastAGI to {args.edge_host}:{args.agi_port}; "
          f"time_scale {args.time_scale}", flush=True)
    if args.random_calls > 0:
        profile = world.trunks[0].profile
        threading.Thread(target=random_calls, args=(sim, args.random_calls, stop, profile), daemon=True).start()
    seen = 0
    try:
        while not stop.is_set():
            records = sim.records()
            for record in records[seen:]:
                if record.kind in SHOWN:
                    print(describe(record), flush=True)
            seen = len(records)
            stop.wait(0.2)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
