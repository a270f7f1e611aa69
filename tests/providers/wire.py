"""Wire payloads as OpenAI and Anthropic send them, and a scripted upstream that serves them
over real HTTP on 127.0.0.1, so each adapter runs its real client code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

# --- OpenAI chat completions -------------------------------------------------------------------

OPENAI_MODEL = "gpt-4o-mini-2024-07-18"


def openai_completion(
    message: dict[str, Any],
    finish_reason: str = "stop",
    *,
    usage: dict[str, Any] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streamed chat.completion body."""
    body: dict[str, Any] = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": OPENAI_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ],
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }
    if usage is not None:
        body["usage"] = usage
    return body


def openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chunk(
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    *,
    logprobs: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One chat.completion.chunk; `delta=None` makes the final usage-only chunk (no choices)."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]
    )
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": OPENAI_MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": choices,
        "usage": usage,
    }


def openai_sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    """Chunks framed as OpenAI frames them: `data: {json}` events, then `data: [DONE]`."""
    frames = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    if done:
        frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


def top_logprob(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


# --- Anthropic messages ------------------------------------------------------------------------

ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"


def anthropic_message(
    content: list[dict[str, Any]], stop_reason: str = "end_turn", *, usage: dict[str, Any]
) -> dict[str, Any]:
    """A non-streamed Messages API body."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_usage(
    input_tokens: int, output_tokens: int, *, cache_creation: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    """Events framed as Anthropic frames them: `event: <type>` then `data: {json}`."""
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }


def message_start(input_tokens: int, *, cache_read: int = 0) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(input_tokens, 1, cache_read=cache_read),
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def json_delta(index: int, partial: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial},
    }


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}


# --- The fake upstream -------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as the upstream saw it."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes


class ByteStream:
    """A streamed body that records how many chunks it sent and whether the client left."""

    def __init__(self, chunks: list[bytes], delay_s: float = 0.0) -> None:
        self.chunks = chunks
        self.delay_s = delay_s
        self.read = 0
        self.closed = False


class FakeUpstream:
    """A real HTTP server on 127.0.0.1 answering from a queue; `requests` keeps what it got.

    Example:
        upstream.json({"choices": [...]})
        provider = OpenAIProvider("p", base_url=upstream.url + "/v1", ...)
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: deque[Callable[[web.Request], Awaitable[web.StreamResponse]]] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def aclose(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the last request."""
        return json.loads(self.requests[-1].content)

    def json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        async def answer(_: web.Request) -> web.StreamResponse:
            return web.json_response(body, status=status, headers=headers)

        self._answers.append(answer)

    def raw(self, content: bytes, status: int = 200, content_type: str = "text/html") -> None:
        async def answer(_: web.Request) -> web.StreamResponse:
            return web.Response(body=content, status=status, content_type=content_type)

        self._answers.append(answer)

    def sse(self, payload: bytes) -> None:
        self.stream(ByteStream([payload]))

    def stream(self, body: ByteStream, *, then_drop: bool = False) -> None:
        """Answer 200 with `body`'s chunks as an event stream; `then_drop` cuts the connection
        after the last chunk instead of ending the response."""

        async def answer(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            try:
                for chunk in body.chunks:
                    await response.write(chunk)
                    body.read += 1
                    await asyncio.sleep(body.delay_s)
            except (ConnectionError, asyncio.CancelledError):
                body.closed = True
                raise
            if then_drop:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write_eof()
            return response

        self._answers.append(answer)

    def hang(self, seconds: float = 30.0) -> None:
        """Accept the request and say nothing for `seconds`."""

        async def answer(_: web.Request) -> web.StreamResponse:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
            return web.Response(status=204)

        self._answers.append(answer)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        content = await request.read()
        self.requests.append(
            Received(request.method, str(request.url), CIMultiDict(request.headers), content)
        )
        return await self._answers.popleft()(request)


def unused_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def eventually(condition: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Whether `condition` holds within `timeout_s` (what a server notices takes a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
