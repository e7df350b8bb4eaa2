"""Our threaded FastAGI server, driven by Asterisk-side peers over TCP."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from drivers.asterisk.errors import AgiHangup
from drivers.asterisk.fastagi import FastAgiRequest, FastAgiServer, FastAgiSettings


@pytest.fixture
def serve():
    servers: list[FastAgiServer] = []

    def start(scripts, **settings) -> FastAgiServer:
        options = dict(host="127.0.0.1", port=0, max_workers=8, max_waiting=2, env_timeout_s=1.0)
        options.update(settings)
        server = FastAgiServer(FastAgiSettings(**options), scripts)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=2)


def test_unknown_script_is_logged_hung_up_and_closed(serve, agi_peer, env_for, caplog):
    answered = threading.Event()
    server = serve({"incoming": lambda req: (req.agi.answer(), answered.set())})
    caplog.set_level(logging.ERROR, logger="drivers.asterisk.fastagi")
    peer = agi_peer(server.address, env_for("no-such-script", "DAHDI/1-1", "1795392234.1"))
    assert peer.read_command() == 'VERBOSE "edge: unknown FastAGI script no-such-script" 1'
    peer.reply("200 result=1")
    peer.expect("HANGUP")
    peer.reply("200 result=1", "HANGUP")
    assert peer.closed_by_edge()
    assert "unknown script 'no-such-script'" in caplog.text and "known: incoming" in caplog.text
    good = agi_peer(server.address, env_for("incoming", "DAHDI/1-1", "1795392234.2"))
    good.expect("ANSWER")
    good.reply("200 result=0")
    assert answered.wait(2) and server.stats.unknown_script == 1


def test_script_name_and_arguments_reach_the_handler(serve, agi_peer, env_for):
    got: list[FastAgiRequest] = []
    done = threading.Event()
    server = serve({"incoming": lambda req: (got.append(req), done.set())})
    agi_peer(server.address, env_for("incoming", "DAHDI/3-1", "1.1", args=("5551234", "vip")))
    assert done.wait(2)
    done.clear()
    agi_peer(server.address, env_for("incoming", "DAHDI/4-1", "1.2"))
    assert done.wait(2)
    assert (got[0].script, got[0].args, got[0].uniqueid, got[0].channel) == (
        "incoming", ["5551234", "vip"], "1.1", "DAHDI/3-1")
    assert got[1].args == []


def test_twenty_calls_are_served_at_once_in_worker_threads(serve, agi_peer, env_for):
    """pyst2's fastagi does not even import on Python 3; ours runs one thread per call."""
    calls = 20
    barrier = threading.Barrier(calls, timeout=5)
    threads: set[str] = set()
    lock = threading.Lock()

    def slow_call(req: FastAgiRequest) -> None:
        with lock:
            threads.add(threading.current_thread().name)
        barrier.wait()  # all 20 calls must be in progress at the same moment
        time.sleep(0.2)
        req.agi.answer()

    server = serve({"incoming": slow_call}, max_workers=calls)
    started = time.monotonic()
    peers = [agi_peer(server.address, env_for("incoming", f"DAHDI/{n}-1", f"1795392234.{n}"))
             for n in range(1, calls + 1)]
    for peer in peers:
        peer.expect("ANSWER", timeout=5)
        peer.reply("200 result=0")
    elapsed = time.monotonic() - started
    assert elapsed < 0.2 * calls / 4, f"{elapsed:.2f} s: calls were not served concurrently"
    assert len(threads) == calls and threading.main_thread().name not in threads
    assert server.stats.peak_active == calls


def test_excess_connections_wait_then_are_refused_with_a_log(serve, agi_peer, env_for, caplog, until):
    release = threading.Event()
    served: list[str] = []

    def held(req: FastAgiRequest) -> None:
        served.append(req.uniqueid)
        release.wait(5)

    server = serve({"incoming": held}, max_workers=2, max_waiting=1)
    caplog.set_level(logging.WARNING, logger="drivers.asterisk.fastagi")
    for n in range(3):
        agi_peer(server.address, env_for("incoming", f"DAHDI/{n + 1}-1", f"1.{n}"))
    assert until(lambda: len(served) == 2)
    refused = agi_peer(server.address, env_for("incoming", "DAHDI/9-1", "1.9"))
    assert refused.closed_by_edge()
    assert "refused connection" in caplog.text and "waits" in caplog.text
    release.set()
    assert until(lambda: len(served) == 3) and server.stats.refused == 1


def test_missing_env_block_is_logged_and_closed(serve, agi_peer, caplog):
    server = serve({"incoming": lambda req: None}, env_timeout_s=0.2)
    caplog.set_level(logging.WARNING, logger="drivers.asterisk.fastagi")
    peer = agi_peer(server.address, b"agi_network: yes\n")
    assert peer.closed_by_edge(2)
    assert "no complete env block" in caplog.text


def test_a_crashing_handler_is_logged_and_the_server_carries_on(serve, agi_peer, env_for, caplog):
    def broken(req: FastAgiRequest) -> None:
        raise RuntimeError("bug in a script")

    server = serve({"incoming": broken})
    caplog.set_level(logging.ERROR, logger="drivers.asterisk.fastagi")
    assert agi_peer(server.address, env_for("incoming", "DAHDI/1-1", "1.1")).closed_by_edge()
    assert "handler failed" in caplog.text
    assert agi_peer(server.address, env_for("incoming", "DAHDI/1-1", "1.2")).closed_by_edge()


def test_stop_ends_calls_blocked_on_asterisk(serve, agi_peer, env_for):
    outcome: list[str] = []

    def waits_forever(req: FastAgiRequest) -> None:
        try:
            req.agi.answer()  # the peer never replies
        except AgiHangup as hangup:
            outcome.append(hangup.reason)

    server = serve({"incoming": waits_forever})
    peer = agi_peer(server.address, env_for("incoming", "DAHDI/1-1", "1.1"))
    peer.expect("ANSWER")
    started = time.monotonic()
    server.stop(timeout=2)
    assert time.monotonic() - started < 1.0
    assert outcome == ["closed"] and peer.closed_by_edge()
