"""Confidence read from token logprobs."""

from __future__ import annotations

import math

from cascade_gateway.validation.signals import Logprob


def test_logprob_does_not_apply_without_logprobs(ask, answer):
    assert Logprob()(ask(), answer(logprobs=None)) is None


def test_logprob_does_not_apply_to_an_empty_list(ask, answer):
    assert Logprob()(ask(), answer(logprobs=[])) is None


def test_logprob_confident_tokens_score_one(ask, answer):
    assert Logprob()(ask(), answer(logprobs=[-0.01] * 20)).score == 1.0


def test_logprob_unsure_tokens_score_zero(ask, answer):
    assert Logprob()(ask(), answer(logprobs=[math.log(0.3)] * 20)).score == 0.0


def test_logprob_score_rises_with_token_probability(ask, answer):
    middling = Logprob()(ask(), answer(logprobs=[math.log(0.6)] * 20))
    surer = Logprob()(ask(), answer(logprobs=[math.log(0.8)] * 20))

    assert 0.0 < middling.score < surer.score < 1.0


def test_logprob_penalizes_a_few_very_unlikely_tokens(ask, answer):
    steady = [-0.05] * 20
    with_guesses = [-0.05] * 18 + [math.log(0.05)] * 2

    clean = Logprob()(ask(), answer(logprobs=steady))
    guessed = Logprob()(ask(), answer(logprobs=with_guesses))

    assert guessed.score < 0.8 * clean.score
    assert guessed.detail == "mean p=0.71, 2/20 tokens below p=0.1"


def test_logprob_is_a_soft_signal_with_its_weight(ask, answer):
    score = Logprob(weight=2.0)(ask(), answer(logprobs=[-0.01]))

    assert (score.gate, score.weight) == (False, 2.0)
