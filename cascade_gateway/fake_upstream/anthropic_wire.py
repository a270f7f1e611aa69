"""Anthropic Messages on the wire: request reading, `message` bodies, event streams."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.datastructures import Headers

from cascade_gateway.domain import last_user_text
from cascade_gateway.fake_upstream.answer import (
    Answer,
    BadRequest,
    Inbound,
    ScriptError,
    split_pieces,
)
from cascade_gateway.fake_upstream.script import ProtocolName
from cascade_gateway.tokens import count_messages

# Replies are scripted in OpenAI's words; other values pass through (e.g. "stop_sequence").
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

CREATED_AT = "2025-01-01T00:00:00Z"  # a fixed date keeps model listings deterministic

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _tool_input(name: str, arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ScriptError(f"tool {name!r}: Anthropic tool input must be a JSON object")
    return value


def _usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": answer.prompt_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _event(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


class AnthropicWire:
    """`POST /v1/messages` as api.anthropic.com speaks it."""

    name: ProtocolName = "anthropic"
    request_id_header = "request-id"
    malformed_frame = b'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n'

    def read(self, body: dict[str, Any]) -> Inbound:
        """Model, last user message text and stream flag."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: at least one message is required")
        if not isinstance(body.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        prompt = last_user_text(messages)
        return Inbound(model=model, prompt=prompt, stream=bool(body.get("stream")))

    def api_key(self, headers: Headers) -> str | None:
        """`x-api-key`, or a bearer token (the SDK's `auth_token`)."""
        if "x-api-key" in headers:
            return headers["x-api-key"]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """Tokens of the system prompt, messages and tools (OpenAI's framing, as an estimate)."""
        system = body.get("system")
        messages = [{"role": "system", "content": system}] if system else []
        return count_messages([*messages, *body["messages"]], body.get("tools"))

    def error(self, status: int, message: str) -> dict[str, Any]:
        """`{"type": "error", "error": {"type", "message"}}`."""
        default = "api_error" if status >= 500 else "invalid_request_error"
        error_type = _ERROR_TYPES.get(status, default)
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def models(self, names: list[str]) -> dict[str, Any]:
        """The `GET /v1/models` page (all of it)."""
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for name in names
        ]
        return {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}

    def body(self, answer: Answer, request: dict[str, Any]) -> dict[str, Any]:
        """A `message` object."""
        content: list[dict[str, Any]] = []
        if answer.text or not answer.tool_calls:
            content.append({"type": "text", "text": answer.text})
        content.extend(
            {"type": "tool_use", "id": _id("toolu_"), "name": n, "input": _tool_input(n, a)}
            for n, a in answer.tool_calls
        )
        return {
            "id": _id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": answer.model,
            "content": content,
            "stop_reason": STOP_REASONS.get(answer.finish_reason, answer.finish_reason),
            "stop_sequence": None,
            "usage": _usage(answer, answer.completion_tokens),
        }

    def frames(self, answer: Answer, request: dict[str, Any]) -> list[bytes]:
        """message_start, then per content block start / ping (after the first) / deltas / stop,
        then message_delta with the stop reason and output tokens, and message_stop."""
        message: dict[str, Any] = {
            "id": _id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": answer.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Like the real API: input counted up front, output reported by message_delta.
            "usage": _usage(answer, 1),
        }
        frames = [_event({"type": "message_start", "message": message})]
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        if answer.text or not answer.tool_calls:
            deltas = [{"type": "text_delta", "text": p} for p in split_pieces(answer.text)]
            blocks.append(({"type": "text", "text": ""}, deltas))
        for name, arguments in answer.tool_calls:
            _tool_input(name, arguments)  # refuse what the non-streamed body would refuse
            start = {"type": "tool_use", "id": _id("toolu_"), "name": name, "input": {}}
            # The real API opens every tool input with an empty fragment.
            pieces = ["", *split_pieces(arguments)]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            blocks.append((start, deltas))
        for index, (start, deltas) in enumerate(blocks):
            frames.append(
                _event({"type": "content_block_start", "index": index, "content_block": start})
            )
            if index == 0:
                frames.append(_event({"type": "ping"}))
            frames.extend(
                _event({"type": "content_block_delta", "index": index, "delta": delta})
                for delta in deltas
            )
            frames.append(_event({"type": "content_block_stop", "index": index}))
        stop_reason = STOP_REASONS.get(answer.finish_reason, answer.finish_reason)
        frames.append(
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": answer.completion_tokens},
                }
            )
        )
        frames.append(_event({"type": "message_stop"}))
        return frames
