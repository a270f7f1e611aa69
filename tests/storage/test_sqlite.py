"""SQLite on a file: short transactions on the event loop; batch writes and WAL checkpoints on
a thread of their own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cascade_gateway.storage import database
from cascade_gateway.storage.database import Insert, open_database


def size(path: Path) -> int:
    return path.stat().st_size


async def test_the_wal_is_checkpointed_into_the_database_file(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "CHECKPOINT_EVERY_S", 0.0)
    path = tmp_path / "gateway.db"
    db = await open_database(f"sqlite:///{path}")
    await db.execute("CREATE TABLE t (v TEXT)")
    await asyncio.sleep(0.2)  # the checkpoint after CREATE
    before = size(path)

    async with db.transaction() as conn:
        await conn.executemany("INSERT INTO t (v) VALUES (:v)", [{"v": "x" * 500}] * 2000)
    deadline = asyncio.get_running_loop().time() + 5
    while size(path) <= before:
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint reached the file"
        await asyncio.sleep(0.05)
    await db.aclose()

    assert size(path) > before + 500 * 1000


async def test_the_event_loop_connection_never_checkpoints_itself(tmp_path):
    db = await open_database(f"sqlite:///{tmp_path / 'gateway.db'}")

    row = await db.fetchone("PRAGMA wal_autocheckpoint")
    await db.aclose()

    assert row is not None and list(row.values()) == [0]


@pytest.mark.parametrize(
    "write",
    [
        # A batch insert waits on the writer thread; a transaction on the event loop.
        lambda db: db.insert([Insert("t", ("v",), [{"v": "a"}])]),
        lambda db: db.execute("INSERT INTO t (v) VALUES ('a')"),
    ],
    ids=["insert", "transaction"],
)
async def test_a_write_waiting_on_the_file_lock_does_not_hold_up_the_event_loop(tmp_path, write):
    path = tmp_path / "gateway.db"
    db = await open_database(f"sqlite:///{path}")
    await db.execute("CREATE TABLE t (v TEXT)")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another worker holds the write lock
    loop = asyncio.get_running_loop()

    writing = asyncio.create_task(write(db))
    started = loop.time()
    await asyncio.sleep(0.01)
    slept = loop.time() - started
    assert not writing.done()
    blocker.execute("COMMIT")
    await writing

    assert slept < 0.2  # the loop ran on while the write waited
    assert await db.fetchone("SELECT COUNT(*) AS n FROM t") == {"n": 1}
    blocker.close()
    await db.aclose()


async def test_a_transaction_gives_up_on_a_lock_held_past_the_busy_timeout(tmp_path):
    path = tmp_path / "gateway.db"
    db = database.SqliteDatabase(str(path), busy_timeout_s=0.2)
    await db.execute("CREATE TABLE t (v TEXT)")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await asyncio.wait_for(db.execute("INSERT INTO t (v) VALUES ('a')"), timeout=5)

    blocker.execute("ROLLBACK")
    await db.execute("INSERT INTO t (v) VALUES ('b')")  # the connection is usable after
    assert await db.fetchone("SELECT v FROM t") == {"v": "b"}
    blocker.close()
    await db.aclose()


async def test_a_cancelled_insert_lands_before_the_cancellation_is_raised(tmp_path):
    path = tmp_path / "gateway.db"
    db = await open_database(f"sqlite:///{path}")
    await db.execute("CREATE TABLE t (v TEXT)")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    writing = asyncio.create_task(db.insert([Insert("t", ("v",), [{"v": "a"}])]))
    await asyncio.sleep(0.05)
    writing.cancel()
    await asyncio.sleep(0.05)
    assert not writing.done()  # still waiting for its write
    blocker.execute("COMMIT")
    with pytest.raises(asyncio.CancelledError):
        await writing

    assert await db.fetchone("SELECT COUNT(*) AS n FROM t") == {"n": 1}
    blocker.close()
    await db.aclose()


async def test_an_insert_of_any_number_of_rows_lands_whole(tmp_path):
    db = await open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
    await db.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    rows = [{"a": n, "b": str(n)} for n in range(20_000 + 61)]  # 61: a run of smaller statements

    await db.insert([Insert("t", ("a", "b"), rows)])

    assert await db.fetchone("SELECT COUNT(*) AS n, SUM(a) AS total FROM t") == {
        "n": 20_061,
        "total": sum(range(20_061)),
    }
    await db.aclose()


async def test_an_in_memory_database_inserts_on_its_one_connection():
    db = await open_database("sqlite://")
    await db.execute("CREATE TABLE t (a INTEGER, b TEXT)")

    await db.insert([Insert("t", ("a", "b"), [{"a": 1, "b": "x"}, {"a": 2, "b": None}])])

    assert await db.fetchall("SELECT a, b FROM t ORDER BY a") == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": None},
    ]
    await db.aclose()
