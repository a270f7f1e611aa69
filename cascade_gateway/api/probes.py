"""Probes and metrics for Kubernetes and Prometheus.

GET /liveness    the process is up and serving its event loop (200 even while draining)
GET /readiness   200 when this instance should get traffic; 503 with the failed check
                 while draining, or when storage is unreachable or no upstream is usable
GET /health      everything, for people: version, uptime, each dependency's state
GET /metrics     Prometheus text format
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cascade_gateway import __version__
from cascade_gateway.lifecycle import Lifecycle
from cascade_gateway.observability import metrics
from cascade_gateway.services import Services

router = APIRouter(include_in_schema=False)

CHECK_TIMEOUT_S = 1.0


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:200]
    return "ok"


async def _checks(request: Request) -> dict[str, str]:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return {"config": "not loaded"}
    checks = {"config": "ok", "storage": await _check(services.db.ping)}
    if services.redis is not None:
        checks["redis"] = await _check(services.redis.ping)
    open_circuits = [m for m, state in services.resilience.states().items() if state == "open"]
    if not services.providers:
        checks["upstreams"] = "error: no provider configured"
    elif len(open_circuits) == len(services.models):
        checks["upstreams"] = "error: every model's circuit is open"
    else:
        checks["upstreams"] = "ok"
    return checks


def _lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


@router.get("/liveness")
async def liveness() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readiness")
async def readiness(request: Request) -> JSONResponse:
    if _lifecycle(request).draining:
        return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
    checks = await _checks(request)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    lifecycle = _lifecycle(request)
    checks = await _checks(request)
    services: Services | None = getattr(request.app.state, "services", None)
    return {
        "status": "draining" if lifecycle.draining else "ok",
        "version": __version__,
        "uptime_s": round(time.time() - lifecycle.started_at, 3),
        "in_flight": lifecycle.in_flight,
        "checks": checks,
        "providers": sorted(services.providers) if services else [],
        "circuits": services.resilience.states() if services else {},
        "routes": sorted(services.engine.routes) if services else [],
    }


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
