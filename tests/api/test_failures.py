"""Failure behaviour end to end: deadlines, retries, breakers, fallbacks, back-pressure,
disconnects — injected through the fake upstream, observed through the official SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from cascade_gateway.app import create_app
from cascade_gateway.config import parse_config
from cascade_gateway.fake_upstream import Fault, Reply, Rule
from tests.api.conftest import gateway_config, serve_in_thread

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GOOD = "The capital of France is Paris."


@pytest.fixture(scope="module")
def resilient_url(upstream) -> Iterator[str]:
    raw = gateway_config(upstream.url)
    for model in raw["models"].values():
        model["retries"] = {"max_attempts": 2, "backoff_s": 0.01}
        model["breaker"] = {"failure_threshold": 10_000, "min_calls": 10_000}
    raw["models"]["haiku"]["breaker"] = {"failure_threshold": 2, "open_s": 60}
    raw["models"]["large"]["fallbacks"] = ["medium"]
    raw["models"]["tiny"]["concurrency"] = {"max_in_flight": 1, "queue": 0}
    raw["cascades"]["default"]["draft_timeouts"] = {"total_s": 0.3, "first_token_s": 0.3}
    with serve_in_thread(create_app(parse_config(raw))) as url:
        yield url


@pytest.fixture
def sdk(resilient_url) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{resilient_url}/v1", api_key="k", max_retries=0) as client:
        yield client


def trace_of(url: str, raw) -> dict:
    return httpx.get(f"{url}/api/requests/{raw.headers['x-request-id']}").json()


def test_a_draft_that_misses_its_deadline_is_abandoned_and_escalated(sdk, resilient_url, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, latency_s=3)))
    upstream.add(Rule(model="strong-model", reply=Reply(text="strong " + GOOD)))
    began = time.monotonic()

    raw = sdk.chat.completions.with_raw_response.create(model="default", messages=QUESTION)

    assert raw.parse().choices[0].message.content == "strong " + GOOD
    assert time.monotonic() - began < 2.5  # the draft would have taken 3 s
    draft = trace_of(resilient_url, raw)["attempts"][0]
    assert draft["decision"] == "failed" and draft["error_code"] == "timeout"


def test_a_streamed_draft_without_a_first_token_in_time_escalates(sdk, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, latency_s=2)))
    upstream.add(Rule(model="strong-model", reply=Reply(text="strong")))

    with sdk.chat.completions.create(model="default", messages=QUESTION, stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert text == "strong"


def test_a_draft_with_a_first_token_deadline_is_streamed_for_the_deadline_to_watch(sdk, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    with sdk.chat.completions.create(model="default", messages=QUESTION, stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert text == GOOD
    assert upstream.requests[0].json["stream"] is True


def test_a_final_tier_5xx_is_retried_and_the_client_never_sees_it(sdk, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    upstream.add(Rule(model="strong-model", times=1, fault=Fault(status=503)))

    completion = sdk.chat.completions.create(model="large", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD
    assert [r.model for r in upstream.requests] == ["strong-model", "strong-model"]


def test_a_429_is_retried_after_its_retry_after(sdk, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    upstream.add(Rule(model="strong-model", times=1, fault=Fault(status=429, retry_after=1)))
    began = time.monotonic()

    completion = sdk.chat.completions.create(model="large", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD
    assert time.monotonic() - began >= 1.0


def test_a_failing_final_tier_falls_back_to_the_configured_model(sdk, resilient_url, upstream):
    upstream.add(Rule(model="strong-model", fault=Fault(status=500)))
    upstream.add(Rule(model="medium-model", reply=Reply(text="fallback answer")))

    raw = sdk.chat.completions.with_raw_response.create(model="large", messages=QUESTION)

    assert raw.parse().choices[0].message.content == "fallback answer"
    assert raw.headers["x-cascade-model"] == "medium"
    assert [a["decision"] for a in trace_of(resilient_url, raw)["attempts"]] == ["failed", "served"]


def test_when_nothing_answers_the_error_names_every_failed_upstream(resilient_url, upstream):
    upstream.add(Rule(model="draft-model", fault=Fault(status=500)))
    upstream.add(Rule(model="strong-model", fault=Fault(status=502)))
    upstream.add(Rule(model="medium-model", fault=Fault(status=503)))

    response = httpx.post(
        f"{resilient_url}/v1/chat/completions", json={"model": "default", "messages": QUESTION}
    )

    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "500" in message and "502" in message and "503" in message
    assert response.json()["error"]["type"] == "upstream_error"


def test_a_draft_whose_circuit_is_open_is_skipped(sdk, resilient_url, upstream):
    upstream.add(Rule(model="claude-draft", fault=Fault(status=500)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    for _ in range(2):
        sdk.chat.completions.create(model="anthropic", messages=QUESTION)
    upstream.clear()
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    completion = sdk.chat.completions.create(model="anthropic", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD
    assert [r.model for r in upstream.requests] == ["strong-model"]
    assert httpx.get(f"{resilient_url}/health").json()["circuits"]["haiku"] == "open"
    metrics = httpx.get(f"{resilient_url}/metrics").text
    assert 'cascade_circuit_state{model="haiku"} 2.0' in metrics


def test_beyond_the_in_flight_bound_a_request_gets_503_with_retry_after(resilient_url, upstream):
    upstream.add(Rule(model="tiny-model", reply=Reply(text="ok", latency_s=0.5)))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=resilient_url, timeout=10) as client:
            return await asyncio.gather(
                client.post("/v1/chat/completions", json=body),
                client.post("/v1/chat/completions", json=body),
            )

    responses = asyncio.run(both())

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 503]
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"


def test_a_client_that_leaves_mid_stream_stops_the_upstream_and_is_billed(resilient_url, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text="tok " * 100, per_chunk_s=0.05)))
    body = {"model": "large", "messages": QUESTION, "stream": True}

    with httpx.stream(
        "POST", f"{resilient_url}/v1/chat/completions", json=body,
        headers={"x-request-id": "leaver"},
    ) as response:  # fmt: skip
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    deadline = time.monotonic() + 5
    while (trace := httpx.get(f"{resilient_url}/api/requests/leaver")).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    trace = trace.json()
    assert trace["outcome"] == "cancelled"
    attempt = trace["attempts"][0]
    assert attempt["usage_counted"] is True
    assert 0 < attempt["output_tokens"] < 100
    assert attempt["cost_usd"] > 0
    assert trace["timing_ms"]["total"] < 4000  # the 5 s upstream stream was cut short
