"""The litellm adapter: every upstream the other adapters do not speak (Bedrock, Vertex, ...).

litellm is imported only when a `LiteLLMProvider` is built: importing it costs seconds and
hundreds of MB, which a gateway using only the OpenAI and Anthropic adapters never pays.
Its responses are OpenAI-shaped, so they are mapped by the OpenAI adapter's helpers.

`drop_params` is on by default: a parameter the target model lacks (logprobs,
response_format, ...) is dropped instead of failing the call. The cascade's validators are the
safety net (a draft that ignored a JSON format fails validation and escalates), and a missing
`Completion.logprobs` already means "unknown" to them. Set `extra={"drop_params": False}` to
fail fast instead. litellm's own retries are off: the gateway owns retries.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from types import ModuleType
from typing import Any

import httpx
import openai

from cascade_gateway.domain import ChatRequest, Completion, Delta
from cascade_gateway.errors import ProviderError
from cascade_gateway.providers.http import parse_retry_after
from cascade_gateway.providers.openai import ChatChunkMapper, chat_params, completion_from_chat

# What litellm raises: its exceptions subclass the openai SDK's, over httpx.
OPENAI_ERRORS = (openai.OpenAIError, httpx.HTTPError, json.JSONDecodeError)

# OpenAI request parameters litellm maps per provider, so they go to it as keyword arguments.
# Anything else from `request.extra` travels in `extra_body`: litellm also takes endpoints and
# credentials as keyword arguments (api_base, api_key, extra_headers, ...), which a client's
# request must never be able to set.
_REQUEST_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "modalities",
        "prediction",
        "audio",
        "web_search_options",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "store",
    }
)


def _import_litellm() -> ModuleType:
    # Without this, importing litellm fetches its model price map over the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # Its "Give Feedback / Get Help" banner on every error is noise in a server's output.
    litellm.suppress_debug_info = True
    return litellm


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


class LiteLLMProvider:
    """Any model litellm supports, named the litellm way (`bedrock/...`, `openai/...`).

    `extra` goes into every `litellm.acompletion` call (provider credentials, `extra_headers`,
    `drop_params`, ...). litellm pools and caches its own HTTP clients, process-wide.

    Example:
        provider = LiteLLMProvider("bedrock", api_base=None, api_key=None, timeout_s=60,
                                   extra={"aws_region_name": "us-east-1"})
        completion = await provider.complete("bedrock/amazon.nova-lite-v1:0", request)
    """

    def __init__(
        self,
        name: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        # Imported here, not on first call, so the import's seconds are paid at startup.
        self._litellm = _import_litellm()
        self._options: dict[str, Any] = {
            "api_base": api_base,
            "api_key": api_key,
            "timeout": timeout_s,
            "max_retries": 0,
            "num_retries": 0,
            "drop_params": True,
            **(extra or {}),
        }

    def _arguments(self, model: str, request: ChatRequest) -> dict[str, Any]:
        params = chat_params(request)
        arguments = {key: value for key, value in params.items() if key in _REQUEST_PARAMS}
        if extra_body := {k: v for k, v in params.items() if k not in _REQUEST_PARAMS}:
            arguments["extra_body"] = extra_body
        return {**arguments, **self._options, "model": model, "messages": request.messages}

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        """One non-streamed call through `litellm.acompletion`."""
        try:
            response = await self._litellm.acompletion(**self._arguments(model, request))
        except OPENAI_ERRORS as exc:
            raise translate_openai_error(exc, self.name) from exc
        return completion_from_chat(_as_dict(response), request, model=model, provider=self.name)

    async def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Stream deltas; the last one carries finish_reason and usage."""
        mapper = ChatChunkMapper(request, self.name)
        chunks = None
        try:
            chunks = await self._litellm.acompletion(
                **self._arguments(model, request),
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in chunks:
                for delta in mapper.feed(_as_dict(chunk)):
                    yield delta
        except OPENAI_ERRORS as exc:
            raise translate_openai_error(exc, self.name) from exc
        finally:
            if chunks is not None:
                # Closes the upstream response when the consumer stops early.
                await chunks.aclose()
        yield mapper.finish()

    async def aclose(self) -> None:
        """Nothing of ours to release: litellm's HTTP clients are shared by the process."""


def _as_dict(response: Any) -> Any:
    """litellm's response object as the decoded JSON the OpenAI mapping reads."""
    if isinstance(response, dict):
        return response
    return response.model_dump(warnings=False)
