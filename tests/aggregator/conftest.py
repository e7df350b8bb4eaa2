"""Aggregator tests run on SQLite and on PostgreSQL: ``hq_db_url`` is a fresh, empty database of
each kind per test (PostgreSQL comes from ``hil.postgres``, started once per session)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from hil.postgres import PostgresServer

_POSTGRES = pytest.StashKey["PostgresServer"]()
_DATABASES = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> "PostgresServer":
    """One real PostgreSQL for the whole run, started on first use and stopped when the run ends.
    It is kept in the run's stash, so a test module elsewhere that imports these fixtures
    (tests/sync/test_ingest.py) shares it instead of starting a second one."""
    server = request.config.stash.get(_POSTGRES, None)
    if server is None:
        from hil.postgres import PostgresServer

        server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
        request.config.stash[_POSTGRES] = server
        request.config.add_cleanup(server.stop)
    return server


@pytest.fixture(params=["sqlite", "postgres"])
def hq_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty HQ database: a SQLite file, or a new database on the session's
    PostgreSQL (dropped after the test, its connections cut)."""
    if request.param == "sqlite":
        yield str(tmp_path / "hq.sqlite3")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"hq_test_{next(_DATABASES)}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


@pytest.fixture
def hq_server(hq_db_url: str, tmp_path: Path):
    """Real gunicorn (2 workers) serving ``aggregator.wsgi:app`` on a free port, on a fresh
    database from ``hq_db_url`` (migrated before the workers start): ``.url``, ``.db_url``,
    ``.settings``, ``.log_path``. Stopped after the test."""
    from aggregator.db import HqDb
    from aggregator.web.serve import GunicornServer
    from tests.aggregator.helpers import TEST_SECRET

    HqDb.open(hq_db_url).close()
    env = {"CC_HQ_DB": hq_db_url, "CC_HQ_SECRET_KEY": TEST_SECRET,
           "CC_HQ_RECORDINGS": str(tmp_path / "hq-recordings"),
           "CC_HQ_LOG_LEVEL": "warning", "CC_HQ_ACCESS_LOG": ""}
    with GunicornServer(env, log_path=tmp_path / "gunicorn.log") as server:
        yield server
