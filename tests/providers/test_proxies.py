"""Upstreams reached through an HTTP proxy: a CONNECT tunnel for https origins, with TLS to
the origin inside it; absolute-form requests for http ones; the proxy from the provider's
`proxy_url` or the environment (`HTTPS_PROXY`, `NO_PROXY`, ...)."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from cascade_gateway.domain import ChatRequest
from cascade_gateway.providers.connections import ConnectionFailed, ConnectionPool, Origin
from cascade_gateway.providers.openai import OpenAIProvider
from cascade_gateway.providers.proxies import Proxy, proxy_for
from tests.providers.conftest import ServerFactory
from tests.providers.forward_proxy import ForwardProxy
from tests.providers.test_connections import answer_json, post
from tests.providers.wire import FakeUpstream, openai_completion

HELLO = ChatRequest(messages=[{"role": "user", "content": "Say hello"}])
BASIC = "Basic " + base64.b64encode(b"team:s3cret@!").decode()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    server = ForwardProxy()
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def locked_proxy() -> AsyncIterator[ForwardProxy]:
    server = ForwardProxy(credentials=BASIC)
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


async def tls_server(serve: ServerFactory, authority: trustme.CA):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return await serve(answer_json, context)


def tls_pool(server, authority: trustme.CA, proxy_url: str) -> ConnectionPool:
    """A pool to a TLS server, trusting `authority`, through the proxy at `proxy_url`."""
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    origin = Origin.parse(server.url)
    return ConnectionPool(origin, headers={}, ssl_context=trusting, proxy=Proxy.parse(proxy_url))


async def test_an_https_upstream_is_reached_through_a_tunnel_with_tls_to_the_origin(
    serve: ServerFactory, proxy: ForwardProxy, authority: trustme.CA
) -> None:
    server = await tls_server(serve, authority)
    pool = tls_pool(server, authority, proxy.url)
    try:
        assert await post(pool, b"{}") == (200, b'{"n": 2}')
        assert await post(pool, b"{1}") == (200, b'{"n": 3}')  # the tunnel is kept alive
    finally:
        await pool.aclose()

    assert [head.split(b"\r\n")[0] for head in proxy.heads] == [
        b"CONNECT 127.0.0.1:%d HTTP/1.1" % pool.origin.port
    ]
    assert [seen.request_line for seen in server.seen] == [b"POST /chat HTTP/1.1"] * 2


async def test_a_plain_http_upstream_gets_absolute_form_requests_through_the_proxy(
    serve: ServerFactory, proxy: ForwardProxy
) -> None:
    server = await serve(answer_json)
    origin = Origin.parse(server.url + "/v1")
    pool = ConnectionPool(origin, headers={}, proxy=Proxy.parse(proxy.url))
    try:
        assert await post(pool, b"{}") == (200, b'{"n": 2}')
    finally:
        await pool.aclose()

    expected = b"POST http://127.0.0.1:%d/v1/chat HTTP/1.1" % origin.port
    assert [seen.request_line for seen in server.seen] == [expected]
    assert len(proxy.heads) == 1


async def test_the_proxy_urls_credentials_go_as_proxy_authorization(
    serve: ServerFactory, locked_proxy: ForwardProxy, authority: trustme.CA
) -> None:
    server = await tls_server(serve, authority)
    with_credentials = locked_proxy.url.replace("http://", "http://team:s3cret%40%21@")
    pool = tls_pool(server, authority, with_credentials)
    try:
        assert await post(pool) == (200, b'{"n": 2}')
    finally:
        await pool.aclose()


async def test_a_proxy_refusing_the_tunnel_fails_the_call_without_naming_the_credentials(
    serve: ServerFactory, locked_proxy: ForwardProxy, authority: trustme.CA
) -> None:
    server = await tls_server(serve, authority)
    wrong = locked_proxy.url.replace("http://", "http://team:wrong-secret@")
    pool = tls_pool(server, authority, wrong)
    try:
        with pytest.raises(ConnectionFailed) as caught:
            await post(pool)
    finally:
        await pool.aclose()

    assert "407" in str(caught.value)
    assert "through the proxy at 127.0.0.1" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)
    assert "wrong-secret" not in repr(Proxy.parse(wrong))
    assert server.seen == []


async def test_a_provider_takes_its_proxy_from_the_environment(
    openai_upstream: FakeUpstream, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    openai_upstream.json(openai_completion({"content": "Hello via the proxy"}))
    provider = OpenAIProvider("proxied", base_url=openai_upstream.url + "/v1", api_key="sk-x")
    try:
        completion = await provider.complete("gpt-4o-mini", HELLO)
    finally:
        await provider.aclose()

    assert completion.text == "Hello via the proxy"
    (head,) = proxy.heads
    assert head.startswith(b"POST %s/v1/chat/completions " % openai_upstream.url.encode())


async def test_a_providers_proxy_url_wins_over_the_environment(
    openai_upstream: FakeUpstream, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    openai_upstream.json(openai_completion({"content": "Hello"}))
    provider = OpenAIProvider(
        "proxied", base_url=openai_upstream.url + "/v1", api_key="sk-x", proxy_url=proxy.url
    )
    try:
        completion = await provider.complete("gpt-4o-mini", HELLO)
    finally:
        await provider.aclose()

    assert completion.text == "Hello"
    assert len(proxy.heads) == 1


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("", "api.openai.com", 443, False),
        ("*", "api.openai.com", 443, True),
        ("openai.com", "api.openai.com", 443, True),
        (".openai.com", "api.openai.com", 443, True),
        ("localhost, 127.0.0.1", "127.0.0.1", 8000, True),
        ("127.0.0.1:9000", "127.0.0.1", 8000, False),
        ("127.0.0.1:8000", "127.0.0.1", 8000, True),
        ("[::1]:8000", "::1", 8000, True),
        ("::1", "::1", 8000, True),
        ("notopenai.com", "api.openai.com", 443, False),
    ],
)
def test_no_proxy_exempts_the_hosts_and_domains_it_names(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, host: str, port: int, bypassed: bool
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.delenv("no_proxy", raising=False)

    found = proxy_for("https", host, port)

    assert (found is None) == bypassed
    assert bypassed or found == Proxy("proxy.internal", 3128)


def test_without_a_proxy_in_the_environment_there_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    assert proxy_for("https", "api.openai.com", 443) is None


def test_a_proxy_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http://"):
        Proxy.parse("socks5://proxy.internal:1080")
