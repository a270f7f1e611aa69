"""The `/_fake` control plane: how other processes (benchmarks, the demo) script the fake."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cascade_gateway.fake_upstream.script import Script, rules_from_data


class _Control:
    def __init__(self, script: Script) -> None:
        self.script = script

    async def add_rules(self, request: Request) -> Response:
        try:
            rules = rules_from_data(json.loads(await request.body()))
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.script.add(*rules)
        return JSONResponse({"added": len(rules)})

    async def list_rules(self, request: Request) -> Response:
        return JSONResponse([rule.to_dict() for rule in self.script.rules])

    async def reset_rules(self, request: Request) -> Response:
        self.script.reset_rules()
        return Response(status_code=204)

    async def list_requests(self, request: Request) -> Response:
        return JSONResponse([received.to_dict() for received in self.script.requests])

    async def clear_requests(self, request: Request) -> Response:
        self.script.clear_requests()
        return Response(status_code=204)


def control_routes(script: Script) -> list[BaseRoute]:
    """Routes to append rules (a JSON list of rule mappings), list or forget them, and read or
    forget the request history."""
    control = _Control(script)
    return [
        Route("/_fake/rules", control.add_rules, methods=["POST"]),
        Route("/_fake/rules", control.list_rules, methods=["GET"]),
        Route("/_fake/rules", control.reset_rules, methods=["DELETE"]),
        Route("/_fake/requests", control.list_requests, methods=["GET"]),
        Route("/_fake/requests", control.clear_requests, methods=["DELETE"]),
    ]
