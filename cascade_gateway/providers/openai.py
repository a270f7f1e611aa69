"""The OpenAI chat-completions adapter, and the OpenAI wire mapping every adapter shares.

Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Together, ...) goes through
`OpenAIProvider`. The helpers below (request parameters, response and chunk mapping, counted
usage) are reused by the litellm adapter, whose responses are OpenAI-shaped, and in part by the
Anthropic adapter.

Stream ordering, for every adapter: content deltas first, then exactly one final
`Delta(finish_reason=..., usage=...)`. That last delta is the only one carrying a finish reason
and the only one carrying usage (counted, and flagged `Usage.counted`, when the upstream
reported none). A stream that ends before the upstream said why raises `ProviderError`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Iterable
from typing import Any

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
from cascade_gateway.providers.http import SseEvent, UpstreamClient

OPENAI_BASE_URL = "https://api.openai.com/v1"

# Body keys the adapters set themselves; `request.extra` must not override them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})

# Finish reasons outside OpenAI's four: its legacy function calls, and what TGI sends.
_FINISH_SYNONYMS = {"function_call": "tool_calls", "eos_token": "stop", "stop_sequence": "stop"}


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


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    if not raw:
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if prompt is None and completion is None:
        return None
    return Usage(input_tokens=prompt or 0, output_tokens=completion or 0)


def _logprobs(raw: dict[str, Any] | None) -> list[TokenLogprob] | None:
    content = raw.get("content") if raw else None
    if content is None:
        return None
    return [TokenLogprob(item["token"], item["logprob"]) for item in content]


def _finish_reason(raw: str) -> str:
    return _FINISH_SYNONYMS.get(raw, raw)


def completion_from_chat(
    response: Any, request: ChatRequest, *, model: str, provider: str
) -> Completion:
    """Map a chat-completions response (decoded JSON) to a `Completion`.

    Raises `ProviderError` if `response` is not one (a non-JSON body reaches us as a string).
    """
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices:
        raise ProviderError(
            f"upstream answered without choices: {str(response)[:200]!r}", provider=provider
        )
    try:
        return _completion(response, choices[0], request, model)
    except (AttributeError, TypeError, KeyError) as exc:
        raise ProviderError(
            f"malformed chat completion from upstream ({type(exc).__name__}: {exc})",
            provider=provider,
        ) from exc


def _completion(
    response: dict[str, Any], choice: dict[str, Any], request: ChatRequest, model: str
) -> Completion:
    message = choice.get("message") or {}
    text = message.get("content") or ""
    tool_calls = [
        ToolCall(
            id=call.get("id") or "",
            name=function.get("name") or "",
            arguments=function.get("arguments") or "",
        )
        for call in message.get("tool_calls") or ()
        if (function := call.get("function")) is not None
    ]
    raw_finish = choice.get("finish_reason")
    finish_reason = (
        _finish_reason(raw_finish) if raw_finish else ("tool_calls" if tool_calls else "stop")
    )
    usage = _usage(response.get("usage")) or counted_usage(request, text, tool_calls)
    return Completion(
        text=text,
        finish_reason=finish_reason,
        usage=usage,
        model=response.get("model") or model,
        tool_calls=tool_calls,
        logprobs=_logprobs(choice.get("logprobs")),
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

    def feed(self, chunk: dict[str, Any]) -> list[Delta]:
        """The deltas worth yielding for one chunk (decoded JSON; none for a usage-only or
        empty chunk)."""
        try:
            return self._feed(chunk)
        except (AttributeError, TypeError, KeyError) as exc:
            raise ProviderError(
                f"malformed chunk from upstream ({type(exc).__name__}: {exc})",
                provider=self._provider,
            ) from exc

    def _feed(self, chunk: dict[str, Any]) -> list[Delta]:
        # vLLM can report usage on every chunk; the last report is the total.
        if (usage := chunk.get("usage")) is not None:
            self._usage = _usage(usage) or self._usage
        deltas = []
        for choice in chunk.get("choices") or ():
            if (choice.get("index") or 0) != 0:
                continue
            if (delta := self._delta(choice)) is not None:
                deltas.append(delta)
            if raw_finish := choice.get("finish_reason"):
                self._finish_reason = _finish_reason(raw_finish)
        return deltas

    def _delta(self, choice: dict[str, Any]) -> Delta | None:
        """The choice's delta, or None if it brings nothing (a role-only or finishing chunk).
        Runs once per token: the usual chunk, text alone, takes the short way."""
        raw = choice.get("delta") or {}
        text = raw.get("content") or ""
        raw_calls = raw.get("tool_calls")
        raw_logprobs = choice.get("logprobs")
        if not (raw_calls or raw_logprobs):
            if not text:
                return None
            self._text.append(text)
            return Delta(text=text)
        calls = tuple(
            ToolCallDelta(
                index=index if (index := call.get("index")) is not None else position,
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
            for position, call in enumerate(raw_calls or ())
            if (function := call.get("function")) is not None
        )
        self._text.append(text)
        self._tool_calls.extend(calls)
        logprobs = tuple(_logprobs(raw_logprobs) or ())
        if not (text or calls or logprobs):
            return None
        return Delta(text=text, tool_calls=calls, logprobs=logprobs)

    def finish(self) -> Delta:
        """The closing delta; raises `ProviderError` if the upstream never gave a finish reason."""
        if self._finish_reason is None:
            raise ProviderError(
                "stream ended before the upstream sent a finish_reason", provider=self._provider
            )
        usage = self._usage or counted_usage(self._request, "".join(self._text), self._tool_calls)
        return Delta(finish_reason=self._finish_reason, usage=usage)


def _is_done(event: SseEvent) -> bool:
    return event.data == "[DONE]"


def _body(model: str, request: ChatRequest) -> dict[str, Any]:
    return {"model": model, "messages": request.messages, **chat_params(request)}


def error_message(body: Any) -> str | None:
    """The message of an OpenAI-style error body, `{"error": {"message": ...}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("message") or None
    return error if isinstance(error, str) else None


class OpenAIProvider:
    """An OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Together, ...), over one pooled
    HTTP client (`providers/http.py`, which says why not the SDK).

    Never retries: retrying and escalating are the gateway's job. An error event inside a
    stream (`data: {"error": ...}`, as OpenAI and vLLM send) ends it with a `ProviderError`.

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
        proxy_url: str | None = None,
    ) -> None:
        self.name = name
        # Local servers (vLLM, Ollama) need no key.
        key = api_key or os.environ.get("OPENAI_API_KEY")
        auth = {"authorization": f"Bearer {key}"} if key else {}
        self._http = UpstreamClient(
            name,
            base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL,
            headers={**auth, **(headers or {})},
            error_message=error_message,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            proxy_url=proxy_url,
        )

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        """One non-streamed chat completion."""
        response = await self._http.post_json("/chat/completions", _body(model, request))
        return completion_from_chat(response, request, model=model, provider=self.name)

    def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Stream deltas; the last one carries finish_reason and usage (see the module doc).
        Closing the generator early closes the HTTP response."""
        mapper = ChatChunkMapper(request, self.name)
        body = _body(model, request) | {"stream": True, "stream_options": {"include_usage": True}}

        def deltas_of(event: SseEvent) -> list[Delta]:
            return [] if _is_done(event) else mapper.feed(self._chunk(event))

        return self._http.post_deltas(
            "/chat/completions", body, deltas_of, last=_is_done, finish=mapper.finish
        )

    def _chunk(self, event: SseEvent) -> Any:
        chunk = event.json(self.name)
        if isinstance(chunk, dict) and "error" in chunk:
            message = error_message(chunk) or str(chunk["error"])
            error = chunk["error"]
            raise ProviderError(message, provider=self.name, body=error)
        return chunk

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()
