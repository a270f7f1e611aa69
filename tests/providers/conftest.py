"""Adapters wired to scripted upstreams: real HTTP servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cascade_gateway.providers.anthropic import AnthropicProvider
from cascade_gateway.providers.openai import OpenAIProvider
from tests.providers.wire import FakeUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
def openai_upstream(upstream: FakeUpstream) -> FakeUpstream:
    return upstream


@pytest.fixture
async def openai_provider(openai_upstream: FakeUpstream) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(
        "openai-test",
        base_url=openai_upstream.url + "/v1",
        api_key="sk-test",
        headers={"x-team": "search"},
    )
    yield provider
    await provider.aclose()


@pytest.fixture
def anthropic_upstream(upstream: FakeUpstream) -> FakeUpstream:
    return upstream


@pytest.fixture
async def anthropic_provider(anthropic_upstream: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(
        "anthropic-test", base_url=anthropic_upstream.url, api_key="sk-ant-test"
    )
    yield provider
    await provider.aclose()
