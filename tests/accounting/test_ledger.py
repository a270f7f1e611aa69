"""The ledger writes behind the response, in batches, and never loses a row quietly."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import pytest

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.cascade.trace import Attempt, Trace
from cascade_gateway.storage.database import Database, open_database
from cascade_gateway.storage.migrations import migrate


def a_trace(request_id: str, cost_usd: float = 0.001) -> Trace:
    return Trace(
        request_id=request_id,
        route="default",
        mode="cascade",
        created_at=time.time(),
        streamed=False,
        baseline_model="strong",
        attempts=[
            Attempt(tier=0, model="draft", provider="p", upstream_model="d", cost_usd=cost_usd)
        ],
        outcome="accepted",
        model_used="draft",
    )


async def rows_in(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) AS n FROM ledger")
    return row["n"]


class RefusingDatabase:
    """The real database, except that its next `refusals` inserts fail."""

    def __init__(self, db: Database, refusals: int) -> None:
        self._db = db
        self.refusals = refusals

    async def insert(self, inserts):
        if self.refusals > 0:
            self.refusals -= 1
            raise OSError("database unavailable")
        await self._db.insert(inserts)


async def test_a_recorded_row_waits_for_the_flush_interval(db):
    ledger = Ledger(db, flush_interval_s=0.05)
    await ledger.record(a_trace("r1"))
    assert await rows_in(db) == 0
    await asyncio.sleep(0.15)
    assert await rows_in(db) == 1
    assert ledger.queued == 0


async def test_without_an_interval_the_row_is_written_before_record_returns(db):
    ledger = Ledger(db, flush_interval_s=0)
    await ledger.record(a_trace("r1"))
    assert await rows_in(db) == 1


async def test_a_full_batch_is_written_at_once(db):
    ledger = Ledger(db, flush_interval_s=60, max_batch=3)
    for n in range(3):
        await ledger.record(a_trace(f"r{n}"))
    assert await rows_in(db) == 3
    attempts = await db.fetchone("SELECT COUNT(*) AS n FROM ledger_attempts")
    assert attempts["n"] == 3


async def test_queueing_says_when_a_write_is_due_and_waits_for_nothing(db):
    ledger = Ledger(db, flush_interval_s=60, max_batch=2)

    assert ledger.queue(a_trace("r1")) is False
    assert ledger.queue(a_trace("r2")) is True
    assert await rows_in(db) == 0
    await ledger.write_due()
    assert await rows_in(db) == 2


async def test_reads_see_rows_still_queued(db):
    ledger = Ledger(db, flush_interval_s=60)
    await ledger.record(a_trace("r1", cost_usd=0.25))
    assert (await ledger.trace("r1"))["request_id"] == "r1"
    assert (await ledger.totals())["cost_usd"] == pytest.approx(0.25)


async def test_closing_writes_what_is_queued(db):
    ledger = Ledger(db, flush_interval_s=60)
    await ledger.record(a_trace("r1"))
    await ledger.aclose()
    assert await rows_in(db) == 1


async def test_a_refused_batch_stays_queued_and_is_written_on_retry(db, caplog):
    refusing = RefusingDatabase(db, refusals=1)
    ledger = Ledger(refusing, flush_interval_s=0)
    with caplog.at_level(logging.ERROR, logger="cascade_gateway.accounting"):
        await ledger.record(a_trace("r1"))
    assert ledger.queued == 1
    assert "rows stay queued" in caplog.text
    await ledger.flush()
    assert await rows_in(db) == 1
    assert ledger.queued == 0


async def test_rows_beyond_the_queue_bound_are_logged_whole_not_dropped_silently(db, caplog):
    refusing = RefusingDatabase(db, refusals=10)
    ledger = Ledger(refusing, flush_interval_s=0, max_queued=2)
    with caplog.at_level(logging.ERROR, logger="cascade_gateway.accounting"):
        for n in range(3):
            await ledger.record(a_trace(f"r{n}"))
    assert ledger.queued == 2
    given_up = [r for r in caplog.records if r.getMessage() == "ledger row not written"]
    assert [r.fields["ledger_row"]["request_id"] for r in given_up] == ["r0"]
    await ledger.aclose()


async def test_a_sqlite_file_gets_its_batches_committed(tmp_path):
    path = tmp_path / "ledger.db"
    db = await open_database(f"sqlite:///{path}")
    await migrate(db)
    ledger = Ledger(db, flush_interval_s=60)
    for n in range(3):
        await ledger.record(a_trace(f"r{n}", cost_usd=0.25))

    assert (await ledger.totals())["cost_usd"] == pytest.approx(0.75)  # a read writes first
    with sqlite3.connect(path) as other:  # committed: another connection sees the rows
        assert other.execute("SELECT COUNT(*) FROM ledger").fetchone() == (3,)
    await ledger.aclose()
    await db.aclose()


async def test_a_trace_written_by_another_worker_is_found_once_its_batch_lands(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    serving_db, reading_db = await open_database(url), await open_database(url)
    await migrate(serving_db)
    serving = Ledger(serving_db, flush_interval_s=0.05)  # the worker that served it
    reading = Ledger(reading_db, flush_interval_s=0.05)  # the worker asked for its trace

    await serving.record(a_trace("elsewhere"))
    found = await reading.trace("elsewhere")

    assert found is not None and found["request_id"] == "elsewhere"
    assert await reading.trace("never-made") is None
    for ledger, db in ((serving, serving_db), (reading, reading_db)):
        await ledger.aclose()
        await db.aclose()


async def test_a_flush_cancelled_while_writing_leaves_its_rows_written_once(tmp_path):
    path = tmp_path / "ledger.db"
    db = await open_database(f"sqlite:///{path}")
    await migrate(db)
    ledger = Ledger(db, flush_interval_s=60)
    await ledger.record(a_trace("r1"))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the write waits for the file lock

    flushing = asyncio.create_task(ledger.flush())
    await asyncio.sleep(0.05)
    flushing.cancel()
    await asyncio.sleep(0.05)
    blocker.execute("COMMIT")
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await ledger.aclose()

    assert ledger.queued == 0
    assert await rows_in(db) == 1
    blocker.close()
    await db.aclose()
