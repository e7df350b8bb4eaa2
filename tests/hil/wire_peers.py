"""Test peers for the simulator's two wires: a scripted FastAGI edge and a raw AMI client.

Simulator tests drive the simulated Asterisk through the same sockets the real edge uses; these
are the far ends they talk to (not mocks of our own code: the simulator under test is real).
"""
from __future__ import annotations

import socket
import time
from typing import BinaryIO, Callable

from drivers.asterisk.codec import AmiMessage, AmiParser, parse_agi_env


class ScriptedEdge:
    """FastAGI server (the ``agi_server`` fixture) running ``flows[script](send, env)`` per
    session; ``send(cmd)`` returns the final reply line, counting bare ``HANGUP`` lines."""

    def __init__(self, flows: dict[str, Callable], agi_server) -> None:
        self.flows, self.envs, self.hangups = flows, [], 0
        self.server = agi_server(self._serve)
        self.port = self.server.port

    def _serve(self, conn: socket.socket, reader: BinaryIO) -> None:
        lines = []
        while (line := reader.readline().decode()) not in ("\n", ""):
            lines.append(line)
        env = parse_agi_env(lines)
        self.envs.append(env)

        def send(command: str) -> str:
            conn.sendall((command + "\n").encode())
            while (reply := reader.readline().decode().rstrip("\n")) == "HANGUP":
                self.hangups += 1
            return reply

        self.flows.get(env["agi_network_script"], lambda send, env: None)(send, env)


class AmiProbe:
    """A logged-in raw AMI connection: ``request`` an action, ``wait`` for any message."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser, self.messages = AmiParser(), []
        self.request("Login", Username="acceptance", Secret="acceptance")

    def request(self, action: str, **fields: str) -> AmiMessage:
        action_id = f"{action}-{time.monotonic_ns()}"
        text = f"Action: {action}\r\nActionID: {action_id}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items())
        self.sock.sendall((text + "\r\n").encode())
        return self.wait(lambda m: m.kind == "response" and m.action_id == action_id)

    def wait(self, predicate, timeout: float = 5.0) -> AmiMessage:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if predicate(m)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, "AMI message not seen"
            self.messages += [i for i in self.parser.feed(self.sock.recv(65536))
                              if isinstance(i, AmiMessage)]

    def named(self, name: str, **match: str) -> list[AmiMessage]:
        return [m for m in self.messages
                if m.name == name and all(m.get(k) == v for k, v in match.items())]
