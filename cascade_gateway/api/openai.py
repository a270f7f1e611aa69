"""The OpenAI-compatible HTTP surface: `/v1/chat/completions` and `/v1/models`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cascade_gateway.api import protocol, serving
from cascade_gateway.api.deps import EngineDep, RequestIdDep, ServicesDep

router = APIRouter(prefix="/v1")


@router.post("/chat/completions")
async def chat_completions(
    request: Request, services: ServicesDep, engine: EngineDep, request_id: RequestIdDep
) -> Response:
    """Create a chat completion through a cascade (or one model, named directly)."""
    body = await serving.read_body(request, services.config.server.max_body_bytes)
    chat = protocol.parse_request(body)
    route = engine.resolve(chat.model)
    domain = chat.to_domain()
    serving.check_context(route, domain)
    if chat.stream:
        return await serving.stream(engine, route, chat, domain, request_id)
    return await serving.complete(engine, route, chat, domain, request_id)


@router.get("/models")
async def list_models(engine: EngineDep) -> dict[str, Any]:
    """Cascades first, then every model alias (which bypasses the cascade)."""
    routes = sorted(engine.routes.values(), key=lambda r: (r.mode != "cascade", r.name))
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
