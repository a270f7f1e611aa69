"""Build a provider adapter from configuration: one function, named by the upstream's kind."""

from __future__ import annotations

from typing import Literal

from cascade_gateway.providers.anthropic import AnthropicProvider
from cascade_gateway.providers.base import Provider
from cascade_gateway.providers.openai import OpenAIProvider

ProviderKind = Literal["openai", "anthropic", "litellm"]


def build_provider(
    name: str,
    kind: ProviderKind,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 600,
    connect_timeout_s: float = 5.0,
    max_connections: int = 1000,
    headers: dict[str, str] | None = None,
    proxy_url: str | None = None,
) -> Provider:
    """The adapter for one configured upstream account.

    litellm keeps its own process-wide connection pool, so `max_connections` does not apply
    to it; `headers` reach it as litellm's `extra_headers`; it takes its proxy from the
    environment, as httpx does, not from `proxy_url`.

    Example:
        provider = build_provider("openai", "openai", base_url=None, api_key=key)
    """
    if kind in ("openai", "anthropic"):
        adapter = OpenAIProvider if kind == "openai" else AnthropicProvider
        return adapter(
            name,
            base_url=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            headers=headers,
            proxy_url=proxy_url,
        )
    if kind == "litellm":
        # Imported only when configured: litellm costs seconds and hundreds of MB per worker.
        from cascade_gateway.providers.litellm import LiteLLMProvider

        return LiteLLMProvider(
            name,
            api_base=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            extra={"extra_headers": headers} if headers else {},
        )
    raise ValueError(f"unknown provider kind {kind!r}; expected openai, anthropic or litellm")
