"""While the gateway's storage is down: a 503 to retry, never a 500, and nothing lost.

The outages are real: the gateway reaches the real Redis or PostgreSQL through a relay
(`tests/relay.py`) that each test cuts and then restores.
"""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from cascade_gateway.fake_upstream import Reply, Rule
from tests.api.conftest import MASTER_KEY, make_key

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GOOD = "The capital of France is Paris."


def test_a_limited_key_gets_a_503_to_retry_while_redis_is_down(
    redis_outage_gateway_url, redis_relay, upstream
):
    _, client = make_key(redis_outage_gateway_url, rpm=100)

    with redis_relay.down(), pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="default", messages=QUESTION)

    response = caught.value.response
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == {
        "message": "The gateway's storage (database or Redis) cannot be reached; retry shortly.",
        "type": "server_error",
        "param": None,
        "code": "storage_unavailable",
    }
    assert upstream.requests == []


def test_a_request_gets_a_503_within_the_timeout_while_redis_hangs(
    redis_outage_gateway_url, redis_relay, upstream
):
    _, client = make_key(redis_outage_gateway_url, rpm=100)
    started = time.monotonic()

    with redis_relay.hung(), pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="default", messages=QUESTION)

    assert caught.value.response.status_code == 503
    # The gateway's storage timeout is 1 s; redis-py's own retries would take over 10 s.
    assert time.monotonic() - started < 5
    assert upstream.requests == []


def test_a_budgeted_stream_gets_a_503_before_it_starts_while_redis_is_down(
    redis_outage_gateway_url, redis_relay, upstream
):
    _, client = make_key(redis_outage_gateway_url, budget_usd=5.0)

    with redis_relay.down(), pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="default", messages=QUESTION, stream=True)

    assert caught.value.response.status_code == 503
    assert upstream.requests == []


def test_requests_are_served_again_once_redis_is_back(
    redis_outage_gateway_url, redis_relay, upstream
):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    _, client = make_key(redis_outage_gateway_url, rpm=100, budget_usd=5.0)
    with redis_relay.down(), pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="default", messages=QUESTION)

    completion = client.chat.completions.create(model="default", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD


def test_an_answer_is_served_and_billed_when_redis_fails_while_the_upstream_answers(
    redis_outage_gateway_url, redis_relay, upstream
):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, latency_s=0.5)))
    record, client = make_key(redis_outage_gateway_url, tpm=100_000, budget_usd=5.0)
    cut = threading.Timer(0.2, redis_relay.cut)
    cut.start()
    try:
        raw = client.chat.completions.with_raw_response.create(model="default", messages=QUESTION)
    finally:
        cut.join()
        redis_relay.restore()

    assert raw.parse().choices[0].message.content == GOOD
    trace = httpx.get(
        f"{redis_outage_gateway_url}/api/requests/{raw.headers['x-request-id']}",
        headers={"authorization": f"Bearer {record['key']}"},
    ).json()
    assert trace["outcome"] == "accepted"
    assert trace["cost_usd"] > 0


def test_a_keyed_request_gets_a_503_while_postgresql_is_down(
    postgres_outage_gateway_url, postgres_relay, upstream
):
    with postgres_relay.down():
        response = httpx.post(
            f"{postgres_outage_gateway_url}/v1/chat/completions",
            json={"model": "default", "messages": QUESTION},
            headers={"authorization": "Bearer cgk-any-key-at-all"},
            timeout=30,
        )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert upstream.requests == []


def test_the_admin_api_gets_a_503_while_postgresql_is_down(
    postgres_outage_gateway_url, postgres_relay
):
    with postgres_relay.down():
        response = httpx.get(
            f"{postgres_outage_gateway_url}/admin/keys",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            timeout=30,
        )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_a_client_retrying_as_told_is_served_once_postgresql_is_back(
    postgres_outage_gateway_url, postgres_relay
):
    record, client = make_key(postgres_outage_gateway_url)
    with postgres_relay.down(), pytest.raises(openai.InternalServerError):
        client.models.list()
    retrying = openai.OpenAI(
        base_url=f"{postgres_outage_gateway_url}/v1", api_key=record["key"], max_retries=8
    )

    assert "default" in [m.id for m in retrying.models.list()]
