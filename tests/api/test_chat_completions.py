"""/v1/chat/completions through the official openai SDK, against the fake upstream."""

from __future__ import annotations

import json
import logging
import socket
import time

import openai
import pytest

from cascade_gateway import tokens
from cascade_gateway.fake_upstream import Fault, Reply, Rule
from cascade_gateway.observability import logs

GOOD = "The capital of France is Paris."
HEDGE = "I'm not sure, but it might possibly be Lyon, I think. I don't know."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_good_draft_is_served_by_the_draft_model(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    completion = client.chat.completions.create(model="default", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD
    assert completion.model == "small"
    assert [r.model for r in upstream.requests] == ["draft-model"]


def test_hedging_draft_is_answered_by_the_strong_model(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    completion = client.chat.completions.create(model="default", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD
    assert completion.model == "large"
    assert [r.model for r in upstream.requests] == ["draft-model", "strong-model"]


def test_truncated_draft_escalates(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text="The capital", finish_reason="length")))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    completion = client.chat.completions.create(model="default", messages=QUESTION)

    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "large"


def test_invalid_json_draft_escalates_when_json_was_requested(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text='{"city": "Paris"')))
    upstream.add(Rule(model="strong-model", reply=Reply(text='{"city": "Paris"}')))

    completion = client.chat.completions.create(
        model="default", messages=QUESTION, response_format={"type": "json_object"}
    )

    assert json.loads(completion.choices[0].message.content) == {"city": "Paris"}
    assert completion.model == "large"


def test_draft_calling_an_unknown_tool_escalates(client, upstream):
    upstream.add(
        Rule(model="draft-model", reply=Reply(tool_calls=[("get_wether", '{"city": "Paris"}')]))
    )
    upstream.add(
        Rule(model="strong-model", reply=Reply(tool_calls=[("get_weather", '{"city": "Paris"}')]))
    )

    completion = client.chat.completions.create(
        model="default", messages=QUESTION, tools=[WEATHER_TOOL]
    )

    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"


def test_plain_model_name_goes_straight_to_that_model(client, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=HEDGE)))

    completion = client.chat.completions.create(model="large", messages=QUESTION)

    assert completion.choices[0].message.content == HEDGE
    assert [r.model for r in upstream.requests] == ["strong-model"]


def test_cost_is_in_headers_and_body_and_exact(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, usage=(1000, 200))))

    raw = client.chat.completions.with_raw_response.create(model="default", messages=QUESTION)
    completion = raw.parse()

    draft_cost = (1000 * 0.15 + 200 * 0.60) / 1e6
    strong_cost = (1000 * 2.50 + 200 * 10.00) / 1e6
    assert float(raw.headers["x-cascade-cost-usd"]) == pytest.approx(draft_cost, abs=1e-10)
    assert raw.headers["x-cascade-outcome"] == "accepted"
    summary = completion.model_extra["cascade"]
    assert summary["cost_usd"] == pytest.approx(draft_cost, rel=1e-12)
    assert summary["savings_usd"] == pytest.approx(strong_cost - draft_cost, rel=1e-12)
    assert completion.usage.prompt_tokens == 1000
    assert completion.usage.completion_tokens == 200


def test_every_response_carries_a_request_id_and_honours_the_callers(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=QUESTION, extra_headers={"x-request-id": "caller-123"}
    )

    assert raw.headers["x-request-id"] == "caller-123"
    assert raw.parse().id == "chatcmpl-caller-123"


def test_trace_of_an_escalated_request_is_stored_with_every_attempt(client, http, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE, usage=(100, 30))))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD, usage=(100, 10))))
    raw = client.chat.completions.with_raw_response.create(model="default", messages=QUESTION)

    trace = http.get(f"/api/requests/{raw.headers['x-request-id']}").json()

    assert trace["outcome"] == "escalated"
    assert [a["model"] for a in trace["attempts"]] == ["small", "large"]
    draft, strong = trace["attempts"]
    assert draft["decision"] == "escalated"
    assert draft["verdict"]["accepted"] is False
    assert {s["name"] for s in draft["verdict"]["signals"]} >= {"hedging", "refusal"}
    assert draft["cost_usd"] == pytest.approx((100 * 0.15 + 30 * 0.60) / 1e6, rel=1e-12)
    assert strong["cost_usd"] == pytest.approx((100 * 2.50 + 10 * 10.00) / 1e6, rel=1e-12)
    assert trace["cost_usd"] == pytest.approx(draft["cost_usd"] + strong["cost_usd"], rel=1e-12)
    assert trace["savings_usd"] == pytest.approx(-draft["cost_usd"], rel=1e-12)
    assert trace["timing_ms"]["draft"] > 0 and trace["timing_ms"]["escalate"] > 0


def test_draft_request_asks_upstream_for_logprobs(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    completion = client.chat.completions.create(model="default", messages=QUESTION)

    assert upstream.requests[0].json["logprobs"] is True
    # ...but the client did not ask for them, so it does not get them.
    assert completion.choices[0].logprobs is None


def test_stream_of_an_accepted_draft(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    chunks = list(
        client.chat.completions.create(
            model="default", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == GOOD
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].model_extra["cascade"]["outcome"] == "accepted"


def test_a_streamed_cascade_fetches_its_held_draft_whole(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    for _ in client.chat.completions.create(model="default", messages=QUESTION, stream=True):
        pass

    draft, strong = upstream.requests
    assert not draft.json.get("stream")  # judged before anything is sent: no need to stream
    assert strong.json["stream"] is True  # the final tier's answer goes out as it comes


def test_a_finished_stream_is_recorded_with_its_outcome(client, http, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    for _ in client.chat.completions.create(
        model="default", messages=QUESTION, stream=True, extra_headers={"x-request-id": "s-1"}
    ):
        pass

    trace = http.get("/api/requests/s-1").json()
    assert trace["outcome"] == "accepted"
    assert trace["streamed"] is True and trace["ttft_ms"] > 0


def test_stream_of_an_escalated_request_never_shows_the_draft(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    with client.chat.completions.create(model="default", messages=QUESTION, stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert text == GOOD


def test_stream_without_include_usage_has_no_empty_choices_chunk(client, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    chunks = list(client.chat.completions.create(model="default", messages=QUESTION, stream=True))

    assert all(c.choices for c in chunks)
    assert chunks[-1].model_extra["cascade"]["model_used"] == "small"


def test_stream_without_upstream_usage_is_counted_and_says_so(client, http, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD, omit_usage=True)))

    chunks = list(
        client.chat.completions.create(
            model="large",
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": "counted-1"},
        )
    )

    assert chunks[-1].usage.completion_tokens == tokens.count_text(GOOD)
    attempt = http.get("/api/requests/counted-1").json()["attempts"][0]
    assert attempt["usage_counted"] is True
    assert attempt["output_tokens"] == tokens.count_text(GOOD)


def test_streamed_tool_calls_accumulate_in_the_sdk(client, upstream):
    upstream.add(
        Rule(model="draft-model", reply=Reply(tool_calls=[("get_weather", '{"city": "Paris"}')]))
    )

    with client.chat.completions.stream(
        model="default", messages=QUESTION, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()

    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_async_client_non_streaming(aclient, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    completion = await aclient.chat.completions.create(model="default", messages=QUESTION)

    assert completion.choices[0].message.content == GOOD


async def test_async_client_streaming_escalation(aclient, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text="I cannot help with that.")))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    stream = await aclient.chat.completions.create(model="default", messages=QUESTION, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert text == GOOD


def test_models_lists_cascades_then_models(client):
    ids = [m.id for m in client.models.list()]

    assert ids[:2] == ["anthropic", "default"]
    assert {"small", "medium", "large", "haiku"} <= set(ids)


def test_a_model_is_looked_up_by_its_id_as_the_list_shows_it(client):
    listed = {m.id: m for m in client.models.list()}

    assert client.models.retrieve("default") == listed["default"]
    assert client.models.retrieve("large").model_extra["mode"] == "direct"


def test_looking_up_an_unknown_model_is_a_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")

    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


def test_anthropic_draft_is_accepted_through_the_messages_api(client, upstream):
    upstream.add(Rule(model="claude-draft", protocol="anthropic", reply=Reply(text=GOOD)))

    completion = client.chat.completions.create(
        model="anthropic",
        messages=[{"role": "system", "content": "Be brief."}, *QUESTION],
    )

    assert completion.choices[0].message.content == GOOD
    request = upstream.requests[0]
    assert request.path == "/v1/messages"
    assert request.json["system"] == "Be brief."


def test_anthropic_model_streams_through_the_messages_api(client, upstream):
    upstream.add(Rule(model="claude-draft", protocol="anthropic", reply=Reply(text=GOOD)))

    with client.chat.completions.create(model="haiku", messages=QUESTION, stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert text == GOOD
    assert upstream.requests[0].json["stream"] is True


def test_anthropic_draft_of_a_stream_is_fetched_whole_and_streamed_on(client, upstream):
    upstream.add(Rule(model="claude-draft", protocol="anthropic", reply=Reply(text=GOOD)))

    with client.chat.completions.create(
        model="anthropic", messages=QUESTION, stream=True
    ) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert text == GOOD
    assert upstream.requests[0].path == "/v1/messages"
    assert not upstream.requests[0].json.get("stream")


# --- bad input and failures: the right status, OpenAI's error shape -------------------------


def assert_openai_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert response.headers["x-request-id"]
    return error


def test_malformed_json_is_a_400(http):
    response = http.post(
        "/v1/chat/completions",
        content=b'{"model": "default", "messages": [',
        headers={"content-type": "application/json"},
    )

    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"


def test_missing_messages_is_a_400_naming_the_param(http):
    response = http.post("/v1/chat/completions", json={"model": "default"})

    error = assert_openai_error(response, 400)
    assert error["param"] == "messages"


def test_unknown_model_is_a_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nonexistent", messages=QUESTION)

    assert caught.value.code == "model_not_found"


def test_oversized_body_is_a_413(http):
    huge = "x" * (65 * 1024)
    response = http.post(
        "/v1/chat/completions",
        json={"model": "default", "messages": [{"role": "user", "content": huge}]},
    )

    assert_openai_error(response, 413, "request_too_large")


def test_an_oversized_body_sent_without_a_length_is_a_413(http):
    pieces = (b"x" * 1024 for _ in range(65))  # chunked: no content-length to refuse early

    response = http.post("/v1/chat/completions", content=pieces)

    assert_openai_error(response, 413, "request_too_large")


def test_a_body_sent_in_pieces_is_read_whole(http, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    body = json.dumps({"model": "large", "messages": QUESTION}).encode()
    pieces = (body[i : i + 16] for i in range(0, len(body), 16))

    response = http.post("/v1/chat/completions", content=pieces)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == GOOD


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/query"])
def test_a_client_gone_before_its_body_is_whole_is_logged_as_499_not_an_error(
    gateway_url, caplog, path
):
    host, port = gateway_url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )

    with caplog.at_level(logging.INFO, logger="cascade_gateway"):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode() + b'{"model": "default", "mess')
        line = wait_for_request_line(caplog)

    assert line["status"] == 499
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def wait_for_request_line(caplog: pytest.LogCaptureFixture) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r.fields for r in caplog.records if r.name == logs.ACCESS.name]
        if lines:
            return lines[0]
        time.sleep(0.01)
    raise AssertionError("the gateway wrote no line for the request")


def test_prompt_longer_than_the_context_window_is_a_400(http):
    prompt = "word " * 500

    response = http.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": prompt}]},
    )

    error = assert_openai_error(response, 400, "context_length_exceeded")
    assert error["param"] == "messages"


def test_n_greater_than_one_is_refused(http):
    response = http.post(
        "/v1/chat/completions", json={"model": "default", "messages": QUESTION, "n": 2}
    )

    error = assert_openai_error(response, 400)
    assert error["param"] == "n"


def test_upstream_failure_on_the_final_tier_is_a_502(http, upstream):
    upstream.add(Rule(model="strong-model", fault=Fault(status=500)))

    response = http.post("/v1/chat/completions", json={"model": "large", "messages": QUESTION})

    error = assert_openai_error(response, 502)
    assert error["type"] == "upstream_error"


def test_upstream_down_on_a_stream_is_a_502_before_any_byte(http, upstream):
    upstream.add(Rule(model="draft-model", fault=Fault(status=503)))
    upstream.add(Rule(model="strong-model", fault=Fault(status=500)))

    response = http.post(
        "/v1/chat/completions", json={"model": "default", "messages": QUESTION, "stream": True}
    )

    assert_openai_error(response, 502)


def test_stream_broken_after_text_ends_with_an_error_the_sdk_raises(client, upstream):
    upstream.add(Rule(model="strong-model", fault=Fault(kind="broken_stream", after_chunks=3)))
    received = []

    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="large", messages=QUESTION, stream=True):
            received.append(chunk)

    assert received  # text had already been sent when the upstream broke


def test_unknown_path_is_an_openai_shaped_404(http):
    assert_openai_error(http.get("/v1/nope"), 404, "not_found")


def test_chat_completions_answers_only_post_with_a_405_naming_it(http):
    response = http.get("/v1/chat/completions")

    assert_openai_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_a_wrong_method_on_any_route_is_the_same_405(http):
    response = http.delete("/v1/models")

    assert_openai_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
