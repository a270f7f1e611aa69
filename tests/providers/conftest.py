"""Adapters wired to scripted upstreams: the real SDKs, with MockTransport as the network."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest

from cascade_gateway.providers.anthropic import AnthropicProvider
from cascade_gateway.providers.openai import OpenAIProvider
from tests.providers.wire import FakeUpstream


@pytest.fixture
def openai_upstream() -> FakeUpstream:
    return FakeUpstream(httpx)


@pytest.fixture
async def openai_provider(openai_upstream: FakeUpstream) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(
        "openai-test",
        base_url="https://api.openai.test/v1",
        api_key="sk-test",
        headers={"x-team": "search"},
        http_client=openai_upstream.client(),
    )
    yield provider
    await provider.aclose()


@pytest.fixture
def anthropic_upstream() -> FakeUpstream:
    return FakeUpstream(httpx2)


@pytest.fixture
async def anthropic_provider(anthropic_upstream: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(
        "anthropic-test",
        base_url="https://api.anthropic.test",
        api_key="sk-ant-test",
        http_client=anthropic_upstream.client(),
    )
    yield provider
    await provider.aclose()
