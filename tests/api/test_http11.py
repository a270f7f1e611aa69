"""The HTTP/1.1 protocol the gateway runs uvicorn with: a response's head goes out with its
first body bytes, and every response still arrives whole."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from cascade_gateway.api.http11 import GatewayHttpProtocol

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server accepts them
    config = uvicorn.Config(app, http=GatewayHttpProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        # Forced: a test that failed may leave a request waiting forever.
        server.should_exit = server.force_exit = True
        await task


async def exchange(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return reader, writer


GET = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


async def test_a_json_response_arrives_whole_and_the_connection_stays_open():
    async def app(scope, receive, send):
        headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    async with serving(app) as port:
        reader, writer = await exchange(port, GET + GET)
        first = await reader.readuntil(b"{}")
        second = await reader.readuntil(b"{}")
        writer.close()

    for response in (first, second):
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 2\r\n" in response


async def test_the_head_waits_for_the_first_body_bytes_and_goes_out_with_them():
    release = asyncio.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serving(app) as port:
        reader, writer = await exchange(port, GET)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
        release.set()
        response = await reader.readuntil(b"0\r\n\r\n")
        writer.close()

    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked\r\n" in response
    assert b"\r\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n" in response


async def test_a_head_request_gets_its_head_though_no_body_is_written():
    async def app(scope, receive, send):
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    async with serving(app) as port:
        reader, writer = await exchange(port, b"HEAD / HTTP/1.1\r\nhost: t\r\n\r\n" + GET)
        head = await reader.readuntil(b"\r\n\r\n")
        then = await reader.readuntil(b"hello")
        writer.close()

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5\r\n" in head
    assert then.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_response_that_closes_the_connection_sends_its_head_first():
    async def app(scope, receive, send):
        headers = [(b"connection", b"close"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as port:
        reader, writer = await exchange(port, GET)
        response = await reader.read()
        writer.close()

    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert response.endswith(b"\r\n\r\n")
