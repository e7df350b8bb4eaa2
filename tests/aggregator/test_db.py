"""The HQ data layer behaves the same on SQLite and on a real PostgreSQL (``hq_db_url``):
transactions commit or roll back whole, ``?`` SQL with ids, blobs, Chinese text and numbers comes
back alike, dead letters are counted once per payload, migrations are applied once and in order,
and messages a database could not hold become dead letters instead of poisoning the ingest."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from aggregator import projections
from aggregator.db import DbError, HqDb, Reject, SchemaVersionError
from aggregator.envelope import Envelope
from aggregator.migrations import MIGRATIONS
from aggregator.projections import ProjectionError


def env(seq: int, *, stream: str = "agent", type_: str = "agent.state", body=None,
        id_: str | None = None) -> Envelope:
    return Envelope(id_ or f"id-{stream}-{seq}", "edge-a", stream, seq, 1795392102.5 + seq, type_,
                    body if body is not None else {"n": seq, "名字": "张三"})


@pytest.fixture
def db(hq_db_url: str):
    with HqDb.open(hq_db_url) as hq:
        yield hq


def make_notes(db: HqDb) -> None:
    with db.transaction() as tx:
        d = tx.dialect
        tx.execute(f"CREATE TABLE notes (id {d.auto_id}, name TEXT NOT NULL UNIQUE,"
                   f" score BIGINT NOT NULL, ratio DOUBLE PRECISION, data {d.blob})")


def test_a_transaction_commits_on_exit_and_returns_what_was_written(db):
    make_notes(db)
    with db.transaction() as tx:
        first = tx.execute(
            "INSERT INTO notes (name, score, ratio, data) VALUES (?, ?, ?, ?) RETURNING id",
            ("坐席 张三", 2**40, 0.25, b"\x00\xff")).fetchone()[0]
        second = tx.execute("INSERT INTO notes (name, score) VALUES (?, ?) RETURNING id",
                            ("b", 3)).fetchone()[0]
        assert tx.execute("UPDATE notes SET score = score + 1 WHERE score < ?", (10,)).rowcount == 1
    assert second > first
    assert db.query("SELECT id, name, score, ratio, data FROM notes ORDER BY id") == [
        (first, "坐席 张三", 2**40, 0.25, b"\x00\xff"), (second, "b", 4, None, None)]
    assert db.scalar("SELECT count(*) FROM notes WHERE name = ?", ("坐席 张三",)) == 1


def test_an_error_rolls_the_whole_transaction_back(db):
    make_notes(db)
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO notes (name, score) VALUES (?, ?)", ("a", 1))
            raise RuntimeError("the caller changed its mind")
    with pytest.raises(DbError, match="rolled back"):
        with db.transaction() as tx:
            tx.execute("INSERT INTO notes (name, score) VALUES (?, ?)", ("a", 1))
            tx.execute("INSERT INTO notes (name, score) VALUES (?, ?)", ("a", 2))  # UNIQUE
    assert db.scalar("SELECT count(*) FROM notes") == 0
    with db.transaction() as tx:          # the connection is usable again
        tx.execute("INSERT INTO notes (name, score) VALUES (?, ?)", ("a", 1))
    assert db.scalar("SELECT count(*) FROM notes") == 1


def test_a_transaction_inside_a_transaction_is_refused(db):
    with db.transaction():
        with pytest.raises(DbError, match="already open"):
            with db.transaction():
                pass


def test_numbers_percent_signs_and_many_rows_read_the_same_on_both(db):
    make_notes(db)
    with db.transaction() as tx:
        tx.executemany("INSERT INTO notes (name, score) VALUES (?, ?)",
                       [("100% 满意", 1), ("50%", 2), ("other", 4)])
    assert db.query("SELECT name FROM notes WHERE name LIKE '%满意' ORDER BY name") \
        == [("100% 满意",)]
    # a LIKE pattern with a literal % needs its ESCAPE spelt out: PostgreSQL has one by default,
    # SQLite none
    assert db.query("SELECT name FROM notes WHERE name LIKE ? ESCAPE '\\' ORDER BY name",
                    ("%\\%%",)) == [("100% 满意",), ("50%",)]
    total, mean = db.query("SELECT sum(score), avg(score) FROM notes")[0]
    assert (total, type(total)) == (7, int)                # never a Decimal on PostgreSQL
    assert mean == pytest.approx(7 / 3) and isinstance(mean, float)
    assert db.scalar("SELECT max(score) FROM notes WHERE score > ?", (99,)) == 0


def test_a_repeated_dead_letter_is_counted_not_copied(db):
    db.dead_letter("cc/v1/edge-a/up/cdr", b"\xff{not json", "payload is not UTF-8")
    db.dead_letter("cc/v1/edge-a/up/cdr", b"\xff{not json", "payload is not UTF-8")
    db.dead_letter("cc/v1/edge-a/up/cdr", b"{}", "id: missing")
    db.dead_letter("cc/v1/edge-b/up/cdr", b"{}", "id: missing")
    letters = db.dead_letters()
    assert [(d.topic, d.payload, d.times) for d in letters] == [
        ("cc/v1/edge-a/up/cdr", b"\xff{not json", 2), ("cc/v1/edge-a/up/cdr", b"{}", 1),
        ("cc/v1/edge-b/up/cdr", b"{}", 1)]
    assert letters[0].last_received_at >= letters[0].received_at


def test_a_batch_stores_each_message_once_and_moves_the_mark(db):
    assert db.store_batch([env(3), env(1), env(2), env(5)]) == {("edge-a", "agent"): 3}
    assert db.store_batch([env(1), env(4), env(4)]) == {("edge-a", "agent"): 5}
    assert db.count() == 5 and db.duplicates() == 0
    body = db.query("SELECT body FROM messages WHERE seq = ?", (1,))[0][0]
    assert "张三" in body
    # another id for a stored seq, or a stored id for another seq: conflicts, kept aside
    db.store_batch([env(2, id_="someone-else"), env(6, id_="id-agent-1")])
    reasons = [d.reason for d in db.dead_letters()]
    assert any("seq 2 is already stored with id id-agent-2" in r for r in reasons)
    assert any("id id-agent-1 is already stored as edge-a/agent seq 1" in r for r in reasons)
    assert db.count() == 5 and db.hwm("edge-a", "agent") == 5


def test_what_no_text_column_can_hold_becomes_a_dead_letter(db):
    """PostgreSQL refuses NUL in text, neither takes a lone surrogate: on both the message is
    dead-lettered and the rest of its batch is stored (one bad message must not stall ingest)."""
    db.store_batch([env(1), env(2, type_="agent.\x00state"), env(3, body={"x": "\ud800"}),
                    env(4)], [Reject("cc/v1/edge-a/up/agent", b"\x00", "bad \x00 \udcff")])
    assert [seq for seq, _ in db.messages("edge-a", "agent")] == [1, 4]
    reasons = sorted(d.reason for d in db.dead_letters())
    assert reasons == ["bad \\x00 \\udcff", "not storable as UTF-8 text: 'utf-8' codec can't "
                       "encode character '\\ud800' in position 6: surrogates not allowed",
                       "type: holds a NUL character, which a database text column cannot store"]
    assert db.hwm("edge-a", "agent") == 1


def test_a_refused_projection_dead_letters_the_message_and_keeps_it(db, monkeypatch):
    seen = []

    def picky(tx, envelope, now):
        if envelope.body.get("ok") is not True:
            raise ProjectionError("ok must be true")
        seen.append(envelope.seq)

    monkeypatch.setattr(projections, "_HANDLERS", [*projections._HANDLERS, ("test.picky", picky)])
    db.store_batch([env(1, type_="test.picky", body={"ok": True}),
                    env(2, type_="test.picky", body={"ok": False})])
    db.store_batch([env(1, type_="test.picky", body={"ok": True})])     # a redelivery: no rerun
    assert seen == [1]
    assert db.count() == 2 and db.hwm("edge-a", "agent") == 2
    [letter] = db.dead_letters()
    assert letter.reason.startswith("projection refused: ") and "ok must be true" in letter.reason
    assert b'"seq":2' in letter.payload


def test_migrations_are_applied_once_in_order_and_a_failed_one_rolls_back(hq_db_url):
    ran: list[str] = []

    def v1_things(tx, d):
        ran.append("v1")
        tx.execute(f"CREATE TABLE things (id {d.auto_id}, name TEXT NOT NULL)")

    def v2_more(tx, d):
        ran.append("v2")
        tx.execute("ALTER TABLE things ADD COLUMN size BIGINT")

    def v3_broken(tx, d):
        ran.append("v3")
        tx.execute("CREATE TABLE half (x INTEGER)")
        tx.execute("CREATE TABLE things (x INTEGER)")      # exists: the migration fails

    with HqDb.open(hq_db_url, migrations=[v1_things]) as db:
        assert db.version == 1
    with HqDb.open(hq_db_url, migrations=[v1_things, v2_more]) as db:
        assert db.version == 2
    assert ran == ["v1", "v2"]
    with pytest.raises(DbError, match=r"migration 3 \(v3_broken\) failed and was rolled back"):
        HqDb.open(hq_db_url, migrations=[v1_things, v2_more, v3_broken])
    with HqDb.open(hq_db_url, migrations=[v1_things, v2_more]) as db:
        assert db.version == 2
        assert db.query("SELECT version, name FROM schema_migrations ORDER BY version") == [
            (1, "v1_things"), (2, "v2_more")]
        with pytest.raises(DbError):
            db.query("SELECT x FROM half")               # v3's first table went with it
        with db.transaction() as tx:
            tx.execute("INSERT INTO things (name, size) VALUES (?, ?)", ("a", 1))
    with pytest.raises(SchemaVersionError, match="newer than this aggregator"):
        HqDb.open(hq_db_url, migrations=[v1_things])


def test_processes_opening_a_new_database_at_once_migrate_it_once(hq_db_url):
    """Several consumers and web workers start together on an empty database."""
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        try:
            start.wait(5)
            HqDb.open(hq_db_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with HqDb.open(hq_db_url) as db:
        assert db.version == len(MIGRATIONS)
        assert db.scalar("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)


def test_open_takes_a_path_a_sqlite_url_or_a_postgresql_url(tmp_path, postgres_server):
    with HqDb.open(f"sqlite:///{tmp_path / 'a.sqlite3'}") as db:
        assert db.dialect.name == "sqlite" and (tmp_path / "a.sqlite3").exists()
    with HqDb(tmp_path / "b.sqlite3") as db:
        assert db.path == str(tmp_path / "b.sqlite3")
    url = postgres_server.create_database("open_schemes")
    try:
        with HqDb.open(url.replace("postgresql://", "postgres://")) as db:
            assert db.dialect.name == "postgresql" and postgres_server.password not in db.path
        wrong = url.replace(postgres_server.password, "wrong-password")
        with pytest.raises(DbError, match="cannot open database") as caught:
            HqDb.open(wrong)
        assert "wrong-password" not in str(caught.value)
    finally:
        postgres_server.drop_database("open_schemes")


def test_a_connection_the_server_dropped_is_opened_again(postgres_server):
    """PostgreSQL restarted or the connection was cut: the next read or batch reconnects."""
    url = postgres_server.create_database("dropped_connection")
    try:
        with HqDb.open(url) as db, psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            db.store_batch([env(1)])
            for expected in (1, 2):
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = 'dropped_connection'")
                time.sleep(0.05)
                if expected == 1:
                    assert db.count() == 1                      # a read: retried once
                else:
                    assert db.store_batch([env(2)]) == {("edge-a", "agent"): 2}  # a batch too
            assert db.hwm("edge-a", "agent") == 2
    finally:
        postgres_server.drop_database("dropped_connection")
