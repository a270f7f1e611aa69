"""A TCP server on 127.0.0.1 that answers HTTP requests with whatever bytes a test scripts, so
the connection pool can be tested against servers that close, stall, cut or garble answers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """One request as the server read it, and which of its connections carried it (from 0)."""

    connection: int
    head: bytes
    body: bytes

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        return None


# Writes the answer to one request; returns whether to keep reading requests on the connection.
Answer = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]


def json_answer(body: bytes = b'{"ok": true}', *extra: bytes) -> bytes:
    """A complete kept-alive 200 with a content-length."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"".join(extra)
    return head + b"content-length: %d\r\n\r\n%s" % (len(body), body)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (`b""` is the last)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


class RawServer:
    """Serves `answer` for every request; counts connections, open ones and ones the client
    closed."""

    def __init__(self, answer: Answer, ssl_context: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.closed_by_client = 0
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        number = self.connections
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(Seen(number, head, b"").header("content-length") or 0)
                seen = Seen(number, head, await reader.readexactly(length))
                self.seen.append(seen)
                if not await self.answer(seen, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionResetError):
            self.closed_by_client += 1
        except asyncio.CancelledError:
            pass  # stopped by `aclose`: ending quietly keeps asyncio from logging it
        finally:
            self.open_now -= 1
            writer.close()
            self._handlers.discard(task)
