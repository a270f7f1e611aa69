"""uvicorn's HTTP/1.1 protocol (httptools), writing a response's head with its first body bytes.

uvicorn writes the status line and headers as soon as the app sends `http.response.start`, and
the body with the next message: two `send()` system calls, and two TCP segments for the client
to wake up for, where one would do. Under load those writes were the largest single cost in a
gateway worker, so this protocol holds the head back until the first body message and writes
both at once. The app sends its start and first body message back to back (a JSON answer, or a
stream whose status is committed only once its first frame is ready), so nothing is delayed.

Selected with uvicorn's own `http=` option (`cli.serve` and `workers.py` pass it).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class GatewayHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose requests are served by `HeadWithBodyCycle`."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:
            # uvicorn builds the cycle inline, with no hook to choose its class; the subclass
            # adds behaviour only, so switching the new instance over is safe.
            self.cycle.__class__ = HeadWithBodyCycle


class HeadWithBodyCycle(RequestResponseCycle):
    """A request-response cycle that writes the response head together with the first body
    message (or alone, if the response ends without writing a body, as for HEAD)."""

    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            transport, capture = self.transport, _Capture()
            self.transport = capture  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._head = b"".join(capture.written) or None
            return
        if self._head is None:
            await super().send(message)
            return
        transport, prefixed = self.transport, _Prefixed(self.transport, self._head)
        self._head = None
        self.transport = prefixed  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            if not self.disconnected:
                prefixed.flush()


class _Capture:
    """Stands in for the transport while uvicorn renders the head: keeps what it writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Prefixed:
    """The transport, with the held head put in front of the first write (or a close)."""

    def __init__(self, transport: Any, head: bytes) -> None:
        self._transport = transport
        self._head: bytes | None = head

    def write(self, data: bytes) -> None:
        head, self._head = self._head, None
        self._transport.write(data if head is None else head + data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        if self._head is not None:
            self.write(b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
