"""The fake speaks OpenAI Chat Completions well enough for the official SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from cascade_gateway.fake_upstream import FakeUpstream, Reply, Rule
from cascade_gateway.fake_upstream.answer import DEFAULT_LOGPROB
from cascade_gateway.tokens import count_messages, count_text

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_an_unscripted_request_gets_the_default_answer_for_its_model(client: openai.OpenAI):
    completion = client.chat.completions.create(model="any-model", messages=QUESTION)

    assert completion.model == "any-model"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == "Fake answer from any-model."
    assert completion.choices[0].finish_reason == "stop"


def test_a_rule_for_a_model_answers_with_its_text(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="draft", reply=Reply(text="Paris.")))

    completion = client.chat.completions.create(model="draft", messages=QUESTION)

    assert completion.choices[0].message.content == "Paris."


def test_prompt_contains_matches_only_the_last_user_message(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(prompt_contains="JSON", reply=Reply(text='{"a": 1}')))
    earlier_json = [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Say JSON"},
        {"role": "assistant", "content": "{}"},
        {"role": "user", "content": [{"type": "text", "text": "plain words now"}]},
    ]

    asked = client.chat.completions.create(model="m", messages=[QUESTION[0], earlier_json[1]])
    not_asked = client.chat.completions.create(model="m", messages=earlier_json)

    assert asked.choices[0].message.content == '{"a": 1}'
    assert not_asked.choices[0].message.content == "Fake answer from m."


def test_the_most_recently_added_matching_rule_wins(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="draft", reply=Reply(text="default")))
    up.add(Rule(model="draft", reply=Reply(text="override")))

    completion = client.chat.completions.create(model="draft", messages=QUESTION)

    assert completion.choices[0].message.content == "override"


def test_a_rule_with_times_expires_and_requests_fall_through(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(model="draft", reply=Reply(text="always")))
    up.add(Rule(model="draft", times=2, reply=Reply(text="twice")))

    texts = [
        client.chat.completions.create(model="draft", messages=QUESTION).choices[0].message.content
        for _ in range(3)
    ]

    assert texts == ["twice", "twice", "always"]


def test_usage_counts_the_prompt_and_the_reply(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(reply=Reply(text="The capital of France is Paris.")))

    usage = client.chat.completions.create(model="m", messages=QUESTION).usage

    assert usage is not None
    assert usage.prompt_tokens == count_messages(QUESTION)
    assert usage.completion_tokens == count_text("The capital of France is Paris.")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_scripted_usage_and_finish_reason_are_reported(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="strong", reply=Reply(text="cut", finish_reason="length", usage=(10, 20))))

    completion = client.chat.completions.create(model="strong", messages=QUESTION)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 20)


def test_a_tool_call_only_reply_has_null_content(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(reply=Reply(tool_calls=[("get_weather", '{"city": "Paris"}')])))

    choice = client.chat.completions.create(model="m", messages=QUESTION).choices[0]

    assert choice.message.content is None
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')


def test_a_stream_sends_role_then_content_pieces_then_the_finish(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(reply=Reply(text="The capital is Paris.")))

    chunks = list(client.chat.completions.create(model="m", messages=QUESTION, stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) > 1
    assert "".join(p or "" for p in pieces) == "The capital is Paris."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].delta.content is None
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1


def test_a_stream_reports_usage_in_a_last_chunk_without_choices_when_asked(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(reply=Reply(text="Paris.", usage=(7, 2))))

    chunks = list(
        client.chat.completions.create(
            model="m", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 2)
    assert all(c.usage is None for c in chunks[:-1])


def test_a_stream_reports_no_usage_unless_asked(client: openai.OpenAI):
    chunks = list(client.chat.completions.create(model="m", messages=QUESTION, stream=True))

    assert all(c.usage is None and c.choices for c in chunks)


def test_omit_usage_hides_usage_even_when_asked(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="v", reply=Reply(text="hi", omit_usage=True)))

    chunks = list(
        client.chat.completions.create(
            model="v", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )

    assert all(c.usage is None and c.choices for c in chunks)


def test_streamed_tool_calls_accumulate_in_the_sdk_helper(up: FakeUpstream, client: openai.OpenAI):
    calls = [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "Europe/Paris"}')]
    up.add(Rule(reply=Reply(text="Checking.", tool_calls=calls)))

    with client.chat.completions.stream(model="m", messages=QUESTION) as stream:
        completion = stream.get_final_completion()

    message = completion.choices[0].message
    assert message.content == "Checking."
    assert message.tool_calls is not None
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == calls
    assert completion.choices[0].finish_reason == "tool_calls"


def test_streamed_tool_call_fragments_carry_id_and_name_only_first(
    up: FakeUpstream, client: openai.OpenAI
):
    up.add(Rule(reply=Reply(tool_calls=[("get_weather", '{"city": "Paris"}')])))

    chunks = client.chat.completions.create(model="m", messages=QUESTION, stream=True)
    fragments = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]

    first, *rest = fragments
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function is not None
    assert (first.function.name, first.function.arguments) == ("get_weather", "")
    assert len(rest) > 1
    assert all(f.index == 0 and f.id is None and f.function for f in rest)
    assert "".join(f.function.arguments or "" for f in rest if f.function) == '{"city": "Paris"}'


def test_logprobs_default_to_near_zero_one_entry_per_token(client: openai.OpenAI):
    choice = client.chat.completions.create(
        model="m", messages=QUESTION, logprobs=True, top_logprobs=2
    ).choices[0]

    assert choice.logprobs is not None and choice.logprobs.content
    content = choice.logprobs.content
    assert "".join(entry.token for entry in content) == "Fake answer from m."
    assert {entry.logprob for entry in content} == {DEFAULT_LOGPROB}
    assert all(len(entry.top_logprobs) == 2 for entry in content)
    assert all(entry.top_logprobs[0].token == entry.token for entry in content)
    assert content[0].bytes == list(content[0].token.encode())


def test_no_logprobs_unless_asked(client: openai.OpenAI):
    choice = client.chat.completions.create(model="m", messages=QUESTION).choices[0]

    assert choice.logprobs is None


def test_scripted_logprobs_are_reported_in_token_order(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="u", reply=Reply(text="maybe Paris", logprobs=[-0.5, -2.3])))

    choice = client.chat.completions.create(model="u", messages=QUESTION, logprobs=True).choices[0]

    assert choice.logprobs is not None and choice.logprobs.content
    assert [(e.token, e.logprob) for e in choice.logprobs.content] == [
        ("maybe", -0.5),
        (" Paris", -2.3),
    ]


def test_streamed_logprobs_arrive_with_their_chunk(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="u", reply=Reply(text="maybe Paris", logprobs=[-0.5, -2.3])))

    chunks = client.chat.completions.create(
        model="u", messages=QUESTION, logprobs=True, stream=True
    )
    pairs = [
        (c.choices[0].delta.content, [e.logprob for e in c.choices[0].logprobs.content or []])
        for c in chunks
        if c.choices[0].logprobs is not None
    ]

    assert pairs == [("maybe", [-0.5]), (" Paris", [-2.3])]


async def test_the_async_client_gets_a_completion(
    up: FakeUpstream, async_client: openai.AsyncOpenAI
):
    up.add(Rule(model="draft", reply=Reply(text="Paris.")))

    completion = await async_client.chat.completions.create(model="draft", messages=QUESTION)

    assert completion.choices[0].message.content == "Paris."


async def test_the_async_client_streams(up: FakeUpstream, async_client: openai.AsyncOpenAI):
    up.add(Rule(model="draft", reply=Reply(text="Paris is the capital.")))

    stream = await async_client.chat.completions.create(
        model="draft", messages=QUESTION, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])

    assert text == "Paris is the capital."


def test_the_raw_stream_is_sse_data_frames_ending_in_done(up: FakeUpstream):
    body = {"model": "m", "messages": QUESTION, "stream": True}

    response = httpx.post(up.url + "/v1/chat/completions", json=body)

    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(frame.startswith("data: ") for frame in frames[:-1])
    assert json.loads(frames[0].removeprefix("data: "))["object"] == "chat.completion.chunk"


def test_models_lists_the_scripted_models(up: FakeUpstream, client: openai.OpenAI):
    up.add(Rule(model="draft"), Rule(model="strong"), Rule(prompt_contains="x"))

    assert [model.id for model in client.models.list()] == ["draft", "strong"]


def test_requests_are_recorded_with_body_lowercase_headers_and_stream_flag(
    up: FakeUpstream, client: openai.OpenAI
):
    client.chat.completions.create(model="draft", messages=QUESTION, stream=True).close()

    (received,) = up.requests
    assert received.path == "/v1/chat/completions"
    assert received.protocol == "openai"
    assert received.model == "draft"
    assert received.stream is True
    assert received.json["messages"] == QUESTION
    assert received.prompt == QUESTION[0]["content"]
    assert received.headers["authorization"] == "Bearer k"


def test_an_api_key_is_required_when_configured():
    with (
        FakeUpstream.running(api_key="secret") as up,
        openai.OpenAI(base_url=up.url + "/v1", api_key="wrong", max_retries=0) as client,
    ):
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model="m", messages=QUESTION)
        accepted = client.with_options(api_key="secret").chat.completions.create(
            model="m", messages=QUESTION
        )

    assert refused.value.code == "invalid_api_key"
    assert accepted.choices[0].message.content == "Fake answer from m."


def test_a_body_without_messages_is_a_400_in_openai_shape(up: FakeUpstream):
    response = httpx.post(up.url + "/v1/chat/completions", json={"model": "m"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
