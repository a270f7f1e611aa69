"""Wire payloads as OpenAI and Anthropic send them, and a scripted upstream behind MockTransport.

The openai SDK is built on httpx and the anthropic SDK on httpx2; `FakeUpstream` takes either
module, so both adapters run their real SDK code against the same kind of fake.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

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


class FakeUpstream:
    """Answers requests from a queue, through `MockTransport`; `requests` keeps what it received.

    Example:
        upstream = FakeUpstream(httpx)
        upstream.json({"choices": [...]})
        provider = OpenAIProvider("p", ..., http_client=upstream.client())
    """

    def __init__(self, http: ModuleType) -> None:
        self.http = http
        self.requests: list[Any] = []
        self._answers: deque[Callable[[Any], Any]] = deque()

    def client(self) -> Any:
        """An AsyncClient of the right module whose every request reaches this upstream."""
        return self.http.AsyncClient(transport=self.http.MockTransport(self._handle))

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the last request."""
        return json.loads(self.requests[-1].content)

    def json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._answers.append(lambda _: self.http.Response(status, json=body, headers=headers))

    def raw(self, content: bytes, status: int = 200, content_type: str = "text/html") -> None:
        headers = {"content-type": content_type}
        self._answers.append(lambda _: self.http.Response(status, content=content, headers=headers))

    def sse(self, payload: bytes) -> None:
        self.stream(self.byte_stream([payload]))

    def stream(self, stream: Any) -> None:
        """Answer with a streamed body: an `AsyncByteStream` such as `byte_stream` makes."""
        headers = {"content-type": "text/event-stream"}
        self._answers.append(lambda _: self.http.Response(200, stream=stream, headers=headers))

    def fail(self, error: type[Exception]) -> None:
        """Raise `error` in the transport, as a network failure does."""

        def raise_error(request: Any) -> Any:
            raise error("simulated", request=request)

        self._answers.append(raise_error)

    def byte_stream(self, chunks: list[bytes]) -> Any:
        """A streamed body that records how many chunks were read and whether it was closed."""

        class Tracked(self.http.AsyncByteStream):  # type: ignore[name-defined,misc]
            read = 0
            closed = False

            async def __aiter__(self) -> AsyncIterator[bytes]:
                for chunk in chunks:
                    self.read += 1
                    yield chunk

            async def aclose(self) -> None:
                self.closed = True

        return Tracked()

    def _handle(self, request: Any) -> Any:
        self.requests.append(request)
        return self._answers.popleft()(request)
