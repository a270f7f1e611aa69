"""Budgets, rate limits and revocations hold exactly across two gateway processes sharing
PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from cascade_gateway import tokens
from cascade_gateway.fake_upstream import Reply, Rule

PROMPT = [{"role": "user", "content": "Explain how budgets work. " * 30}]
ANSWER = "budget " * 150
QUESTION = [{"role": "user", "content": "Hi?"}]


def per_call_cost() -> float:
    """What the fake upstream bills for one call of the large model ($2.50 / $10 per M)."""
    return (tokens.count_messages(PROMPT) * 2.5 + tokens.count_text(ANSWER) * 10.0) / 1e6


async def ledger_rows_of(admin, key_id: str, expected: int) -> list[dict]:
    """The key's ledger rows, once `expected` are there or after 5 s: each replica writes its
    rows in batches, at most `storage.ledger_flush_ms` after a request ends."""
    for _ in range(50):
        rows = [json.loads(line) for line in admin.get("/admin/ledger").text.splitlines()]
        mine = [r for r in rows if r["key_id"] == key_id]
        if len(mine) >= expected:
            break
        await asyncio.sleep(0.1)
    return mine


async def test_two_hundred_racing_requests_on_two_replicas_stay_within_budget(
    gateways, admin, upstream
):
    upstream.add(Rule(model="strong-model", reply=Reply(text=ANSWER, latency_s=0.02)))
    key = admin.post(
        "/admin/keys", json={"name": "racer", "budget_usd": 0.05, "budget_period": "day"}
    ).json()
    assert 0.0015 < per_call_cost() < 0.0025  # "each worth about $0.002"
    served_before = len([r for r in upstream.requests if r.model == "strong-model"])

    async def one(client: httpx.AsyncClient, url: str) -> int:
        response = await client.post(
            f"{url}/v1/chat/completions",
            json={"model": "large", "messages": PROMPT, "max_tokens": 200},
            headers={"authorization": f"Bearer {key['key']}"},
        )
        return response.status_code

    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        statuses = await asyncio.gather(*(one(client, gateways[i % 2]) for i in range(200)))

    served = statuses.count(200)
    upstream_served = len([r for r in upstream.requests if r.model == "strong-model"])
    assert set(statuses) <= {200, 402}
    assert served == upstream_served - served_before
    mine = await ledger_rows_of(admin, key["id"], expected=200)
    assert len(mine) == 200  # every request recorded once, served or refused
    recorded = sum(r["cost_usd"] for r in mine)
    assert recorded <= 0.05
    assert recorded == pytest.approx(served * per_call_cost(), rel=1e-9)
    assert sum(r["outcome"] == "rejected" for r in mine) == statuses.count(402)
    budget = admin.get(f"/admin/keys/{key['id']}").json()["budget"]
    assert budget["spend_usd"] == pytest.approx(recorded, abs=1e-6)
    assert budget["reserved_usd"] == 0


async def test_racing_requests_on_two_replicas_get_exactly_the_keys_requests_per_minute(
    gateways, admin, upstream
):
    upstream.add(Rule(model="draft-model", reply=Reply(text="The capital of France is Paris.")))
    key = admin.post("/admin/keys", json={"name": "paced", "rpm": 15}).json()

    async def one(client: httpx.AsyncClient, url: str) -> int:
        response = await client.post(
            f"{url}/v1/chat/completions",
            json={"model": "default", "messages": QUESTION},
            headers={"authorization": f"Bearer {key['key']}"},
        )
        return response.status_code

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as client:
        statuses = await asyncio.gather(*(one(client, gateways[i % 2]) for i in range(60)))

    assert statuses.count(200) == 15
    assert statuses.count(429) == 45


def test_a_key_revoked_on_one_replica_is_refused_by_both_at_once(gateways, admin, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text="The capital of France is Paris.")))
    key = admin.post("/admin/keys", json={"name": "short-lived"}).json()
    headers = {"authorization": f"Bearer {key['key']}"}
    body = {"model": "default", "messages": QUESTION}
    for url in gateways:
        assert (
            httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code == 200
        )

    httpx.delete(f"{gateways[1]}/admin/keys/{key['id']}", headers=admin.headers).raise_for_status()

    for url in gateways:
        assert (
            httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code == 401
        )
