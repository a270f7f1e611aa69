"""The one Server-Sent Events encoder and response for the whole service.

Both the OpenAI-compatible stream (bare `data:` frames ending in `[DONE]`) and the native API's
typed events go through here, and both end a failed stream with an error frame rather than a
silent cut.

The response is a bare ASGI app rather than sse-starlette's `EventSourceResponse`: that one runs
an anyio task group per stream (four tasks and their cancel scopes), which measured as a tenth
of a worker's time when streaming under load. Here one helper task per stream notices the
client leaving (and cancels the stream, which cancels the upstream call), and one timer sends a
comment ping when the stream has been quiet for `PING_SECONDS`; a stream that is whole before
it starts (an accepted draft) needs neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from cascade_gateway.errors import GatewayError

PING_SECONDS = 15
DONE = b"data: [DONE]\n\n"
_PING = b": ping\n\n"
_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
            "x-accel-buffering": "no"}  # fmt: skip


def frame(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """One event whose data is compact JSON (one line: JSON has no raw newlines)."""
    payload = orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


class Last(bytes):
    """The stream's last frames: sent together with the end of the body, in one write."""


def error_frame(exc: GatewayError, event: str | None = None) -> bytes:
    """An OpenAI-shaped error body as an event; the openai SDK raises it as an APIError."""
    return frame(exc.to_body(), event=event)


class EventStream(Response):
    """A `200 text/event-stream` response that sends `frames` as they come; a `Last` frame
    ends the body in the same write.

    `first`: frames ready before the response starts, sent ahead of `frames`. If it is a
    `Last`, it is the whole stream: nothing is left to wait for, so no client is watched and
    no ping is timed (an accepted draft goes out this way).

    A Starlette `Response` only so that FastAPI routes return it as is (like Starlette's own
    `StreamingResponse`, it sends itself and has no body to render).

    Example:
        return EventStream(frames(), headers={"x-cascade-route": "default"})
    """

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        headers: Mapping[str, str] | None = None,
        ping_s: float = PING_SECONDS,
        first: bytes = b"",
    ) -> None:
        self.status_code = 200
        self.background = None
        self.frames = frames
        self.first = first
        self.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in {**_HEADERS, **(headers or {})}.items()
        ]
        self.ping_s = ping_s
        self._client_left = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with aclosing(self.frames) as frames:
            if isinstance(self.first, Last):
                await send({"type": "http.response.body", "body": self.first, "more_body": False})
                return
            await self._stream(frames, receive, send)

    async def _stream(
        self, frames: AsyncGenerator[bytes, None], receive: Receive, send: Send
    ) -> None:
        loop = asyncio.get_running_loop()
        streaming = asyncio.current_task()
        assert streaming is not None
        watcher = loop.create_task(self._watch(receive, streaming))
        pinger = _Pinger(loop, send, self.ping_s)
        try:
            if self.first:
                await send({"type": "http.response.body", "body": self.first, "more_body": True})
            ended = False
            async for data in frames:
                pinger.sent()
                ended = isinstance(data, Last)
                await send({"type": "http.response.body", "body": data, "more_body": not ended})
                if ended:
                    break
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._client_left:
                raise
            # The client went away: the stream is closed, and nobody is left to answer.
            streaming.uncancel()
        finally:
            watcher.cancel()
            pinger.stop()

    async def _watch(self, receive: Receive, streaming: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_left = True
                streaming.cancel()
                return


class _Pinger:
    """Sends a comment ping whenever the stream has been quiet for `ping_s`: one timer per
    stream, re-armed for the next moment a ping could be due."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send, ping_s: float) -> None:
        self._loop = loop
        self._send = send
        self._ping_s = ping_s
        self._last_sent = loop.time()
        self._sending: asyncio.Task[None] | None = None
        self._timer = loop.call_at(self._last_sent + ping_s, self._due)

    def sent(self) -> None:
        """Something just went out: the stream is not quiet."""
        self._last_sent = self._loop.time()

    async def _ping(self, message: Message) -> None:
        await self._send(message)

    def stop(self) -> None:
        self._timer.cancel()
        if self._sending is not None:
            self._sending.cancel()

    def _due(self) -> None:
        if self._loop.time() - self._last_sent >= self._ping_s:
            self._last_sent = self._loop.time()
            message = {"type": "http.response.body", "body": _PING, "more_body": True}
            self._sending = self._loop.create_task(self._ping(message))
        self._timer = self._loop.call_at(self._last_sent + self._ping_s, self._due)


def response(
    frames: AsyncGenerator[bytes, None],
    headers: Mapping[str, str] | None = None,
    first: bytes = b"",
) -> EventStream:
    """A streaming response; comment pings keep idle proxies from cutting long drafts."""
    return EventStream(frames, headers, first=first)
