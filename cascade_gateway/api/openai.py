"""The OpenAI-compatible HTTP surface: `/v1/chat/completions`, `/v1/models` and
`/v1/models/{model}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cascade_gateway.api import protocol, serving
from cascade_gateway.api.auth import CallerDep, identify
from cascade_gateway.api.deps import EngineDep, ServicesDep
from cascade_gateway.api.errors import gateway_error_response
from cascade_gateway.cascade.engine import Route
from cascade_gateway.errors import GatewayError, MethodNotAllowed
from cascade_gateway.services import Services

router = APIRouter(prefix="/v1")


PATH = "/v1/chat/completions"


async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/chat/completions`: a chat completion through a cascade (or one model, named
    directly), as JSON or an SSE stream.

    A bare ASGI endpoint that the app calls straight from the request envelope
    (`app.GatewayApp`): nearly all of the traffic comes here, and one request at a time behind
    a slow upstream, every step of it runs with cold caches. So it reads its headers and body
    from the ASGI messages, sends a response built from bytes, and renders its own errors
    (as the app's exception handlers would), with no Starlette `Request`, routing or FastAPI
    dependency solving in between. The dependencies' functions are called directly.
    """
    try:
        if scope["method"] != "POST":
            raise MethodNotAllowed(scope["method"], PATH, "POST")
        response = await _answer(scope, receive)
    except GatewayError as exc:
        response = gateway_error_response(exc)
    await response(scope, receive, send)


async def _answer(scope: Scope, receive: Receive) -> Response:
    services: Services = scope["app"].state.services
    headers = Headers(scope=scope)
    caller = await identify(services, headers)
    body = await serving.read_body(headers, receive, services.config.server.max_body_bytes)
    chat = protocol.parse_request(body)
    route = serving.route_for(services, caller, chat.model)
    domain = chat.to_domain()
    serving.check_context(route, domain)
    run = await serving.admit(services, caller, route, scope["state"]["request_id"])
    if chat.stream:
        return await serving.stream(run, chat, domain)
    return await serving.complete(run, chat, domain)


@router.get("/models")
async def list_models(engine: EngineDep, caller: CallerDep) -> dict[str, Any]:
    """Cascades first, then every model alias (which bypasses the cascade)."""
    visible = [r for r in engine.routes.values() if caller.key is None or caller.key.allows(r.name)]
    routes = sorted(visible, key=lambda r: (r.mode != "cascade", r.name))
    return {"object": "list", "data": [_model(route) for route in routes]}


@router.get("/models/{model:path}")
async def retrieve_model(model: str, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """One cascade or model alias, as `/v1/models` lists it (404 if this caller cannot use it)."""
    return _model(serving.route_for(services, caller, model))


def _model(route: Route) -> dict[str, Any]:
    return {
        "id": route.name,
        "object": "model",
        "created": 0,
        "owned_by": "cascade-gateway",
        "mode": route.mode,
        "tiers": [t.model.alias for t in route.tiers],
    }
