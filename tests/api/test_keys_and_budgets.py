"""The budget-capped proxy: keys, budgets, rate limits and the ledger, through real sockets."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import openai
import pytest

from cascade_gateway import tokens
from cascade_gateway.fake_upstream import Reply, Rule
from tests.api.conftest import MASTER_KEY

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GOOD = "The capital of France is Paris."
HEDGE = "I'm not sure, but it might possibly be Lyon, I think. I don't know."


def test_a_request_without_a_key_is_a_401(locked_gateway_url):
    response = httpx.post(
        f"{locked_gateway_url}/v1/chat/completions", json={"model": "default", "messages": QUESTION}
    )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_wrong_key_is_a_401_through_the_sdk(locked_gateway_url):
    client = openai.OpenAI(base_url=f"{locked_gateway_url}/v1", api_key="cgk-wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="default", messages=QUESTION)


def test_admin_api_needs_the_master_key(new_key, locked_gateway_url):
    record, _ = new_key()

    response = httpx.get(
        f"{locked_gateway_url}/admin/keys", headers={"authorization": f"Bearer {record['key']}"}
    )

    assert response.status_code == 403


def test_a_new_key_works_and_its_secret_is_shown_only_once(new_key, admin, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    record, client = new_key()

    completion = client.chat.completions.create(model="default", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD
    assert record["key"].startswith("cgk-")
    shown = admin.get(f"/admin/keys/{record['id']}").json()
    assert "key" not in shown and shown["key_prefix"] == record["key"][:8]


def test_keys_are_stored_only_as_hashes(new_key, locked_gateway_url, tmp_path_factory):
    record, _ = new_key()
    database = next(tmp_path_factory.getbasetemp().glob("db*/gw.db"))

    dump = "\n".join(sqlite3.connect(database).iterdump())

    assert record["key"] not in dump
    assert record["key"][8:] not in dump


def test_x_api_key_header_is_accepted_too(new_key, locked_gateway_url, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    record, _ = new_key()

    response = httpx.post(
        f"{locked_gateway_url}/v1/chat/completions",
        json={"model": "default", "messages": QUESTION},
        headers={"x-api-key": record["key"]},
    )

    assert response.status_code == 200


def test_a_revoked_key_is_refused_on_its_next_request(new_key, admin, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    record, client = new_key()
    client.chat.completions.create(model="default", messages=QUESTION)

    assert admin.delete(f"/admin/keys/{record['id']}").status_code == 200

    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="default", messages=QUESTION)


def test_a_key_only_sees_the_cascades_it_was_given(new_key):
    _, client = new_key(cascades=["default"])

    assert [m.id for m in client.models.list()] == ["default"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="large", messages=QUESTION)


def test_a_key_cannot_look_up_a_cascade_it_was_not_given(new_key):
    _, client = new_key(cascades=["default"])

    assert client.models.retrieve("default").id == "default"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("large")
    assert caught.value.code == "model_not_found"


def test_an_exhausted_budget_is_a_402_insufficient_quota(new_key, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    _, client = new_key(budget_usd=0.000001)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="large", messages=QUESTION)

    assert caught.value.status_code == 402
    assert caught.value.body["type"] == "insufficient_quota"
    assert caught.value.body["code"] == "budget_exceeded"
    assert upstream.requests == []  # refused before any upstream spend


def test_spend_is_settled_to_the_real_cost_not_the_reservation(new_key, admin, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    record, client = new_key(budget_usd=1.0)

    client.chat.completions.create(model="large", messages=QUESTION, max_tokens=1000)

    budget = admin.get(f"/admin/keys/{record['id']}").json()["budget"]
    prompt, output = tokens.count_messages(QUESTION), tokens.count_text(GOOD)
    assert budget["spend_usd"] == pytest.approx((prompt * 2.5 + output * 10.0) / 1e6, abs=1e-9)
    assert budget["reserved_usd"] == 0
    assert budget["remaining_usd"] == pytest.approx(1.0 - budget["spend_usd"], abs=1e-9)


def test_budget_pressure_degrade_serves_the_draft_instead_of_escalating(new_key, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    # Enough for a short draft, not for the strong model's worst case.
    _, client = new_key(budget_usd=0.0008)

    raw = client.chat.completions.with_raw_response.create(
        model="thrifty", messages=QUESTION, max_tokens=100
    )

    completion = raw.parse()
    assert completion.choices[0].message.content == HEDGE
    assert raw.headers["x-cascade-budget-capped"] == "true"
    assert completion.model_extra["cascade"]["outcome"] == "degraded"
    assert [r.model for r in upstream.requests] == ["draft-model"]


def test_budget_pressure_reject_refuses_the_escalation(new_key, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE)))
    _, client = new_key(budget_usd=0.0008)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="default", messages=QUESTION, max_tokens=100)

    assert caught.value.status_code == 402


def test_requests_per_minute_limit_is_a_429_with_retry_after(new_key, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    _, client = new_key(rpm=2)
    for _ in range(2):
        client.chat.completions.create(model="default", messages=QUESTION)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="default", messages=QUESTION)

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.body["type"] == "requests"
    # A request's count leaves the window 60 to 61 s after it was made (whole seconds).
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 61


def test_tokens_per_minute_counts_real_usage(new_key, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, usage=(40, 20))))
    _, client = new_key(tpm=100)
    client.chat.completions.create(model="default", messages=QUESTION)  # 60 tokens
    client.chat.completions.create(model="default", messages=QUESTION)  # 120: window full

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="default", messages=QUESTION)

    assert caught.value.body["type"] == "tokens"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_a_key_reads_its_own_traces_but_never_another_keys(new_key, locked_gateway_url, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    alice, alice_client = new_key()
    bob, _ = new_key()
    raw = alice_client.chat.completions.with_raw_response.create(model="default", messages=QUESTION)
    request_id = raw.headers["x-request-id"]

    def read(secret: str) -> httpx.Response:
        return httpx.get(
            f"{locked_gateway_url}/api/requests/{request_id}",
            headers={"authorization": f"Bearer {secret}"},
        )

    assert read(alice["key"]).json()["key_name"] == "team"
    assert read(bob["key"]).status_code == 404
    assert read(MASTER_KEY).status_code == 200


def test_usage_shows_spend_remaining_and_reset(new_key, locked_gateway_url, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, usage=(1000, 100))))
    record, client = new_key(budget_usd=2.0, budget_period="day")
    client.chat.completions.create(model="default", messages=QUESTION)

    usage = httpx.get(
        f"{locked_gateway_url}/api/usage", headers={"authorization": f"Bearer {record['key']}"}
    ).json()

    assert usage["budget"]["spend_usd"] == pytest.approx((1000 * 0.15 + 100 * 0.60) / 1e6)
    assert usage["budget"]["resets_at"].endswith("+00:00")
    assert usage["totals"]["requests"] == 1


def test_admin_spend_groups_by_key_and_model(new_key, admin, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, usage=(10, 10))))
    admin.post("/admin/keys", json={"name": "x"})
    record, client = new_key()
    admin.patch(f"/admin/keys/{record['id']}", json={"name": "spend-probe"})
    client.chat.completions.create(model="default", messages=QUESTION)

    by_key = admin.get("/admin/spend", params={"group_by": "key"}).json()["data"]
    by_model = admin.get("/admin/spend", params={"group_by": "model"}).json()["data"]

    probe = next(row for row in by_key if row["key"] == "spend-probe")
    assert probe["requests"] == 1
    assert probe["cost_usd"] == pytest.approx((10 * 0.15 + 10 * 0.60) / 1e6)
    assert any(row["model"] == "small" for row in by_model)


def test_ledger_exports_as_json_lines_and_csv(new_key, admin, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    _, client = new_key()
    raw = client.chat.completions.with_raw_response.create(model="default", messages=QUESTION)

    lines = admin.get("/admin/ledger").text.splitlines()
    csv_text = admin.get("/admin/ledger", params={"format": "csv"}).text

    rows = [json.loads(line) for line in lines]
    mine = [r for r in rows if r["request_id"] == raw.headers["x-request-id"]]
    assert len(mine) == 1 and mine[0]["trace"]["attempts"][0]["model"] == "small"
    assert csv_text.splitlines()[0].startswith("request_id,created_at,key_id")
    assert raw.headers["x-request-id"] in csv_text


async def test_concurrent_requests_never_push_recorded_spend_over_the_budget(
    new_key, admin, locked_gateway_url, upstream
):
    answer = "word " * 60
    upstream.add(Rule(model="strong-model", reply=Reply(text=answer, latency_s=0.01)))
    record, _ = new_key(budget_usd=0.01)
    prompt = [{"role": "user", "content": "Explain budgets. " * 40}]
    per_call = (tokens.count_messages(prompt) * 2.5 + tokens.count_text(answer) * 10.0) / 1e6

    async with openai.AsyncOpenAI(
        base_url=f"{locked_gateway_url}/v1", api_key=record["key"], max_retries=0
    ) as client:

        async def one() -> int:
            try:
                await client.chat.completions.create(model="large", messages=prompt, max_tokens=80)
                return 200
            except openai.APIStatusError as exc:
                return exc.status_code

        statuses = await asyncio.gather(*(one() for _ in range(60)))

    served = statuses.count(200)
    assert set(statuses) <= {200, 402}
    assert served >= 1 and statuses.count(402) >= 1
    budget = admin.get(f"/admin/keys/{record['id']}").json()["budget"]
    assert budget["spend_usd"] <= 0.01
    assert budget["spend_usd"] == pytest.approx(served * per_call, rel=1e-6)
    assert len([r for r in upstream.requests if r.model == "strong-model"]) == served
    rows = [json.loads(line) for line in admin.get("/admin/ledger").text.splitlines()]
    mine = [r for r in rows if r["key_id"] == record["id"]]
    assert len(mine) == 60
    assert sum(r["cost_usd"] for r in mine) == pytest.approx(served * per_call, rel=1e-9)
    assert sum(r["outcome"] == "rejected" for r in mine) == statuses.count(402)
