"""The Anthropic Messages API adapter: OpenAI-format requests in, the gateway's types out.

Mapping decisions, where the two APIs differ:
- Every system (or developer) message is joined into Anthropic's single `system` prompt.
- Consecutive same-role messages are merged (Anthropic requires alternation); `role: tool`
  results become `tool_result` blocks of a user message.
- `max_tokens` is required by Anthropic: `DEFAULT_MAX_TOKENS` when the request sets none.
- Anthropic has no JSON mode: a `response_format` of json_object or json_schema appends an
  instruction (with the schema, if any) to the system prompt instead.
- `temperature` is clamped to Anthropic's 0..1. OpenAI-only parameters in `request.extra`
  (seed, penalties, ...) are dropped; Anthropic's own (`_PASSTHROUGH`) pass through.
- No logprobs: `Completion.logprobs` is None and deltas carry none.
- A message this API cannot take (an image that is not a URL or base64 data URL, tool-call
  arguments that are not a JSON object) raises `ProviderError` with status 400 before any call,
  so the cascade can try a tier that can.

The transport is `providers/http.py`, not the anthropic SDK: the SDK's request machinery cost
several times the gateway's own client's CPU per call on the hot path, and the wire is small
(POST `/v1/messages`, JSON or server-sent events back).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from typing import Any

from cascade_gateway.domain import (
    ChatRequest,
    Completion,
    Delta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from cascade_gateway.errors import ProviderError
from cascade_gateway.providers.http import SseEvent, UpstreamClient
from cascade_gateway.providers.openai import counted_usage

ANTHROPIC_BASE_URL = "https://api.anthropic.com"

ANTHROPIC_VERSION = "2023-06-01"
"""The Messages API version every request names (`anthropic-version`)."""

DEFAULT_MAX_TOKENS = 4096
"""Sent when the request sets no `max_tokens`, which Anthropic requires."""

JSON_INSTRUCTION = (
    "Respond with a single JSON value and nothing else: no prose, no Markdown code fences."
)

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# An error event inside a 200 stream has no HTTP status; Anthropic documents one per type.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}

# Cached prompt tokens are still prompt tokens; Anthropic reports them apart.
_INPUT_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")

# Messages API parameters with no OpenAI counterpart, taken from `request.extra` as they are.
_PASSTHROUGH = ("top_k", "metadata", "thinking", "service_tier")


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def _image(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url", "") if isinstance(image_url, dict) else str(image_url)
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, comma, data = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if url.startswith("data:") and comma and encoding == "base64" and media_type:
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    raise ValueError("an image must be an http(s) URL or a base64 data URL")


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        # Anthropic refuses empty text blocks.
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url")))
        else:
            raise ValueError(f"content part {kind!r} has no Anthropic equivalent")
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = json.loads(function.get("arguments") or "{}")
    if not isinstance(arguments, dict):
        raise ValueError(f"tool call {call.get('id')!r} arguments are not a JSON object")
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": function.get("name"),
        "input": arguments,
    }


def _system_and_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if text := _text(content):
                system.append(text)
            continue
        if role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id"),
                    "content": _text(content),
                }
            ]
        elif role == "assistant":
            blocks = _content_blocks(content)
            blocks += [_tool_use(call) for call in message.get("tool_calls") or ()]
        elif role == "user":
            blocks = _content_blocks(content)
        else:
            raise ValueError(f"messages with role {role!r} have no Anthropic equivalent")
        if not blocks:
            continue  # Anthropic refuses an empty message, and it says nothing anyway
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _json_instruction(response_format: dict[str, Any] | None) -> str | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return JSON_INSTRUCTION
    if kind == "json_schema":
        schema = (response_format or {}).get("json_schema", {}).get("schema")
        if schema is None:
            return JSON_INSTRUCTION
        return f"{JSON_INSTRUCTION} It must match this JSON schema: {json.dumps(schema)}"
    return None


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mapped = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            raise ValueError(f"tool type {tool.get('type')!r} has no Anthropic equivalent")
        function = tool.get("function") or {}
        entry = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        mapped.append(entry)
    return mapped


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    if choice not in _TOOL_CHOICES:
        raise ValueError(f"tool_choice {choice!r} has no Anthropic equivalent")
    return {"type": _TOOL_CHOICES[choice]}


def messages_body(request: ChatRequest) -> dict[str, Any]:
    """The Messages API body for `request`, except `model` and `stream`.

    Raises ValueError for content Anthropic cannot take.
    """
    system, turns = _system_and_messages(request.messages)
    if instruction := _json_instruction(request.response_format):
        system.append(instruction)
    body: dict[str, Any] = {
        "max_tokens": request.max_tokens
        or request.extra.get("max_completion_tokens")
        or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.tools:
        body["tools"] = _tools(request.tools)
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.extra.get("parallel_tool_calls") is False and request.tools:
        body["tool_choice"] = {**body.get("tool_choice", {"type": "auto"})}
        body["tool_choice"]["disable_parallel_tool_use"] = True
    if user := request.extra.get("user"):
        body["metadata"] = {"user_id": user}
    body.update({key: request.extra[key] for key in _PASSTHROUGH if key in request.extra})
    return body


def _is_stop(event: SseEvent) -> bool:
    return event.event == "message_stop"


def _reported_counts(raw: Any) -> dict[str, int]:
    """The token counts an Anthropic usage object reports (absent or null ones left out)."""
    if not isinstance(raw, dict):
        return {}
    fields = (*_INPUT_COUNTS, "output_tokens")
    return {field: value for field in fields if (value := raw.get(field)) is not None}


def _usage(counts: dict[str, int]) -> Usage:
    return Usage(
        input_tokens=sum(counts.get(field, 0) for field in _INPUT_COUNTS),
        output_tokens=counts.get("output_tokens", 0),
    )


def _finish_reason(stop_reason: str | None) -> str:
    return _STOP_REASONS.get(stop_reason or "", "stop")


def error_message(body: Any) -> str | None:
    """The message of an Anthropic error body, `{"type": "error", "error": {"message": ...}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("message") or None
    return error if isinstance(error, str) else None


def _whole_error_body(body: Any) -> Any:
    # Anthropic's error body carries `request_id` beside `error`: `ProviderError.body` keeps all.
    return body


class _EventMapper:
    """Turns Messages stream events (their parsed JSON) into `Delta`s; `finish()` gives the
    closing one."""

    def __init__(self, request: ChatRequest, provider: str) -> None:
        self._request = request
        self._provider = provider
        self._tool_ordinals: dict[int, int] = {}  # content block index -> tool call index
        self._tools_with_arguments: set[int] = set()
        # message_start reports every count, message_delta the ones that changed (cumulative).
        self._counts: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._stopped = False
        # What was produced, to count usage if the upstream reports none.
        self._text: list[str] = []
        self._tool_calls: list[ToolCallDelta] = []

    def feed(self, event: dict[str, Any]) -> Delta | None:
        """The delta worth yielding for one event, if any."""
        kind = event.get("type")
        if kind == "message_start":
            self._counts.update(_reported_counts((event.get("message") or {}).get("usage")))
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            return self._produced(self._block_start(event.get("index"), block))
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            return self._produced(self._block_delta(event.get("index"), delta))
        elif kind == "content_block_stop":
            ordinal = self._tool_ordinals.get(event.get("index", -1))
            # OpenAI always sends arguments; a tool called with no input streams none at all.
            if ordinal is not None and ordinal not in self._tools_with_arguments:
                return self._produced(Delta(tool_calls=(ToolCallDelta(ordinal, arguments="{}"),)))
        elif kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason")
            self._counts.update(_reported_counts(event.get("usage")))
        elif kind == "message_stop":
            self._stopped = True
        return None

    def _produced(self, delta: Delta | None) -> Delta | None:
        if delta is not None:
            self._text.append(delta.text)
            self._tool_calls.extend(delta.tool_calls)
        return delta

    def _block_start(self, index: Any, block: dict[str, Any]) -> Delta | None:
        kind = block.get("type")
        if kind == "tool_use":
            ordinal = self._tool_ordinals[index] = len(self._tool_ordinals)
            call = ToolCallDelta(ordinal, id=block.get("id"), name=block.get("name"))
            return Delta(tool_calls=(call,))
        if kind == "text" and (text := block.get("text")):
            return Delta(text=text)
        return None

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> Delta | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return Delta(text=delta.get("text") or "")
        ordinal = self._tool_ordinals.get(index)
        if kind == "input_json_delta" and ordinal is not None and delta.get("partial_json"):
            self._tools_with_arguments.add(ordinal)
            return Delta(tool_calls=(ToolCallDelta(ordinal, arguments=delta["partial_json"]),))
        return None  # thinking and signature deltas are not part of the answer

    def finish(self) -> Delta:
        """The closing delta; raises `ProviderError` if the stream was cut before message_stop."""
        if not self._stopped:
            raise ProviderError("stream ended before message_stop", provider=self._provider)
        usage = (
            _usage(self._counts)
            if self._counts
            else counted_usage(self._request, "".join(self._text), self._tool_calls)
        )
        return Delta(finish_reason=_finish_reason(self._stop_reason), usage=usage)


class AnthropicProvider:
    """Anthropic's Messages API, over one pooled HTTP client (`providers/http.py`, which says
    why not the SDK).

    Never retries: retrying and escalating are the gateway's job. Sends `x-api-key` (from
    `api_key`, else `ANTHROPIC_API_KEY`; none without either, so a keyless upstream such as a
    local proxy still works and a real one answers 401) and `anthropic-version`. An `error`
    event inside a stream ends it with a `ProviderError` carrying the status Anthropic
    documents for its error type.

    Example:
        provider = AnthropicProvider("anthropic", base_url=None, api_key=key)
        completion = await provider.complete("claude-haiku-4-5", ChatRequest(messages=[...]))
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600,
        connect_timeout_s: float = 5.0,
        max_connections: int = 1000,
        headers: dict[str, str] | None = None,
        proxy_url: str | None = None,
    ) -> None:
        self.name = name
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        auth = {"x-api-key": key} if key else {}
        self._http = UpstreamClient(
            name,
            base_url or os.environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_BASE_URL,
            headers={**auth, "anthropic-version": ANTHROPIC_VERSION, **(headers or {})},
            error_message=error_message,
            error_body=_whole_error_body,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            proxy_url=proxy_url,
        )

    def _body(self, model: str, request: ChatRequest) -> dict[str, Any]:
        try:
            return {"model": model, **messages_body(request)}
        except (ValueError, TypeError, AttributeError) as exc:
            # Malformed or unsupported messages: this upstream would refuse them, another may not.
            raise ProviderError(
                f"request cannot be sent to Anthropic: {exc}", provider=self.name, status=400
            ) from exc

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        """One non-streamed Messages call."""
        message = await self._http.post_json("/v1/messages", self._body(model, request))
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise ProviderError(
                f"upstream answered without content: {str(message)[:200]!r}", provider=self.name
            )
        blocks = [block for block in content if isinstance(block, dict)]
        text = "".join(block.get("text") or "" for block in blocks if block.get("type") == "text")
        tool_calls = [
            ToolCall(
                id=block.get("id") or "",
                name=block.get("name") or "",
                arguments=json.dumps(block.get("input", {})),
            )
            for block in blocks
            if block.get("type") == "tool_use"
        ]
        counts = _reported_counts(message.get("usage"))
        usage = _usage(counts) if counts else counted_usage(request, text, tool_calls)
        return Completion(
            text=text,
            finish_reason=_finish_reason(message.get("stop_reason")),
            usage=usage,
            model=message.get("model") or model,
            tool_calls=tool_calls,
        )

    def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Stream deltas; the last one carries finish_reason and usage. Closing the generator
        early closes the HTTP response."""
        body = self._body(model, request) | {"stream": True}
        mapper = _EventMapper(request, self.name)

        def deltas_of(event: SseEvent) -> list[Delta]:
            if event.event == "ping":
                return []
            data = self._event(event)
            if event.event == "error" or data.get("type") == "error":
                raise self._error_event(data)
            delta = mapper.feed(data)
            return [] if delta is None else [delta]

        return self._http.post_deltas(
            "/v1/messages", body, deltas_of, last=_is_stop, finish=mapper.finish
        )

    def _event(self, event: SseEvent) -> dict[str, Any]:
        data = event.json(self.name)
        if not isinstance(data, dict):
            raise ProviderError(
                f"malformed event from upstream: {event.data[:200]!r}", provider=self.name
            )
        return data

    def _error_event(self, data: dict[str, Any]) -> ProviderError:
        error = data.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        return ProviderError(
            error_message(data) or str(data)[:500],
            provider=self.name,
            status=_ERROR_TYPE_STATUS.get(kind) if isinstance(kind, str) else None,
            body=data,
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()
