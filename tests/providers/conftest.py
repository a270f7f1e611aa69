"""Adapters wired to scripted upstreams, and connection pools to scripted servers: real HTTP
servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from cascade_gateway.providers.anthropic import AnthropicProvider
from cascade_gateway.providers.connections import ConnectionPool, Origin
from cascade_gateway.providers.openai import OpenAIProvider
from tests.providers.raw_server import Answer, RawServer
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


ServerFactory = Callable[..., Awaitable[RawServer]]
PoolFactory = Callable[..., ConnectionPool]


@pytest.fixture
async def serve() -> AsyncIterator[ServerFactory]:
    """Starts a `RawServer` with the given answer (and TLS context); all stop after the test."""
    servers: list[RawServer] = []

    async def start(answer: Answer, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(answer, ssl_context)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()


@pytest.fixture
async def pool_for() -> AsyncIterator[PoolFactory]:
    """A `ConnectionPool` to a server's URL (keyword arguments pass through); closed after."""
    pools: list[ConnectionPool] = []

    def make(server: RawServer, **options: Any) -> ConnectionPool:
        options.setdefault("headers", {})
        pools.append(ConnectionPool(Origin.parse(server.url), **options))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.aclose()


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A local port whose listener never accepts and whose backlog is full: a connection to it
    hangs in the handshake, as to an unreachable host."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()
