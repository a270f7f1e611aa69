"""The Anthropic adapter against the Messages API wire format, served over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cascade_gateway.domain import ChatRequest, Delta, ToolCall, ToolCallDelta, merge_deltas
from cascade_gateway.errors import ProviderError
from cascade_gateway.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from tests.providers.wire import (
    ANTHROPIC_MODEL,
    MESSAGE_STOP,
    PING,
    ByteStream,
    FakeUpstream,
    anthropic_error,
    anthropic_message,
    anthropic_sse,
    anthropic_usage,
    block_start,
    block_stop,
    eventually,
    json_delta,
    message_delta,
    message_start,
    text_delta,
    unused_port,
)

HELLO = ChatRequest(messages=[{"role": "user", "content": "Say hello"}])
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
OK = anthropic_message([{"type": "text", "text": "Hi"}], usage=anthropic_usage(5, 1))


async def sent_body(
    upstream: FakeUpstream, provider: AnthropicProvider, request: ChatRequest
) -> dict[str, Any]:
    upstream.json(OK)
    await provider.complete("claude-haiku-4-5", request)
    return upstream.body


async def collect(provider: AnthropicProvider, request: ChatRequest = HELLO) -> list[Delta]:
    return [delta async for delta in provider.stream("claude-haiku-4-5", request)]


# --- request mapping ---------------------------------------------------------------------------


async def test_system_messages_join_into_the_system_prompt(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"},
        ]
    )

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]


async def test_tool_results_merge_into_one_user_message(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    calls = [
        {
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        },
    ]
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "24C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        tools=[WEATHER_TOOL],
    )

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_b",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "24C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]


async def test_tools_map_to_input_schema(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    request = ChatRequest(messages=HELLO.messages, tools=[WEATHER_TOOL])

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
async def test_tool_choice_maps_to_anthropic_form(
    anthropic_upstream: FakeUpstream,
    anthropic_provider: AnthropicProvider,
    tool_choice: str | dict[str, Any],
    expected: dict[str, Any],
) -> None:
    request = ChatRequest(messages=HELLO.messages, tools=[WEATHER_TOOL], tool_choice=tool_choice)

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["tool_choice"] == expected


async def test_max_tokens_defaults_when_the_request_sets_none(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    body = await sent_body(anthropic_upstream, anthropic_provider, HELLO)

    assert body["max_tokens"] == DEFAULT_MAX_TOKENS == 4096


async def test_stop_becomes_stop_sequences(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    request = ChatRequest(messages=HELLO.messages, max_tokens=100, stop=["END"])

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["stop_sequences"] == ["END"]
    assert body["max_tokens"] == 100
    assert "stop" not in body


async def test_openai_only_extras_are_dropped_and_anthropic_ones_pass(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    request = ChatRequest(messages=HELLO.messages, temperature=1.5, extra={"seed": 1, "top_k": 5})

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["top_k"] == 5
    assert body["temperature"] == 1.0
    assert "seed" not in body


async def test_json_response_format_asks_for_json_in_the_system_prompt(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = ChatRequest(
        messages=[{"role": "system", "content": "Be exact."}, *HELLO.messages],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["system"].startswith("Be exact.\n\nRespond with a single JSON value")
    assert json.dumps(schema) in body["system"]
    assert "response_format" not in body


async def test_images_map_to_image_blocks(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    parts = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    request = ChatRequest(messages=[{"role": "user", "content": parts}])

    body = await sent_body(anthropic_upstream, anthropic_provider, request)

    assert body["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_unsupported_content_raises_400_without_calling_upstream(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}}]

    with pytest.raises(ProviderError, match="image") as raised:
        await anthropic_provider.complete(
            "claude-haiku-4-5", ChatRequest(messages=[{"role": "user", "content": parts}])
        )

    assert raised.value.status == 400
    assert anthropic_upstream.requests == []


async def test_request_goes_to_base_url_with_key_version_and_headers(
    anthropic_upstream: FakeUpstream,
) -> None:
    provider = AnthropicProvider(
        "p", base_url=anthropic_upstream.url + "/", api_key="sk-ant-test", headers={"x-team": "s"}
    )
    anthropic_upstream.json(OK)

    await provider.complete("claude-haiku-4-5", HELLO)
    await provider.aclose()

    sent = anthropic_upstream.requests[-1]
    assert (sent.method, sent.url) == ("POST", f"{anthropic_upstream.url}/v1/messages")
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-team"] == "s"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert anthropic_upstream.body["model"] == "claude-haiku-4-5"
    assert "stream" not in anthropic_upstream.body


async def test_stream_request_asks_for_a_stream(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    anthropic_upstream.sse(
        anthropic_sse(message_start(10), message_delta("end_turn", 1), MESSAGE_STOP)
    )

    await collect(anthropic_provider)

    assert anthropic_upstream.body["stream"] is True
    assert anthropic_upstream.body["model"] == "claude-haiku-4-5"
    assert anthropic_upstream.requests[-1].headers["accept"] == "text/event-stream"


async def test_key_and_base_url_come_from_the_environment(
    anthropic_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_upstream.url)
    provider = AnthropicProvider("p")
    anthropic_upstream.json(OK)

    await provider.complete("claude-haiku-4-5", HELLO)
    await provider.aclose()

    sent = anthropic_upstream.requests[-1]
    assert sent.url == f"{anthropic_upstream.url}/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-env"


async def test_keyless_upstream_gets_a_request_without_a_key(
    anthropic_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    provider = AnthropicProvider("local", base_url=anthropic_upstream.url, api_key=None)
    anthropic_upstream.json(OK)

    completion = await provider.complete("claude-haiku-4-5", HELLO)
    await provider.aclose()

    assert completion.text == "Hi"
    sent = anthropic_upstream.requests[-1]
    assert "x-api-key" not in sent.headers
    assert "authorization" not in sent.headers


# --- responses ---------------------------------------------------------------------------------


async def test_complete_maps_text_tool_use_and_cached_usage(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    content = [
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"city": "Paris"},
        },
    ]
    usage = anthropic_usage(20, 30, cache_creation=100, cache_read=1000)
    anthropic_upstream.json(anthropic_message(content, "tool_use", usage=usage))

    completion = await anthropic_provider.complete("claude-haiku-4-5", HELLO)

    assert completion.text == "Let me check."
    assert completion.tool_calls == [
        ToolCall(
            id="toolu_01A09q90qw90lq917835lq9", name="get_weather", arguments='{"city": "Paris"}'
        )
    ]
    assert completion.finish_reason == "tool_calls"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (1120, 30)
    assert completion.model == ANTHROPIC_MODEL
    assert completion.logprobs is None


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(
    anthropic_upstream: FakeUpstream,
    anthropic_provider: AnthropicProvider,
    stop_reason: str,
    finish_reason: str,
) -> None:
    content = [{"type": "text", "text": "Hi"}]
    anthropic_upstream.json(anthropic_message(content, stop_reason, usage=anthropic_usage(5, 1)))

    completion = await anthropic_provider.complete("claude-haiku-4-5", HELLO)

    assert completion.finish_reason == finish_reason


async def test_stream_maps_text_and_tool_use_then_one_final_delta(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    tool = {
        "type": "tool_use",
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "name": "get_weather",
        "input": {},
    }
    anthropic_upstream.sse(
        anthropic_sse(
            message_start(472, cache_read=28),
            block_start(0, {"type": "text", "text": ""}),
            PING,
            text_delta(0, "Let me "),
            text_delta(0, "check."),
            block_stop(0),
            block_start(1, tool),
            json_delta(1, ""),
            json_delta(1, '{"city": '),
            json_delta(1, '"Paris"}'),
            block_stop(1),
            message_delta("tool_use", 89),
            MESSAGE_STOP,
        )
    )

    deltas = await collect(anthropic_provider)

    assert "".join(d.text for d in deltas) == "Let me check."
    assert merge_deltas(deltas[:-1]).tool_calls == (
        ToolCallDelta(
            0,
            id="toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            name="get_weather",
            arguments='{"city": "Paris"}',
        ),
    )
    final = deltas[-1]
    assert final.finish_reason == "tool_calls"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (500, 89)
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])


async def test_stream_sends_empty_object_for_a_tool_called_without_input(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    tool = {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}
    anthropic_upstream.sse(
        anthropic_sse(
            message_start(10),
            block_start(0, tool),
            json_delta(0, ""),
            block_stop(0),
            message_delta("tool_use", 12),
            MESSAGE_STOP,
        )
    )

    deltas = await collect(anthropic_provider)

    assert "".join(c.arguments for d in deltas for c in d.tool_calls) == "{}"


async def test_stream_cut_before_message_stop_raises(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    anthropic_upstream.sse(
        anthropic_sse(
            message_start(10), block_start(0, {"type": "text", "text": ""}), text_delta(0, "Hel")
        )
    )

    with pytest.raises(ProviderError, match="message_stop") as raised:
        await collect(anthropic_provider)

    assert raised.value.retryable


async def test_closing_stream_early_aborts_the_response(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    opening = anthropic_sse(message_start(10), block_start(0, {"type": "text", "text": ""}))
    body = ByteStream([opening] + [anthropic_sse(text_delta(0, "x"))] * 1000, delay_s=0.01)
    anthropic_upstream.stream(body)

    stream = anthropic_provider.stream("claude-haiku-4-5", HELLO)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]

    assert await eventually(lambda: body.closed)
    assert body.read < 10


# --- errors ------------------------------------------------------------------------------------


async def test_rate_limit_maps_status_retry_after_and_body(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    error = anthropic_error(
        "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
    )
    anthropic_upstream.json(error, status=429, headers={"retry-after": "2", "request-id": "req_1"})

    with pytest.raises(ProviderError) as raised:
        await anthropic_provider.complete("claude-haiku-4-5", HELLO)

    assert (raised.value.status, raised.value.retry_after) == (429, 2.0)
    assert raised.value.body == error


async def test_overloaded_maps_status_529(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    anthropic_upstream.json(anthropic_error("overloaded_error", "Overloaded"), status=529)

    with pytest.raises(ProviderError) as raised:
        await anthropic_provider.complete("claude-haiku-4-5", HELLO)

    assert raised.value.status == 529
    assert raised.value.retryable


async def test_error_event_mid_stream_takes_the_status_of_its_type(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    anthropic_upstream.sse(
        anthropic_sse(message_start(10), anthropic_error("overloaded_error", "Overloaded"))
    )

    with pytest.raises(ProviderError, match="Overloaded") as raised:
        await collect(anthropic_provider)

    assert raised.value.status == 529


async def test_malformed_event_mid_stream_raises_provider_error(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    anthropic_upstream.sse(
        anthropic_sse(message_start(10)) + b'event: content_block_delta\ndata: {"type\n\n'
    )

    with pytest.raises(ProviderError, match="malformed") as raised:
        await collect(anthropic_provider)

    assert raised.value.status is None


async def test_rate_limit_on_stream_open_raises_on_first_iteration(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    error = anthropic_error("rate_limit_error", "slow down")
    anthropic_upstream.json(error, status=429, headers={"retry-after": "3"})

    with pytest.raises(ProviderError, match="slow down") as raised:
        await collect(anthropic_provider)

    assert (raised.value.status, raised.value.retry_after) == (429, 3.0)
    assert raised.value.body == error


async def test_error_event_keeps_the_whole_event_as_body(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider
) -> None:
    error = anthropic_error("rate_limit_error", "slow down")
    anthropic_upstream.sse(anthropic_sse(message_start(10), error))

    with pytest.raises(ProviderError, match="slow down") as raised:
        await collect(anthropic_provider)

    assert raised.value.status == 429
    assert raised.value.body == error


@pytest.mark.parametrize("answer", [b"<html>bad gateway</html>", b'{"type": "message"}'])
async def test_answer_without_content_raises_provider_error(
    anthropic_upstream: FakeUpstream, anthropic_provider: AnthropicProvider, answer: bytes
) -> None:
    anthropic_upstream.raw(answer)

    with pytest.raises(ProviderError) as raised:
        await anthropic_provider.complete("claude-haiku-4-5", HELLO)

    assert raised.value.status is None


async def test_timeout_is_flagged_without_status(anthropic_upstream: FakeUpstream) -> None:
    anthropic_upstream.hang(seconds=5)
    impatient = AnthropicProvider("p", base_url=anthropic_upstream.url, timeout_s=0.2)

    with pytest.raises(ProviderError) as raised:
        await impatient.complete("claude-haiku-4-5", HELLO)
    await impatient.aclose()

    assert raised.value.timed_out
    assert raised.value.status is None


async def test_connection_failure_has_no_status() -> None:
    provider = AnthropicProvider("p", base_url=f"http://127.0.0.1:{unused_port()}")

    with pytest.raises(ProviderError, match="connection") as raised:
        await provider.complete("claude-haiku-4-5", HELLO)
    await provider.aclose()

    assert raised.value.status is None
    assert not raised.value.timed_out
