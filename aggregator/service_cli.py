"""What HQ's MQTT services (``aggregator.ingest``, ``aggregator.downlink.dispatch``) share on
their command lines: the database and broker options, the password read, logging, and running
until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Callable


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--db", required=True,
                   help="the HQ database: a SQLite file, or postgresql://user@host:port/db "
                        "(the password from PGPASSWORD or ~/.pgpass keeps it out of `ps`)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--user", default="hq")
    secret = p.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password")
    secret.add_argument("--password-file", type=Path, help="keeps the secret out of `ps`")
    p.add_argument("--log-level", default="INFO")
    return p


def password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return args.password_file.read_text().strip()
    return args.password


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run_until_signalled(stop: Callable[[], None]) -> None:
    """Block until SIGTERM or SIGINT, then ``stop()``."""
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    stop()
