"""The cascade: draft with the cheapest tier, validate, escalate until a tier's answer holds.

The engine knows providers only through their interface and never touches HTTP, so every path
(accept, escalate, failure, cancellation) is testable with a scripted provider. Each request's
`Trace` is handed to the sink exactly once, whatever way the request ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal, Protocol

from cascade_gateway import tokens
from cascade_gateway.budget.meter import UNMETERED, Meter
from cascade_gateway.cascade.assemble import Assembler
from cascade_gateway.cascade.trace import Attempt, Trace
from cascade_gateway.config import ResolvedModel
from cascade_gateway.domain import ChatRequest, Completion, Delta, Usage, merge_deltas
from cascade_gateway.errors import (
    BudgetExceeded,
    ModelNotFound,
    NoUpstreamAnswered,
    ProviderError,
)
from cascade_gateway.providers.base import Provider
from cascade_gateway.shielding import shielded
from cascade_gateway.validation import EarlyScores, Validator


@dataclass(frozen=True, slots=True)
class Tier:
    """A model alias bound to the provider that serves it."""

    model: ResolvedModel
    provider: Provider
    # A validated tier's answer is held until judged, so a stream of it is fetched whole:
    # one JSON body instead of an event per token to parse. Not when a first-token deadline
    # must watch the answer start.
    fetch_whole: bool = False
    # Ask the upstream for token logprobs: a validated tier whose model gives them, judged by
    # a validator that reads them.
    ask_logprobs: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """What a request's `model` names: a cascade of tiers, or one model called directly."""

    name: str
    mode: Literal["cascade", "direct"]
    tiers: tuple[Tier, ...]
    validator: Validator | None = None
    on_budget_pressure: str | None = None
    # Tried in order, unvalidated, when the final tier fails before answering.
    fallbacks: tuple[Tier, ...] = ()

    @property
    def strongest(self) -> Tier:
        return self.tiers[-1]

    def candidates(self) -> list[tuple[int, Tier, bool]]:
        """(index, tier, validated?) for every tier and then every fallback."""
        last = len(self.tiers) - 1
        ordered = [*self.tiers, *self.fallbacks]
        return [(i, tier, i < last) for i, tier in enumerate(ordered)]


class TraceSink(Protocol):
    """Where finished traces go (accounting): called once per request, however it ended.

    `record` may be called while the request's task is being cancelled: whatever in it can
    wait must shield itself, so that the trace is never half recorded.
    """

    async def record(self, trace: Trace) -> None: ...


class Payer(Protocol):
    """Who pays for a request (an API key), as far as tracing and accounting need to know."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def tpm(self) -> int | None: ...


@dataclass(slots=True)
class DraftDelta:
    """A token from a tier whose answer is not yet validated (only when asked for)."""

    tier: int
    model: str
    delta: Delta


@dataclass(slots=True)
class Decided:
    """A non-final tier's answer was validated: accepted or escalated."""

    attempt: Attempt


@dataclass(slots=True)
class Output:
    """A piece of the answer the client will keep.

    `released`: part of an answer that was held until judged; the rest of it, and the
    `Finished` after it, follow at once, without waiting on an upstream.
    """

    tier: int
    model: str
    delta: Delta
    released: bool = False


@dataclass(slots=True)
class Finished:
    trace: Trace
    completion: Completion


CascadeEvent = DraftDelta | Decided | Output | Finished


@dataclass(slots=True)
class Result:
    completion: Completion
    trace: Trace


class CascadeEngine:
    """Runs requests through routes and records what each cost."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        sink: TraceSink,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.routes = dict(routes)
        self._sink = sink
        self._clock = clock

    def resolve(self, name: str) -> Route:
        """The route a request's `model` names; ModelNotFound otherwise."""
        route = self.routes.get(name)
        if route is None:
            raise ModelNotFound(
                f"The model `{name}` does not exist. GET /v1/models lists cascades and models.",
                param="model",
            )
        return route

    async def complete(
        self,
        route: Route,
        request: ChatRequest,
        *,
        request_id: str,
        meter: Meter = UNMETERED,
        key: Payer | None = None,
    ) -> Result:
        """Run the cascade without streaming. Raises NoUpstreamAnswered when every tier and
        fallback failed, BudgetExceeded when the budget cannot pay for what is needed."""
        trace = self._new_trace(route, request_id, streamed=False, key=key)
        start = self._clock()
        fallback: tuple[Attempt, Completion] | None = None
        failures: list[ProviderError] = []
        try:
            for index, tier, validated in route.candidates():
                try:
                    hold = await meter.reserve(tier.model, _tier_request(request, tier))
                except BudgetExceeded:
                    if fallback is None or not meter.degrade:
                        raise
                    self._degrade(trace, route, fallback[0])
                    return Result(fallback[1], trace)
                attempt = self._attempt(trace, index, tier)
                early = self._score_query_soon(route, request, validated)
                began = self._clock()
                try:
                    completion = await tier.provider.complete(
                        tier.model.upstream_model, hold.request
                    )
                    self._settle(attempt, tier, completion.usage, began)
                except ProviderError as exc:
                    self._fail(attempt, tier, exc, began)
                    failures.append(exc)
                    continue
                except BaseException as exc:
                    # Abandoned mid-call: the upstream has at least read (and billed) the prompt.
                    self._settle(attempt, tier, _prompt_only(request), began)
                    self._interrupt(attempt, exc)
                    raise
                finally:
                    if meter is not UNMETERED:  # which has nothing to settle
                        await shielded(meter.settle(hold, attempt.cost_usd))
                attempt.finish_reason = completion.finish_reason
                if not validated or await self._accepts(route, request, completion, attempt, early):
                    self._serve(trace, route, attempt)
                    return Result(completion, trace)
                fallback = (attempt, completion)
            raise NoUpstreamAnswered(failures)
        except BaseException as exc:
            if trace.outcome is None:
                self._abort(trace, exc)
            raise
        finally:
            trace.total_ms = self._ms_since(start)
            await self._sink.record(trace)

    async def stream(
        self,
        route: Route,
        request: ChatRequest,
        *,
        request_id: str,
        provisional: bool = False,
        meter: Meter = UNMETERED,
        key: Payer | None = None,
    ) -> AsyncGenerator[CascadeEvent, None]:
        """Run the cascade streaming. Only an unvalidated tier (the last, or a fallback) streams
        live as `Output`; a validated tier's answer is held until judged, so no text is ever
        sent and then replaced. With `provisional`, held tokens are also shown as `DraftDelta`
        events as they arrive. A failure after `Output` was sent is raised as is: the client
        has seen text, so nothing may take over."""
        trace = self._new_trace(route, request_id, streamed=True, key=key)
        start = self._clock()
        fallback: tuple[Attempt, Completion, list[Delta]] | None = None
        failures: list[ProviderError] = []
        try:
            for index, tier, validated in route.candidates():
                try:
                    hold = await meter.reserve(tier.model, _tier_request(request, tier))
                except BudgetExceeded:
                    if fallback is None or not meter.degrade:
                        raise
                    attempt, completion, held = fallback
                    if not provisional:
                        for delta in _released(held):
                            self._mark_first_output(trace, start, delta)
                            yield Output(attempt.tier, attempt.model, delta, released=True)
                    self._degrade(trace, route, attempt)
                    yield Finished(trace, completion)
                    return
                attempt = self._attempt(trace, index, tier)
                early = self._score_query_soon(route, request, validated)
                assembler = Assembler(model=tier.model.upstream_model)
                held = []
                began = self._clock()
                try:
                    if validated and tier.fetch_whole and not provisional:
                        completion = await tier.provider.complete(
                            tier.model.upstream_model, hold.request
                        )
                        attempt.ttft_ms = self._ms_since(began)  # every token came at once
                        held = completion.as_deltas()
                    else:
                        async with aclosing(
                            tier.provider.stream(tier.model.upstream_model, hold.request)
                        ) as deltas:
                            async for delta in deltas:
                                if attempt.ttft_ms is None and (delta.text or delta.tool_calls):
                                    attempt.ttft_ms = self._ms_since(began)
                                assembler.add(delta)
                                if not validated:
                                    self._mark_first_output(trace, start, delta)
                                    yield Output(index, tier.model.alias, delta)
                                else:
                                    held.append(delta)
                                    if provisional:
                                        yield DraftDelta(index, tier.model.alias, delta)
                        completion = assembler.completion(request)
                    self._settle(attempt, tier, completion.usage, began)
                except ProviderError as exc:
                    billed = assembler.counted_usage(request) if assembler.has_output else None
                    self._fail(attempt, tier, exc, began, billed)
                    if not validated and assembler.has_output:
                        raise
                    failures.append(exc)
                    continue
                except BaseException as exc:
                    # Cancelled or closed mid-stream: the upstream bills what it produced.
                    self._settle(attempt, tier, assembler.counted_usage(request), began)
                    self._interrupt(attempt, exc)
                    raise
                finally:
                    if meter is not UNMETERED:  # which has nothing to settle
                        await shielded(meter.settle(hold, attempt.cost_usd))
                attempt.finish_reason = completion.finish_reason
                if validated:
                    accepted = await self._accepts(route, request, completion, attempt, early)
                    yield Decided(attempt)
                    if not accepted:
                        fallback = (attempt, completion, held)
                        continue
                    if not provisional:
                        for delta in _released(held):
                            self._mark_first_output(trace, start, delta)
                            yield Output(index, tier.model.alias, delta, released=True)
                self._serve(trace, route, attempt)
                yield Finished(trace, completion)
                return
            raise NoUpstreamAnswered(failures)
        except BaseException as exc:
            # An outcome already set means the answer was complete: closing late loses nothing.
            if trace.outcome is None:
                self._abort(trace, exc)
            raise
        finally:
            trace.total_ms = self._ms_since(start)
            await self._sink.record(trace)

    def _new_trace(
        self, route: Route, request_id: str, *, streamed: bool, key: Payer | None
    ) -> Trace:
        return Trace(
            request_id=request_id,
            route=route.name,
            mode=route.mode,
            created_at=time.time(),
            streamed=streamed,
            baseline_model=route.strongest.model.alias,
            key=key,
        )

    @staticmethod
    def _attempt(trace: Trace, index: int, tier: Tier) -> Attempt:
        attempt = Attempt(
            tier=index,
            model=tier.model.alias,
            provider=tier.provider.name,
            upstream_model=tier.model.upstream_model,
        )
        trace.attempts.append(attempt)
        return attempt

    def _settle(self, attempt: Attempt, tier: Tier, usage: Usage, began: float) -> None:
        attempt.input_tokens = usage.input_tokens
        attempt.output_tokens = usage.output_tokens
        attempt.usage_counted = usage.counted
        attempt.cost_usd = tier.model.price.cost(usage.input_tokens, usage.output_tokens)
        attempt.latency_ms = self._ms_since(began)

    def _fail(
        self,
        attempt: Attempt,
        tier: Tier,
        exc: ProviderError,
        began: float,
        billed: Usage | None = None,
    ) -> None:
        """Record a failed call; `billed` is what a stream produced before it broke, which the
        upstream charges for."""
        if billed is not None:
            self._settle(attempt, tier, billed, began)
        else:
            attempt.latency_ms = self._ms_since(began)
        attempt.decision = "failed"
        attempt.error = str(exc)
        attempt.error_code = exc.code or "upstream_error"

    @staticmethod
    def _interrupt(attempt: Attempt, exc: BaseException) -> None:
        attempt.decision = "cancelled" if _is_cancel(exc) else "failed"
        attempt.error = _describe(exc)
        attempt.error_code = "cancelled" if _is_cancel(exc) else type(exc).__name__

    def _degrade(self, trace: Trace, route: Route, attempt: Attempt) -> None:
        """Serve a rejected answer because the budget cannot pay for the next tier."""
        trace.budget_capped = True
        self._serve(trace, route, attempt)
        trace.outcome = "degraded"

    @staticmethod
    def _score_query_soon(
        route: Route, request: ChatRequest, validated: bool
    ) -> EarlyScores | None:
        """Start on what the validator can judge from the query alone, to run while the
        tier's answer is awaited."""
        if not validated or route.validator is None:
            return None
        return route.validator.score_query_soon(request)

    async def _accepts(
        self,
        route: Route,
        request: ChatRequest,
        completion: Completion,
        attempt: Attempt,
        early: EarlyScores | None,
    ) -> bool:
        if route.validator is None:
            return True
        began = self._clock()
        verdict = await route.validator.validate(request, completion, early)
        attempt.validate_ms = self._ms_since(began)
        attempt.verdict = verdict
        attempt.decision = "accepted" if verdict.accepted else "escalated"
        return verdict.accepted

    @staticmethod
    def _serve(trace: Trace, route: Route, attempt: Attempt) -> None:
        if attempt.decision not in ("accepted", "escalated"):
            attempt.decision = "served"
        trace.model_used = attempt.model
        if route.mode == "direct":
            trace.outcome = "direct"
        else:
            trace.outcome = "accepted" if attempt.tier == 0 else "escalated"
        strongest = route.strongest
        if attempt.model == strongest.model.alias:
            trace.baseline_cost_usd = attempt.cost_usd
        else:
            trace.baseline_estimated = True
            trace.baseline_cost_usd = strongest.model.price.cost(
                attempt.input_tokens, attempt.output_tokens
            )

    @staticmethod
    def _abort(trace: Trace, exc: BaseException) -> None:
        if isinstance(exc, BudgetExceeded):
            trace.outcome = "rejected"
        else:
            trace.outcome = "cancelled" if _is_cancel(exc) else "error"
        trace.error = _describe(exc)
        # No answer was served, so there is nothing to compare against: no savings claimed.
        trace.baseline_cost_usd = trace.cost_usd

    def _mark_first_output(self, trace: Trace, start: float, delta: Delta) -> None:
        if trace.ttft_ms is None and (delta.text or delta.tool_calls):
            trace.ttft_ms = self._ms_since(start)

    def _ms_since(self, began: float) -> float:
        return (self._clock() - began) * 1000.0


def _tier_request(request: ChatRequest, tier: Tier) -> ChatRequest:
    return request.with_logprobs() if tier.ask_logprobs else request


def _released(held: list[Delta]) -> list[Delta]:
    """A held answer as the client gets it: its content in one delta (it is all there, so
    sending it piece by piece would only cost writes), then the closing delta."""
    body = [delta for delta in held if not delta.finish_reason]
    closing = [delta for delta in held if delta.finish_reason]
    return [merge_deltas(body), *closing] if body else closing


def _prompt_only(request: ChatRequest) -> Usage:
    return Usage(input_tokens=tokens.count_messages(request.messages, request.tools), counted=True)


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError | GeneratorExit)


def _describe(exc: BaseException) -> str:
    if _is_cancel(exc):
        return "cancelled by the client"
    return str(exc) or type(exc).__name__
