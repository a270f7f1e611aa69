"""Replay recorded answers through the real cascade: engine, validator chain, prices, traces.

Every row runs twice through the engine, in-process: once through the cascade (the draft's
recorded answer is validated and accepted or escalated to the strong model's recorded answer)
and once straight to the strong model (the strong-only baseline). The validator's signal
scores are kept per row, so quality, escalation and cost at any other threshold are recomputed
with `validation.combine` without running anything again.

Example:
    report = replay(load_config("config/gsm8k-cascade.yaml"), load("gsm8k.jsonl"))
    report.summary()["savings_pct"], report.curve()[0]
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cascade_gateway.cascade.engine import CascadeEngine, Route
from cascade_gateway.cascade.trace import Trace
from cascade_gateway.config import GatewayConfig, resolve_models
from cascade_gateway.domain import ChatRequest
from cascade_gateway.replay.data import Answer, Dataset, Metric, Row
from cascade_gateway.replay.provider import ReplayProvider
from cascade_gateway.services import build_routes
from cascade_gateway.validation import SignalScore, combine

# The curve's thresholds: 0.00, 0.01, ..., 1.00 (and the configured one).
CURVE_STEPS = 100


class ReplayError(Exception):
    """The config and the data do not fit together (the message says how)."""


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """One row through the cascade: the verdict's signals, what each path costs, each answer's
    grade. `escalated`, `score` and `cost_usd` are what the engine did at the configured
    threshold; `strong_cost_usd` is the strong model's own call on this row."""

    id: str
    escalated: bool
    score: float
    signals: tuple[SignalScore, ...]
    draft_quality: float
    strong_quality: float
    draft_cost_usd: float
    strong_cost_usd: float
    cost_usd: float

    def escalates_at(self, threshold: float) -> bool:
        return not combine(self.signals, threshold).accepted


@dataclass(frozen=True, slots=True)
class Point:
    """The cascade's figures at one threshold (or for one fixed policy)."""

    threshold: float | None
    quality: float
    escalation_rate: float
    cost_usd: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "quality": self.quality,
            "escalation_rate": self.escalation_rate,
            "cost_usd": self.cost_usd,
        }


def point(
    outcomes: Sequence[RowOutcome], escalate: Sequence[bool], threshold: float | None
) -> Point:
    """Quality, escalation rate and cost when row i escalates iff `escalate[i]`."""
    n = len(outcomes)
    if n == 0:
        return Point(threshold, 0.0, 0.0, 0.0)
    quality = sum(
        o.strong_quality if up else o.draft_quality
        for o, up in zip(outcomes, escalate, strict=True)
    )
    cost = sum(
        o.draft_cost_usd + (o.strong_cost_usd if up else 0.0)
        for o, up in zip(outcomes, escalate, strict=True)
    )
    return Point(threshold, quality / n, sum(escalate) / n, cost)


def at_threshold(outcomes: Sequence[RowOutcome], threshold: float) -> Point:
    """The figures had the cascade been configured with `threshold`."""
    return point(outcomes, [o.escalates_at(threshold) for o in outcomes], threshold)


def grid() -> list[float]:
    """The curve's default thresholds: 0.00, 0.01, ..., 1.00."""
    return [i / CURVE_STEPS for i in range(CURVE_STEPS + 1)]


def curve(outcomes: Sequence[RowOutcome], thresholds: Iterable[float] | None = None) -> list[Point]:
    """Figures across thresholds (default `grid()`), lowest first."""
    chosen = grid() if thresholds is None else thresholds
    return [at_threshold(outcomes, t) for t in sorted(set(chosen))]


@dataclass(frozen=True, slots=True)
class Report:
    """A replay's rows and the figures derived from them."""

    outcomes: tuple[RowOutcome, ...]
    metric: Metric
    threshold: float
    cascade: str
    draft_model: str
    strong_model: str

    def served(self) -> Point:
        """What the engine did at the configured threshold."""
        outcomes = self.outcomes
        point_ = point(outcomes, [o.escalated for o in outcomes], self.threshold)
        # Cost straight from the engine's traces (equal to the recomputed one).
        return Point(
            self.threshold,
            point_.quality,
            point_.escalation_rate,
            sum(o.cost_usd for o in outcomes),
        )

    def draft_only(self) -> Point:
        return point(self.outcomes, [False] * len(self.outcomes), None)

    def strong_only(self) -> Point:
        """Every row sent straight to the strong model (no draft paid)."""
        n = len(self.outcomes) or 1
        return Point(
            None,
            sum(o.strong_quality for o in self.outcomes) / n,
            1.0,
            sum(o.strong_cost_usd for o in self.outcomes),
        )

    def oracle(self) -> Point:
        """Escalate exactly the rows where the strong answer is better than the draft."""
        return point(
            self.outcomes, [o.strong_quality > o.draft_quality for o in self.outcomes], None
        )

    def curve(self, thresholds: Iterable[float] | None = None) -> list[Point]:
        """Figures across thresholds (default `grid()`)."""
        return curve(self.outcomes, thresholds)

    def summary(self) -> dict[str, Any]:
        """The headline figures, JSON-ready (see `cascade-gateway replay --json`)."""
        served, strong, draft, oracle = (
            self.served(),
            self.strong_only(),
            self.draft_only(),
            self.oracle(),
        )
        savings = strong.cost_usd - served.cost_usd
        return {
            "n": len(self.outcomes),
            "metric": self.metric,
            "cascade": self.cascade,
            "draft_model": self.draft_model,
            "strong_model": self.strong_model,
            "threshold": self.threshold,
            "quality": served.quality,
            "draft_only_quality": draft.quality,
            "strong_only_quality": strong.quality,
            "relative_quality": served.quality / strong.quality if strong.quality else None,
            "escalation_rate": served.escalation_rate,
            "cost_usd": served.cost_usd,
            "draft_only_cost_usd": draft.cost_usd,
            "strong_only_cost_usd": strong.cost_usd,
            "savings_pct": 100.0 * savings / strong.cost_usd if strong.cost_usd else 0.0,
            "oracle": oracle.as_dict(),
            "curve": [p.as_dict() for p in self.curve([*grid(), self.threshold])],
        }


def replay(
    config: GatewayConfig,
    dataset: Dataset,
    *,
    cascade: str = "default",
    draft: str | None = None,
    strong: str | None = None,
) -> Report:
    """Run every row through the configured cascade (see the module docstring).

    `draft`/`strong` name the models in the data whose answers the cascade's first and last
    tiers replay; by default, the tiers' upstream model names.
    """
    return asyncio.run(replay_async(config, dataset, cascade=cascade, draft=draft, strong=strong))


async def replay_async(
    config: GatewayConfig,
    dataset: Dataset,
    *,
    cascade: str = "default",
    draft: str | None = None,
    strong: str | None = None,
) -> Report:
    """`replay`, for callers already inside an event loop."""
    if cascade not in config.cascades:
        known = ", ".join(config.cascades) or "none"
        raise ReplayError(f"no cascade named {cascade!r} in the config (cascades: {known})")
    tiers = config.cascades[cascade].tiers
    if len(tiers) != 2:
        raise ReplayError(f"cascade {cascade!r} has {len(tiers)} tiers; replay needs exactly 2")
    models = resolve_models(config)
    draft_upstream = models[tiers[0]].upstream_model
    strong_upstream = models[tiers[1]].upstream_model
    if draft_upstream == strong_upstream:
        raise ReplayError(f"both tiers of {cascade!r} call {draft_upstream!r}")
    draft = draft or draft_upstream
    strong = strong or strong_upstream
    for name in (draft, strong):
        if name not in dataset.models:
            known = ", ".join(dataset.models) or "none"
            raise ReplayError(f"the data has no answers from {name!r} (models: {known})")

    answers: dict[str, dict[str, Answer]] = {
        draft_upstream: {row.prompt: row.answers[draft] for row in dataset.rows},
        strong_upstream: {row.prompt: row.answers[strong] for row in dataset.rows},
    }
    provider = ReplayProvider("replay", answers)
    routes = build_routes(config, models, {name: provider for name in config.providers})
    engine = CascadeEngine(routes, sink=_Discard())
    route, direct = routes[cascade], routes[tiers[1]]

    outcomes = [await _run_row(engine, route, direct, row, draft, strong) for row in dataset.rows]
    return Report(
        outcomes=tuple(outcomes),
        metric=dataset.metric,
        threshold=config.cascades[cascade].threshold,
        cascade=cascade,
        draft_model=draft,
        strong_model=strong,
    )


async def _run_row(
    engine: CascadeEngine, route: Route, direct: Route, row: Row, draft: str, strong: str
) -> RowOutcome:
    request = ChatRequest(messages=[{"role": "user", "content": row.prompt}])
    cascaded = (await engine.complete(route, request, request_id=row.id)).trace
    baseline = (await engine.complete(direct, request, request_id=f"{row.id}/strong")).trace
    first = cascaded.attempts[0]
    verdict = first.verdict
    if verdict is None:
        raise ReplayError(f"row {row.id}: the draft was not validated ({first.error})")
    return RowOutcome(
        id=row.id,
        escalated=cascaded.outcome == "escalated",
        score=verdict.score,
        signals=verdict.signals,
        draft_quality=row.answers[draft].quality,
        strong_quality=row.answers[strong].quality,
        draft_cost_usd=first.cost_usd,
        strong_cost_usd=baseline.cost_usd,
        cost_usd=cascaded.cost_usd,
    )


class _Discard:
    """Replays are not requests anyone paid for: their traces are not kept."""

    async def record(self, trace: Trace) -> None:
        return None
