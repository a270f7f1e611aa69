"""Serving chat completions: run the engine, render OpenAI JSON or an SSE stream.

A stream's HTTP status is committed only once the cascade has something to send: a request
whose every tier fails before the first token gets a proper 502/504, not a 200 with an error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive

from cascade_gateway import tokens
from cascade_gateway.api import protocol, sse
from cascade_gateway.api.auth import Caller
from cascade_gateway.auth.keys import ApiKey
from cascade_gateway.budget.meter import Meter
from cascade_gateway.cascade.engine import (
    CascadeEngine,
    CascadeEvent,
    Finished,
    Output,
    Result,
    Route,
)
from cascade_gateway.cascade.trace import Trace
from cascade_gateway.domain import ChatRequest, Delta
from cascade_gateway.errors import (
    BodyTooLarge,
    ContextTooLong,
    GatewayError,
    ModelNotFound,
    RateLimited,
    UpstreamError,
)
from cascade_gateway.observability import logs, metrics
from cascade_gateway.services import Services

log = logging.getLogger("cascade_gateway")


async def read_body(headers: Headers, receive: Receive, limit: int) -> bytes:
    """The request body, read from the ASGI `receive` channel and refused with 413 as soon as
    it passes `limit` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body of {declared} bytes exceeds the {limit}-byte limit.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body exceeds the {limit}-byte limit.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_context(route: Route, request: ChatRequest) -> None:
    """Refuse a prompt that cannot fit the strongest tier's context window."""
    window = route.strongest.model.price.context_window
    if window is None:
        return
    # A token is at least one character, so short prompts need no tokenizing.
    chars = sum(len(str(m.get("content") or "")) for m in request.messages)
    if chars <= window:
        return
    prompt_tokens = tokens.count_messages(request.messages, request.tools)
    if prompt_tokens > window:
        raise ContextTooLong(
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages",
        )


def trace_headers(trace: Trace) -> list[tuple[bytes, bytes]]:
    """Cost and decision as headers, readable via the SDK's `with_raw_response`."""
    return [
        (b"x-cascade-route", trace.route.encode()),
        (b"x-cascade-model", (trace.model_used or "").encode()),
        (b"x-cascade-outcome", (trace.outcome or "").encode()),
        (b"x-cascade-models-tried", ",".join(a.model for a in trace.attempts).encode()),
        (b"x-cascade-cost-usd", b"%.10f" % trace.cost_usd),
        (b"x-cascade-savings-usd", b"%.10f" % trace.savings_usd),
        (b"x-cascade-budget-capped", b"true" if trace.budget_capped else b"false"),
    ]


class JSONAnswer(Response):
    """A 200 response with a JSON body and headers that are already bytes.

    Starlette's `Response` takes a header mapping, lowercases and encodes it and scans it for
    content-length and content-type on every response; the gateway's hottest path has its
    headers in bytes from the start.
    """

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.body = body
        self.background = None
        length = (b"content-length", b"%d" % len(body))
        self.raw_headers = [(b"content-type", b"application/json"), length, *headers]


@dataclass(slots=True)
class Run:
    """One admitted request: its route, who pays, and the budget meter its calls draw on."""

    engine: CascadeEngine
    route: Route
    request_id: str
    meter: Meter
    key: ApiKey | None
    log_content: bool = False

    def complete(self, request: ChatRequest, **options: Any) -> Awaitable[Result]:
        return self.engine.complete(
            self.route,
            request,
            request_id=self.request_id,
            meter=self.meter,
            key=self.key,
            **options,
        )

    def stream(self, request: ChatRequest, **options: Any) -> AsyncGenerator[CascadeEvent, None]:
        return self.engine.stream(
            self.route,
            request,
            request_id=self.request_id,
            meter=self.meter,
            key=self.key,
            **options,
        )


def route_for(services: Services, caller: Caller, name: str) -> Route:
    """The route `name` names, if this caller may use it (else 404, as OpenAI answers)."""
    route = services.engine.resolve(name)
    if caller.key is not None and not caller.key.allows(route.name):
        raise ModelNotFound(
            f"The model `{name}` does not exist or you do not have access to it.", param="model"
        )
    return route


async def admit(services: Services, caller: Caller, route: Route, request_id: str) -> Run:
    """Apply the caller's rate limits and pick the budgets this request draws on."""
    key = caller.key
    if key is not None:
        try:
            await services.limiter.admit(key.id, key.rpm, key.tpm)
        except RateLimited:
            metrics.count_refusal(route.name)
            raise
    meter = services.budgets.meter(key, route.on_budget_pressure)
    log_content = services.config.log.include_content
    return Run(services.engine, route, request_id, meter, key, log_content)


def _log_content(request: ChatRequest, completion: str) -> None:
    """Put the conversation on the request's log line (only with `log.include_content`)."""
    fields = logs.request_fields()
    if fields is not None:
        fields["messages"] = request.messages
        fields["completion"] = completion


async def complete(
    run: Run, chat: protocol.ChatCompletionRequest, request: ChatRequest
) -> Response:
    """A non-streamed chat completion."""
    result = await run.complete(request)
    if run.log_content:
        _log_content(request, result.completion.text)
    body = protocol.completion_body(chat, result.completion, result.trace)
    return JSONAnswer(orjson.dumps(body), trace_headers(result.trace))


async def stream(
    run: Run, chat: protocol.ChatCompletionRequest, request: ChatRequest
) -> sse.EventStream:
    """A streamed chat completion: held until the first kept token, then SSE."""
    route = run.route
    request_id = run.request_id
    events = run.stream(request)
    try:
        first = await _first_kept(events)
    except BaseException:
        await events.aclose()
        raise
    model = first.model if isinstance(first, Output) else first.trace.model_used or route.name
    writer = protocol.ChunkWriter(chat, request_id, model)
    headers = {"x-cascade-route": route.name, "x-cascade-model": model}
    frames = _frames(writer, chat, first, events, request if run.log_content else None)
    try:
        # The first output is in hand, so its frames are ready now (a released answer: all).
        opening = await anext(frames)
    except BaseException:
        await frames.aclose()
        raise
    return sse.response(frames, headers=headers, first=opening)


async def _first_kept(events: AsyncIterator[CascadeEvent]) -> Output | Finished:
    while True:
        event = await anext(events)
        if isinstance(event, Output | Finished):
            return event


async def _frames(
    writer: protocol.ChunkWriter,
    chat: protocol.ChatCompletionRequest,
    first: Output | Finished,
    events: AsyncGenerator[CascadeEvent, None],
    log_content: ChatRequest | None,
) -> AsyncGenerator[bytes, None]:
    # Frames ready together go out in one write: the role chunk with the first content; a
    # released answer (all there at once), or the last content when the upstream's end came
    # with it, with the finishing chunk, usage and [DONE] at the end of the body.
    ready = sse.frame(writer.role())
    closing = b""
    async with aclosing(events):
        # The finishing chunk waits for the trace so it can carry the cost summary.
        finishing: dict | None = None
        event: CascadeEvent = first
        try:
            while True:
                if isinstance(event, Output):
                    chunk = writer.delta(event.delta)
                    if chunk is not None and event.delta.finish_reason:
                        finishing = chunk
                    elif chunk is not None:
                        ready += sse.frame(chunk)
                        # The rest follows at once: it goes out with the end, in one write.
                        if not (event.released or event.delta.ends_stream):
                            yield ready
                            ready = b""
                elif isinstance(event, Finished):
                    if log_content is not None:
                        _log_content(log_content, event.completion.text)
                    finishing = finishing or writer.delta(
                        Delta(finish_reason=event.completion.finish_reason)
                    )
                    assert finishing is not None
                    finishing["cascade"] = protocol.cascade_summary(event.trace)
                    closing = sse.frame(finishing)
                    if chat.include_usage:
                        closing += sse.frame(writer.usage(event.completion.usage, event.trace))
                    break
                event = await anext(events)
        except GatewayError as exc:
            closing = sse.error_frame(exc)
        except Exception:
            log.exception("stream failed")
            closing = sse.error_frame(UpstreamError("The stream failed inside the gateway."))
    # After the engine is closed, so the key's token count is taken before the client sees
    # the end (the rest of the accounting follows the response: `after_response`).
    yield sse.Last(ready + closing + sse.DONE)
