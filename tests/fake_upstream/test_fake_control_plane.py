"""Other processes script the fake over HTTP; the fake also runs inside an event loop."""

from __future__ import annotations

import httpx
import openai

from cascade_gateway.fake_upstream import FakeUpstream, Reply, Rule

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_posted_rules_answer_requests(up: FakeUpstream, client: openai.OpenAI):
    posted = httpx.post(
        up.url + "/_fake/rules", json=[{"model": "draft", "reply": {"text": "Paris."}}]
    )

    completion = client.chat.completions.create(model="draft", messages=QUESTION)

    assert posted.json() == {"added": 1}
    assert completion.choices[0].message.content == "Paris."


def test_the_live_rules_are_listed_as_plain_data(up: FakeUpstream):
    up.add(Rule(model="draft", reply=Reply(text="Paris.")))

    listed = httpx.get(up.url + "/_fake/rules").json()

    assert listed == [{"model": "draft", "reply": {"text": "Paris."}}]


def test_deleting_rules_restores_the_default_answer(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="draft", reply=Reply(text="Paris.")))

    httpx.delete(up.url + "/_fake/rules")
    completion = client.chat.completions.create(model="draft", messages=QUESTION)

    assert completion.choices[0].message.content == "Fake answer from draft."


def test_a_malformed_rule_is_refused_with_a_400(up: FakeUpstream):
    response = httpx.post(up.url + "/_fake/rules", json=[{"modle": "typo"}])

    assert response.status_code == 400
    assert "modle" in response.json()["error"]


def test_the_history_is_served_and_cleared(up: FakeUpstream, client: openai.OpenAI):
    client.chat.completions.create(model="draft", messages=QUESTION)

    history = httpx.get(up.url + "/_fake/requests").json()
    httpx.delete(up.url + "/_fake/requests")

    assert [(r["path"], r["model"], r["stream"]) for r in history] == [
        ("/v1/chat/completions", "draft", False)
    ]
    assert up.requests == []


async def test_the_fake_serves_from_the_current_event_loop():
    async with (
        FakeUpstream.serving([Rule(reply=Reply(text="Paris."))]) as up,
        openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0) as client,
    ):
        completion = await client.chat.completions.create(model="m", messages=QUESTION)

    assert completion.choices[0].message.content == "Paris."
