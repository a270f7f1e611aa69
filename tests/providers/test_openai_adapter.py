"""The OpenAI adapter against OpenAI's wire format, served over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cascade_gateway.domain import (
    ChatRequest,
    Delta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    merge_deltas,
)
from cascade_gateway.errors import ProviderError
from cascade_gateway.providers.http import parse_retry_after
from cascade_gateway.providers.openai import OpenAIProvider
from tests.providers.wire import (
    OPENAI_MODEL,
    ByteStream,
    FakeUpstream,
    eventually,
    openai_chunk,
    openai_completion,
    openai_sse,
    openai_usage,
    top_logprob,
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


async def collect(provider: OpenAIProvider, request: ChatRequest = HELLO) -> list[Delta]:
    return [delta async for delta in provider.stream("gpt-4o-mini", request)]


# --- non-streamed ------------------------------------------------------------------------------


async def test_complete_maps_text_usage_and_reported_model(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(
        openai_completion({"content": "Hello!"}, usage=openai_usage(prompt=9, completion=2))
    )

    completion = await openai_provider.complete("gpt-4o-mini", HELLO)

    assert completion.text == "Hello!"
    assert completion.finish_reason == "stop"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (9, 2)
    assert not completion.usage.counted
    assert completion.model == OPENAI_MODEL
    assert completion.logprobs is None


async def test_complete_maps_tool_calls_and_null_content(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    call = {
        "id": "call_FthC9qRpsL5kBpwwyw6c7j4k",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    openai_upstream.json(
        openai_completion(
            {"content": None, "tool_calls": [call]}, "tool_calls", usage=openai_usage(80, 17)
        )
    )

    completion = await openai_provider.complete("gpt-4o-mini", HELLO)

    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == [
        ToolCall(
            id="call_FthC9qRpsL5kBpwwyw6c7j4k", name="get_weather", arguments='{"city": "Paris"}'
        )
    ]


async def test_complete_maps_token_logprobs(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    logprobs = {"content": [top_logprob("Hello", -0.01), top_logprob("!", -0.5)], "refusal": None}
    openai_upstream.json(
        openai_completion({"content": "Hello!"}, usage=openai_usage(9, 2), logprobs=logprobs)
    )

    completion = await openai_provider.complete("gpt-4o-mini", HELLO.with_logprobs())

    assert completion.logprobs == [TokenLogprob("Hello", -0.01), TokenLogprob("!", -0.5)]


async def test_complete_counts_usage_when_upstream_reports_none(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(openai_completion({"content": "Hello there, how are you?"}))

    completion = await openai_provider.complete("gpt-4o-mini", HELLO)

    assert completion.usage.counted
    assert 5 <= completion.usage.input_tokens <= 15
    assert 5 <= completion.usage.output_tokens <= 9


async def test_non_json_answer_raises_provider_error(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.raw(b"<html>502 Bad Gateway</html>")

    with pytest.raises(ProviderError, match="other than JSON") as raised:
        await openai_provider.complete("gpt-4o-mini", HELLO)

    assert raised.value.status is None


# --- request mapping ---------------------------------------------------------------------------


async def test_request_body_carries_every_mapped_parameter(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(openai_completion({"content": "{}"}, usage=openai_usage(1, 1)))
    request = ChatRequest(
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        response_format={"type": "json_object"},
        logprobs=True,
        top_logprobs=3,
        extra={"seed": 7, "user": "u-1"},
    )

    await openai_provider.complete("gpt-4o-mini", request)

    assert openai_upstream.body == {
        "model": "gpt-4o-mini",
        "messages": request.messages,
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 3,
        "seed": 7,
        "user": "u-1",
    }


async def test_request_goes_to_base_url_with_key_and_headers(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(openai_completion({"content": "Hi"}, usage=openai_usage(1, 1)))

    await openai_provider.complete("gpt-4o-mini", HELLO)

    sent = openai_upstream.requests[-1]
    assert sent.url == f"{openai_upstream.url}/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["x-team"] == "search"


async def test_max_completion_tokens_in_extra_replaces_max_tokens(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(openai_completion({"content": "Hi"}, usage=openai_usage(1, 1)))
    request = ChatRequest(
        messages=HELLO.messages, max_tokens=64, extra={"max_completion_tokens": None}
    )

    await openai_provider.complete("o4-mini", request)

    assert openai_upstream.body["max_completion_tokens"] == 64
    assert "max_tokens" not in openai_upstream.body


async def test_stream_request_asks_for_usage(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.sse(openai_sse(openai_chunk({"content": "Hi"}, "stop")))

    await collect(openai_provider)

    assert openai_upstream.body["stream"] is True
    assert openai_upstream.body["stream_options"] == {"include_usage": True}


# --- streamed ----------------------------------------------------------------------------------


async def test_stream_yields_text_then_one_final_delta_with_finish_and_usage(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.sse(
        openai_sse(
            openai_chunk({"role": "assistant", "content": "", "refusal": None}),
            openai_chunk({"content": "Hel"}, logprobs={"content": [top_logprob("Hel", -0.1)]}),
            openai_chunk({"content": "lo"}, logprobs={"content": [top_logprob("lo", -0.2)]}),
            openai_chunk({}, "stop"),
            openai_chunk(None, usage=openai_usage(9, 2)),
        )
    )

    deltas = await collect(openai_provider, HELLO.with_logprobs())

    assert "".join(d.text for d in deltas[:-1]) == "Hello"
    assert [lp for d in deltas[:-1] for lp in d.logprobs] == [
        TokenLogprob("Hel", -0.1),
        TokenLogprob("lo", -0.2),
    ]
    final = deltas[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.counted) == (
        9,
        2,
        False,
    )
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])


async def test_stream_maps_tool_call_fragments_by_index(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    def call_start(index: int, call_id: str) -> dict[str, object]:
        function = {"name": "get_weather", "arguments": ""}
        return {"index": index, "id": call_id, "type": "function", "function": function}

    def call_args(index: int, arguments: str) -> dict[str, object]:
        return {"index": index, "function": {"arguments": arguments}}

    openai_upstream.sse(
        openai_sse(
            openai_chunk(
                {"role": "assistant", "content": None, "tool_calls": [call_start(0, "call_a")]}
            ),
            openai_chunk({"tool_calls": [call_args(0, '{"city": ')]}),
            openai_chunk({"tool_calls": [call_args(0, '"Paris"}')]}),
            openai_chunk({"tool_calls": [call_start(1, "call_b")]}),
            openai_chunk({"tool_calls": [call_args(1, '{"city": "Rome"}')]}),
            openai_chunk({}, "tool_calls"),
            openai_chunk(None, usage=openai_usage(80, 40)),
        )
    )

    deltas = await collect(
        openai_provider, ChatRequest(messages=HELLO.messages, tools=[WEATHER_TOOL])
    )

    assert merge_deltas(deltas[:-1]).tool_calls == (
        ToolCallDelta(0, id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCallDelta(1, id="call_b", name="get_weather", arguments='{"city": "Rome"}'),
    )
    assert deltas[-1].finish_reason == "tool_calls"


async def test_stream_passes_on_chunks_that_arrived_together_as_one_delta(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.sse(
        openai_sse(
            openai_chunk({"content": "Hel"}),
            openai_chunk({"content": "lo"}),
            openai_chunk({}, "stop"),
        )
    )

    deltas = await collect(openai_provider)

    assert [d.text for d in deltas] == ["Hello", ""]


async def test_stream_passes_on_chunks_that_arrived_apart_as_they_came(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    pieces = [openai_chunk({"content": "Hel"}), openai_chunk({"content": "lo"})]
    chunks = [openai_sse(piece, done=False) for piece in pieces]
    openai_upstream.stream(ByteStream([*chunks, openai_sse(openai_chunk({}, "stop"))], 0.02))

    deltas = await collect(openai_provider)

    assert [d.text for d in deltas] == ["Hel", "lo", ""]


async def test_stream_counts_usage_when_upstream_reports_none(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    # vLLM and Ollama without stream_options support send no usage chunk.
    openai_upstream.sse(
        openai_sse(
            openai_chunk({"content": "Hello there, "}),
            openai_chunk({"content": "how are you?"}),
            openai_chunk({}, "stop"),
        )
    )

    deltas = await collect(openai_provider)

    usage = deltas[-1].usage
    assert usage is not None and usage.counted
    assert 5 <= usage.input_tokens <= 15
    assert 5 <= usage.output_tokens <= 9
    assert sum(d.usage is not None for d in deltas) == 1


async def test_a_malformed_chunk_is_an_upstream_error(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.sse(openai_sse({"choices": ["not an object"]}))

    with pytest.raises(ProviderError, match="malformed chunk"):
        await collect(openai_provider)


async def test_a_malformed_completion_is_an_upstream_error(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json({"choices": [{"message": "not an object"}]})

    with pytest.raises(ProviderError, match="malformed chat completion"):
        await openai_provider.complete("gpt-4o-mini", HELLO)


async def test_stream_cut_before_finish_reason_raises(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.sse(openai_sse(openai_chunk({"content": "Hel"}), done=False))

    with pytest.raises(ProviderError, match="finish_reason") as raised:
        await collect(openai_provider)

    assert raised.value.retryable


async def test_closing_stream_early_aborts_the_response(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    body = ByteStream([openai_sse(openai_chunk({"content": "x"}), done=False)] * 1000, 0.01)
    openai_upstream.stream(body)

    stream = openai_provider.stream("gpt-4o-mini", HELLO)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]

    assert await eventually(lambda: body.closed)
    assert body.read < 10


# --- errors ------------------------------------------------------------------------------------


async def test_rate_limit_maps_status_and_retry_after(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    error = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    openai_upstream.json(error, status=429, headers={"retry-after": "2"})

    with pytest.raises(ProviderError) as raised:
        await openai_provider.complete("gpt-4o-mini", HELLO)

    assert (raised.value.status, raised.value.retry_after) == (429, 2.0)
    assert raised.value.body == error["error"]
    assert raised.value.provider == "openai-test"


async def test_rate_limit_on_stream_open_raises_on_first_iteration(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(
        {"error": {"message": "slow down"}}, status=429, headers={"retry-after-ms": "1500"}
    )

    with pytest.raises(ProviderError) as raised:
        await collect(openai_provider)

    assert (raised.value.status, raised.value.retry_after) == (429, 1.5)


async def test_server_error_maps_status(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.json(
        {"error": {"message": "The server had an error", "type": "server_error"}}, status=500
    )

    with pytest.raises(ProviderError) as raised:
        await openai_provider.complete("gpt-4o-mini", HELLO)

    assert raised.value.status == 500
    assert raised.value.retryable
    assert not raised.value.timed_out


async def test_timeout_is_flagged_without_status(openai_upstream: FakeUpstream) -> None:
    openai_upstream.hang(seconds=5)
    impatient = OpenAIProvider("p", base_url=openai_upstream.url + "/v1", timeout_s=0.2)

    with pytest.raises(ProviderError) as raised:
        await impatient.complete("gpt-4o-mini", HELLO)
    await impatient.aclose()

    assert raised.value.timed_out
    assert raised.value.status is None


async def test_connection_refused_has_no_status() -> None:
    port = unused_port()
    provider = OpenAIProvider("local", base_url=f"http://127.0.0.1:{port}/v1", api_key=None)

    with pytest.raises(ProviderError, match="connection failed") as raised:
        await provider.complete("qwen", HELLO)
    await provider.aclose()

    assert raised.value.status is None and raised.value.status_code == 502
    assert not raised.value.timed_out


async def test_error_frame_mid_stream_raises_provider_error(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    error = {"error": {"message": "The model is overloaded", "type": "server_error"}}
    openai_upstream.sse(openai_sse(openai_chunk({"content": "Hel"}), error, done=False))

    with pytest.raises(ProviderError, match="overloaded") as raised:
        await collect(openai_provider)

    assert raised.value.status is None


async def test_malformed_chunk_mid_stream_raises_provider_error(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    openai_upstream.sse(
        openai_sse(openai_chunk({"content": "Hel"}), done=False) + b'data: {"choices": [\n\n'
    )

    with pytest.raises(ProviderError, match="malformed") as raised:
        await collect(openai_provider)

    assert raised.value.status is None


async def test_network_error_mid_stream_raises_provider_error(
    openai_upstream: FakeUpstream, openai_provider: OpenAIProvider
) -> None:
    first = openai_sse(openai_chunk({"content": "Hel"}), done=False)
    openai_upstream.stream(ByteStream([first]), then_drop=True)

    with pytest.raises(ProviderError, match="connection failed") as raised:
        await collect(openai_provider)

    assert raised.value.status is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_reads_seconds_and_milliseconds(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert parse_retry_after(headers) == seconds


def test_parse_retry_after_reads_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    seconds = parse_retry_after({"retry-after": when})

    assert seconds is not None and 28 <= seconds <= 30


async def test_a_local_server_gets_requests_without_a_key(
    openai_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_upstream.json(openai_completion({"content": "Hi"}, usage=openai_usage(1, 1)))
    provider = OpenAIProvider("ollama", base_url=openai_upstream.url + "/v1", api_key=None)

    completion = await provider.complete("llama3", HELLO)
    await provider.aclose()

    assert completion.text == "Hi"
    assert "authorization" not in openai_upstream.requests[-1].headers


async def test_cookies_an_upstream_sets_are_never_sent_back(openai_upstream: FakeUpstream) -> None:
    body = openai_completion({"content": "Hi"}, usage=openai_usage(1, 1))
    openai_upstream.json(body, headers={"set-cookie": "session=caller-a; Path=/"})
    openai_upstream.json(body)
    # By name: a cookie jar would keep a cookie for a host name (it ignores bare IPs).
    by_name = openai_upstream.url.replace("127.0.0.1", "localhost")
    provider = OpenAIProvider("p", base_url=by_name + "/v1")

    await provider.complete("gpt-4o-mini", HELLO)
    await provider.complete("gpt-4o-mini", HELLO)
    await provider.aclose()

    assert "cookie" not in openai_upstream.requests[-1].headers
