"""The durable spend ledger: one row per request — served, escalated, refused, failed or
cancelled — with what its trace tells and the key that paid, plus one row per upstream attempt.

Rows are written behind the response, in batches: a request's trace is queued once its
response has gone out (`after_response`), and the queue is made into rows and written in one
transaction at most `flush_interval_s` later (or as soon as `max_batch` rows wait), off the
event loop (`Database.insert`). One transaction per request cost a fifth of a worker's time
under load. Every read writes this process's queue first. Another worker's (or replica's) rows
can be up to `flush_interval_s` behind, so a trace not found is looked for once more after that
long: a request's trace can be read as soon as its response has ended, wherever it was served.
The budget counters, which enforce budgets, never wait on this queue.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

import orjson

from cascade_gateway.budget.counters import to_nano
from cascade_gateway.cascade.trace import Attempt, Trace
from cascade_gateway.ids import new_id
from cascade_gateway.storage.database import Database, Insert

log = logging.getLogger("cascade_gateway.accounting")

RETRY_S = 1.0
# How much longer than its flush interval another process may take to write its batch.
OTHER_WRITER_MARGIN_S = 0.05

GroupBy = Literal["key", "model", "cascade", "day"]

_GROUPS: dict[str, tuple[str, str]] = {
    # group_by: (column, table) — model spend lives on attempts, the rest on requests.
    "key": ("COALESCE(l.key_name, '(no key)')", "ledger l"),
    "cascade": ("l.route", "ledger l"),
    "day": ("l.day", "ledger l"),
    "model": ("a.model", "ledger_attempts a JOIN ledger l ON l.id = a.ledger_id"),
}

EXPORT_COLUMNS = (
    "request_id", "created_at", "key_id", "key_name", "route", "mode", "outcome", "model_used",
    "streamed", "budget_capped", "input_tokens", "output_tokens", "cost_usd",
    "baseline_cost_usd", "total_ms",
)  # fmt: skip


_LEDGER_COLUMNS = (
    "id", "request_id", "created_at", "day", "key_id", "key_name", "route", "mode", "outcome",
    "model_used", "streamed", "budget_capped", "input_tokens", "output_tokens", "cost_usd",
    "baseline_cost_usd", "total_ms", "trace",
)  # fmt: skip
# What `_story` reads.
_STORY_COLUMNS = (
    "request_id, route, mode, created_at, streamed, key_id, key_name, outcome, model_used, "
    "budget_capped, baseline_cost_usd, total_ms, trace"
)
_ATTEMPT_COLUMNS = (
    "ledger_id", "tier", "model", "decision", "input_tokens", "output_tokens", "cost_usd",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Entry:
    """One request's rows, ready to insert."""

    request: dict[str, Any]
    attempts: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Payer:
    """The key a stored request was paid by, as the trace's story names it."""

    id: str
    name: str | None


# The `trace` column holds what the other columns do not (each attempt with its verdict, the
# baseline model...), marked with this format; the story is told again on read by
# `Trace.to_dict`. Writing the whole story, with every column repeated and every total spelled
# out, made a row twice as long and cost a request some 6 % of its CPU. Rows written before
# hold the whole story, and are read as they are.
_FORMAT = 2


@cache
def _utc_day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, UTC).strftime("%Y-%m-%d")


def _entry(ledger_id: str, trace: Trace) -> _Entry:
    attempts = trace.attempts
    detail = {
        "format": _FORMAT,
        "attempts": [a.to_dict() for a in attempts],
        "baseline_model": trace.baseline_model,
        "baseline_estimated": trace.baseline_estimated,
        "ttft_ms": trace.ttft_ms,
        "error": trace.error,
    }
    request = {
        "id": ledger_id,
        "request_id": trace.request_id,
        "created_at": trace.created_at,
        "day": _utc_day(int(trace.created_at // 86400)),
        "key_id": trace.key_id,
        "key_name": trace.key_name,
        "route": trace.route,
        "mode": trace.mode,
        "outcome": trace.outcome or "error",
        "model_used": trace.model_used,
        "streamed": int(trace.streamed),
        "budget_capped": int(trace.budget_capped),
        "input_tokens": trace.input_tokens,
        "output_tokens": trace.output_tokens,
        "cost_usd": trace.cost_usd,
        "baseline_cost_usd": trace.baseline_cost_usd,
        "total_ms": trace.total_ms,
        "trace": orjson.dumps(detail).decode(),
    }
    rows = [
        {
            "ledger_id": ledger_id,
            "tier": attempt.tier,
            "model": attempt.model,
            "decision": attempt.decision,
            "input_tokens": attempt.input_tokens,
            "output_tokens": attempt.output_tokens,
            "cost_usd": attempt.cost_usd,
        }
        for attempt in attempts
    ]
    return _Entry(request, rows)


_Queued = tuple[str, Trace]


def _entries(queued: list[_Queued]) -> list[tuple[_Queued, _Entry]]:
    """The queued traces with their rows; a trace whose row cannot be built is logged and left
    out (for good), so that one bad trace cannot hold back the rest of its batch."""
    built = []
    for item in queued:
        ledger_id, trace = item
        try:
            built.append((item, _entry(ledger_id, trace)))
        except Exception:
            fields = {"request_id": trace.request_id}
            log.exception("ledger row could not be built", extra={"fields": fields})
    return built


def _story(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored request's trace, as `Trace.to_dict` told it when the request ended."""
    detail = orjson.loads(row["trace"])
    if detail.get("format") != _FORMAT:
        return detail  # written whole, before the format
    key_id = row["key_id"]
    trace = Trace(
        request_id=row["request_id"],
        route=row["route"],
        mode=row["mode"],
        created_at=row["created_at"],
        streamed=bool(row["streamed"]),
        baseline_model=detail["baseline_model"],
        attempts=[Attempt.from_dict(a) for a in detail["attempts"]],
        outcome=row["outcome"],
        model_used=row["model_used"],
        baseline_cost_usd=row["baseline_cost_usd"],
        baseline_estimated=detail["baseline_estimated"],
        total_ms=row["total_ms"],
        ttft_ms=detail["ttft_ms"],
        error=detail["error"],
        key=None if key_id is None else _Payer(key_id, row["key_name"]),
        budget_capped=bool(row["budget_capped"]),
    )
    return trace.to_dict()


class Ledger:
    """Writes traces (batched, behind the response) and answers questions about spend.

    `flush_interval_s=0` writes each request before its response, as one transaction.
    If the database refuses a batch, the rows stay queued and are retried; past
    `max_queued` rows the oldest are given up, each logged whole so it can be re-entered.
    """

    def __init__(
        self,
        db: Database,
        *,
        flush_interval_s: float = 0.05,
        max_batch: int = 256,
        max_queued: int = 100_000,
    ) -> None:
        self._db = db
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._max_queued = max_queued
        # Traces with their rows' ids, not rows: a row is built when its batch is written, off
        # the path between one response and the next request of a connection (and a busy
        # worker builds a batch's rows in one go, with warm caches). The id is fixed here, so
        # a batch retried after its write landed unacknowledged is ignored, not written twice.
        self._queue: list[_Queued] = []
        self._writing = asyncio.Lock()
        # A timed write is a timer until it is due, then a task (for `aclose` to wait for):
        # a task per timed write, made when it was scheduled, was measurable at one request
        # per flush interval.
        self._timer: asyncio.TimerHandle | None = None
        self._timed_write: asyncio.Task[None] | None = None

    async def record(self, trace: Trace) -> None:
        """Queue one request and its attempts; written within `flush_interval_s`.

        Never raises for the database: a failed write is logged and retried.
        """
        if self.queue(trace):
            await self.write_due()

    def queue(self, trace: Trace) -> bool:
        """Queue one request and its attempts, without waiting; True when a write is due now
        (then `write_due()`), else the write happens within `flush_interval_s`."""
        self._queue.append((new_id(), trace))
        if self._interval <= 0 or len(self._queue) >= self._max_batch:
            return True
        self._schedule(self._interval)
        return False

    async def flush(self) -> None:
        """Write every queued row now, in one transaction; on failure they stay queued."""
        async with self._writing:
            batch, self._queue = self._queue, []
            if not batch:
                return
            built = _entries(batch)
            rows = Insert("ledger", _LEDGER_COLUMNS, [e.request for _, e in built])
            attempts = [a for _, e in built for a in e.attempts]
            try:
                await self._db.insert([rows, Insert("ledger_attempts", _ATTEMPT_COLUMNS, attempts)])
            except Exception:
                self._queue[:0] = [item for item, _ in built]
                self._give_up_beyond(self._max_queued)
                raise

    async def aclose(self) -> None:
        """Write what is queued (at shutdown); rows that cannot be written are logged whole."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timed_write is not None:
            await self._timed_write
        try:
            await self.flush()
        except Exception:
            log.exception("ledger write failed at shutdown")
            self._give_up_beyond(0)

    @property
    def queued(self) -> int:
        """Rows waiting to be written."""
        return len(self._queue)

    def _schedule(self, delay_s: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self._write_now)

    def _write_now(self) -> None:
        self._timer = None
        self._timed_write = asyncio.get_running_loop().create_task(self.write_due())

    async def write_due(self) -> None:
        """Write the queue now (when `queue` said a write is due); a failed write is logged
        and retried later."""
        try:
            await self.flush()
        except Exception:
            log.exception("ledger write failed; %d rows stay queued for a retry", self.queued)
            self._schedule(max(self._interval, RETRY_S))

    def _give_up_beyond(self, keep: int) -> None:
        """Drop the oldest queued rows beyond `keep`, logging each whole (never silently)."""
        excess = len(self._queue) - keep
        if excess <= 0:
            return
        dropped, self._queue = self._queue[:excess], self._queue[excess:]
        for _, entry in _entries(dropped):
            log.error(
                "ledger row not written",
                extra={"fields": {"ledger_row": entry.request, "attempts": entry.attempts}},
            )

    async def trace(self, request_id: str, key_id: str | None = None) -> dict[str, Any] | None:
        """The latest trace with this request id; with `key_id`, only if that key paid for it."""
        await self.flush()
        sql = f"SELECT {_STORY_COLUMNS} FROM ledger WHERE request_id = :rid"
        params: dict[str, Any] = {"rid": request_id}
        if key_id is not None:
            sql += " AND key_id = :kid"
            params["kid"] = key_id
        sql += " ORDER BY created_at DESC LIMIT 1"
        row = await self._db.fetchone(sql, params)
        if row is None and self._interval > 0:
            # Served by another worker or replica, its row may still be in that one's queue.
            await asyncio.sleep(self._interval + OTHER_WRITER_MARGIN_S)
            row = await self._db.fetchone(sql, params)
        return _story(row) if row else None

    async def totals(self, key_id: str | None = None, since: float | None = None) -> dict:
        """Requests by outcome, cost, baseline, savings, acceptance rate, per model."""
        await self.flush()
        where, params = _filter(key_id, since)
        outcomes = await self._db.fetchall(
            f"SELECT outcome, COUNT(*) AS n, SUM(cost_usd) AS cost, "
            f"SUM(baseline_cost_usd) AS baseline FROM ledger l {where} GROUP BY outcome",
            params,
        )
        models = await self._db.fetchall(
            "SELECT a.model AS model, COUNT(*) AS calls, "
            "SUM(CASE WHEN a.decision = 'failed' THEN 1 ELSE 0 END) AS failures, "
            "SUM(a.input_tokens) AS input_tokens, SUM(a.output_tokens) AS output_tokens, "
            "SUM(a.cost_usd) AS cost_usd, "
            "SUM(CASE WHEN a.tier = 0 AND a.decision IN ('accepted', 'escalated') "
            "THEN 1 ELSE 0 END) AS validated, "
            "SUM(CASE WHEN a.tier = 0 AND a.decision = 'accepted' THEN 1 ELSE 0 END) AS accepted "
            f"FROM ledger_attempts a JOIN ledger l ON l.id = a.ledger_id {where} GROUP BY a.model",
            params,
        )
        cost = sum(r["cost"] or 0.0 for r in outcomes)
        baseline = sum(r["baseline"] or 0.0 for r in outcomes)
        validated = sum(r["validated"] or 0 for r in models)
        accepted = sum(r["accepted"] or 0 for r in models)
        return {
            "requests": sum(r["n"] for r in outcomes),
            "outcomes": {r["outcome"]: r["n"] for r in outcomes},
            "cost_usd": cost,
            "baseline_cost_usd": baseline,
            "savings_usd": baseline - cost,
            "savings_pct": 100.0 * (baseline - cost) / baseline if baseline else 0.0,
            "drafts_validated": validated,
            "drafts_accepted": accepted,
            "acceptance_rate": accepted / validated if validated else None,
            "models": {
                r["model"]: {
                    "calls": r["calls"],
                    "failures": r["failures"],
                    "input_tokens": r["input_tokens"],
                    "output_tokens": r["output_tokens"],
                    "cost_usd": r["cost_usd"],
                }
                for r in models
            },
        }

    async def spend(self, group_by: GroupBy, since: float | None = None) -> list[dict]:
        """Spend and tokens grouped by key, model, cascade or UTC day, largest first."""
        await self.flush()
        column, source = _GROUPS[group_by]
        cost = "a.cost_usd" if group_by == "model" else "l.cost_usd"
        tokens = "a" if group_by == "model" else "l"
        where, params = _filter(None, since)
        rows = await self._db.fetchall(
            f"SELECT {column} AS grp, COUNT(*) AS requests, SUM({cost}) AS cost_usd, "
            f"SUM({tokens}.input_tokens) AS input_tokens, "
            f"SUM({tokens}.output_tokens) AS output_tokens "
            f"FROM {source} {where} GROUP BY {column} ORDER BY SUM({cost}) DESC",
            params,
        )
        return [{group_by: r["grp"], **{k: r[k] for k in r if k != "grp"}} for r in rows]

    async def export(self, fmt: Literal["jsonl", "csv"]) -> AsyncIterator[str]:
        """Every ledger row, oldest first, as JSON lines (with the trace) or CSV (without)."""
        await self.flush()
        columns = ", ".join(EXPORT_COLUMNS)
        rows = await self._db.fetchall(f"SELECT {columns}, trace FROM ledger ORDER BY created_at")
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(EXPORT_COLUMNS)
            for row in rows:
                writer.writerow([row[c] for c in EXPORT_COLUMNS])
            yield buffer.getvalue()
            return
        for row in rows:
            record = {c: row[c] for c in EXPORT_COLUMNS}
            record["trace"] = _story(row)
            yield json.dumps(record, separators=(",", ":")) + "\n"

    async def spent_nano(self, key_id: str | None, since: float | None) -> int:
        """Spend recorded for a key (None: everyone) since a moment (None: ever)."""
        await self.flush()
        where, params = _filter(key_id, since)
        row = await self._db.fetchone(
            f"SELECT SUM(l.cost_usd) AS total FROM ledger l {where}", params
        )
        return to_nano((row or {}).get("total") or 0.0)


def _filter(key_id: str | None, since: float | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if key_id is not None:
        clauses.append("l.key_id = :key_id")
        params["key_id"] = key_id
    if since is not None:
        clauses.append("l.created_at >= :since")
        params["since"] = since
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
