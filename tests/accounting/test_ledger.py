"""The ledger writes behind the response, in batches, and never loses a row quietly."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.cascade.trace import Attempt, Trace
from cascade_gateway.storage.database import Database, Insert, open_database
from cascade_gateway.storage.migrations import migrate
from cascade_gateway.validation import SignalScore, combine


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


@dataclass
class Key:
    id: str
    name: str


def an_escalated_trace(request_id: str) -> Trace:
    """Everything a story can hold: a key, a rejected draft with its signals, a stream."""
    verdict = combine(
        [
            SignalScore.of_gate("refusal", True, "no refusal"),
            SignalScore.of_soft("hedging", 0.25, 1.0, "2 strong hedges in 9 words"),
        ],
        0.7,
    )
    draft = Attempt(
        tier=0, model="small", provider="openai", upstream_model="draft-model",
        decision="escalated", input_tokens=100, output_tokens=30, usage_counted=True,
        cost_usd=3.3e-05, latency_ms=12.5, ttft_ms=3.25, finish_reason="stop",
        verdict=verdict, validate_ms=0.125,
    )  # fmt: skip
    strong = Attempt(
        tier=1, model="large", provider="anthropic", upstream_model="strong-model",
        decision="served", input_tokens=100, output_tokens=10, cost_usd=3.5e-04,
        latency_ms=40.0, ttft_ms=9.0, finish_reason="length",
    )  # fmt: skip
    return Trace(
        request_id=request_id, route="default", mode="cascade", created_at=time.time(),
        streamed=True, baseline_model="large", attempts=[draft, strong], outcome="escalated",
        model_used="large", baseline_cost_usd=3.5e-04, total_ms=55.5, ttft_ms=53.0,
        key=Key("k-1", "team-a"),
    )  # fmt: skip


def a_failed_trace(request_id: str) -> Trace:
    attempt = Attempt(
        tier=0, model="small", provider="openai", upstream_model="draft-model",
        decision="failed", latency_ms=5000.0, error="upstream timed out after 5 s",
        error_code="timeout",
    )  # fmt: skip
    return Trace(
        request_id=request_id, route="small", mode="direct", created_at=time.time(),
        streamed=False, baseline_model="small", attempts=[attempt], outcome="error",
        total_ms=5001.0, error="upstream timed out after 5 s",
    )  # fmt: skip


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "postgresql"])
async def any_db(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Database]:
    """A migrated database of each kind the gateway runs on."""
    url = {
        "sqlite-memory": "sqlite://",
        "sqlite-file": f"sqlite:///{tmp_path / 'ledger.db'}",
    }.get(request.param) or request.getfixturevalue("postgres_url")
    db = await open_database(url)
    await migrate(db)
    yield db
    await db.aclose()


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


class UnacknowledgingDatabase:
    """The real database, except that its next insert lands but reports a failure (the
    connection dropped before the commit's acknowledgement)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.lost = 1

    async def insert(self, inserts):
        await self._db.insert(inserts)
        if self.lost > 0:
            self.lost -= 1
            raise OSError("connection lost")


async def test_a_batch_retried_after_its_write_landed_unacknowledged_is_not_written_twice(db):
    ledger = Ledger(UnacknowledgingDatabase(db), flush_interval_s=60)
    ledger.queue(a_trace("r1"))
    with pytest.raises(OSError):
        await ledger.flush()
    assert ledger.queued == 1

    await ledger.flush()

    assert await rows_in(db) == 1
    attempts = await db.fetchone("SELECT COUNT(*) AS n FROM ledger_attempts")
    assert attempts["n"] == 1


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


async def test_a_trace_whose_row_cannot_be_built_is_logged_and_its_batch_still_written(db, caplog):
    broken = a_trace("broken")
    broken.created_at = float("nan")  # no day to file it under
    ledger = Ledger(db, flush_interval_s=60)
    ledger.queue(a_trace("r1"))
    ledger.queue(broken)
    ledger.queue(a_trace("r2"))

    with caplog.at_level(logging.ERROR, logger="cascade_gateway.accounting"):
        await ledger.flush()

    assert await rows_in(db) == 2
    assert ledger.queued == 0
    failed = [r for r in caplog.records if r.getMessage() == "ledger row could not be built"]
    assert [r.fields["request_id"] for r in failed] == ["broken"]


async def test_a_trace_whose_row_cannot_be_built_is_not_retried_with_its_refused_batch(db, caplog):
    broken = a_trace("broken")
    broken.created_at = float("nan")
    ledger = Ledger(RefusingDatabase(db, refusals=1), flush_interval_s=60)
    ledger.queue(a_trace("r1"))
    ledger.queue(broken)

    with caplog.at_level(logging.ERROR, logger="cascade_gateway.accounting"):
        with pytest.raises(OSError):
            await ledger.flush()
        assert ledger.queued == 1
        await ledger.flush()

    assert await rows_in(db) == 1
    failed = [r for r in caplog.records if r.getMessage() == "ledger row could not be built"]
    assert len(failed) == 1


async def test_closing_waits_for_a_timed_write_under_way(tmp_path):
    path = tmp_path / "ledger.db"
    db = await open_database(f"sqlite:///{path}")
    await migrate(db)
    ledger = Ledger(db, flush_interval_s=0.01)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the timed write waits for the file lock
    await ledger.record(a_trace("r1"))
    await asyncio.sleep(0.05)

    closing = asyncio.create_task(ledger.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()
    blocker.execute("COMMIT")
    await closing

    assert ledger.queued == 0
    assert await rows_in(db) == 1
    blocker.close()
    await db.aclose()


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


@pytest.mark.parametrize("make", [a_trace, an_escalated_trace, a_failed_trace])
async def test_a_stored_trace_reads_back_as_the_request_told_it(any_db, make):
    trace = make(uuid.uuid4().hex)
    ledger = Ledger(any_db, flush_interval_s=60)

    await ledger.record(trace)
    await ledger.flush()

    told = orjson.loads(orjson.dumps(trace.to_dict()))
    assert await ledger.trace(trace.request_id) == told
    exported = [json.loads(line) async for line in ledger.export("jsonl")]
    assert [r["trace"] for r in exported if r["request_id"] == trace.request_id] == [told]
    await ledger.aclose()


async def test_a_row_that_holds_the_whole_story_is_read_as_written(db):
    """Rows written before the trace column held only what the other columns do not."""
    story = a_trace("old-row").to_dict()
    row = {
        "id": "0" * 32, "request_id": "old-row", "created_at": story["created_at"],
        "day": "2026-11-01", "key_id": None, "key_name": None, "route": "default",
        "mode": "cascade", "outcome": "accepted", "model_used": "draft", "streamed": 0,
        "budget_capped": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.001,
        "baseline_cost_usd": 0.0, "total_ms": 0.0, "trace": json.dumps(story),
    }  # fmt: skip
    await db.insert([Insert("ledger", tuple(row), [row])])

    assert await Ledger(db).trace("old-row") == story


async def test_a_batch_retried_after_it_landed_is_not_written_twice(any_db):
    """A commit whose acknowledgement was lost (a dropped connection) is retried whole."""
    rows = [{"ledger_id": uuid.uuid4().hex, "tier": 0, "model": "m", "decision": "served",
             "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5}]  # fmt: skip
    columns = tuple(rows[0])

    await any_db.insert([Insert("ledger_attempts", columns, rows)])
    await any_db.insert([Insert("ledger_attempts", columns, rows)])

    found = await any_db.fetchone(
        "SELECT COUNT(*) AS n FROM ledger_attempts WHERE ledger_id = :id",
        {"id": rows[0]["ledger_id"]},
    )
    assert found == {"n": 1}
