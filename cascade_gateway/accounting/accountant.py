"""Accounting, the last stage of every request: the ledger row, the key's token count, the
metrics, and the figures on the request's log line.

Only the key's token count is taken before the response goes out (the key's next request
must see it); the rest is done after it (`after_response`), so the client does not wait for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

from cascade_gateway import after_response
from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.budget.budgets import Budgets
from cascade_gateway.cascade.trace import Trace
from cascade_gateway.observability import logs, metrics
from cascade_gateway.ratelimit import RateLimiter
from cascade_gateway.shielding import shielded

GAUGE_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


class Accountant:
    """The engine's trace sink."""

    def __init__(self, ledger: Ledger, limiter: RateLimiter, budgets: Budgets) -> None:
        self._ledger = ledger
        self._limiter = limiter
        self._budgets = budgets
        self._gauge_updated: dict[str, float] = {}

    async def record(self, trace: Trace) -> None:
        """Write the request to the ledger, count its tokens against the key's TPM, and
        report it to metrics and the request log; all but the token count after the response
        when the request has one (else now).

        Runs to the end even if the request's task is cancelled meanwhile: the steps that wait
        on storage (a ledger write that is due, the key's counters) are `shielded`. Most
        requests have none, and then pay for no shielding task. Never raises for storage: the
        request has been served by now, and a ledger write that fails is retried (`Ledger`);
        the token count and the gauge are logged and dropped.
        """
        key = trace.key
        spend = key is not None and key.tpm is not None
        # Deferred before the token count waits, so a cancellation there cannot skip it.
        if not after_response.defer(partial(self._account, trace, spend=False)):
            waiting = self._account(trace, spend=spend)
            if waiting is not None:
                await waiting
        elif spend:
            await self._finish(trace, write_due=False, spend=True, gauge=False)

    def _account(self, trace: Trace, spend: bool) -> Awaitable[None] | None:
        """Queue the ledger row, report metrics and the log line's figures; the storage steps
        still to wait for, if any."""
        write_due = self._ledger.queue(trace)
        metrics.observe(trace)
        _describe(trace)
        key = trace.key
        gauge = key is not None and key.budget_usd is not None and self._gauge_due(key.id)
        if write_due or spend or gauge:
            return self._finish(trace, write_due, spend, gauge)
        return None

    async def _finish(self, trace: Trace, write_due: bool, spend: bool, gauge: bool) -> None:
        """The steps of `record` that wait on storage, shielded; their failures logged."""
        try:
            await shielded(self._storage_steps(trace, write_due, spend, gauge))
        except Exception:
            fields = {"request_id": trace.request_id, "key_id": trace.key_id}
            log.exception("key's token count or budget gauge not updated", extra={"fields": fields})

    async def _storage_steps(self, trace: Trace, write_due: bool, spend: bool, gauge: bool) -> None:
        if write_due:
            await self._ledger.write_due()
        key = trace.key
        if spend:
            assert key is not None and key.tpm is not None
            used = trace.input_tokens + trace.output_tokens
            await self._limiter.spend_tokens(key.id, key.tpm, used)
        if gauge:
            assert key is not None
            status = await self._budgets.status(key)
            metrics.BUDGET_REMAINING.labels(key.name).set(status["remaining_usd"])

    def _gauge_due(self, key_id: str) -> bool:
        """At most one budget read per key per second: the gauge is for dashboards, and the
        read would otherwise add a storage round trip to every request."""
        now = time.monotonic()
        if now - self._gauge_updated.get(key_id, 0.0) < GAUGE_INTERVAL_S:
            return False
        self._gauge_updated[key_id] = now
        return True


def _describe(trace: Trace) -> None:
    """The trace's figures on the request's log line, read when the line is made."""
    logs.add_figures(partial(_figures, trace))


def _figures(trace: Trace) -> dict[str, Any]:
    return {
        "key_name": trace.key_name,
        "cascade": trace.route,
        "models_tried": [a.model for a in trace.attempts],
        "model_used": trace.model_used,
        "outcome": trace.outcome,
        "input_tokens": trace.input_tokens,
        "output_tokens": trace.output_tokens,
        "cost_usd": round(trace.cost_usd, 10),
        "savings_usd": round(trace.savings_usd, 10),
        "quality_score": trace.quality_score,
        "budget_capped": trace.budget_capped,
        "ttft_ms": trace.ttft_ms,
    }
