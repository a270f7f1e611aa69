"""The OpenAI-compatible HTTP surface: `/v1/chat/completions` and `/v1/models`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cascade_gateway.api import protocol, serving
from cascade_gateway.api.auth import CallerDep
from cascade_gateway.api.deps import EngineDep, RequestIdDep, ServicesDep

router = APIRouter(prefix="/v1")


@router.post("/chat/completions")
async def chat_completions(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    request_id: RequestIdDep,
) -> Response:
    """Create a chat completion through a cascade (or one model, named directly)."""
    body = await serving.read_body(request, services.config.server.max_body_bytes)
    chat = protocol.parse_request(body)
    route = serving.route_for(services, caller, chat.model)
    domain = chat.to_domain()
    serving.check_context(route, domain)
    run = await serving.admit(services, caller, route, request_id)
    if chat.stream:
        return await serving.stream(run, chat, domain)
    return await serving.complete(run, chat, domain)


@router.get("/models")
async def list_models(engine: EngineDep, caller: CallerDep) -> dict[str, Any]:
    """Cascades first, then every model alias (which bypasses the cascade)."""
    visible = [r for r in engine.routes.values() if caller.key is None or caller.key.allows(r.name)]
    routes = sorted(visible, key=lambda r: (r.mode != "cascade", r.name))
    return {
        "object": "list",
        "data": [
            {
                "id": route.name,
                "object": "model",
                "created": 0,
                "owned_by": "cascade-gateway",
                "mode": route.mode,
                "tiers": [t.model.alias for t in route.tiers],
            }
            for route in routes
        ],
    }
