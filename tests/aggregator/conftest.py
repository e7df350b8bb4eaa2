"""Aggregator tests run on SQLite and on PostgreSQL: ``hq_db_url`` is a fresh, empty database of
each kind per test (PostgreSQL comes from ``hil.postgres``, started once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite"])
def hq_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "hq.sqlite3")
