"""Pooled HTTP/1.1 connections to one upstream origin: the transport under `http.UpstreamClient`.

Built on asyncio's transports (TLS included) and httptools, the C parser uvicorn reads requests
with. The adapters need one thing from HTTP: POST a body, then read the answer as it arrives,
over kept-alive connections. aiohttp's general client machinery around that (its request and
response models, traces, cookie and redirect handling) cost about twice this client's CPU per
call; served under load, the gateway spent 14 to 24 % less CPU per request without it
(`benchmarks/RESULTS.md`, session 5).

    pool = ConnectionPool(Origin.parse("https://api.openai.com"), headers={...})
    response = await pool.post("/v1/chat/completions", body, accept="application/json")
    try:
        payload = await response.read()
    finally:
        response.release()
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httptools

from cascade_gateway.providers.proxies import Proxy, ProxyRefused, TunnelOpening

# Reading pauses while this much of an answer waits for its reader (a slow client downstream).
_HIGH_WATER = 256 * 1024


class ConnectionFailed(Exception):
    """The connection could not be made, broke, or carried something that is not HTTP."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, and the path every request path extends."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        """`http[s]://host[:port][/base/path]` (a trailing slash is dropped)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def address(self) -> str:
        """`host:port`, an IPv6 host in brackets: what a CONNECT names."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def authority(self) -> str:
        """The `host` header's value: the address, without the scheme's default port."""
        default = 443 if self.scheme == "https" else 80
        return self.address.removesuffix(f":{default}")


class Response:
    """One answer being read: its status and headers, then its body as it arrives.

    `release()` must be called when done with it (in a `finally`): a finished answer's
    connection goes back to the pool; an unfinished one is closed, which aborts the call.
    """

    __slots__ = ("_connection", "_pool", "headers", "status")

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection
        self._pool = connection.pool
        self.status = connection.status
        self.headers = connection.headers

    async def read(self) -> bytes:
        """The whole body (what is left of it)."""
        parts = []
        while chunk := await self.read_some():
            parts.append(chunk)
        return b"".join(parts)

    async def read_some(self) -> bytes:
        """The body bytes that have arrived since the last call, waiting for some if none
        have; `b""` once the body has ended."""
        if self._connection is None:
            raise ConnectionFailed("the answer was released")
        return await self._connection.read_some()

    def finished_by_protocol(self) -> None:
        """The reader has seen its protocol's last event, so the rest of the body is only its
        HTTP framing: let the connection finish it and go back to the pool."""
        if self._connection is not None:
            self._connection.linger = True

    def release(self) -> None:
        """Done with this answer (idempotent: the connection may be another request's by then)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            self._pool.release(connection)


class ConnectionPool:
    """Kept-alive connections to one origin, most recently used first.

    `read_timeout_s` bounds each wait for data (as the SDKs' read timeout does); connecting is
    bounded by `connect_timeout_s`. At most `max_connections` are open at once; more callers
    wait for one. A connection idle for `idle_s` is closed rather than reused: servers close
    idle connections, and the race with that close would fail a request. An answer whose reader
    stopped at its protocol's end (`Response.finished_by_protocol`) has `linger_s` to end its
    HTTP body and put its connection back in the pool, or it is closed. With a `proxy`, every
    connection goes through it (`providers.proxies`).
    """

    def __init__(
        self,
        origin: Origin,
        *,
        headers: Mapping[str, str],
        read_timeout_s: float = 600,
        connect_timeout_s: float = 5.0,
        max_connections: int = 1000,
        idle_s: float = 15.0,
        linger_s: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        self.origin = origin
        self.read_timeout_s = read_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.linger_s = linger_s
        if ssl_context is None and origin.scheme == "https":
            ssl_context = default_tls()
        self._ssl = ssl_context
        self.proxy = proxy
        fields = {"host": origin.authority, "accept-encoding": "identity", **headers}
        # A plain-http origin behind a proxy: requests name the origin, for the proxy to forward.
        self._target = b""
        if proxy is not None and self._ssl is None:
            self._target = f"http://{origin.authority}".encode()
            if proxy.authorization is not None:
                fields["proxy-authorization"] = proxy.authorization
        self._head = b"".join(_field(name, value) for name, value in fields.items())
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def post(self, path: str, body: bytes, *, accept: str) -> Response:
        """Send `POST base_path + path` with `body` (JSON); the answer once its head arrives."""
        request = b"POST %s%s HTTP/1.1\r\n%saccept: %s\r\ncontent-length: %d\r\n\r\n%s" % (
            self._target,
            (self.origin.base_path + path).encode(),
            self._head,
            accept.encode(),
            len(body),
            body,
        )
        connection = await self._acquire()
        try:
            await connection.send(request)
        except BaseException:
            self.release(connection)
            raise
        return Response(connection)

    def release(self, connection: _Connection) -> None:
        """Take a connection back: into the pool if it can carry another request, else closed
        (or, if its reader finished early, once its body has ended)."""
        if connection.pool_state != "busy":
            return
        if connection.reusable and not self._closed:
            connection.rest(asyncio.get_running_loop().time())
            self._idle.append(connection)
            self._wake_one()
        elif connection.linger and connection.healthy and not self._closed:
            connection.pool_state = "lingering"
            connection.finish_later(self.linger_s)
        else:
            self._discard(connection)

    async def aclose(self) -> None:
        """Close every connection; the pool takes no more requests."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(ConnectionFailed("the connection pool is closed"))

    # --- the pool's book-keeping ---------------------------------------------------------

    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise ConnectionFailed("the connection pool is closed")
            now = loop.time()
            while self._idle:
                connection = self._idle.pop()
                if connection.healthy and now - connection.idle_since < self.idle_s:
                    connection.pool_state = "busy"
                    return connection
                self._discard(connection)
            if self._open < self.max_connections:
                self._open += 1
                try:
                    return await self._connect(loop)
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            waiter = loop.create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the turn on
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        origin, proxy = self.origin, self.proxy
        where = origin.address
        if proxy is not None:
            where += f" through the proxy at {proxy.host}:{proxy.port}"
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if proxy is not None and self._ssl is not None:
                    connection = await self._tunnel(loop, proxy)
                else:
                    host, port = (
                        (origin.host, origin.port) if proxy is None else (proxy.host, proxy.port)
                    )
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, loop),
                        host,
                        port,
                        ssl=self._ssl,
                        server_hostname=origin.host if self._ssl else None,
                    )
        except TimeoutError:  # an OSError too, so named first
            raise TimeoutError(
                f"connecting to {where} took over {self.connect_timeout_s:g} s"
            ) from None
        except (OSError, ProxyRefused) as exc:  # refused, unreachable, DNS, TLS, the proxy
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConnectionFailed(f"cannot connect to {where}: {reason}") from exc
        connection.pool_state = "busy"
        return connection

    async def _tunnel(self, loop: asyncio.AbstractEventLoop, proxy: Proxy) -> _Connection:
        """A connection to the origin through a CONNECT tunnel, with TLS inside it."""
        assert self._ssl is not None
        origin = self.origin
        transport, opening = await loop.create_connection(
            lambda: TunnelOpening(loop), proxy.host, proxy.port
        )
        try:
            await opening.establish(origin.address, proxy)
            connection = _Connection(self, loop)
            tls = await loop.start_tls(
                transport, connection, self._ssl, server_hostname=origin.host
            )
        except BaseException:
            transport.abort()
            raise
        assert tls is not None
        connection.connection_made(tls)
        return connection

    def _discard(self, connection: _Connection) -> None:
        if connection.pool_state == "gone":
            return
        connection.pool_state = "gone"
        connection.abort()
        self._open -= 1
        self._wake_one()

    def finished_lingering(self, connection: _Connection) -> None:
        """A lingering connection's body ended (back to the pool) or took too long (closed)."""
        if connection.pool_state != "lingering":
            return
        connection.pool_state = "busy"
        if connection.reusable:
            self.release(connection)
        else:
            self._discard(connection)

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def default_tls() -> ssl.SSLContext:
    """Verified TLS trusting the system's authorities (`SSL_CERT_FILE` and `SSL_CERT_DIR`
    included) and certifi's bundle, which is what the vendors' SDKs (httpx) trust."""
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context


def _field(name: str, value: str) -> bytes:
    if any(c in name + value for c in "\r\n\0") or ":" in name:
        raise ValueError(f"header {name!r} has a character HTTP does not allow")
    return f"{name}: {value}\r\n".encode("latin-1")


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: writes a request, parses its answer as bytes arrive."""

    def __init__(self, pool: ConnectionPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.pool_state = "new"  # busy (a request's), idle, lingering, gone
        self.idle_since = 0.0
        self.linger = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._head_done = False
        self._complete = False
        self._until_close = False
        self._keep_alive = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0

    # --- what the pool and the response use ------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Open, and nothing has gone wrong on it."""
        transport = self._transport
        return self._error is None and transport is not None and not transport.is_closing()

    @property
    def reusable(self) -> bool:
        """Its answer has ended and both sides keep the connection open."""
        return self._complete and self._keep_alive and self.healthy

    def rest(self, now: float) -> None:
        """Back in the pool: forget the finished answer."""
        self.pool_state = "idle"
        self.idle_since = now
        self._parser = None
        self._cancel_timer()
        self._empty_buffer()

    async def send(self, request: bytes) -> None:
        """Write `request` and wait for the head of its answer (the body buffer is empty: the
        connection is new or has rested)."""
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers = {}
        self._head_done = self._complete = self._until_close = self._keep_alive = False
        self.linger = False
        self._last_read = self._loop.time()
        self._timer = self._loop.call_at(self._last_read + self.pool.read_timeout_s, self._check)
        assert self._transport is not None
        self._transport.write(request)
        while not self._head_done:
            await self._wait()

    async def read_some(self) -> bytes:
        while not self._body:
            if self._complete:
                return b""
            await self._wait()
        chunk = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._empty_buffer()
        return chunk

    def finish_later(self, delay_s: float) -> None:
        """Let the answer's end arrive (back to the pool then) for up to `delay_s`."""
        self._cancel_timer()
        self._empty_buffer()
        if self._complete:
            self.pool.finished_lingering(self)
        else:
            self._timer = self._loop.call_later(delay_s, self._give_up_lingering)

    def abort(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        self._fail(ConnectionFailed("connection closed"))

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        if self._parser is None:  # bytes nobody asked for: the connection is not usable
            self._fail(ConnectionFailed("unexpected data from the server"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"malformed HTTP answer: {exc}"))
            if self._transport is not None:
                self._transport.abort()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._head_done and self._until_close and exc is None:
            self._complete = True  # a body without a length ends when the connection does
            self._wake()
        elif not self._complete:
            reason = f"server disconnected: {exc}" if exc else "server disconnected"
            self._fail(ConnectionFailed(reason))
        else:
            self._fail(ConnectionFailed("connection closed"))
        if self.pool_state == "lingering":
            self.pool.finished_lingering(self)

    # --- httptools.HttpResponseParser callbacks ----------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()
        self._until_close = (
            "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "")
        )
        # Read now: the parser forgets it once the message is complete.
        self._keep_alive = not self._until_close and self._parser.should_keep_alive()
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.pool_state == "lingering":
            return  # nobody will read it: only where the body ends matters now
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._cancel_timer()
        self._wake()
        if self.pool_state == "lingering":
            self.pool.finished_lingering(self)

    # --- waiting -----------------------------------------------------------------------------

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._last_read = max(self._last_read, self._loop.time())
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._error)

    def _check(self) -> None:
        """The read timeout: fires at most once per `read_timeout_s`; fails the wait only if
        the reader has been waiting that long with nothing arriving."""
        self._timer = None
        due = self._last_read + self.pool.read_timeout_s
        if self._waiter is not None and self._loop.time() >= due:
            self._fail(TimeoutError(f"no data for {self.pool.read_timeout_s:g} s"))
            if self._transport is not None:
                self._transport.abort()
            return
        if not self._complete:
            # Not waiting (the reader is busy downstream): its next wait restarts the clock.
            waiting = self._waiter is not None
            self._timer = self._loop.call_at(
                due if waiting else self._loop.time() + self.pool.read_timeout_s, self._check
            )

    def _give_up_lingering(self) -> None:
        self._timer = None
        self.pool.finished_lingering(self)

    def _empty_buffer(self) -> None:
        """Empty the body buffer (read, or never to be read), and read on if it had paused
        reading."""
        self._body = []
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
