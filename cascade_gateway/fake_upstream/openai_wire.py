"""OpenAI Chat Completions on the wire: request reading, `chat.completion` bodies, chunk streams."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.datastructures import Headers

from cascade_gateway.domain import last_user_text
from cascade_gateway.fake_upstream.answer import Answer, BadRequest, Inbound, split_pieces
from cascade_gateway.fake_upstream.script import ProtocolName
from cascade_gateway.tokens import count_messages

SYSTEM_FINGERPRINT = "fp_fake"

# status -> (error type, code), as the real API reports them.
_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _logprob_entry(token: str, logprob: float, top: int) -> dict[str, Any]:
    # The chosen token heads its own top list; made-up alternatives trail it, less likely.
    candidates = [(token, logprob)] + [(f"<alt{i}>", logprob - 4.0 - i) for i in range(1, top)]
    top_logprobs = [
        {"token": text, "logprob": value, "bytes": list(text.encode())}
        for text, value in candidates[:top]
    ]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": top_logprobs,
    }


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class OpenAIWire:
    """`POST /v1/chat/completions` as api.openai.com speaks it."""

    name: ProtocolName = "openai"
    request_id_header = "x-request-id"
    malformed_frame = b'data: {"id": "chatcmpl-broken", "choices": [{"delta": \n\n'

    def read(self, body: dict[str, Any]) -> Inbound:
        """Model, last user message text and stream flag."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        prompt = last_user_text(messages)
        return Inbound(model=model, prompt=prompt, stream=bool(body.get("stream")))

    def api_key(self, headers: Headers) -> str | None:
        """The bearer token."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """Tokens of the messages and tools, framed as OpenAI frames them."""
        return count_messages(body["messages"], body.get("tools"))

    def error(self, status: int, message: str) -> dict[str, Any]:
        """`{"error": {"message", "type", "param", "code"}}`."""
        error_type, code = _ERRORS.get(
            status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
        )
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def models(self, names: list[str]) -> dict[str, Any]:
        """The `GET /v1/models` list."""
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake-upstream"}
            for name in names
        ]
        return {"object": "list", "data": data}

    def body(self, answer: Answer, request: dict[str, Any]) -> dict[str, Any]:
        """A `chat.completion` object."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.text if answer.text or not answer.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_calls:
            message["tool_calls"] = [
                {"id": _id("call_"), "type": "function", "function": {"name": n, "arguments": a}}
                for n, a in answer.tool_calls
            ]
        logprobs = None
        if request.get("logprobs"):
            top = request.get("top_logprobs") or 0
            logprobs = {
                "content": [
                    _logprob_entry(token, lp, top)
                    for token, lp in answer.token_logprobs(split_pieces(answer.text))
                ],
                "refusal": None,
            }
        body: dict[str, Any] = {
            "id": _id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if answer.report_usage:
            body["usage"] = _usage(answer)
        return body

    def frames(self, answer: Answer, request: dict[str, Any]) -> list[bytes]:
        """`chat.completion.chunk` frames: role, content pieces, tool call fragments, finish,
        usage (when asked for with `stream_options.include_usage`), then `[DONE]`."""
        with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        with_usage = with_usage and answer.report_usage
        base: dict[str, Any] = {
            "id": _id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": answer.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if with_usage:
            # The real API puts `"usage": null` on every chunk once usage was asked for.
            base["usage"] = None

        def chunk(
            delta: dict[str, Any], logprobs: Any = None, finish_reason: str | None = None
        ) -> bytes:
            choice = {
                "index": 0,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
            return _frame({**base, "choices": [choice]})

        frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
        top = request.get("top_logprobs") or 0
        for token, lp in answer.token_logprobs(split_pieces(answer.text)):
            logprobs = None
            if request.get("logprobs"):
                logprobs = {"content": [_logprob_entry(token, lp, top)], "refusal": None}
            frames.append(chunk({"content": token}, logprobs))
        for index, (name, arguments) in enumerate(answer.tool_calls):
            opening = {
                "index": index,
                "id": _id("call_"),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            frames.append(chunk({"tool_calls": [opening]}))
            frames.extend(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in split_pieces(arguments)
            )
        frames.append(chunk({}, finish_reason=answer.finish_reason))
        if with_usage:
            frames.append(_frame({**base, "choices": [], "usage": _usage(answer)}))
        frames.append(b"data: [DONE]\n\n")
        return frames
