"""The fake speaks Anthropic Messages well enough for the official SDK."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from cascade_gateway.fake_upstream import FakeUpstream, Reply, Rule
from cascade_gateway.tokens import count_messages, count_text

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_create_returns_a_text_message_with_usage(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(model="claude-draft", reply=Reply(text="Paris.")))

    message = claude.messages.create(
        model="claude-draft", max_tokens=100, system="Be brief.", messages=QUESTION
    )

    assert message.id.startswith("msg_")
    assert message.model == "claude-draft"
    assert [(block.type, getattr(block, "text", None)) for block in message.content] == [
        ("text", "Paris.")
    ]
    assert message.stop_reason == "end_turn"
    system = [{"role": "system", "content": "Be brief."}]
    assert message.usage.input_tokens == count_messages(system + QUESTION)
    assert message.usage.output_tokens == count_text("Paris.")


def test_finish_reason_length_becomes_max_tokens(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(reply=Reply(text="The capital", finish_reason="length", usage=(10, 20))))

    message = claude.messages.create(model="c", max_tokens=2, messages=QUESTION)

    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 20)


def test_tool_calls_become_tool_use_blocks(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(reply=Reply(tool_calls=[("get_weather", '{"city": "Paris"}')])))

    message = claude.messages.create(model="c", max_tokens=100, messages=QUESTION)

    (block,) = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"


def test_a_stream_accumulates_into_the_final_message(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(reply=Reply(text="The capital is Paris.", usage=(12, 5))))

    with claude.messages.stream(model="c", max_tokens=100, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()

    assert text == "The capital is Paris."
    assert message.content[0].type == "text"
    assert message.content[0].text == "The capital is Paris."
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)


def test_a_streamed_tool_use_input_accumulates(up: FakeUpstream, claude: anthropic.Anthropic):
    up.add(Rule(reply=Reply(text="Checking.", tool_calls=[("get_weather", '{"city": "Paris"}')])))

    with claude.messages.stream(model="c", max_tokens=100, messages=QUESTION) as stream:
        message = stream.get_final_message()

    text, tool = message.content
    assert text.type == "text" and text.text == "Checking."
    assert tool.type == "tool_use"
    assert (tool.name, tool.input) == ("get_weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"


def test_the_raw_stream_sends_events_in_the_real_order(up: FakeUpstream):
    up.add(Rule(reply=Reply(text="Hi there")))
    body = {"model": "c", "max_tokens": 10, "messages": QUESTION, "stream": True}

    response = httpx.post(up.url + "/v1/messages", json=body)

    frames = [frame for frame in response.text.split("\n\n") if frame]
    events = [frame.split("\n")[0].removeprefix("event: ") for frame in frames]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = json.loads(frames[0].split("\n")[1].removeprefix("data: "))
    assert start["message"]["usage"]["output_tokens"] == 1


def test_a_protocol_rule_answers_only_its_own_api(
    up: FakeUpstream, claude: anthropic.Anthropic, client: openai.OpenAI
):
    up.add(Rule(protocol="anthropic", reply=Reply(text="from the anthropic rule")))

    message = claude.messages.create(model="m", max_tokens=10, messages=QUESTION)
    completion = client.chat.completions.create(model="m", messages=QUESTION)

    assert message.content[0].type == "text"
    assert message.content[0].text == "from the anthropic rule"
    assert completion.choices[0].message.content == "Fake answer from m."


def test_models_answer_in_anthropic_shape_for_the_anthropic_sdk(
    up: FakeUpstream, claude: anthropic.Anthropic
):
    up.add(Rule(model="claude-draft"))

    assert [model.id for model in claude.models.list()] == ["claude-draft"]


def test_tool_arguments_that_are_not_an_object_are_a_script_error(
    up: FakeUpstream, claude: anthropic.Anthropic
):
    up.add(Rule(reply=Reply(tool_calls=[("f", "not json")])))

    with pytest.raises(anthropic.InternalServerError) as failed:
        claude.messages.create(model="c", max_tokens=10, messages=QUESTION)

    assert "JSON object" in failed.value.message


def test_a_body_without_max_tokens_is_an_invalid_request(up: FakeUpstream):
    response = httpx.post(up.url + "/v1/messages", json={"model": "c", "messages": QUESTION})

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


def test_an_api_key_is_required_when_configured():
    with (
        FakeUpstream.running(api_key="secret") as up,
        anthropic.Anthropic(base_url=up.url, api_key="wrong", max_retries=0) as claude,
    ):
        with pytest.raises(anthropic.AuthenticationError) as refused:
            claude.messages.create(model="c", max_tokens=10, messages=QUESTION)
        accepted = claude.with_options(api_key="secret").messages.create(
            model="c", max_tokens=10, messages=QUESTION
        )

    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    assert accepted.stop_reason == "end_turn"
