"""What happened to one request: every model tried, what it cost, how long it took, and why.

A `Trace` is built by the engine as the request runs and handed to accounting once, when the
request ends for any reason (served, failed, or cancelled by the client).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from cascade_gateway.validation import Verdict

Decision = Literal["accepted", "escalated", "served", "failed", "cancelled"]
Outcome = Literal["accepted", "escalated", "direct", "degraded", "rejected", "error", "cancelled"]


@dataclass(slots=True)
class Attempt:
    """One upstream call within a request."""

    tier: int
    model: str
    provider: str
    upstream_model: str
    decision: Decision = "served"
    input_tokens: int = 0
    output_tokens: int = 0
    usage_counted: bool = False
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    finish_reason: str | None = None
    verdict: Verdict | None = None
    validate_ms: float = 0.0
    error: str | None = None
    # Short and bounded (for metrics): "timeout", "upstream_429", "cancelled"...
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view; `from_dict` reads it back."""
        # Written out rather than `dataclasses.asdict`, whose deep copy costs more than the
        # rest of the ledger write.
        data = {name: getattr(self, name) for name in _ATTEMPT_FIELDS}
        data["verdict"] = None if self.verdict is None else self.verdict.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        """The attempt `to_dict` wrote."""
        verdict = data["verdict"]
        return cls(
            **{name: data[name] for name in _ATTEMPT_FIELDS},
            verdict=None if verdict is None else Verdict.from_dict(verdict),
        )


_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt) if f.name != "verdict")


@dataclass(slots=True)
class Trace:
    """The whole story of one request, with totals and savings against strong-only."""

    request_id: str
    route: str
    mode: Literal["cascade", "direct"]
    created_at: float
    streamed: bool
    baseline_model: str
    attempts: list[Attempt] = field(default_factory=list)
    outcome: Outcome | None = None
    model_used: str | None = None
    baseline_cost_usd: float = 0.0
    # True when the strong model was never called and its cost is priced from the served answer.
    baseline_estimated: bool = False
    total_ms: float = 0.0
    ttft_ms: float | None = None
    error: str | None = None
    # Who pays (an API key), kept as given: accounting reads its limits, the JSON its name.
    key: Any = None
    # Served a lower tier's answer because the budget could not pay for escalating.
    budget_capped: bool = False

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None

    @property
    def key_name(self) -> str | None:
        return self.key.name if self.key is not None else None

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    @property
    def savings_usd(self) -> float:
        """Dollars saved versus sending the request straight to the strongest tier."""
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_pct(self) -> float:
        return _percent(self.savings_usd, self.baseline_cost_usd)

    @property
    def input_tokens(self) -> int:
        return sum(a.input_tokens for a in self.attempts)

    @property
    def output_tokens(self) -> int:
        return sum(a.output_tokens for a in self.attempts)

    @property
    def draft(self) -> Attempt | None:
        """The first tier's attempt when it was validated (cascade mode)."""
        first = self.attempts[0] if self.attempts else None
        return first if first is not None and first.verdict is not None else None

    @property
    def draft_accepted(self) -> bool:
        return self.outcome == "accepted" and self.mode == "cascade"

    @property
    def cascaded(self) -> bool:
        """True when more than one tier was called."""
        return len(self.attempts) > 1

    @property
    def draft_cost_usd(self) -> float:
        """Cost of every attempt except the one that served the answer."""
        served = self.served_attempt
        return sum(a.cost_usd for a in self.attempts if a is not served)

    @property
    def verifier_cost_usd(self) -> float:
        """Cost of the stronger tier(s) called after escalation."""
        return sum(a.cost_usd for a in self.attempts[1:])

    @property
    def served_attempt(self) -> Attempt | None:
        for attempt in reversed(self.attempts):
            if attempt.decision in ("accepted", "served"):
                return attempt
        return None

    @property
    def draft_verdict(self) -> Verdict | None:
        """The validator's verdict on the draft, if there was one."""
        draft = self.draft
        return draft.verdict if draft is not None else None

    @property
    def quality_score(self) -> float | None:
        verdict = self.draft_verdict
        return verdict.score if verdict else None

    @property
    def quality_threshold(self) -> float | None:
        verdict = self.draft_verdict
        return verdict.threshold if verdict else None

    @property
    def rejection_reason(self) -> str | None:
        verdict = self.draft_verdict
        return verdict.reason if verdict else None

    def stage_ms(self) -> dict[str, float]:
        """Time per stage: the first tier, validation, and every tier after it."""
        first = self.attempts[0].latency_ms if self.attempts else 0.0
        return {
            "draft": first if self.mode == "cascade" else 0.0,
            "validate": sum(a.validate_ms for a in self.attempts),
            "escalate": sum(a.latency_ms for a in self.attempts[1:]),
            "direct": first if self.mode == "direct" else 0.0,
            "total": self.total_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, with the derived totals spelled out."""
        # The totals are computed once here: this runs for every request (its ledger row).
        cost = self.cost_usd
        savings = self.baseline_cost_usd - cost
        verdict = self.draft_verdict
        return {
            "request_id": self.request_id,
            "route": self.route,
            "mode": self.mode,
            "created_at": self.created_at,
            "streamed": self.streamed,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "budget_capped": self.budget_capped,
            "outcome": self.outcome,
            "model_used": self.model_used,
            "cascaded": self.cascaded,
            "draft_accepted": self.draft_accepted,
            "attempts": [a.to_dict() for a in self.attempts],
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": cost,
            "draft_cost_usd": self.draft_cost_usd,
            "verifier_cost_usd": self.verifier_cost_usd,
            "baseline_model": self.baseline_model,
            "baseline_cost_usd": self.baseline_cost_usd,
            "baseline_estimated": self.baseline_estimated,
            "savings_usd": savings,
            "savings_pct": _percent(savings, self.baseline_cost_usd),
            "quality_score": verdict.score if verdict else None,
            "quality_threshold": verdict.threshold if verdict else None,
            "rejection_reason": verdict.reason if verdict else None,
            "timing_ms": self.stage_ms(),
            "ttft_ms": self.ttft_ms,
            "error": self.error,
        }


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0
