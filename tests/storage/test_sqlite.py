"""SQLite on a file: writes on the event loop, WAL checkpoints on a thread of their own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cascade_gateway.storage import database
from cascade_gateway.storage.database import open_database


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
