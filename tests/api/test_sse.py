"""The SSE response as a bare ASGI app: frames in order, pings while quiet, and a client that
leaves cancels the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from cascade_gateway.api import sse


class Client:
    """The ASGI side of one connection: records what was sent; `leave()` disconnects."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._left = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self._left.set()

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def test_frames_go_out_in_order_and_the_body_ends():
    async def frames() -> AsyncIterator[bytes]:
        yield sse.frame({"n": 1})
        yield sse.frame({"n": 2}, event="token")
        yield sse.DONE

    client = Client()
    await sse.EventStream(frames(), headers={"x-cascade-route": "r"})(
        {"type": "http"}, client.receive, client.send
    )

    start = client.sent[0]
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert (b"x-cascade-route", b"r") in start["headers"]
    assert client.body == b'data: {"n":1}\n\nevent: token\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_last_frame_goes_out_with_the_end_of_the_body():
    async def frames() -> AsyncIterator[bytes]:
        yield sse.frame({"n": 1})
        yield sse.Last(sse.frame({"n": 2}) + sse.DONE)

    client = Client()
    await sse.EventStream(frames())({"type": "http"}, client.receive, client.send)

    assert client.sent[-1] == {
        "type": "http.response.body",
        "body": b'data: {"n":2}\n\ndata: [DONE]\n\n',
        "more_body": False,
    }
    assert len(client.sent) == 3


async def test_a_quiet_stream_is_kept_alive_with_comment_pings():
    async def frames() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.35)
        yield sse.DONE

    client = Client()
    await sse.EventStream(frames(), ping_s=0.1)({"type": "http"}, client.receive, client.send)

    assert client.body.startswith(b": ping\n\n: ping\n\n")
    assert client.body.endswith(b"data: [DONE]\n\n")


async def test_a_client_that_leaves_cancels_the_stream_and_its_source_is_closed():
    closed = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            while True:
                yield sse.frame({"tick": True})
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    client = Client()
    asyncio.get_running_loop().call_later(0.05, client.leave)
    await asyncio.wait_for(
        sse.EventStream(frames())({"type": "http"}, client.receive, client.send), 2
    )

    assert closed.is_set()
    assert not any(m.get("more_body") is False for m in client.sent)  # no clean end was sent


async def test_frames_ready_before_the_start_go_out_first():
    async def frames() -> AsyncIterator[bytes]:
        yield sse.Last(sse.frame({"n": 2}) + sse.DONE)

    client = Client()
    first = sse.frame({"n": 1})
    await sse.EventStream(frames(), first=first)({"type": "http"}, client.receive, client.send)

    assert client.body == b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    assert client.sent[1] == {"type": "http.response.body", "body": first, "more_body": True}


async def test_a_stream_whole_before_it_starts_is_one_write_and_watches_nobody():
    async def frames() -> AsyncIterator[bytes]:
        raise AssertionError("nothing is left to read")
        yield b""  # an async generator

    class Watchable(Client):
        watched = False

        async def receive(self) -> dict[str, Any]:
            self.watched = True
            return await super().receive()

        async def send(self, message: dict[str, Any]) -> None:
            await super().send(message)
            await asyncio.sleep(0)  # a watcher, had one started, would now be waiting

    client = Watchable()
    whole = sse.Last(sse.frame({"n": 1}) + sse.DONE)
    await sse.EventStream(frames(), first=whole)({"type": "http"}, client.receive, client.send)

    assert client.sent[1:] == [{"type": "http.response.body", "body": whole, "more_body": False}]
    assert not client.watched
