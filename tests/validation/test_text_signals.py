"""Signals read from the answer's text: truncation, empty, refusal, hedging."""

from __future__ import annotations

import pytest

from cascade_gateway.domain import ToolCall
from cascade_gateway.validation.signals import Empty, Hedging, Refusal, Truncation

CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')


@pytest.mark.parametrize("finish_reason", ["length", "content_filter"])
def test_truncation_fails_an_answer_cut_short(ask, answer, finish_reason):
    score = Truncation()(ask(), answer("The capital of", finish_reason=finish_reason))

    assert (score.gate, score.passed) == (True, False)
    assert score.detail == f"finish_reason={finish_reason}"


@pytest.mark.parametrize("finish_reason", ["stop", "tool_calls"])
def test_truncation_passes_a_finished_answer(ask, answer, finish_reason):
    assert Truncation()(ask(), answer(finish_reason=finish_reason)).passed is True


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_empty_fails_no_text_and_no_tool_call(ask, answer, text):
    score = Empty()(ask(), answer(text))

    assert (score.gate, score.passed) == (True, False)


def test_empty_passes_a_tool_call_without_text(ask, answer):
    assert Empty()(ask(), answer("", tool_calls=[CALL])).passed is True


def test_empty_passes_text(ask, answer):
    assert Empty()(ask(), answer("Paris.")).passed is True


@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that.",
        "I'm sorry, but I cannot provide instructions for that.",
        "Sorry. I can't assist with that request.",
        "Unfortunately, I won't be able to help with this one.",
        "I'm unable to browse the internet.",
        "I am not able to give medical advice.",
        "As an AI, I do not have opinions.",
        "Good question. As an AI language model, I have no feelings.",
        "I'm sorry, but that request goes against my guidelines.",
        "**I cannot comply with this request.**",
        "i can\u2019t help with that",
        "I must decline this request.",
    ],
)
def test_refusal_fails_a_refusing_answer(ask, answer, text):
    score = Refusal()(ask(), answer(text))

    assert (score.gate, score.passed) == (True, False)


@pytest.mark.parametrize(
    "text",
    [
        "I cannot stress enough how important sleep is.",
        "I can't help but notice the bug on line 3: the loop never ends.",
        "I'm sorry to hear that! Here are a few things that usually help.",
        "The library cannot help you here; use the standard one instead.",
        "You can use GPT-4 as an AI assistant for drafting emails.",
        "Paris is the capital. Many say they can't help loving it.",
    ],
)
def test_refusal_passes_refusal_words_that_do_not_refuse(ask, answer, text):
    assert Refusal()(ask(), answer(text)).passed is True


def test_refusal_names_the_phrase_it_found(ask, answer):
    score = Refusal()(ask(), answer("I'm sorry, but I can't help with that."))

    assert score.detail == '"i can\'t help"'


def test_refusal_late_in_an_answer_passes_as_partial(ask, answer):
    text = (
        "Lock picking is a popular hobby. Practice locks are sold for it. "
        "Clubs meet in many cities. I can't help with opening locks you do not own."
    )

    score = Refusal()(ask(), answer(text))

    assert score.passed is True
    assert score.detail == "partial refusal in sentence 4"


def test_refusal_ignores_code(ask, answer):
    text = 'Raise an error:\n```python\nraise ValueError("I can\'t help with that")\n```'

    assert Refusal()(ask(), answer(text)).passed is True


def test_refusal_does_not_apply_without_text(ask, answer):
    assert Refusal()(ask(), answer("", tool_calls=[CALL])) is None


def test_hedging_scores_a_plain_answer_one(ask, answer):
    assert Hedging()(ask(), answer("The capital of France is Paris.")).score == 1.0


def test_hedging_scores_a_hedging_answer_near_zero(ask, answer):
    text = "I'm not sure, but it might possibly be Lyon, I think."

    score = Hedging()(ask(), answer(text))

    assert score.score < 0.05
    assert score.detail == "1 strong + 3 weak hedges in 11 words"


def test_hedging_one_hedge_in_a_long_answer_costs_little(ask, answer):
    text = "Paris might be busy in August. " + "It is the capital of France. " * 33

    assert Hedging()(ask(), answer(text)).score > 0.9


def test_hedging_score_falls_as_hedges_get_denser(ask, answer):
    sparse = Hedging()(ask(), answer("It might rain. " + "The sky is grey today. " * 10))
    dense = Hedging()(ask(), answer("It might rain. " + "The sky is grey today. "))

    assert dense.score < sparse.score


def test_hedging_strong_hedge_costs_more_than_weak(ask, answer):
    fact = "the bridge opened in 1890, the year it was built."
    strong = Hedging()(ask(), answer(f"I'm not sure {fact}"))
    weak = Hedging()(ask(), answer(f"I think {fact}"))

    assert strong.score < weak.score


def test_hedging_counts_only_whole_words(ask, answer):
    text = "The almighty river is impossibly wide; nobody thinks otherwise."

    assert Hedging()(ask(), answer(text)).score == 1.0


def test_hedging_ignores_code(ask, answer):
    text = "Use this helper:\n```python\n# might be None, maybe\nvalue = get()\n```"

    assert Hedging()(ask(), answer(text)).score == 1.0


def test_hedging_uses_its_weight(ask, answer):
    assert Hedging(weight=2.5)(ask(), answer()).weight == 2.5


def test_hedging_does_not_apply_without_text(ask, answer):
    assert Hedging()(ask(), answer("", tool_calls=[CALL])) is None
