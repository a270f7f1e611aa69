"""Errors in OpenAI's shape, with one Retry-After rule for all of them."""

from __future__ import annotations

from cascade_gateway.errors import NoUpstreamAnswered, ProviderError, RateLimited


def test_an_upstreams_fractional_retry_after_is_rounded_up():
    error = ProviderError("slow down", provider="openai", status=429, retry_after=1.4)

    assert error.status_code == 429
    assert error.headers() == {"retry-after": "2"}


def test_every_error_rounds_retry_after_the_same_way():
    upstream = ProviderError("slow down", provider="openai", status=429, retry_after=1.4)

    assert NoUpstreamAnswered([upstream]).headers() == upstream.headers()
    assert RateLimited("too many", kind="requests", retry_after=1.4).headers() == upstream.headers()


def test_a_retry_after_below_a_second_says_one_second():
    assert ProviderError("x", provider="p", status=429, retry_after=0.2).headers() == {
        "retry-after": "1"
    }


def test_the_body_has_openais_four_fields():
    body = ProviderError("down", provider="p", status=503).to_body()

    assert set(body["error"]) == {"message", "type", "param", "code"}
