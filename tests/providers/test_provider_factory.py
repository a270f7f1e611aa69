"""build_provider: one adapter per configured upstream kind."""

from __future__ import annotations

import pytest

from cascade_gateway.providers.anthropic import AnthropicProvider
from cascade_gateway.providers.openai import OpenAIProvider
from cascade_gateway.providers.registry import build_provider


@pytest.mark.parametrize(
    ("kind", "adapter"), [("openai", OpenAIProvider), ("anthropic", AnthropicProvider)]
)
async def test_build_provider_returns_the_adapter_for_its_kind(kind: str, adapter: type) -> None:
    provider = build_provider("main", kind, base_url="http://127.0.0.1:9/v1", api_key="k")  # type: ignore[arg-type]

    assert isinstance(provider, adapter)
    assert provider.name == "main"
    await provider.aclose()


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider kind"):
        build_provider("x", "cohere", api_key="k")  # type: ignore[arg-type]
