"""OpenAI's chat completions wire format: parsing requests, rendering responses and chunks.

The only module that knows OpenAI's JSON. Unknown request fields are accepted and passed through
to upstreams, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cascade_gateway.cascade.trace import Trace
from cascade_gateway.domain import ChatRequest, Completion, Delta, TokenLogprob, Usage
from cascade_gateway.errors import InvalidRequest

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The message as sent (fields it left out stay out), extra fields included.

        What `model_dump(exclude_unset=True)` gives, without running pydantic's serializer:
        every request converts its messages, and after an idle spell the serializer's code is
        cold, which made this step cost tens of microseconds.
        """
        message: dict[str, Any] = {"role": self.role}
        if "content" in self.model_fields_set:
            message["content"] = self.content
        if self.model_extra:
            message.update(self.model_extra)
        return message


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions body."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported: a cascade returns one validated answer")
        return n

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, fmt: dict[str, Any] | None) -> dict[str, Any] | None:
        if fmt is not None and fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be one of 'text', 'json_object', 'json_schema'")
        if (
            fmt
            and fmt.get("type") == "json_schema"
            and not isinstance(fmt.get("json_schema"), dict)
        ):
            raise ValueError("json_schema response_format needs a 'json_schema' object")
        return fmt

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def to_domain(self) -> ChatRequest:
        """The cascade's view of this request."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return ChatRequest(
            messages=[m.to_dict() for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            tools=self.tools,
            tool_choice=self.tool_choice,
            response_format=self.response_format,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
            extra=dict(self.model_extra or {}),
        )


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Parse and validate a request body, raising InvalidRequest in OpenAI's words."""
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        )
    param = ".".join(str(p) for p in error["loc"]) or None
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if error["type"] == "model_type":
        return InvalidRequest("The request body must be a JSON object.")
    message = error["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"Invalid value for '{param}': {message}", param=param)


def _logprobs(items: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t.token, "logprob": t.logprob, "bytes": None, "top_logprobs": []}
            for t in items
        ],
        "refusal": None,
    }


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def cascade_summary(trace: Trace) -> dict[str, Any]:
    """The extra `cascade` field: enough to see cost and decision without fetching the trace."""
    return {
        "request_id": trace.request_id,
        "route": trace.route,
        "model_used": trace.model_used,
        "outcome": trace.outcome,
        "models_tried": [a.model for a in trace.attempts],
        "cost_usd": trace.cost_usd,
        "baseline_cost_usd": trace.baseline_cost_usd,
        "savings_usd": trace.savings_usd,
        "quality_score": trace.quality_score,
        "quality_threshold": trace.quality_threshold,
        "rejection_reason": trace.rejection_reason,
    }


def completion_body(
    request: ChatCompletionRequest, completion: Completion, trace: Trace
) -> dict[str, Any]:
    """A `chat.completion` object, plus our `cascade` field (the SDK keeps unknown fields)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.text or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in completion.tool_calls
        ]
    return {
        "id": completion_id(trace.request_id),
        "object": "chat.completion",
        "created": int(trace.created_at),
        "model": trace.model_used or request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": _logprobs(completion.logprobs or []) if request.logprobs else None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": _usage(completion.usage),
        "system_fingerprint": None,
        "cascade": cascade_summary(trace),
    }


def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


class ChunkWriter:
    """Renders `chat.completion.chunk` objects for one streamed response."""

    def __init__(self, request: ChatCompletionRequest, request_id: str, model: str) -> None:
        self._request = request
        self._base = {
            "id": completion_id(request_id),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._base, "choices": choices, **extra}

    def role(self) -> dict[str, Any]:
        """The opening chunk, as OpenAI sends it."""
        delta = {"role": "assistant", "content": "", "refusal": None}
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def delta(self, delta: Delta) -> dict[str, Any] | None:
        """The chunk for one upstream delta, or None if it carries nothing to show."""
        body: dict[str, Any] = {}
        if delta.text:
            body["content"] = delta.text
        if delta.tool_calls:
            body["tool_calls"] = [_tool_call_fragment(f) for f in delta.tool_calls]
        if not body and not delta.finish_reason:
            return None
        logprobs = _logprobs(delta.logprobs) if self._request.logprobs and delta.logprobs else None
        choice = {
            "index": 0,
            "delta": body,
            "logprobs": logprobs,
            "finish_reason": delta.finish_reason,
        }
        return self._chunk([choice])

    def usage(self, usage: Usage, trace: Trace) -> dict[str, Any]:
        """The final `choices: []` chunk that `stream_options.include_usage` asks for."""
        return self._chunk([], usage=_usage(usage), cascade=cascade_summary(trace))


def _tool_call_fragment(fragment: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"index": fragment.index}
    if fragment.id:
        out["id"] = fragment.id
        out["type"] = "function"
    function: dict[str, Any] = {}
    if fragment.name:
        function["name"] = fragment.name
    if fragment.arguments or fragment.name:
        function["arguments"] = fragment.arguments
    if function:
        out["function"] = function
    return out
