"""Where finished requests are accounted: recent traces by id, and running totals.

This is the in-process ledger: it keeps the last `capacity` traces for `GET /api/requests/{id}`
and totals since start-up for `GET /api/stats`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from cascade_gateway.cascade.trace import Trace


@dataclass(slots=True)
class ModelTotals:
    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class Totals:
    """Running totals over every recorded request."""

    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    drafts_validated: int = 0
    drafts_accepted: int = 0
    models: dict[str, ModelTotals] = field(default_factory=dict)

    def add(self, trace: Trace) -> None:
        self.requests += 1
        self.outcomes[trace.outcome or "error"] += 1
        self.cost_usd += trace.cost_usd
        self.baseline_cost_usd += trace.baseline_cost_usd
        if trace.draft is not None:
            self.drafts_validated += 1
            self.drafts_accepted += trace.draft.decision == "accepted"
        for attempt in trace.attempts:
            model = self.models.setdefault(attempt.model, ModelTotals())
            model.calls += 1
            model.failures += attempt.decision == "failed"
            model.input_tokens += attempt.input_tokens
            model.output_tokens += attempt.output_tokens
            model.cost_usd += attempt.cost_usd

    def to_dict(self) -> dict[str, Any]:
        savings = self.baseline_cost_usd - self.cost_usd
        return {
            "requests": self.requests,
            "outcomes": dict(self.outcomes),
            "cost_usd": self.cost_usd,
            "baseline_cost_usd": self.baseline_cost_usd,
            "savings_usd": savings,
            "savings_pct": 100.0 * savings / self.baseline_cost_usd
            if self.baseline_cost_usd
            else 0.0,
            "drafts_validated": self.drafts_validated,
            "drafts_accepted": self.drafts_accepted,
            "acceptance_rate": self.drafts_accepted / self.drafts_validated
            if self.drafts_validated
            else None,
            "models": {
                name: {
                    "calls": m.calls,
                    "failures": m.failures,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "cost_usd": m.cost_usd,
                }
                for name, m in self.models.items()
            },
        }


class MemoryLedger:
    """Recent traces (bounded, oldest dropped first) and totals since start-up."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._recent: OrderedDict[str, Trace] = OrderedDict()
        self.totals = Totals()

    def record(self, trace: Trace) -> None:
        """Account one finished request (called once per request by the engine)."""
        self._recent[trace.request_id] = trace
        if len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
        self.totals.add(trace)

    def get(self, request_id: str) -> Trace | None:
        return self._recent.get(request_id)
