"""Pure ASGI middleware: request ids on every response, and a last-resort 500 in OpenAI's shape."""

from __future__ import annotations

import json
import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cascade_gateway")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_INTERNAL = json.dumps(
    {
        "error": {
            "message": "The gateway hit an internal error. It has been logged.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
).encode()


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Honours a sane incoming `x-request-id`, else makes one; stores it in `request.state`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if started:
                raise
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send_with_id({"type": "http.response.body", "body": _INTERNAL})


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SAFE_ID.match(candidate) else None
    return None
