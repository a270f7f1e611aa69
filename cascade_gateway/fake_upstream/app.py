"""The Starlette app: both chat APIs, `GET /v1/models`, and the `/_fake` control plane
(routes in `control`).

Each API route parses the body, records it, checks the key, asks the script for a rule, and
hands the resulting answer (or fault) to its wire module to write. Sampling parameters
(max_tokens, temperature, stop, n, ...) are accepted and ignored: the script decides the answer.

    POST   /v1/chat/completions   OpenAI Chat Completions (JSON or SSE)
    POST   /v1/messages           Anthropic Messages (JSON or SSE)
    GET    /v1/models             OpenAI's list shape; Anthropic's when `anthropic-version` is sent
    POST   /_fake/rules           append rules (a JSON list of rule mappings)
    GET    /_fake/rules           the live rules
    DELETE /_fake/rules           forget every rule
    GET    /_fake/requests        the request history
    DELETE /_fake/requests        forget the history
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cascade_gateway.fake_upstream.answer import (
    BadRequest,
    Inbound,
    ScriptError,
    Wire,
    build_answer,
)
from cascade_gateway.fake_upstream.anthropic_wire import AnthropicWire
from cascade_gateway.fake_upstream.control import control_routes
from cascade_gateway.fake_upstream.openai_wire import OpenAIWire
from cascade_gateway.fake_upstream.script import (
    Fault,
    ReceivedRequest,
    Script,
    default_reply,
)

DEFAULT_MODELS = ("fake-draft", "fake-strong")

OPENAI = OpenAIWire()
ANTHROPIC = AnthropicWire()

_JSON = "application/json"
_SSE = "text/event-stream"


class ConnectionCut(Exception):
    """Raised to drop a connection mid-response, as a `broken_stream` fault asks."""


class _QuietCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionCut))


def quiet_deliberate_cuts() -> None:
    """Stop uvicorn logging our deliberate connection cuts as application errors.

    Call after uvicorn configured logging (creating its `Config` may reset loggers).
    """
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietCuts) for f in logger.filters):
        logger.addFilter(_QuietCuts())


class _Chunks(Response):
    """A 200 response written chunk by chunk; with `cut`, the connection drops instead of
    the response ending."""

    def __init__(
        self,
        chunks: list[bytes],
        media_type: str,
        headers: Mapping[str, str],
        *,
        per_chunk_s: float = 0.0,
        cut: bool = False,
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        # Unpaced, one write reads the same to a client and costs far less (benchmarks).
        self.chunks = chunks if per_chunk_s else [b"".join(chunks)]
        self.per_chunk_s = per_chunk_s
        self.cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for position, chunk in enumerate(self.chunks):
            if position:
                await asyncio.sleep(self.per_chunk_s)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.cut:
            # uvicorn closes the transport when an app fails after the response started.
            raise ConnectionCut
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Hang(Response):
    """Never answers; returns once the client hangs up (so shutdown is not held up)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _phrase(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Overloaded" if status == 529 else f"HTTP {status}"
    return f"{phrase} (fake upstream)"


class _Api:
    """The model-facing routes, bound to one script."""

    def __init__(self, script: Script, api_key: str | None, latency_s: float) -> None:
        self.script = script
        self.api_key = api_key
        self.latency_s = latency_s

    async def chat_completions(self, request: Request) -> Response:
        return await self._answer(request, OPENAI)

    async def messages(self, request: Request) -> Response:
        return await self._answer(request, ANTHROPIC)

    async def models(self, request: Request) -> Response:
        wire: Wire = ANTHROPIC if "anthropic-version" in request.headers else OPENAI
        self.script.record(
            ReceivedRequest(
                path=request.url.path,
                protocol=wire.name,
                model=None,
                json={},
                headers=dict(request.headers),
                stream=False,
            )
        )
        if refused := self._refuse_key(request, wire):
            return refused
        names = self.script.models() or list(DEFAULT_MODELS)
        body = wire.models(names)
        return self._json(wire, body)

    async def _answer(self, request: Request, wire: Wire) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(wire, 400, "The request body is not a JSON object.")
        inbound: Inbound | None = None
        problem = ""
        try:
            inbound = wire.read(body)
        except BadRequest as exc:
            problem = str(exc)
        model = body.get("model")
        self.script.record(
            ReceivedRequest(
                path=request.url.path,
                protocol=wire.name,
                model=model if isinstance(model, str) else None,
                json=body,
                headers=dict(request.headers),
                stream=bool(body.get("stream")),
                prompt=inbound.prompt if inbound else "",
            )
        )
        if refused := self._refuse_key(request, wire):
            return refused
        if inbound is None:
            return self._error(wire, 400, problem)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        rule = self.script.match(wire.name, inbound.model, inbound.prompt)
        if rule is not None and rule.fault is not None:
            return self._fault(rule.fault, wire, inbound, body)
        reply = rule.reply if rule is not None else None
        if reply is None:
            reply = default_reply(inbound.model)
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        answer = build_answer(reply, inbound.model, wire.prompt_tokens(body))
        try:
            if inbound.stream:
                frames = wire.frames(answer, body)
                return _Chunks(frames, _SSE, self._headers(wire), per_chunk_s=reply.per_chunk_s)
            return self._json(wire, wire.body(answer, body))
        except ScriptError as exc:
            return self._error(wire, 500, f"fake upstream script error: {exc}")

    def _fault(self, fault: Fault, wire: Wire, inbound: Inbound, body: dict[str, Any]) -> Response:
        if fault.kind == "http":
            headers = {}
            if fault.retry_after is not None:
                headers["retry-after"] = _seconds(fault.retry_after)
            return self._error(wire, fault.status, fault.message or _phrase(fault.status), headers)
        if fault.kind == "hang":
            return _Hang()
        # A stream that goes wrong part-way needs a real answer to go wrong in.
        answer = build_answer(default_reply(inbound.model), inbound.model, 0)
        if inbound.stream:
            kept = wire.frames(answer, body)[: fault.after_chunks]
            media_type = _SSE
            if fault.kind == "malformed_stream":
                kept.append(wire.malformed_frame)
        else:
            whole = json.dumps(wire.body(answer, body)).encode()
            kept = [whole[: len(whole) // 2]]
            media_type = _JSON
        cut = fault.kind == "broken_stream"
        return _Chunks(kept, media_type, self._headers(wire), cut=cut)

    def _refuse_key(self, request: Request, wire: Wire) -> Response | None:
        if self.api_key is None or wire.api_key(request.headers) == self.api_key:
            return None
        message = "Incorrect API key provided." if wire is OPENAI else "invalid x-api-key"
        return self._error(wire, 401, message)

    def _headers(self, wire: Wire) -> dict[str, str]:
        return {wire.request_id_header: "req_" + uuid.uuid4().hex[:24]}

    def _json(self, wire: Wire, body: dict[str, Any]) -> Response:
        return Response(json.dumps(body), media_type=_JSON, headers=self._headers(wire))

    def _error(
        self, wire: Wire, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        return Response(
            json.dumps(wire.error(status, message)),
            status_code=status,
            media_type=_JSON,
            headers={**self._headers(wire), **(headers or {})},
        )


def build_app(
    script: Script | None = None, *, api_key: str | None = None, latency_s: float = 0.0
) -> Starlette:
    """The fake upstream as an ASGI app; `app.state.script` is the script it answers from.

    `api_key`: refuse requests without it (401 in the protocol's shape); `latency_s`: added
    before every answer and fault.

    Example:
        app = build_app(Script([Rule(model="draft", reply=Reply(text="Paris."))]))
    """
    script = script if script is not None else Script()
    api = _Api(script, api_key, latency_s)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
            Route("/v1/messages", api.messages, methods=["POST"]),
            Route("/v1/models", api.models, methods=["GET"]),
            *control_routes(script),
        ]
    )
    app.state.script = script
    return app
