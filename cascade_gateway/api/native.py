"""The native API, in the spirit of CascadeFlow's: one query in, the answer and its full story out.

POST /api/query            the answer, model used, cost, latency and trace
GET  /api/query/stream     SSE: `draft` tokens, the `decision`, `token`s kept, a `done` summary
GET  /api/requests/{id}    the stored trace of a recent request
GET  /api/stats            totals since start-up
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from cascade_gateway.api import serving, sse
from cascade_gateway.api.auth import Caller, CallerDep
from cascade_gateway.api.deps import RequestIdDep, ServicesDep
from cascade_gateway.api.serving import Run
from cascade_gateway.cascade.engine import Decided, DraftDelta, Finished, Output
from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import GatewayError, InvalidRequest, NotFound
from cascade_gateway.services import Services

router = APIRouter(prefix="/api")


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    system: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    cascade: str | None = None
    force_direct: bool = False


async def _admit(
    services: Services, caller: Caller, request_id: str, cascade: str | None, direct: bool
) -> Run:
    name = cascade or next(iter(services.config.cascades), None)
    if name is None:
        raise InvalidRequest("No cascade is configured; pass `cascade`.", param="cascade")
    route = serving.route_for(services, caller, name)
    if direct:
        # Forcing direct means "ask the strongest model", the baseline the cascade competes with.
        route = services.engine.resolve(route.strongest.model.alias)
    return await serving.admit(services, caller, route, request_id)


def _chat(query: str, system: str | None, max_tokens: int | None, temperature: float | None):
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": query})
    return ChatRequest(messages=messages, max_tokens=max_tokens, temperature=temperature)


@router.post("/query")
async def query(
    body: QueryRequest, services: ServicesDep, caller: CallerDep, request_id: RequestIdDep
) -> dict[str, Any]:
    """Answer one query through a cascade and return the answer with its cost breakdown."""
    run = await _admit(services, caller, request_id, body.cascade, body.force_direct)
    request = _chat(body.query, body.system, body.max_tokens, body.temperature)
    result = await run.complete(request)
    trace = result.trace
    return {
        "request_id": request_id,
        "content": result.completion.text,
        "model_used": trace.model_used,
        "cost": trace.cost_usd,
        "savings": trace.savings_usd,
        "latency_ms": trace.total_ms,
        "cascaded": trace.cascaded,
        "draft_accepted": trace.draft_accepted,
        "budget_capped": trace.budget_capped,
        "trace": trace.to_dict(),
    }


@router.get("/query/stream", response_model=None)
async def query_stream(
    services: ServicesDep,
    caller: CallerDep,
    request_id: RequestIdDep,
    query: str = Query(min_length=1),
    max_tokens: int | None = Query(default=None, ge=1),
    temperature: float | None = Query(default=None, ge=0, le=2),
    cascade: str | None = None,
    force_direct: bool = False,
) -> sse.EventStream:
    """Stream the cascade as it runs: draft tokens, the decision, kept tokens, then `done`."""
    run = await _admit(services, caller, request_id, cascade, force_direct)
    request = _chat(query, None, max_tokens, temperature)
    events = run.stream(request, provisional=True)
    return sse.response(_typed_events(events), headers={"x-cascade-route": run.route.name})


async def _typed_events(events: AsyncGenerator[Any, None]) -> AsyncGenerator[bytes, None]:
    async with aclosing(events):
        try:
            async for event in events:
                if isinstance(event, DraftDelta) and event.delta.text:
                    yield sse.frame(
                        {"tier": event.tier, "model": event.model, "text": event.delta.text},
                        event="draft",
                    )
                elif isinstance(event, Decided):
                    yield sse.frame(_decision(event), event="decision")
                elif isinstance(event, Output) and event.delta.text:
                    yield sse.frame(
                        {"tier": event.tier, "model": event.model, "text": event.delta.text},
                        event="token",
                    )
                elif isinstance(event, Finished):
                    yield sse.frame(
                        {"content": event.completion.text, **event.trace.to_dict()},
                        event="done",
                    )
        except GatewayError as exc:
            yield sse.error_frame(exc, event="error")


def _decision(event: Decided) -> dict[str, Any]:
    attempt = event.attempt
    verdict = attempt.verdict
    assert verdict is not None
    return {
        "tier": attempt.tier,
        "model": attempt.model,
        "accepted": verdict.accepted,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "reason": verdict.reason,
        "signals": [
            {"name": s.name, "score": s.score, "passed": s.passed, "detail": s.detail}
            for s in verdict.signals
        ],
        "cost_usd": attempt.cost_usd,
        "latency_ms": attempt.latency_ms,
    }


@router.get("/requests/{request_id}")
async def get_request(request_id: str, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The trace of a request, by the id in its `x-request-id` header (a key sees its own)."""
    key_id = None if caller.sees_everything else caller.key.id  # type: ignore[union-attr]
    trace = await services.ledger.trace(request_id, key_id=key_id)
    if trace is None:
        raise NotFound(f"No request with id {request_id!r}.", param="request_id")
    return trace


@router.get("/stats")
async def stats(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Totals: requests, cost, savings, acceptance rate, per model (a key sees its own)."""
    key_id = None if caller.sees_everything else caller.key.id  # type: ignore[union-attr]
    return await services.ledger.totals(key_id=key_id)


@router.get("/usage")
async def usage(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The calling key's budget, spend in the current period, limits and totals."""
    key = caller.key
    if key is None:
        raise InvalidRequest("Usage is per key: call this with an API key, not the master key.")
    budget = await services.budgets.status(key)
    return {
        "key": {"id": key.id, "name": key.name, "rpm": key.rpm, "tpm": key.tpm},
        "budget": budget,
        "totals": await services.ledger.totals(key_id=key.id),
    }
