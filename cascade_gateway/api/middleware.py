"""The envelope around every request, as pure ASGI (no per-request task or copy):
a request id, the in-flight count, refusal while draining, the work deferred to after the
response (`after_response`), the request's log line (status 499 for a client gone before its
request was read whole), and a last resort in OpenAI's shape: 503 while the gateway's storage
is down, else 500."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cascade_gateway import after_response
from cascade_gateway.errors import StorageUnavailable
from cascade_gateway.ids import new_id
from cascade_gateway.lifecycle import Lifecycle
from cascade_gateway.observability import logs, metrics
from cascade_gateway.storage.outage import is_outage

log = logging.getLogger("cascade_gateway")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes: never refused while draining, never counted, never logged.
UNTRACKED = frozenset({"/liveness", "/readiness", "/health", "/metrics"})
# nginx's status for a client that closed its connection before it could be answered.
CLIENT_CLOSED_REQUEST = 499


def _error_body(message: str, code: str, error_type: str = "server_error") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()


_INTERNAL = _error_body("The gateway hit an internal error. It has been logged.", "internal_error")
_DRAINING = _error_body(
    "This gateway instance is shutting down; retry the request (another replica will take it).",
    "draining",
)
_STORAGE_DOWN = StorageUnavailable(
    "The gateway's storage (database or Redis) cannot be reached; retry shortly."
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
        sent_at: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal started, status, sent_at
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                sent_at = time.perf_counter()

        if self.lifecycle.draining:
            await _respond(
                send_with_id, 503, _DRAINING, {"retry-after": "1", "connection": "close"}
            )
            return
        token = logs.open_request(request_id=request_id, method=scope["method"], path=scope["path"])
        deferred = after_response.open_request()
        self.lifecycle.enter()
        metrics.request_started()
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Gone before its request was read whole: there is no one to answer, and nothing
            # went wrong on this side.
            status = CLIENT_CLOSED_REQUEST
        except Exception as exc:
            if started:
                log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
                raise
            await _last_resort(exc, request_id, send_with_id)
        finally:
            try:
                # Accounting adds the request's figures to its log line, so it runs first.
                waiting = after_response.run_deferred(deferred)
                if waiting is not None:
                    await waiting
            finally:
                metrics.request_ended()
                self.lifecycle.leave()
                # The line's latency is the client's: it ends with the last byte, not with
                # the deferred work after it.
                logs.close_request(token, status, ended=sent_at)


async def _last_resort(exc: Exception, request_id: str, send: Send) -> None:
    """The answer to an exception nothing else handled, before the response started."""
    if not is_outage(exc):
        log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
        await _respond(send, 500, _INTERNAL)
        return
    error = f"{type(exc).__name__}: {exc}"
    log.error("storage unavailable", extra={"fields": {"request_id": request_id, "error": error}})
    body = json.dumps(_STORAGE_DOWN.to_body()).encode()
    await _respond(send, _STORAGE_DOWN.status_code, body, _STORAGE_DOWN.headers())


async def _respond(
    send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SAFE_ID.match(candidate) else None
    return None
