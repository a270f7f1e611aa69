"""The OpenAI chat-completions adapter, and the OpenAI wire mapping every adapter shares.

Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Together, ...) goes through
`OpenAIProvider`. The helpers below (request parameters, response and chunk mapping, error
translation, `retry-after` parsing, counted usage) are reused by the litellm adapter, whose
responses are OpenAI-shaped, and in part by the Anthropic adapter.

Stream ordering, for every adapter: content deltas first, then exactly one final
`Delta(finish_reason=..., usage=...)`. That last delta is the only one carrying a finish reason
and the only one carrying usage (counted, and flagged `Usage.counted`, when the upstream
reported none). A stream that ends before the upstream said why raises `ProviderError`.
"""

from __future__ import annotations

import email.utils
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import openai

from cascade_gateway import tokens
from cascade_gateway.domain import (
    ChatRequest,
    Completion,
    Delta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from cascade_gateway.errors import ProviderError

# What the SDK (or the HTTP layer under it, mid-stream) raises. litellm's exceptions subclass
# openai's, so the litellm adapter catches and translates the same tuple.
OPENAI_ERRORS = (openai.OpenAIError, httpx.HTTPError, json.JSONDecodeError)

# Body keys the adapters set themselves; `request.extra` must not override them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})

# Finish reasons outside OpenAI's four: its legacy function calls, and what TGI sends.
_FINISH_SYNONYMS = {"function_call": "tool_calls", "eos_token": "stop", "stop_sequence": "stop"}


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def translate_openai_error(exc: Exception, provider: str) -> ProviderError:
    """The gateway's `ProviderError` for an exception from the openai SDK (or litellm)."""
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        if (disguised := _connection_failure(exc)) is not None:
            return ProviderError(f"connection failed: {disguised}", provider=provider)
        return ProviderError(f"timed out: {exc}", provider=provider, timed_out=True)
    if isinstance(exc, openai.APIStatusError):
        # litellm rebuilds the response without the upstream's headers and keeps them aside.
        headers = getattr(exc, "litellm_response_headers", None) or exc.response.headers
        return ProviderError(
            exc.message,
            provider=provider,
            status=exc.status_code,
            body=exc.body,
            retry_after=parse_retry_after(headers),
        )
    if isinstance(exc, json.JSONDecodeError):
        return ProviderError(f"malformed JSON from upstream: {exc}", provider=provider)
    # Checked before APIError: litellm gives connection errors a made-up status of 500.
    if isinstance(exc, openai.APIConnectionError | httpx.HTTPError):
        return ProviderError(f"connection failed: {exc}", provider=provider)
    if isinstance(exc, openai.APIError):
        # An error frame inside a 200 stream has no status; litellm's APIError carries one.
        status = getattr(exc, "status_code", None)
        return ProviderError(exc.message, provider=provider, status=status, body=exc.body)
    return ProviderError(str(exc) or type(exc).__name__, provider=provider)


def _connection_failure(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error behind a "timeout", if that is what it is: the aiohttp
    transport reports a refused or dropped connection as `httpx.ConnectTimeout`."""
    cause: BaseException | None = exc
    while cause is not None:
        kind = type(cause)
        if kind.__module__.startswith("aiohttp") and "Timeout" not in kind.__name__:
            return cause
        cause = cause.__cause__
    return None


def chat_params(request: ChatRequest) -> dict[str, Any]:
    """The chat-completions body for `request`, except `model`, `messages` and streaming.

    `request.extra` passes through; the request's own fields win over it. `max_tokens` is sent
    as `max_tokens`, unless `extra` names `max_completion_tokens` (newer OpenAI models refuse
    the old name): then only that is sent, valued from `extra` or, if that is None, from
    `request.max_tokens`.
    """
    extra = {key: value for key, value in request.extra.items() if key not in _RESERVED}
    params: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
    }
    if "max_completion_tokens" in extra:
        limit = extra.pop("max_completion_tokens")
        params["max_completion_tokens"] = limit if limit is not None else request.max_tokens
    else:
        params["max_tokens"] = request.max_tokens
    if request.logprobs:
        # top_logprobs without logprobs is a 400 at OpenAI, so it only rides along.
        params["logprobs"] = True
        params["top_logprobs"] = request.top_logprobs
    return {**extra, **{key: value for key, value in params.items() if value is not None}}


def counted_usage(
    request: ChatRequest, text: str, tool_calls: Iterable[ToolCall | ToolCallDelta] = ()
) -> Usage:
    """Usage we counted ourselves, for an upstream that reported none."""
    output = text + "".join(f"{call.name or ''}{call.arguments}" for call in tool_calls)
    return Usage(
        input_tokens=tokens.count_messages(request.messages, request.tools),
        output_tokens=tokens.count_text(output),
        counted=True,
    )


def _field(obj: Any, name: str) -> Any:
    """`name` of an SDK model or of a plain dict (litellm hands back either), else None."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _usage(raw: Any) -> Usage | None:
    prompt, completion = _field(raw, "prompt_tokens"), _field(raw, "completion_tokens")
    if prompt is None and completion is None:
        return None
    return Usage(input_tokens=prompt or 0, output_tokens=completion or 0)


def _logprobs(raw: Any) -> list[TokenLogprob] | None:
    content = _field(raw, "content")
    if content is None:
        return None
    return [TokenLogprob(_field(item, "token"), _field(item, "logprob")) for item in content]


def _finish_reason(raw: str) -> str:
    return _FINISH_SYNONYMS.get(raw, raw)


def completion_from_chat(
    response: Any, request: ChatRequest, *, model: str, provider: str
) -> Completion:
    """Map a chat-completions response (openai or litellm object) to a `Completion`.

    Raises `ProviderError` if `response` is not one (a non-JSON body reaches us as a string).
    """
    choices = _field(response, "choices")
    if not choices:
        raise ProviderError(
            f"upstream answered without choices: {str(response)[:200]!r}", provider=provider
        )
    choice = choices[0]
    message = _field(choice, "message")
    text = _field(message, "content") or ""
    tool_calls = [
        ToolCall(
            id=_field(call, "id") or "",
            name=_field(function, "name") or "",
            arguments=_field(function, "arguments") or "",
        )
        for call in _field(message, "tool_calls") or ()
        if (function := _field(call, "function")) is not None
    ]
    raw_finish = _field(choice, "finish_reason")
    finish_reason = (
        _finish_reason(raw_finish) if raw_finish else ("tool_calls" if tool_calls else "stop")
    )
    usage = _usage(_field(response, "usage")) or counted_usage(request, text, tool_calls)
    return Completion(
        text=text,
        finish_reason=finish_reason,
        usage=usage,
        model=_field(response, "model") or model,
        tool_calls=tool_calls,
        logprobs=_logprobs(_field(choice, "logprobs")),
    )


class ChatChunkMapper:
    """Turns chat-completion chunks into `Delta`s, holding the finish reason back to the end.

    Feed every chunk to `feed`, yield what it returns, then yield `finish()` once the upstream
    stream is exhausted: that last delta carries the finish reason and the usage (counted if
    the upstream sent none).
    """

    def __init__(self, request: ChatRequest, provider: str) -> None:
        self._request = request
        self._provider = provider
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        # What was produced, to count usage if the upstream reports none.
        self._text: list[str] = []
        self._tool_calls: list[ToolCallDelta] = []

    def feed(self, chunk: Any) -> list[Delta]:
        """The deltas worth yielding for one chunk (none for a usage-only or empty chunk)."""
        # vLLM can report usage on every chunk; the last report is the total.
        self._usage = _usage(_field(chunk, "usage")) or self._usage
        deltas = []
        for choice in _field(chunk, "choices") or ():
            if (_field(choice, "index") or 0) != 0:
                continue
            delta = self._delta(choice)
            if delta.text or delta.tool_calls or delta.logprobs:
                deltas.append(delta)
            if raw_finish := _field(choice, "finish_reason"):
                self._finish_reason = _finish_reason(raw_finish)
        return deltas

    def _delta(self, choice: Any) -> Delta:
        raw = _field(choice, "delta")
        text = _field(raw, "content") or ""
        calls = tuple(
            ToolCallDelta(
                index=index if (index := _field(call, "index")) is not None else position,
                id=_field(call, "id"),
                name=_field(function, "name"),
                arguments=_field(function, "arguments") or "",
            )
            for position, call in enumerate(_field(raw, "tool_calls") or ())
            if (function := _field(call, "function")) is not None
        )
        self._text.append(text)
        self._tool_calls.extend(calls)
        logprobs = tuple(_logprobs(_field(choice, "logprobs")) or ())
        return Delta(text=text, tool_calls=calls, logprobs=logprobs)

    def finish(self) -> Delta:
        """The closing delta; raises `ProviderError` if the upstream never gave a finish reason."""
        if self._finish_reason is None:
            raise ProviderError(
                "stream ended before the upstream sent a finish_reason", provider=self._provider
            )
        usage = self._usage or counted_usage(self._request, "".join(self._text), self._tool_calls)
        return Delta(finish_reason=self._finish_reason, usage=usage)


def _body(model: str, request: ChatRequest) -> dict[str, Any]:
    return {"model": model, "messages": request.messages, **chat_params(request)}


class OpenAIProvider:
    """An OpenAI-compatible upstream, through one pooled `openai.AsyncOpenAI` client.

    The SDK never retries (`max_retries=0`): retrying and escalating are the gateway's job.
    Calls go through the SDK's plain `post` with JSON in and dicts out: the SDK still signs,
    sends, decodes SSE and turns error statuses into its exceptions, but skips validating the
    body against its typed parameters and building typed response objects, which cost about a
    millisecond per call and which the mapping below does not need.

    Example:
        provider = OpenAIProvider("vllm", base_url="http://gpu-1:8000/v1", api_key=None)
        completion = await provider.complete("qwen2.5-7b", ChatRequest(messages=[...]))
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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        # Fail fast on an unreachable host (so the cascade can move on) but let generation run.
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, connect_timeout_s))
        if http_client is None:
            # aiohttp under the SDK's httpx interface: httpcore's pool walks every connection
            # on every event, which measured as the gateway's largest cost under concurrency.
            http_client = openai.DefaultAioHttpClient(
                timeout=timeout,
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            )
        self._client = openai.AsyncOpenAI(
            # Local servers (vLLM, Ollama) need no key, but the SDK refuses to start without one.
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "no-key",
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=headers,
            http_client=http_client,
        )

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        """One non-streamed chat completion."""
        try:
            response = await self._client.post(
                "/chat/completions", cast_to=object, body=_body(model, request)
            )
        except OPENAI_ERRORS as exc:
            raise translate_openai_error(exc, self.name) from exc
        return completion_from_chat(response, request, model=model, provider=self.name)

    async def stream(self, model: str, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream deltas; the last one carries finish_reason and usage (see the module doc)."""
        mapper = ChatChunkMapper(request, self.name)
        body = _body(model, request) | {"stream": True, "stream_options": {"include_usage": True}}
        try:
            chunks = await self._client.post(
                "/chat/completions",
                cast_to=object,
                body=body,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            # Leaving this block early (the consumer closed us) closes the HTTP response.
            async with chunks:
                async for chunk in chunks:
                    for delta in mapper.feed(chunk):
                        yield delta
        except OPENAI_ERRORS as exc:
            raise translate_openai_error(exc, self.name) from exc
        yield mapper.finish()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.close()
