"""The replay provider answers with what each model once said, counted like a live call."""

from __future__ import annotations

import pytest

from cascade_gateway import tokens
from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import ProviderError
from cascade_gateway.replay.data import Answer
from cascade_gateway.replay.provider import ReplayProvider


def ask(prompt: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": prompt}])


@pytest.fixture
def provider() -> ReplayProvider:
    return ReplayProvider(
        "replay",
        {
            "draft": {"What is 2+2?": Answer("2 + 2 = 4", 1.0)},
            "strong": {"What is 2+2?": Answer("Four.", 1.0, finish_reason="length")},
        },
    )


async def test_it_serves_the_recorded_answer_of_the_model_asked(provider):
    completion = await provider.complete("strong", ask("What is 2+2?"))

    assert (completion.text, completion.finish_reason) == ("Four.", "length")


async def test_usage_is_counted_with_the_gateways_token_counter(provider):
    request = ask("What is 2+2?")

    usage = (await provider.complete("draft", request)).usage

    assert usage.input_tokens == tokens.count_messages(request.messages)
    assert usage.output_tokens == tokens.count_text("2 + 2 = 4")
    assert usage.counted is True


async def test_a_model_without_recorded_answers_is_a_provider_error(provider):
    with pytest.raises(ProviderError, match="no recorded answers for model 'other'"):
        await provider.complete("other", ask("What is 2+2?"))


async def test_a_prompt_without_a_recorded_answer_is_a_provider_error(provider):
    with pytest.raises(ProviderError, match="no recorded answer of 'draft' for this prompt"):
        await provider.complete("draft", ask("What is 3+3?"))


async def test_streaming_sends_the_answer_then_a_finish_with_usage(provider):
    deltas = [d async for d in provider.stream("draft", ask("What is 2+2?"))]

    assert [d.text for d in deltas] == ["2 + 2 = 4", ""]
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
