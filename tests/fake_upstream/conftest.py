"""One fake upstream for the whole folder, wiped before each test, and SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import openai
import pytest

from cascade_gateway.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.running() as up:
        yield up


@pytest.fixture
def up(running_upstream: FakeUpstream) -> FakeUpstream:
    running_upstream.clear()
    return running_upstream


@pytest.fixture
def client(up: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
async def async_client(up: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(up: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=up.url, api_key="k", max_retries=0) as client:
        yield client
