"""Reaching an upstream through an HTTP proxy, as a company's egress often requires.

An https origin is reached through a `CONNECT` tunnel, with TLS to the origin inside it (the
proxy sees only where the bytes go); an http origin through requests in absolute form
(`POST http://host/path`), which the proxy forwards. Which proxy: the provider's `proxy_url`,
else the environment's `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` with `NO_PROXY` honoured, as
the vendors' SDKs (httpx) take them.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# A proxy's answer to CONNECT is a status line and a few headers; more is not an answer.
_MAX_HEAD = 16 * 1024


class ProxyRefused(Exception):
    """The proxy answered CONNECT with something other than 2xx, or not with HTTP."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it listens and the `Proxy-Authorization` its URL's user info gives.

    Example:
        Proxy.parse("http://user:secret@proxy.internal:3128")
    """

    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """`http://[user:password@]host[:port]` (port 80 by default)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("a proxy URL must look like http://[user:password@]host[:port]")
        authorization = None
        if parts.username is not None:
            user_info = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(user_info.encode()).decode()
        return cls(parts.hostname, parts.port or 80, authorization)

    def __repr__(self) -> str:
        # Never the credentials: a repr ends up in logs.
        return f"Proxy({self.host}:{self.port})"


def proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    """The proxy the environment names for an origin, or None (none set, or `NO_PROXY`)."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or _bypassed(host.lower(), port, proxies.get("no", "")):
        return None
    return Proxy.parse(url)


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether `NO_PROXY` exempts the origin: `*`, or an entry naming the host or a domain it
    is in (`example.com` and `.example.com` both cover `api.example.com`), with or without a
    port."""
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        if entry.startswith("["):  # [IPv6] or [IPv6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        else:  # a name, or a bare IPv6 address
            name, entry_port = entry, ""
        name = name.removeprefix("*").lstrip(".")
        if not name or (entry_port and entry_port != str(port)):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


class TunnelOpening(asyncio.Protocol):
    """The protocol of a connection to a proxy until the proxy has answered its CONNECT."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answered: asyncio.Future[str] = loop.create_future()
        self._head = b""
        self._transport: asyncio.Transport | None = None

    async def establish(self, address: str, proxy: Proxy) -> None:
        """Ask the proxy for a tunnel to `address` (`host:port`); returns once it said yes,
        raises `ProxyRefused` otherwise."""
        assert self._transport is not None
        head = f"CONNECT {address} HTTP/1.1\r\nhost: {address}\r\n"
        if proxy.authorization is not None:
            head += f"proxy-authorization: {proxy.authorization}\r\n"
        self._transport.write(head.encode("latin-1") + b"\r\n")
        status_line = await self.answered
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].startswith("2"):
            raise ProxyRefused(f"the proxy at {proxy.host}:{proxy.port} answered {status_line!r}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return
        self._head += data
        if b"\r\n\r\n" in self._head:
            self.answered.set_result(self._head.split(b"\r\n", 1)[0].decode("latin-1"))
        elif len(self._head) > _MAX_HEAD:
            self.answered.set_exception(ProxyRefused("the proxy's answer to CONNECT is not HTTP"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ProxyRefused("the proxy closed the connection"))
