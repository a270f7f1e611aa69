"""Each scripted fault reaches the SDKs as the failure a real upstream would cause."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from cascade_gateway.fake_upstream import FakeUpstream, Fault, Reply, Rule

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_429_raises_rate_limit_error_with_retry_after(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="draft", fault=Fault(status=429, retry_after=2)))

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="draft", messages=QUESTION)

    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.code == "rate_limit_exceeded"


def test_a_500_raises_internal_server_error_in_openai_shape(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(fault=Fault(status=500, message="boom")))

    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="m", messages=QUESTION)

    assert failed.value.body == {
        "message": "boom",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_a_one_shot_fault_falls_through_to_the_reply(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="draft", reply=Reply(text="Paris.")))
    up.add(Rule(model="draft", times=1, fault=Fault(status=503)))

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="draft", messages=QUESTION)
    retried = client.chat.completions.create(model="draft", messages=QUESTION)

    assert retried.choices[0].message.content == "Paris."


def test_an_anthropic_429_is_a_rate_limit_error_in_anthropic_shape(
    up: FakeUpstream, claude: anthropic.Anthropic
):
    up.add(Rule(fault=Fault(status=429, retry_after=1.5, message="slow down")))

    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="c", max_tokens=10, messages=QUESTION)

    assert limited.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert limited.value.response.headers["retry-after"] == "1.5"


def test_an_anthropic_529_is_an_overloaded_error(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(fault=Fault(status=529)))

    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="c", max_tokens=10, messages=QUESTION)


def test_a_hang_times_out_the_client(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="y", fault=Fault(kind="hang")))

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).chat.completions.create(model="y", messages=QUESTION)


def test_a_broken_stream_raises_after_the_first_chunks(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="z", fault=Fault(kind="broken_stream", after_chunks=2)))
    received = []

    # Older openai releases let httpx's error through; 3.57 (on httpx2) wraps it.
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        for chunk in client.chat.completions.create(model="z", messages=QUESTION, stream=True):
            received.append(chunk)

    assert len(received) == 2


def test_a_broken_non_streamed_answer_is_a_connection_error(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(model="z", fault=Fault(kind="broken_stream")))

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="z", messages=QUESTION)


def test_a_broken_anthropic_stream_raises(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(fault=Fault(kind="broken_stream", after_chunks=3)))

    with (
        pytest.raises(httpx2.RemoteProtocolError),
        claude.messages.stream(model="c", max_tokens=10, messages=QUESTION) as stream,
    ):
        stream.get_final_message()


def test_a_malformed_stream_fails_to_parse(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="w", fault=Fault(kind="malformed_stream")))

    with pytest.raises(json.JSONDecodeError):
        list(client.chat.completions.create(model="w", messages=QUESTION, stream=True))


def test_a_malformed_anthropic_stream_fails_to_parse(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(fault=Fault(kind="malformed_stream", after_chunks=2)))

    with (
        pytest.raises(json.JSONDecodeError),
        claude.messages.stream(model="c", max_tokens=10, messages=QUESTION) as stream,
    ):
        stream.get_final_message()


def test_reply_latency_delays_the_answer(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="x", reply=Reply(text="slow", latency_s=0.05)))

    started = time.perf_counter()
    client.chat.completions.create(model="x", messages=QUESTION)

    assert time.perf_counter() - started >= 0.05


def test_per_chunk_delay_spaces_the_stream(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="x", reply=Reply(text="one two three", per_chunk_s=0.01)))

    started = time.perf_counter()
    list(client.chat.completions.create(model="x", messages=QUESTION, stream=True))

    # role + 3 pieces + finish + [DONE]: five gaps between six frames.
    assert time.perf_counter() - started >= 0.05
