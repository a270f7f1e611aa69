"""The OpenAI-compatible HTTP surface: `/v1/chat/completions` and `/v1/models`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from cascade_gateway.api import protocol, serving, sse
from cascade_gateway.api.auth import CallerDep, authenticate
from cascade_gateway.api.deps import EngineDep, get_request_id, get_services
from cascade_gateway.api.errors import gateway_error_response
from cascade_gateway.errors import GatewayError

router = APIRouter(prefix="/v1")


async def chat_completions(request: Request) -> Response | sse.EventStream:
    """Create a chat completion through a cascade (or one model, named directly).

    A plain Starlette endpoint rather than a FastAPI one: it reads and validates its own body,
    so FastAPI's per-request dependency solving would be pure overhead on the gateway's
    hottest path. The same dependencies are called directly.
    """
    services = await get_services(request)
    caller = await authenticate(request)
    request_id = await get_request_id(request)
    body = await serving.read_body(request, services.config.server.max_body_bytes)
    chat = protocol.parse_request(body)
    route = serving.route_for(services, caller, chat.model)
    domain = chat.to_domain()
    serving.check_context(route, domain)
    run = await serving.admit(services, caller, route, request_id)
    if chat.stream:
        return await serving.stream(run, chat, domain)
    return await serving.complete(run, chat, domain)


router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])


async def chat_completions_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """`chat_completions` as a bare ASGI app, for the app's hot path (`app.GatewayApp`): it
    renders gateway errors itself, as the app's exception handlers would."""
    request = Request(scope, receive)
    try:
        response = await chat_completions(request)
    except GatewayError as exc:
        response = gateway_error_response(exc)
    await response(scope, receive, send)


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
