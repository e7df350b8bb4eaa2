"""A real Mosquitto per test (hil/broker.py), with two edges' credentials and the HQ user."""
from __future__ import annotations

from pathlib import Path

import pytest

from hil.broker import MosquittoBroker

EDGES = {"edge-a": "secret-a", "edge-b": "secret-b"}


@pytest.fixture
def broker(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", EDGES) as running:
        yield running
