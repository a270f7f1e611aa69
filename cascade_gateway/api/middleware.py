"""The envelope around every request, as pure ASGI (no per-request task or copy):
a request id, the in-flight count, refusal while draining, the request's log line, and a
last-resort 500 in OpenAI's shape."""

from __future__ import annotations

import json
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cascade_gateway.ids import new_id
from cascade_gateway.lifecycle import Lifecycle
from cascade_gateway.observability import logs, metrics

log = logging.getLogger("cascade_gateway")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes: never refused while draining, never counted, never logged.
UNTRACKED = frozenset({"/liveness", "/readiness", "/health", "/metrics"})


def _error_body(message: str, code: str, error_type: str = "server_error") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()


_INTERNAL = _error_body("The gateway hit an internal error. It has been logged.", "internal_error")
_DRAINING = _error_body(
    "This gateway instance is shutting down; retry the request (another replica will take it).",
    "draining",
)


def new_request_id() -> str:
    return new_id()


class RequestContextMiddleware:
    """Honours a sane incoming `x-request-id`, else makes one; stores it in `request.state`."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACKED:
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        if self.lifecycle.draining:
            await _respond(send_with_id, 503, _DRAINING, retry_after=True)
            return
        token = logs.open_request(request_id=request_id, method=scope["method"], path=scope["path"])
        self.lifecycle.enter()
        metrics.request_started()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            if started:
                raise
            await _respond(send_with_id, 500, _INTERNAL)
        finally:
            metrics.request_ended()
            self.lifecycle.leave()
            logs.close_request(token, status)


async def _respond(send: Send, status: int, body: bytes, retry_after: bool = False) -> None:
    headers = [(b"content-type", b"application/json")]
    if retry_after:
        headers += [(b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SAFE_ID.match(candidate) else None
    return None
