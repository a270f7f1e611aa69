"""The connection pool under the upstream client: HTTP/1.1 requests over kept-alive connections,
against servers that answer, stall, close and garble as each test scripts."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from cascade_gateway.domain import Delta
from cascade_gateway.providers.connections import ConnectionFailed, ConnectionPool, Origin
from cascade_gateway.providers.http import SseEvent, UpstreamClient
from tests.providers.conftest import PoolFactory, ServerFactory
from tests.providers.raw_server import CHUNKED_HEAD, Seen, chunk, json_answer
from tests.providers.wire import eventually, unused_port


async def answer_json(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(json_answer(b'{"n": %d}' % len(seen.body)))
    return True


async def never_answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    return True


async def answer_then_close(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(json_answer(b"{}", b"connection: close\r\n"))
    return False


async def post(pool: ConnectionPool, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await pool.post("/chat", body, accept="application/json")
    try:
        return response.status, await response.read()
    finally:
        response.release()


# --- requests and answers ------------------------------------------------------------------


async def test_the_request_carries_path_headers_and_body(serve: ServerFactory) -> None:
    server = await serve(answer_json)
    pool = ConnectionPool(Origin.parse(server.url + "/v1/"), headers={"authorization": "Bearer k"})

    status, body = await post(pool, b'{"q": 1}')
    await pool.aclose()

    seen = server.seen[0]
    assert (status, body) == (200, b'{"n": 8}')
    assert seen.request_line == b"POST /v1/chat HTTP/1.1"
    assert seen.header("host") == server.url.removeprefix("http://")
    assert seen.header("authorization") == "Bearer k"
    assert seen.header("accept") == "application/json"
    assert seen.header("accept-encoding") == "identity"
    assert seen.header("content-length") == "8"
    assert seen.body == b'{"q": 1}'


async def test_status_and_headers_come_with_the_answer(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def limited(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nX-Dup: a\r\nX-Dup: b\r\n"
            b"content-length: 2\r\n\r\n{}"
        )
        return True

    pool = pool_for(await serve(limited))

    response = await pool.post("/chat", b"{}", accept="application/json")
    response.release()

    assert response.status == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-dup"] == "a, b"


async def test_a_chunked_body_is_read_whole(serve: ServerFactory, pool_for: PoolFactory) -> None:
    async def chunked(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"hello, ") + chunk(b"world") + chunk(b""))
        return True

    assert await post(pool_for(await serve(chunked))) == (200, b"hello, world")


async def test_a_body_without_a_length_ends_when_the_server_closes(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def until_close(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        return False

    server = await serve(until_close)
    pool = pool_for(server)

    assert await post(pool) == (200, b"all of it")
    assert await post(pool) == (200, b"all of it")
    assert server.connections == 2


async def test_body_parts_are_read_as_they_arrive(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    go_on = asyncio.Event()

    async def in_two_parts(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"first"))
        await go_on.wait()
        writer.write(chunk(b"second") + chunk(b""))
        return True

    pool = pool_for(await serve(in_two_parts))
    response = await pool.post("/chat", b"{}", accept="text/event-stream")
    try:
        assert await response.read_some() == b"first"
        go_on.set()
        assert await response.read_some() == b"second"
        assert await response.read_some() == b""
    finally:
        response.release()


async def test_a_large_body_arrives_intact(serve: ServerFactory, pool_for: PoolFactory) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: past the point where reading pauses

    async def large(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(json_answer(big))
        await writer.drain()
        return True

    pool = pool_for(await serve(large))
    response = await pool.post("/chat", b"{}", accept="application/json")
    try:
        await asyncio.sleep(0.05)  # let it all arrive unread
        assert await response.read() == big
    finally:
        response.release()


# --- reuse -------------------------------------------------------------------------------


async def test_a_kept_alive_connection_carries_the_next_request(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    server = await serve(answer_json)
    pool = pool_for(server)

    for _ in range(3):
        await post(pool)

    assert [seen.connection for seen in server.seen] == [0, 0, 0]


async def test_an_answer_that_says_close_is_not_reused(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    server = await serve(answer_then_close)
    pool = pool_for(server)

    await post(pool)
    await post(pool)

    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def answer_and_hang_up(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(json_answer())  # says keep-alive, then closes anyway
        return False

    server = await serve(answer_and_hang_up)
    pool = pool_for(server)

    await post(pool)
    assert await eventually(lambda: server.open_now == 0)
    await asyncio.sleep(0.05)  # the close reaches the client

    assert await post(pool) == (200, b'{"ok": true}')
    assert server.connections == 2


async def test_a_connection_idle_too_long_is_not_reused(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    server = await serve(answer_json)
    pool = pool_for(server, idle_s=0.05)

    await post(pool)
    await asyncio.sleep(0.1)
    await post(pool)

    assert [seen.connection for seen in server.seen] == [0, 1]
    assert await eventually(lambda: server.closed_by_client == 1)


async def test_an_answer_released_before_its_end_closes_the_connection(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def endless(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: 1\n\n"))
        return True  # then waits for another request, or for the client to go

    server = await serve(endless)
    pool = pool_for(server)

    response = await pool.post("/chat", b"{}", accept="text/event-stream")
    assert await response.read_some() == b"data: 1\n\n"
    response.release()

    assert await eventually(lambda: server.closed_by_client == 1)


async def test_an_answer_finished_by_protocol_returns_its_connection_once_the_body_ends(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def done_then_end(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: [DONE]\n\n"))
        await asyncio.sleep(0.02)
        writer.write(chunk(b""))
        return True

    server = await serve(done_then_end)
    pool = pool_for(server)

    for _ in range(2):
        response = await pool.post("/chat", b"{}", accept="text/event-stream")
        assert await response.read_some() == b"data: [DONE]\n\n"
        response.finished_by_protocol()
        response.release()
        await asyncio.sleep(0.05)  # the body's end arrives

    assert [seen.connection for seen in server.seen] == [0, 0]


async def test_a_connection_paused_on_an_unread_tail_still_returns_to_the_pool(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    tail = b"x" * (1024 * 1024)  # past the point where reading pauses

    async def done_then_a_long_tail(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: [DONE]\n\n") + chunk(tail) + chunk(b""))
        await writer.drain()
        return True

    server = await serve(done_then_a_long_tail)
    pool = pool_for(server, linger_s=0.5)

    for _ in range(2):
        response = await pool.post("/chat", b"{}", accept="text/event-stream")
        await asyncio.sleep(0.05)  # the tail arrives unread and reading pauses
        response.finished_by_protocol()
        response.release()
        await asyncio.sleep(0.05)

    assert [seen.connection for seen in server.seen] == [0, 0]


async def test_an_answer_finished_by_protocol_whose_body_never_ends_is_closed(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def done_but_open(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: [DONE]\n\n"))
        return True

    server = await serve(done_but_open)
    pool = pool_for(server, linger_s=0.05)

    response = await pool.post("/chat", b"{}", accept="text/event-stream")
    await response.read_some()
    response.finished_by_protocol()
    response.release()

    assert await eventually(lambda: server.closed_by_client == 1)


async def test_at_most_max_connections_are_open_and_the_rest_wait(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def slow(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(json_answer())
        return True

    server = await serve(slow)
    pool = pool_for(server, max_connections=2)

    answers = await asyncio.gather(*(post(pool) for _ in range(6)))

    assert answers == [(200, b'{"ok": true}')] * 6
    assert server.most_open == 2
    assert server.connections == 2


async def test_a_caller_cancelled_as_its_turn_comes_passes_the_turn_on(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    pool = pool_for(await serve(answer_json), max_connections=1)
    first = await pool.post("/chat", b"{}", accept="application/json")
    second = asyncio.create_task(post(pool))
    third = asyncio.create_task(post(pool))
    await asyncio.sleep(0.01)  # both wait for the one connection

    await first.read()
    first.release()  # wakes the second caller...
    second.cancel()  # ...which leaves before it runs

    assert await asyncio.wait_for(third, 1) == (200, b'{"n": 2}')


async def test_a_request_cancelled_while_waiting_closes_its_connection(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    server = await serve(never_answer)
    pool = pool_for(server)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await post(pool)

    assert await eventually(lambda: server.closed_by_client == 1)


# --- failures ------------------------------------------------------------------------------


async def test_a_refused_connection_fails_to_connect(pool_for: PoolFactory) -> None:
    pool = ConnectionPool(Origin.parse(f"http://127.0.0.1:{unused_port()}"), headers={})

    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await post(pool)


async def test_a_connection_never_accepted_times_out_connecting(unaccepting_port: int) -> None:
    pool = ConnectionPool(
        Origin.parse(f"http://127.0.0.1:{unaccepting_port}"), headers={}, connect_timeout_s=0.1
    )
    try:
        with pytest.raises(TimeoutError, match="connecting to"):
            await post(pool)
    finally:
        await pool.aclose()


async def test_an_answer_that_never_comes_times_out(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    pool = pool_for(await serve(never_answer), read_timeout_s=0.05)

    with pytest.raises(TimeoutError):
        await post(pool)


async def test_the_read_timeout_bounds_each_wait_not_the_whole_answer(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def trickle(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD)
        for _ in range(6):
            await asyncio.sleep(0.03)
            writer.write(chunk(b"."))
        writer.write(chunk(b""))
        return True

    pool = pool_for(await serve(trickle), read_timeout_s=0.1)

    assert await post(pool) == (200, b"......")


async def test_a_server_that_disconnects_mid_body_fails_the_read(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def cut(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: 1\n\n"))
        return False

    pool = pool_for(await serve(cut))
    response = await pool.post("/chat", b"{}", accept="text/event-stream")
    try:
        assert await response.read_some() == b"data: 1\n\n"
        with pytest.raises(ConnectionFailed, match="disconnected"):
            await response.read_some()
    finally:
        response.release()


async def test_an_answer_that_is_not_http_fails(
    serve: ServerFactory, pool_for: PoolFactory
) -> None:
    async def garbage(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        return True

    pool = pool_for(await serve(garbage))

    with pytest.raises(ConnectionFailed, match="malformed"):
        await post(pool)


def test_a_header_that_could_split_the_request_is_refused() -> None:
    with pytest.raises(ValueError, match="x-key"):
        ConnectionPool(Origin.parse("http://127.0.0.1"), headers={"x-key": "a\r\nx-evil: 1"})


def test_an_origin_keeps_its_base_path_and_default_port() -> None:
    origin = Origin.parse("https://api.example.com/v1/")

    assert origin == Origin("https", "api.example.com", 443, "/v1")
    assert origin.authority == "api.example.com"
    assert Origin.parse("http://[::1]:8080").authority == "[::1]:8080"


# --- TLS ---------------------------------------------------------------------------------


async def test_https_upstreams_are_reached_over_verified_tls(serve: ServerFactory) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    server = await serve(answer_json, server_context)

    pool = ConnectionPool(Origin.parse(server.url), headers={}, ssl_context=client_context)
    try:
        assert await post(pool, b"{}") == (200, b'{"n": 2}')
    finally:
        await pool.aclose()


async def test_a_certificate_the_client_does_not_trust_fails_to_connect(
    serve: ServerFactory,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    server = await serve(answer_json, server_context)

    pool = ConnectionPool(Origin.parse(server.url), headers={})
    try:
        with pytest.raises(ConnectionFailed, match="cannot connect"):
            await post(pool)
    finally:
        await pool.aclose()


async def test_by_default_tls_trusts_the_authority_ssl_cert_file_names(
    serve: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    server = await serve(answer_json, server_context)
    bundle = tmp_path / "company-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    pool = ConnectionPool(Origin.parse(server.url), headers={})
    try:
        assert await post(pool, b"{}") == (200, b'{"n": 2}')
    finally:
        await pool.aclose()


# --- the upstream client on top ------------------------------------------------------------


async def test_deltas_end_at_the_protocols_last_event_though_the_body_goes_on(
    serve: ServerFactory,
) -> None:
    async def done_but_open(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\ndata: 3\n\n"))
        return True

    server = await serve(done_but_open)
    client = UpstreamClient("test", server.url, headers={}, error_message=lambda body: None)
    seen: list[SseEvent] = []

    def deltas_of(event: SseEvent) -> list[Delta]:
        seen.append(event)
        return [Delta(text=event.data)]

    try:
        async with asyncio.timeout(1):
            deltas = [
                delta
                async for delta in client.post_deltas(
                    "/chat",
                    {},
                    deltas_of,
                    last=lambda event: event.data == "[DONE]",
                    finish=lambda: Delta(finish_reason="stop"),
                )
            ]
    finally:
        await client.aclose()

    assert [event.data for event in seen] == ["1", "2", "[DONE]"]
    # One read: one merged delta; then the adapter's closing one.
    assert deltas == [Delta(text="12[DONE]", ends_stream=True), Delta(finish_reason="stop")]
