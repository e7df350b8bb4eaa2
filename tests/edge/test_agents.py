"""Agent board and the ACD's idle index: the index always agrees with a plain scan."""
from __future__ import annotations

import random

from edge.acd import IdlePools
from edge.agents import Activity, AgentBoard, AgentState, Presence
from edge.clock import ManualClock
from edge.config import AgentConfig, GroupConfig

GROUPS = (GroupConfig("lc", "least_calls"), GroupConfig("eo", "extension_order"))


def make_board(n: int) -> tuple[AgentBoard, IdlePools]:
    rng = random.Random(7)
    configs = []
    for i in range(n):
        ext = str(rng.randrange(100, 99999))
        while any(c.extension == ext for c in configs):
            ext = str(rng.randrange(100, 99999))
        groups = tuple(g.name for g in GROUPS if rng.random() < 0.7)
        configs.append(AgentConfig(f"a{i}", f"坐席{i}", ext, f"PJSIP/{ext}", groups=groups,
                                   wrap_up_s=rng.choice([0, 5])))
    pools = IdlePools(GROUPS)
    board = AgentBoard(configs, ManualClock(), listener=pools)
    board.load_counts({})
    return board, pools


def scan(board: AgentBoard, group: GroupConfig, exclude: set[str]):
    idle = [a for a in board if a.state is AgentState.IDLE and group.name in a.config.groups
            and a.id not in exclude]
    if group.strategy == "least_calls":
        return min(idle, key=lambda a: (a.calls_today, a.order, a.id), default=None)
    return min(idle, key=lambda a: (a.order, a.id), default=None)


def test_index_matches_a_linear_scan_through_random_state_changes():
    board, pools = make_board(60)
    rng = random.Random(11)
    agents = list(board)
    for step in range(3000):
        agent = rng.choice(agents)
        move = rng.randrange(8)
        if move == 0:
            board.login(agent)
        elif move == 1:
            board.logout(agent)
        elif move == 2:
            board.set_busy(agent, rng.random() < 0.5)
        elif move == 3:
            board.set_away(agent, rng.random() < 0.5)
        elif move == 4:
            board.occupy(agent, f"c{step}", rng.choice(list(Activity)))
        elif move == 5:
            board.release(agent, agent.call_id or "", wrap_up=rng.random() < 0.5)
        elif move == 6:
            board.count_answered(agent)
        else:
            board.end_wrap_up(agent)
        exclude = {a.id for a in rng.sample(agents, 3)}
        for group in GROUPS:
            assert pools.first_idle(group.name, exclude) is scan(board, group, exclude)
            logged_in = sum(1 for a in board if group.name in a.config.groups
                            and a.state is not AgentState.LOGGED_OUT)
            assert pools.logged_in_count(group.name) == logged_in
        if step % 500 == 0:
            board.reset_counts()


def test_presence_survives_a_call():
    board, _ = make_board(1)
    agent = next(iter(board))
    board.set_busy(agent, True)
    board.occupy(agent, "c1", Activity.TALKING)
    assert agent.state is AgentState.TALKING and agent.presence is Presence.BUSY
    board.release(agent, "c1", wrap_up=False)
    assert agent.state is AgentState.BUSY


def test_only_the_holding_call_releases_an_agent():
    board, _ = make_board(1)
    agent = next(iter(board))
    board.occupy(agent, "c1", Activity.RINGING)
    board.occupy(agent, "c2", Activity.TALKING)
    assert board.release(agent, "c1", wrap_up=False) is None
    assert agent.state is AgentState.TALKING


def test_back_from_away_does_not_clear_busy():
    board, _ = make_board(1)
    agent = next(iter(board))
    board.set_busy(agent, True)
    assert board.set_away(agent, False) is None
    assert agent.state is AgentState.BUSY
